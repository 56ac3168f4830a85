"""A real uvicorn server on 127.0.0.1 (a free port) serving only the Lambda control-plane routes, in a background
thread, plus helpers to build zips in memory.  No auth middleware: the integrator adds SigV4 at the app level."""

from __future__ import annotations

import io
import socket
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
import uvicorn
from botocore.config import Config
from starlette.applications import Starlette

from squall.core.clock import SystemClock
from squall.functions.api import lambda_routes
from squall.functions.control import FunctionService
from squall.functions.store.code import CodeStore
from squall.functions.store.metadata import SqliteMetadataStore

__all__ = ["ACCOUNT", "REGION", "ROLE", "LambdaServer", "make_zip"]

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/squall-test"


def make_zip(files: dict[str, str] | None = None, *, raw_names: dict[str, str] | None = None) -> bytes:
    """A zip in memory; ``raw_names`` are written with exactly the given entry names (for hostile zips)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in (
            files if files is not None else {"app.py": "def handler(event, context):\n    return event\n"}
        ).items():
            zf.writestr(name, text)
        for name, text in (raw_names or {}).items():
            zf.writestr(zipfile.ZipInfo(name), text)
    return buf.getvalue()


class LambdaServer:
    """The control plane over HTTP.  ``changes`` records every on_change callback as (name, qualifier)."""

    def __init__(self, root: Path) -> None:
        self.store = SqliteMetadataStore(root / "metadata.db", region=REGION, account_id=ACCOUNT)
        self.code_store = CodeStore(root / "code", durable=False)
        self.changes: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = FunctionService(
            self.store,
            self.code_store,
            region=REGION,
            account_id=ACCOUNT,
            clock=SystemClock(),
            on_change=[self._record_sync, self._record_async],
            public_url=self.url,
        )
        app = Starlette(routes=lambda_routes(self.service))
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._async_seen = 0

    def _record_sync(self, name: str, qualifier: str) -> None:
        self.changes.append((name, qualifier))

    async def _record_async(self, name: str, qualifier: str) -> None:
        self._async_seen += 1

    def start(self) -> LambdaServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Lambda API server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        self.store.close()

    def client(self, **config: Any) -> Any:
        """A real boto3 Lambda client.  Client-side validation is off so the server's validation is what we
        test (botocore would refuse e.g. MemorySize=64 itself)."""
        return boto3.client(
            "lambda",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 0}, parameter_validation=False, **config),
        )
