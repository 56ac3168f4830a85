"""What a function imports, seen from inside its sandbox: the import probe's answer and the learned pre-import
report (squall.sandbox.node.preimport).

A module counts as a *dependency* (something a zygote may pre-import) unless it is the function's own code: a module
under ``/var/task`` that is not part of a vendored distribution (``*.dist-info``: its ``top_level.txt``, else the
top-level names its ``RECORD`` lists, else its name).  The stdlib, Lambda's runtime packages (``/var/runtime``) and
layers (``/opt``) are dependencies.  The user's own modules are never pre-imported: their init code runs once per
instance, as on Lambda (its sockets are never shared).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

__all__ = ["ImportTracker", "dependencies", "vendored_tops"]

_vendored: frozenset[str] | None = None


def _task_root() -> str:
    return os.environ.get("LAMBDA_TASK_ROOT") or "/var/task"


def vendored_tops(task_root: str | None = None) -> frozenset[str]:
    """Top-level module names of the distributions vendored in ``task_root`` (computed once per process)."""
    global _vendored
    if _vendored is not None:
        return _vendored
    task_root = task_root or _task_root()
    tops: set[str] = set()
    try:
        infos = [e for e in os.scandir(task_root) if e.name.endswith(".dist-info") and e.is_dir()]
    except OSError:
        infos = []
    for info in infos[:500]:
        found: set[str] = set()
        try:
            with open(os.path.join(info.path, "top_level.txt"), encoding="utf-8", errors="replace") as f:
                found = {line.strip() for line in f.read(65536).splitlines() if line.strip()}
        except OSError:
            try:
                with open(os.path.join(info.path, "RECORD"), encoding="utf-8", errors="replace") as f:
                    for line in f.read(1 << 20).splitlines():
                        first = line.split(",", 1)[0].split("/", 1)[0]
                        if first and not first.endswith((".dist-info", ".data")) and ".." not in first:
                            found.add(first.removesuffix(".py").split(".", 1)[0])
            except OSError:
                pass
        tops |= found or {info.name.split("-", 1)[0]}
    _vendored = frozenset(t.lower() for t in tops)
    return _vendored


def dependencies(names: Iterable[str], own: str, task_root: str | None = None) -> list[str]:
    """The names (in the order given) of loaded modules that are dependencies, not ``own`` (the handler module's
    top-level name) or other code of the function's own."""
    task_root = task_root or _task_root()
    prefix = task_root.rstrip("/") + "/"
    out = []
    for name in names:
        top = name.split(".", 1)[0]
        if top == own or top.startswith("__") or top == "squall":
            continue
        mod = sys.modules.get(name)
        if mod is None:
            continue
        f = getattr(mod, "__file__", None) or ""
        if f.startswith(prefix) and top.lower() not in vendored_tops(task_root):
            continue
        out.append(name)
    return out


class ImportTracker:
    """Modules imported since the instance was forked (its zygote's are inherited), reported with READY and with
    the result of each of its first ``invocations`` invocations, then no more work per invocation."""

    def __init__(self, own: str, invocations: int = 3) -> None:
        self.own = own
        self.left = invocations
        # sys.modules keeps insertion order and an import appends: what is new is what follows its last key now.
        # Walking back from the end touches only the new entries; a set of every name would write the reference
        # count of each (~700 strings on as many pages: ~130 page copies in an instance just forked from its zygote)
        self._mark = self._last()

    @staticmethod
    def _last() -> str | None:
        return next(reversed(sys.modules), None)

    def new(self) -> list[str]:
        mark = self._mark
        fresh: list[str] = []
        for name in reversed(sys.modules):
            if name == mark:
                break
            fresh.append(name)
        else:
            if mark is not None:  # the mark itself was removed from sys.modules: nothing to tell apart, nothing said
                fresh = []
        self._mark = self._last()
        fresh.reverse()
        return dependencies(fresh, self.own)

    def after_invoke(self) -> list[str] | None:
        """The new dependencies after an invocation, while still looking; None once done."""
        if self.left <= 0:
            return None
        self.left -= 1
        return self.new()
