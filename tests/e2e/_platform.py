"""A real ``squall up`` in a subprocess for end-to-end tests, with boto3 clients pointed at it."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.pg_helpers import backend, database_for

KEY_ID = "AKSQTESTTESTTESTTEST"
SECRET = "testsecrettestsecrettestsecrettestsecre0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def zip_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


class SquallProcess:
    """``python -m squall.cli.main up`` on a free loopback port; stopped by PID."""

    def __init__(self, data_dir: Path, port: int | None = None, args: tuple[str, ...] = (), **env: str) -> None:
        self.data_dir = data_dir
        self.args = tuple(args)  # more ``squall up`` flags (``--nats-url``, ``--node-id``, ...)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ, "SQUALL_ACCESS_KEY_ID": KEY_ID, "SQUALL_SECRET_ACCESS_KEY": SECRET,
            "SQUALL_DISK_RESERVE_MB": "8",  # not 64 MiB fallocated in every test's data dir (pytest keeps 3 runs)
            **env,
        }  # fmt: skip
        if backend() == "postgres" and "SQUALL_DATABASE_URL" not in env:  # the suite's second pass: PostgreSQL
            self.env["SQUALL_DATABASE_URL"] = database_for(data_dir)
        self.log = data_dir.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> SquallProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "squall.cli.main", "up", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), *self.args],
                env=self.env,
                stdout=out,
                stderr=out,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"squall up exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/_squall/health", timeout=1):
                    return self
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"squall up did not answer in {timeout_s} s: {self.log.read_text()[-3000:]}")

    def client(self, service: str = "lambda", **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            config=Config(retries={"max_attempts": 0}, read_timeout=60, **config),
        )

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def create(client: Any, name: str, code: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("Timeout", 10)
    kw.setdefault("Role", "arn:aws:iam::000000000000:role/x")
    out = client.create_function(
        FunctionName=name, Runtime="python3.11", Handler="app.handler",
        Code={"ZipFile": zip_of({"app.py": code})}, **kw,
    )  # fmt: skip
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return out


LAMBDA_TRUST = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, '
    '"Action": "sts:AssumeRole"}]}'
)


def execution_role(proc: SquallProcess, name: str, *statements: dict[str, Any]) -> str:
    """Create (or extend) an execution role whose inline policy allows ``statements``; returns its ARN."""
    import json

    iam = proc.client("iam")
    try:
        arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    if statements:
        document = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
        iam.put_role_policy(RoleName=name, PolicyName="test", PolicyDocument=document)
    return arn


def eventually(check: Any, timeout_s: float = 20.0, interval_s: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what} did not hold within {timeout_s} s (last: {last!r})")


def signed_get(base_url: str, path: str, key_id: str = KEY_ID, secret: str = SECRET) -> tuple[int, Any]:
    """GET a Squall API path signed with SigV4 (service 'lambda'); returns (status, parsed JSON)."""
    import json

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="GET", url=base_url + path)
    SigV4Auth(Credentials(key_id, secret), "lambda", "us-east-1").add_auth(req)
    r = urllib.request.Request(base_url + path, headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
