"""Two source trees side by side under the same load: warm latency, c=32 throughput and server CPU per request.

Starts one Squall server from each tree (``PYTHONPATH=<tree>/src``) at the same time, deploys the Invoke bench
function and a ``GET /hello`` HTTP route on both, then alternates short blocks between them (A, B, B, A, ...), so a
machine whose load swings 2x from minute to minute loads both alike.  For each tree and route: p50 of sequential
requests, requests/s at concurrency 32, and the server process's CPU per request (all its threads) over its blocks.

Prints JSON lines ``ab_<route>_<metric>`` with ``a``/``b`` values and ``ratio`` = b / a.

    python bench/ab_servers.py --a <old tree> --b <new tree> [--blocks 6] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, median, pct
from _cpu import proc_cpu_ms
from _http import Conn, Signer
from _load import CODE, deploy_hello, drive, request
from _server import KEY_ID, SECRET, Server, deploy


async def sequential(port: int, route: str, n: int) -> list[float]:
    conn, signer, out = Conn("127.0.0.1", port), Signer(KEY_ID, SECRET), []
    for _ in range(n):
        t0 = time.perf_counter()
        status = await request(conn, signer, port, route)
        assert status == 200, status
        out.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="tree A (its src/ goes first on PYTHONPATH)")
    ap.add_argument("--b", required=True, help="tree B")
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    blocks = 2 if args.quick else args.blocks
    n_seq, secs = (100, 2.0) if args.quick else (200, 3.0)
    servers: dict[str, Server] = {}
    try:
        for k, tree in (("a", args.a), ("b", args.b)):
            servers[k] = Server(PYTHONPATH=str(Path(tree).resolve() / "src"))
        for s in servers.values():
            deploy(s.lambda_client(), "bench", CODE)
            deploy_hello(s.url)
            for route in ("invoke", "http"):
                asyncio.run(drive(s.port, route, 32, 1.0))  # 32 instances up, caches warm
        for route in ("invoke", "http"):
            lat: dict[str, list[float]] = {"a": [], "b": []}
            rps: dict[str, list[float]] = {"a": [], "b": []}
            cpu_ms: dict[str, float] = {"a": 0.0, "b": 0.0}
            count: dict[str, int] = {"a": 0, "b": 0}
            for i in range(blocks):
                for k in ("a", "b") if i % 2 == 0 else ("b", "a"):
                    s = servers[k]
                    c0 = proc_cpu_ms(s.proc.pid)
                    lat[k] += asyncio.run(sequential(s.port, route, n_seq))
                    t0 = time.perf_counter()
                    done = asyncio.run(drive(s.port, route, 32, secs))
                    rps[k].append(done / (time.perf_counter() - t0))
                    cpu_ms[k] += proc_cpu_ms(s.proc.pid) - c0
                    count[k] += n_seq + done
            p50 = {k: pct(v, 50) for k, v in lat.items()}
            tput = {k: median(v) for k, v in rps.items()}
            cpu = {k: cpu_ms[k] * 1000 / max(1, count[k]) for k in cpu_ms}
            for metric, vals, unit in (("warm_p50_ms", p50, "ms"), ("c32_rps", tput, "req/s"),
                                       ("server_cpu_us_per_request", cpu, "us")):  # fmt: skip
                emit(
                    f"ab_{route}_{metric}", vals["b"], unit, a=round(vals["a"], 4), b=round(vals["b"], 4),
                    ratio=round(vals["b"] / vals["a"], 3) if vals["a"] else None, blocks=blocks,
                    baseline={"a_tree": args.a, "b_tree": args.b},
                )  # fmt: skip
    finally:
        for s in servers.values():
            s.stop()


if __name__ == "__main__":
    main()
