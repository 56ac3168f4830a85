"""What metrics + tracing cost on the warm invoke path: servers with observability on and off, in one run.

Three servers run the same function: "on" (the default: /metrics counters + histograms, traces sampled by X-Ray's
default rule -- 1 per second per function + 5% of the rest -- into the local trace store; no OTLP endpoint, whose
export runs in its own thread anyway), "off"
(SQUALL_METRICS=0 SQUALL_TRACING=0) and "control", a second "off" server: the on/off difference means something
only where it is larger than the off/control difference (two identical servers on a shared 2-core machine differ).
Rounds rotate the order of the servers; the medians of the rounds are compared.  Prints JSON lines:

  obs_warm_invoke_p50_ms        sequential signed Invoke p50, on; "delta_ms" = on - off (target <= 0.05 ms),
                                "control_delta_ms" = control - off (the noise floor)
  obs_throughput_c32_rps        requests/s at concurrency 32, on; "ratio" = on / off (target >= 0.95),
                                "control_ratio" = control / off (ratios of the medians); "paired_ratio" = the
                                median over rounds of on / off measured back to back in the same round (robust to
                                the machine's slow swings, which move a round's numbers by up to 2x here)
  obs_server_cpu_us_per_invoke  CPU time of the server process per sequential invoke (/proc/PID/stat, so the
                                sandboxed instance is not counted); "delta_us" = on - off
  obs_hooks_us_per_invoke       the observability code of one warm invoke run in-process, nothing else (entry span,
                                invocation trace, trace store, metrics): the cost without the noise; value = default
                                sampling, "all_sampled_us" = SQUALL_TRACE_SAMPLE=1 (every invocation kept)

    python bench/observability_overhead.py [--quick] [--rounds N]   (default 9 rounds; --quick: 3, shorter)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, median, pct, quick
from _server import Server, deploy
from invoke_http import CODE, sequential, throughput

NAMES = ("on", "off", "control")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hooks_us(n: int, sample_ratio: float) -> float:
    """The per-invocation observability calls of a warm Invoke, in-process (as invoke_api.py and invoker.py make
    them), microseconds each."""
    from squall.core.model import InvokeOutcome
    from squall.telemetry.metrics import Metrics
    from squall.telemetry.trace_store import TraceStore
    from squall.telemetry.tracing import KIND_SERVER, Tracer

    store = TraceStore()
    tracer = Tracer(sample_ratio, [store.add])
    metrics = Metrics(process=False)
    out = InvokeOutcome("rid", b"{}", None, 0.05, 1, None, 10, 128, "", False, "i-1")

    def one(i: int) -> None:
        rid = f"req-{i}"
        span = tracer.entry_span("Invoke bench", "", "", KIND_SERVER, None, "bench")
        if span.sampled:
            span.attributes = {
                "faas.invocation_id": rid, "faas.name": "bench", "faas.trigger": "other",
                "squall.trigger": "lambda-api", "squall.invocation_type": "RequestResponse",
            }  # fmt: skip
        trace = tracer.invocation("bench", rid, "lambda-api", span)
        trace.acquired()
        trace.instance_context()
        metrics.observe("bench", "lambda-api", out, "ok")
        trace.finish("$LATEST", out, "ok", None)
        tracer.end(span)
        span.traceparent()

    for i in range(2000):
        one(i)
    t0 = time.perf_counter()
    for i in range(n):
        one(i)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    n_seq = 300 if quick() else 2000
    secs = 2.0 if quick() else 4.0
    rounds = 3 if quick() else 9
    if "--rounds" in sys.argv:
        rounds = int(sys.argv[sys.argv.index("--rounds") + 1])
    off_env = {"SQUALL_METRICS": "0", "SQUALL_TRACING": "0"}
    servers = {"on": Server(), "off": Server(**off_env), "control": Server(**off_env)}
    try:
        for s in servers.values():
            deploy(s.lambda_client(), "bench", CODE)
            asyncio.run(sequential(s.port, 200))  # warm: instance, connection, caches
            asyncio.run(throughput(s.port, 32, 1.0))  # and the instances the throughput rounds use
        p50: dict[str, list[float]] = {k: [] for k in NAMES}
        rps: dict[str, list[float]] = {k: [] for k in NAMES}
        cpu: dict[str, list[float]] = {k: [] for k in NAMES}
        for i in range(rounds):
            order = NAMES[i % 3 :] + NAMES[: i % 3]  # rotate: each server goes first, second and third alike
            for name in order:
                s = servers[name]
                c0 = cpu_s(s.proc.pid)
                p50[name].append(pct(asyncio.run(sequential(s.port, n_seq)), 50))
                cpu[name].append((cpu_s(s.proc.pid) - c0) / n_seq * 1e6)
            for name in order:
                rps[name].append(asyncio.run(throughput(servers[name].port, 32, secs)))
        m_p50 = {k: median(v) for k, v in p50.items()}
        m_rps = {k: median(v) for k, v in rps.items()}
        m_cpu = {k: median(v) for k, v in cpu.items()}
        emit(
            "obs_warm_invoke_p50_ms", m_p50["on"], "ms",
            delta_ms=round(m_p50["on"] - m_p50["off"], 4), control_delta_ms=round(m_p50["control"] - m_p50["off"], 4),
            rounds=rounds, n=n_seq, baseline={"off_p50_ms": round(m_p50["off"], 4)},
            per_round={k: [round(x, 4) for x in v] for k, v in p50.items()},
        )  # fmt: skip
        emit(
            "obs_throughput_c32_rps", m_rps["on"], "req/s",
            ratio=round(m_rps["on"] / m_rps["off"], 4), control_ratio=round(m_rps["control"] / m_rps["off"], 4),
            paired_ratio=round(median([a / b for a, b in zip(rps["on"], rps["off"], strict=True)]), 4),
            paired_control_ratio=round(median([a / b for a, b in zip(rps["control"], rps["off"], strict=True)]), 4),
            rounds=rounds, seconds=secs, baseline={"off_rps": round(m_rps["off"], 1)},
            per_round={k: [round(x, 1) for x in v] for k, v in rps.items()},
        )  # fmt: skip
        emit(
            "obs_server_cpu_us_per_invoke", m_cpu["on"], "us",
            delta_us=round(m_cpu["on"] - m_cpu["off"], 2), control_delta_us=round(m_cpu["control"] - m_cpu["off"], 2),
            rounds=rounds, n=n_seq, baseline={"off_us": round(m_cpu["off"], 2)},
        )  # fmt: skip
    finally:
        for s in servers.values():
            s.stop()
    emit(
        "obs_hooks_us_per_invoke", median([hooks_us(20_000, 0.05) for _ in range(5)]), "us", n=20_000, repeats=5,
        all_sampled_us=round(median([hooks_us(20_000, 1.0) for _ in range(5)]), 3),
    )  # fmt: skip


if __name__ == "__main__":
    main()
