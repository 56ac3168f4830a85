"""A Function URL (AuthType NONE) of a trivial function vs the in-process ceiling (same client, same run).

Prints JSON lines:
  function_url_c32_rps     unsigned GET requests/s at concurrency 32; "ratio" = Squall / ceiling
  function_url_c32_p50_ms  per-request latency at concurrency 32 (p99 alongside), with the ceiling's

    python bench/http_endpoint.py [--quick]
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, median, pct, quick
from _http import Conn
from _server import Server, deploy, free_port, wait_http

__all__ = ["main"]

CODE = "def handler(event, context):\n    return {'ok': True}\n"
CONCURRENCY = 32


async def load(port: int, path: str, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """(requests/s, latencies in ms) of ``concurrency`` keep-alive clients GETting ``path`` for ``seconds``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    headers = {"host": f"127.0.0.1:{port}"}

    async def worker() -> None:
        conn = Conn("127.0.0.1", port)
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status, _ = await conn.request("GET", path, b"", headers)
            latencies.append((time.perf_counter() - t0) * 1000)
            assert status == 200, status
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - t0), latencies


def main() -> None:
    secs = 3.0 if quick() else 10.0
    repeats = 1 if quick() else 3
    squall = Server()
    port = free_port()
    ceiling = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_http_ceiling.py")), str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/lambda-url/x/", 30)
        client = squall.lambda_client()
        deploy(client, "bench", CODE)
        path = urlsplit(client.create_function_url_config(FunctionName="bench", AuthType="NONE")["FunctionUrl"]).path
        asyncio.run(load(squall.port, path, CONCURRENCY, 0.5))  # warm up both
        asyncio.run(load(port, path, CONCURRENCY, 0.5))
        s_rps, c_rps, s_lat, c_lat = [], [], [], []
        for _ in range(repeats):
            rps, lat = asyncio.run(load(squall.port, path, CONCURRENCY, secs))
            s_rps.append(rps)
            s_lat += lat
            rps, lat = asyncio.run(load(port, path, CONCURRENCY, secs))
            c_rps.append(rps)
            c_lat += lat
        emit(
            "function_url_c32_rps", median(s_rps), "req/s",
            ratio=round(median(s_rps) / median(c_rps), 3), repeats=repeats, seconds=secs,
            baseline={"ceiling_rps": round(median(c_rps), 1)},
        )  # fmt: skip
        emit(
            "function_url_c32_p50_ms", pct(s_lat, 50), "ms", p99=round(pct(s_lat, 99), 3), n=len(s_lat),
            baseline={"ceiling_p50_ms": round(pct(c_lat, 50), 3), "ceiling_p99_ms": round(pct(c_lat, 99), 3)},
        )  # fmt: skip
    finally:
        squall.stop()
        ceiling.terminate()
        ceiling.wait()


if __name__ == "__main__":
    main()
