"""What the hot-path benches share: the echo function, the ``GET /hello`` route project, and the c=N load loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _http import Conn, Signer
from _server import KEY_ID, SECRET

#: the Invoke bench function (deployed as ``bench``)
CODE = "def handler(event, context):\n    return {'ok': True, 'n': event.get('n', 0)}\n"
INVOKE = "/2015-03-31/functions/bench/invocations"
HELLO = "def hello(event, context):\n    return {'statusCode': 200, 'body': 'hello'}\n"
YAML = (
    "functions:\n  hello:\n    handler: app.hello\n    code: ./code\n    requirements: false\n"
    "    events: [{http: {method: GET, path: /hello}}]\n"
)


def deploy_hello(url: str, project: Path | None = None) -> None:
    """``squall deploy`` of a squall.yaml project with the ``GET /hello`` route, against the server at ``url``."""
    project = project or Path(tempfile.mkdtemp(prefix="squall-bench-hello-"))
    (project / "code").mkdir(parents=True, exist_ok=True)
    (project / "code" / "app.py").write_text(HELLO)
    (project / "squall.yaml").write_text(YAML)
    env = {**os.environ, "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    subprocess.run([sys.executable, "-m", "squall.cli.main", "deploy", "."], cwd=project, env=env, check=True,
                   capture_output=True)  # fmt: skip


async def request(conn: Conn, signer: Signer, port: int, route: str) -> int:
    """One request on ``conn``: a signed Invoke of ``bench`` (route "invoke") or ``GET /hello`` (route "http")."""
    if route == "invoke":
        body = b'{"n": 1}'
        status, _ = await conn.request("POST", INVOKE, body, signer.headers("POST", f"127.0.0.1:{port}", INVOKE, body))
    else:
        status, _ = await conn.request("GET", "/hello", b"", {"host": f"127.0.0.1:{port}"})
    return status


async def drive(port: int, route: str, concurrency: int, seconds: float) -> int:
    """``concurrency`` keep-alive connections sending requests for ``seconds``; how many succeeded."""
    signer = Signer(KEY_ID, SECRET)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        conn = Conn("127.0.0.1", port)
        while time.perf_counter() < deadline:
            status = await request(conn, signer, port, route)
            assert status == 200, status
            done += 1
        conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done
