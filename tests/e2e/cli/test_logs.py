"""``squall logs``: stored lines, time windows, grep, and ``--follow``."""

from __future__ import annotations

import itertools
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest

from tests.e2e.cli._cli import Run, Server, eventually, ok, one_line_error


def test_logs_show_start_end_report_and_prints(squall: Run, hello: str) -> None:
    ok(squall("invoke", hello, "--payload", '{"marker": "logs-1"}'))

    def has_marker() -> bool:
        return "marker: logs-1" in ok(squall("logs", hello)).stdout

    eventually(has_marker, what="the log line to be stored")
    out = ok(squall("logs", hello, "--since", "10m")).stdout
    for needle in ("START RequestId", "END RequestId", "REPORT RequestId", "Billed Duration", "marker: logs-1"):
        assert needle in out
    grep = ok(squall("logs", hello, "--grep", "LOGS-1")).stdout
    assert "marker: logs-1" in grep and "REPORT" not in grep
    # a time window that ended before the invocation finds nothing of it
    before = ok(squall("logs", hello, "--since", "7d", "--until", "1h")).stdout
    assert "marker: logs-1" not in before
    bad = squall("logs", hello, "--follow", "--until", "now")
    assert bad.returncode != 0 and "--until" in bad.stderr and "Traceback" not in bad.stderr


class _Follower:
    """``squall logs ... --follow`` in a subprocess, its output collected by a thread."""

    def __init__(self, server: Server, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "squall.cli.main", "logs", *args, "--follow"],
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen = ""
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line)

    def wait_for(self, needle: str, timeout_s: float) -> bool:
        """Whether ``needle`` was printed within ``timeout_s`` (bounded wait on the output)."""
        deadline = time.monotonic() + timeout_s
        while needle not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self.seen += self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
        return True

    def interrupt(self) -> str:
        """Ctrl-C; returns what it wrote to stderr."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._pump.join(10)
        assert self.proc.stderr is not None
        with self.proc.stderr:
            return self.proc.stderr.read()


def test_logs_follow_honours_since(squall: Run, server: Server, hello: str) -> None:
    """--since with --follow: lines older than --since are not printed (it used to print the whole history when the
    window held no line yet)."""
    ok(squall("invoke", hello, "--payload", '{"marker": "before-follow"}'))
    eventually(lambda: "marker: before-follow" in ok(squall("logs", hello)).stdout, what="the older line")
    since = datetime.now(UTC).isoformat()
    follower = _Follower(server, hello, "--since", since)
    try:
        ok(squall("invoke", hello, "--payload", '{"marker": "after-follow"}'))
        if not follower.wait_for("marker: after-follow", 20):
            pytest.fail(f"--follow did not print 'marker: after-follow'; got:\n{follower.seen}")
    finally:
        follower.interrupt()
    assert "marker: before-follow" not in follower.seen
    assert "START RequestId" in follower.seen


def test_logs_follow_prints_new_lines_until_interrupted(squall: Run, server: Server, hello: str) -> None:
    follower = _Follower(server, hello, "--since", "1s")
    try:
        # until the follower prints one of our lines it may not have taken its first page yet: a line written before
        # that could be missed by design (the tail starts at "now"), so keep invoking until one shows (bounded) ...
        deadline = time.monotonic() + 60
        for i in itertools.count():
            ok(squall("invoke", hello, "--payload", json.dumps({"marker": f"warm-{i}"})))
            if follower.wait_for("marker: warm-", 5):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"--follow printed none of our lines; got:\n{follower.seen}")
        # ... then a line written after that must be printed by the follow loop
        ok(squall("invoke", hello, "--payload", '{"marker": "followed"}'))
        if not follower.wait_for("marker: followed", 20):
            pytest.fail(f"--follow did not print the new line; got:\n{follower.seen}")
    finally:
        stderr = follower.interrupt()
    assert follower.proc.returncode in (0, 130)
    assert "Traceback" not in stderr


def test_logs_of_unknown_function_is_one_line(squall: Run, server: Server) -> None:
    one_line_error(squall("logs", "no-such-function"), "not found")
