"""Start a real Squall server (or the ceiling app) in a subprocess for a benchmark, and stop it by PID."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

KEY_ID = "AKSQBENCHBENCHBENCH1"
SECRET = "benchsecretbenchsecretbenchsecretbench00"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (404 for a path it does not serve)
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout_s} s")


class Server:
    def __init__(self, **env: str) -> None:
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="squall-bench-data-"))
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "SQUALL_ACCESS_KEY_ID": KEY_ID, "SQUALL_SECRET_ACCESS_KEY": SECRET, **env}
        self.log = self.data.parent / f"{self.data.name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "squall.cli.main", "up", "--data-dir", str(self.data), "--port", str(self.port)],
                env=full_env,
                stdout=out,
                stderr=out,
            )
        try:
            wait_http(self.url + "/_squall/health")
        except BaseException:  # never leave a server behind that no one will stop
            self.stop()
            raise

    def lambda_client(self) -> Any:
        return self.client("lambda")

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service, endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 0}, read_timeout=120),
        )  # fmt: skip

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # first: a closed stderr (``| head``) must not leave the server up
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            print(f"# server log: {self.log}", file=sys.stderr)


def zip_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def deploy(client: Any, name: str, code: str, **kw: Any) -> None:
    client.create_function(
        FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::000000000000:role/x", Handler="app.handler",
        Code={"ZipFile": zip_of({"app.py": code})}, **kw,
    )  # fmt: skip
    client.get_waiter("function_active_v2").wait(FunctionName=name)
