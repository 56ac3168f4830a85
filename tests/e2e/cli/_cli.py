"""The ``squall`` CLI end to end: a real ``squall up`` in a subprocess per module, driven by the ``squall`` CLI as
subprocesses.  Asserts what a user sees: output, exit codes, and that errors are one clear line (never a traceback).

One module per concept (deploy, invoke and records, logs, errors and setup), so that pytest-xdist's
``--dist loadfile`` spreads them over workers; each starts its own server from the fixtures in conftest.py.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "ACCESS_KEY", "HANDLER", "SECRET_KEY", "START_TIMEOUT_S", "Run", "Server", "eventually", "free_port", "function_dir",
    "ok", "one_line_error", "stop",
]  # fmt: skip

ACCESS_KEY = "AKSQE2ECLITEST000001"
SECRET_KEY = "e2e-cli-secret-key-0123456789abcdefghij"
START_TIMEOUT_S = 60.0

HANDLER = """
import json

def handler(event, context):
    print("marker:", event.get("marker", "none"))
    if event.get("fail"):
        raise ValueError("boom: " + str(event.get("fail")))
    return {"hello": event.get("name", "world"), "request_id": context.aws_request_id}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


Run = Callable[..., subprocess.CompletedProcess[str]]


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("squall: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def eventually(check: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def function_dir(root: Path, name: str, source: str = HANDLER, filename: str = "app.py") -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / filename).write_text(source)
    return d
