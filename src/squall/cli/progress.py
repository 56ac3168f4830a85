"""What ``squall deploy`` shows while it works: one line per phase of each function.

Phases: ``resolving`` (packages pip collects), ``downloading`` (N packages), ``vendoring`` (N packages installed into
the package), ``zipping`` (N MB, a bar over the bytes), ``uploading`` (the zip's MB to the server), then the Lambda
API steps (creating/updating, triggers).  On a terminal this is rich's live progress display: a spinner, a bar where
the total is known, and the elapsed time per phase.  When standard error is not a terminal (CI logs, pipes) each
phase prints one plain line when it ends, with its final count, so logs stay short and greppable.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from squall.cli.packaging import BuildStep

__all__ = ["DeployProgress", "describe"]

_MB = 1024 * 1024


def _mb(n: int) -> str:
    return f"{n / _MB:,.1f} MB" if n >= _MB // 10 else f"{n / 1024:,.1f} KB"


def describe(step: BuildStep, finished: bool) -> str:
    """The line for a build step, e.g. "downloading 12 packages" (running) or "downloaded 12 packages" (done)."""
    count = f"{step.done} package{'s' if step.done != 1 else ''}"
    if step.phase == "resolving":
        return f"resolved {count}" if finished else f"resolving dependencies ({count})"
    if step.phase == "downloading":
        return f"downloaded {count}" if finished else f"downloading {count}"
    if step.phase == "vendoring":
        total = step.total or step.done
        many = f"{total} package{'s' if total != 1 else ''}"
        cached = f" {step.detail}" if step.detail == "from the build cache" else ""
        return f"vendored {many}{cached}" if finished else f"vendoring {many}"
    total = step.total if step.total is not None else step.done
    return f"zipped {_mb(total)}" if finished else f"zipping {_mb(total)}"


class DeployProgress:
    """``with DeployProgress(console) as p:`` then ``p.build(name, step)``, ``p.phase(name, text)``, ``p.done(...)``."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self._progress: Progress | None = None
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._last: dict[str, tuple[str, Any]] = {}  # function -> (phase key, last step or text) not yet closed

    def __enter__(self) -> DeployProgress:
        if self.live:
            self._progress = Progress(
                SpinnerColumn(finished_text="[green]✓[/]"),
                TextColumn("[bold]{task.fields[function]}[/]"),
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[detail]}", style="dim"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for name in list(self._last):
            self._close(name, ok=kind is None)
        if self._progress is not None:
            self._progress.stop()

    # -- phases --

    def build(self, function: str, step: BuildStep) -> None:
        """A packaging step (see ``squall.cli.packaging.BuildStep``)."""
        self._switch(function, step.phase, step)
        if self._progress is None:
            return
        task = self._task(function, step.phase)
        detail = step.detail if step.phase != "zipping" else f"{_mb(step.done)} of {_mb(step.total or step.done)}"
        self._progress.update(
            task, description=describe(step, False), completed=step.done, total=step.total, detail=detail[-40:]
        )

    def phase(self, function: str, text: str) -> None:
        """A step without a count ("uploading 18.3 MB", "creating function", "HTTP routes")."""
        self._switch(function, text, text)
        if self._progress is not None:
            task = self._task(function, text)
            self._progress.update(task, description=text, total=None, detail="")

    def finish(self, function: str, summary: str) -> None:
        """The function is deployed: close its open phase and print ``summary``."""
        self._close(function, ok=True)
        line = Text.assemble(("✓ ", "green"), (function, "bold"), f" {summary}")
        if self._progress is not None:
            self._progress.console.print(line, highlight=False)
        else:
            self.console.print(line, highlight=False)

    # -- internals --

    def _task(self, function: str, key: str) -> TaskID:
        assert self._progress is not None
        task = self._tasks.get((function, key))
        if task is None:
            task = self._progress.add_task(key, function=function, detail="", total=None)
            self._tasks[(function, key)] = task
        return task

    def _switch(self, function: str, key: str, value: Any) -> None:
        previous = self._last.get(function)
        if previous is not None and previous[0] != key:
            self._close(function, ok=True)
        self._last[function] = (key, value)

    def _close(self, function: str, ok: bool) -> None:
        previous = self._last.pop(function, None)
        if previous is None:
            return
        key, value = previous
        text = describe(value, True) if isinstance(value, BuildStep) else str(value)
        if self._progress is not None:
            task = self._tasks.get((function, key))
            if task is not None:
                total = self._progress.tasks[task].total
                done = total if total is not None else 1
                self._progress.update(task, description=text, total=done if ok else None, completed=done)
                if ok:
                    self._progress.stop_task(task)
        else:
            self.console.print(Text.assemble((f"{function}: ", "bold"), text), highlight=False, soft_wrap=True)
