"""SCHED_BATCH vs SCHED_OTHER for instances (SQUALL_INSTANCE_SCHED), alternating rounds in one run.

Prints JSON lines per mode: warm invoke p50 (sequential) and throughput at concurrency 32 through the Invoke API,
medians of the rounds, and the batch/normal ratio.

    python bench/instance_sched.py [--quick]
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
    rounds = 2 if quick() else 4
    secs = 3.0 if quick() else 5.0
    results: dict[str, dict[str, list[float]]] = {m: {"rps": [], "p50": []} for m in ("batch", "normal")}
    for _ in range(rounds):
        for mode in ("batch", "normal"):
            server = Server(SQUALL_INSTANCE_SCHED=mode)
            try:
                deploy(server.lambda_client(), "bench", CODE)
                asyncio.run(sequential(server.port, 50))
                results[mode]["rps"].append(asyncio.run(throughput(server.port, 32, secs)))
                results[mode]["p50"].append(pct(asyncio.run(sequential(server.port, 300)), 50))
            finally:
                server.stop()
    for mode, r in results.items():
        emit(
            f"instance_sched_{mode}_c32_rps", median(r["rps"]), "req/s", rounds=rounds, all=[round(x) for x in r["rps"]]
        )
        emit(f"instance_sched_{mode}_p50_ms", median(r["p50"]), "ms", rounds=rounds)
    emit(
        "instance_sched_batch_over_normal",
        median(results["batch"]["rps"]) / median(results["normal"]["rps"]),
        "ratio",
        p50_delta_ms=round(median(results["batch"]["p50"]) - median(results["normal"]["p50"]), 4),
    )


if __name__ == "__main__":
    main()
