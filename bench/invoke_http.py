"""End-to-end invoke through the Lambda Invoke API vs the in-process ceiling (same client, same run).

Prints JSON lines:
  warm_invoke_p50_ms      sequential signed Invoke requests to a warm function (ceiling: same handler in-process
                          behind plain Starlette + uvicorn); "delta_ms" is Squall minus ceiling (target <= +0.5 ms)
  throughput_c32_rps      requests/s at concurrency 32; "ratio" = Squall / ceiling (target >= 0.6)
  baseline.floor_*        the cross-process floor (bench/_floor.py): the same Starlette + uvicorn handing each
                          request to one of 32 pre-forked bare worker processes, no sandbox/SigV4/scheduler/records:
                          what running the handler outside the server process costs at least
  server_cpu_us_per_invoke  CPU of the Squall server process (all its threads: edge, scheduler, records writer) per
                          warm invoke, sequential and at concurrency 32 (target <= 120 us); the floor's server too
  cold_invoke_p50_ms      function deployed, zygote warm, no instance: first Invoke (target <= 10 ms)

    python bench/invoke_http.py [--quick]
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, median, pct, quick
from _cpu import proc_cpu_ms
from _http import Conn, Signer
from _load import CODE, INVOKE, drive
from _server import KEY_ID, SECRET, Server, deploy, free_port, wait_http


async def sequential(port: int, n: int) -> list[float]:
    signer = Signer(KEY_ID, SECRET)
    conn = Conn("127.0.0.1", port)
    body = b'{"n": 1}'
    out = []
    for _ in range(n):
        h = signer.headers("POST", f"127.0.0.1:{port}", INVOKE, body)
        t0 = time.perf_counter()
        status, _ = await conn.request("POST", INVOKE, body, h)
        out.append((time.perf_counter() - t0) * 1000)
        assert status == 200, status
    conn.close()
    return out


def cpu_per_call(pid: int, run: Callable[[], Any], calls: Callable[[Any, float], float]) -> tuple[Any, float]:
    """``run()``'s result and the CPU process ``pid`` used per call meanwhile, µs (``calls(result, wall_s)``)."""
    c0, t0 = proc_cpu_ms(pid), time.perf_counter()
    out = run()
    return out, (proc_cpu_ms(pid) - c0) * 1000 / max(1.0, calls(out, time.perf_counter() - t0))


async def throughput(port: int, concurrency: int, seconds: float) -> float:
    t0 = time.perf_counter()
    done = await drive(port, "invoke", concurrency, seconds)
    return done / (time.perf_counter() - t0)


def main() -> None:
    n_seq = 300 if quick() else 2000
    secs = 3.0 if quick() else 10.0
    repeats = 1 if quick() else 3
    squall = Server()
    port = free_port()
    ceiling = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_ceiling.py")), str(port)])
    floor_port = free_port()
    floor = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_floor.py")), str(floor_port), "32"])
    try:
        wait_http(f"http://127.0.0.1:{port}/", 30)
        wait_http(f"http://127.0.0.1:{floor_port}/", 30)
        client = squall.lambda_client()
        deploy(client, "bench", CODE)
        asyncio.run(sequential(squall.port, 50))  # warm up both
        asyncio.run(sequential(port, 50))
        asyncio.run(sequential(floor_port, 50))
        s_p50, c_p50, s_rps, c_rps, f_p50, f_rps = [], [], [], [], [], []
        s_cpu_seq, s_cpu_c32, f_cpu_seq = [], [], []
        for _ in range(repeats):
            s, cpu = cpu_per_call(
                squall.proc.pid, lambda: asyncio.run(sequential(squall.port, n_seq)), lambda r, _: len(r)
            )
            s_cpu_seq.append(cpu)
            c = asyncio.run(sequential(port, n_seq))
            s_p50.append(pct(s, 50))
            c_p50.append(pct(c, 50))
            rps, cpu = cpu_per_call(
                squall.proc.pid,
                lambda: asyncio.run(throughput(squall.port, 32, secs)),
                lambda rps, wall_s: rps * wall_s,
            )
            s_rps.append(rps)
            s_cpu_c32.append(cpu)
            c_rps.append(asyncio.run(throughput(port, 32, secs)))
            f, cpu = cpu_per_call(floor.pid, lambda: asyncio.run(sequential(floor_port, n_seq)), lambda r, _: len(r))
            f_cpu_seq.append(cpu)
            f_p50.append(pct(f, 50))
            f_rps.append(asyncio.run(throughput(floor_port, 32, secs)))
        emit(
            "warm_invoke_p50_ms", median(s_p50), "ms",
            delta_ms=round(median(s_p50) - median(c_p50), 4), repeats=repeats, n=n_seq,
            baseline={"ceiling_p50_ms": round(median(c_p50), 4), "floor_p50_ms": round(median(f_p50), 4)},
        )  # fmt: skip
        emit(
            "throughput_c32_rps", median(s_rps), "req/s",
            ratio=round(median(s_rps) / median(c_rps), 3), repeats=repeats, seconds=secs,
            of_floor=round(median(s_rps) / median(f_rps), 3),
            baseline={
                "ceiling_rps": round(median(c_rps), 1),
                "floor_rps": round(median(f_rps), 1),
                "floor_ratio": round(median(f_rps) / median(c_rps), 3),
            },
        )  # fmt: skip
        emit(
            "server_cpu_us_per_invoke", median(s_cpu_seq), "us", c32=round(median(s_cpu_c32), 1), repeats=repeats,
            baseline={"floor_server_us_sequential": round(median(f_cpu_seq), 1)},
        )  # fmt: skip
    finally:
        squall.stop()
        for proc in (ceiling, floor):
            proc.terminate()
            proc.wait()

    # cold: a server that reaps idle instances quickly, so every invoke finds the zygote but no instance
    cold_server = Server(SQUALL_KEEP_ALIVE_S="0", SQUALL_REAP_INTERVAL_S="0.05")
    try:
        client = cold_server.lambda_client()
        deploy(client, "bench", CODE)
        asyncio.run(sequential(cold_server.port, 1))  # load the zygote
        colds = []
        for _ in range(15 if quick() else 60):
            time.sleep(0.25)  # the reaper stops the idle instance
            colds.append(asyncio.run(sequential(cold_server.port, 1))[0])
        emit("cold_invoke_p50_ms", pct(colds, 50), "ms", p99=round(pct(colds, 99), 3), n=len(colds))
    finally:
        cold_server.stop()


if __name__ == "__main__":
    main()
