"""Python calls the server makes per warm request, for the Invoke API and an HTTP route (load-independent A/B).

On a 2-core machine shared with other work, CPU time and throughput swing by 2x from run to run; the number of
Python-level calls (function calls + C calls, all server threads) per request does not.  Run it against two source
trees to compare them (``PYTHONPATH=<tree>/src python bench/hot_path_calls.py``).  The server runs under
bench/_count_calls.py (a ``sys.setprofile`` hook): its CPU figure here is inflated by the hook, never a timing.

Prints JSON lines:
  py_calls_per_invoke        signed Invoke (POST /2015-03-31/functions/bench/invocations), sequential, warm
  py_calls_per_http_route    GET /hello of a squall.yaml `http` event (API Gateway v2 event), sequential, warm

    python bench/hot_path_calls.py [--quick]
    SQUALL_BENCH_COUNT_BY_FUNCTION=1 python bench/hot_path_calls.py   # also: calls per request by function, module
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quick
from _cpu import proc_cpu_ms
from _http import Conn, Signer
from _load import CODE, deploy_hello, request
from _server import KEY_ID, SECRET, free_port, wait_http, zip_of


def calls(pid: int, path: Path) -> int:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            return int(path.read_text())
        time.sleep(0.02)
    raise RuntimeError("the server did not report its call count")


def by_function(count_file: Path) -> dict[str, int]:
    """Calls so far per function (the server runs with $SQUALL_BENCH_COUNT_BY_FUNCTION), {} without it."""
    by = Path(str(count_file) + ".by")
    if not by.exists():
        return {}
    out = {}
    for line in by.read_text().splitlines():
        n, _, key = line.partition(" ")
        out[key] = int(n)
    return out


async def run(port: int, n: int, signed: bool) -> None:
    conn = Conn("127.0.0.1", port)
    signer = Signer(KEY_ID, SECRET)
    for _ in range(n):
        status = await request(conn, signer, port, "invoke" if signed else "http")
        assert status == 200, status
    conn.close()


def main() -> None:
    n = 200 if quick() else 1000
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="squall-bench-calls-"))
    count_file = work / "count"
    env = {**os.environ, "SQUALL_ACCESS_KEY_ID": KEY_ID, "SQUALL_SECRET_ACCESS_KEY": SECRET,
           "SQUALL_BENCH_COUNT_FILE": str(count_file)}  # fmt: skip
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_count_calls.py")), "up", "--data-dir", str(work / "data"),
             "--port", str(port)],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/_squall/health", 120)
        deploy_hello(f"http://127.0.0.1:{port}", work / "project")
        import boto3

        boto3.client(
            "lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        ).create_function(
            FunctionName="bench", Runtime="python3.11", Role="arn:aws:iam::000000000000:role/x",
            Handler="app.handler", Code={"ZipFile": zip_of({"app.py": CODE})},
        )  # fmt: skip
        for metric, signed in (("py_calls_per_invoke", True), ("py_calls_per_http_route", False)):
            asyncio.run(run(port, 20, signed))  # warm: instance started, caches filled
            c0, t0 = calls(proc.pid, count_file), proc_cpu_ms(proc.pid)
            by0 = by_function(count_file)
            w0 = time.monotonic()
            asyncio.run(run(port, n, signed))
            wall = time.monotonic() - w0
            c1, t1 = calls(proc.pid, count_file), proc_cpu_ms(proc.pid)
            by1 = by_function(count_file)
            # the server's periodic work (flushes, reaper, timers) over as long a time with no request: subtracted,
            # so a slower (loaded) run does not count more of it per request
            time.sleep(wall)
            c2 = calls(proc.pid, count_file)
            background = c2 - c1
            emit(
                metric, (c1 - c0 - background) / n, "calls", n=n, hooked_cpu_us=round((t1 - t0) * 1000 / n, 1),
                with_background=round((c1 - c0) / n, 2), background_per_request=round(background / n, 2),
            )  # fmt: skip
            if by0:
                rows = sorted(((v - by0.get(k, 0)) / n, k) for k, v in by1.items())[::-1]
                out = work / f"{metric}.by"
                out.write_text("".join(f"{v:8.2f} {k}\n" for v, k in rows if v >= 0.01))
                modules: dict[str, float] = {}
                for v, k in rows:
                    module = k.rsplit("(", 1)[-1].rstrip(")").removeprefix("C from ")
                    modules[module] = modules.get(module, 0.0) + v
                (work / f"{metric}.modules").write_text(
                    "".join(f"{v:8.2f} {k}\n" for k, v in sorted(modules.items(), key=lambda kv: -kv[1]) if v >= 0.01)
                )
                print(f"# calls per request by function and by module: {out}, .modules", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
