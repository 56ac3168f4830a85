"""The server every module of this package drives with the ``squall`` CLI (one per module), and a function on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.cli._cli import (
    ACCESS_KEY,
    SECRET_KEY,
    START_TIMEOUT_S,
    Run,
    Server,
    free_port,
    function_dir,
    ok,
    stop,
)  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("squall-cli")
    data_dir = root / "data"
    port = free_port()
    env = {
        **os.environ,
        "SQUALL_ACCESS_KEY_ID": ACCESS_KEY,
        "SQUALL_SECRET_ACCESS_KEY": SECRET_KEY,
        "SQUALL_KEEP_ALIVE_S": "600",  # no reaping mid-test (see the report: reaper vs warm invoke race)
        "SQUALL_DATA_DIR": str(data_dir),
        "COLUMNS": "250",
        "PYTHONUNBUFFERED": "1",
    }
    for var in ("SQUALL_ENDPOINT", "AWS_ENDPOINT_URL", "SQUALL_PORT"):
        env.pop(var, None)
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "squall.cli.main", "up", "--data-dir", str(data_dir), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"squall up exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{url}/_squall/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"squall up did not become healthy in {START_TIMEOUT_S} s:\n{log.read_text(errors='replace')}"
                )
            time.sleep(0.1)
        yield Server(url, data_dir, {**env, "SQUALL_ENDPOINT": url}, proc, log)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def squall(server: Server) -> Run:
    def run(
        *args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "squall.cli.main", *args],
            env=env or server.env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture(scope="module")
def hello(server: Server, squall: Run, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A function deployed from a directory (name from the directory, handler guessed from app.py)."""
    d = function_dir(tmp_path_factory.mktemp("fn"), "hello")
    result = ok(squall("deploy", str(d), "--memory", "256", "--env", "GREETING=hi"))
    assert "hello" in result.stdout and "created" in result.stdout
    return "hello"
