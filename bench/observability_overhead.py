"""What metrics + tracing cost on the warm invoke path: two servers in one run, observability on vs off.

Both servers run the same function; rounds alternate between them (on, off, off, on, ...) so drift on a shared
machine hits both alike, and the medians of the rounds are compared.  Prints JSON lines:

  obs_warm_invoke_p50_ms    sequential signed Invoke p50 with metrics + tracing on (the default); "delta_ms" is
                            on minus off (target <= 0.05 ms)
  obs_throughput_c32_rps    requests/s at concurrency 32 with them on; "ratio" = on / off (target >= 0.95)

"on" is the default configuration: /metrics counters + histograms, every invocation traced (sample ratio 1.0) into
the local trace store; no OTLP endpoint (export runs in its own thread, off the invocation path).

    python bench/observability_overhead.py [--quick]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, median, pct, quick
from _server import Server, deploy
from invoke_http import CODE, sequential, throughput


def main() -> None:
    n_seq = 300 if quick() else 2000
    secs = 2.0 if quick() else 5.0
    rounds = 2 if quick() else 6
    on = Server()
    off = Server(SQUALL_METRICS="0", SQUALL_TRACING="0")
    try:
        for s in (on, off):
            deploy(s.lambda_client(), "bench", CODE)
            asyncio.run(sequential(s.port, 200))  # warm: instance, connection, caches
            asyncio.run(throughput(s.port, 32, 1.0))  # and the 32 instances the throughput rounds use
        p50 = {"on": [], "off": []}  # type: dict[str, list[float]]
        rps = {"on": [], "off": []}  # type: dict[str, list[float]]
        for i in range(rounds):
            order = [("on", on), ("off", off)] if i % 2 == 0 else [("off", off), ("on", on)]
            for name, s in order:
                p50[name].append(pct(asyncio.run(sequential(s.port, n_seq)), 50))
            for name, s in order:
                rps[name].append(asyncio.run(throughput(s.port, 32, secs)))
        on_p50, off_p50 = median(p50["on"]), median(p50["off"])
        on_rps, off_rps = median(rps["on"]), median(rps["off"])
        emit(
            "obs_warm_invoke_p50_ms", on_p50, "ms",
            delta_ms=round(on_p50 - off_p50, 4), rounds=rounds, n=n_seq,
            baseline={"off_p50_ms": round(off_p50, 4)},
            per_round={"on": [round(x, 4) for x in p50["on"]], "off": [round(x, 4) for x in p50["off"]]},
        )  # fmt: skip
        emit(
            "obs_throughput_c32_rps", on_rps, "req/s",
            ratio=round(on_rps / off_rps, 4), rounds=rounds, seconds=secs,
            baseline={"off_rps": round(off_rps, 1)},
            per_round={"on": [round(x, 1) for x in rps["on"]], "off": [round(x, 1) for x in rps["off"]]},
        )  # fmt: skip
    finally:
        on.stop()
        off.stop()


if __name__ == "__main__":
    main()
