"""Adaptive keep-alive (hybrid histogram policy) vs fixed keep-alives, replayed on synthetic traces.

The traces have the shapes Shahrad et al. ("Serverless in the Wild", USENIX ATC 2020) report for Azure Functions:
periodic timers (with jitter), bursty HTTP (Poisson arrivals in on-periods separated by long off-periods), steady
HTTP (Poisson), rare functions (hours between invocations), and a mix of many functions.  Days of trace are replayed
in seconds of CPU: the simulation drives the same pure policy the server uses (``squall.scheduler.keep_alive``) with
a fake clock, at the paper's real scale (1-minute bins, 4-hour range); no server is involved.

Like the paper's simulator it works per function: a function is loaded or not; an invocation that finds it unloaded
is a cold start; overlapping invocations are one busy period.  Wasted memory = time loaded while idle x the
function's memory.

Prints JSON lines (``keep_alive.cold_start_rate`` and ``keep_alive.idle_memory_gb_s`` per trace shape and policy,
the fixed keep-alives as the baseline), then a table on stderr.

``hybrid`` is the server's default (the paper's histogram with the keep-alive window chosen by cost:
``SQUALL_KEEP_ALIVE_COLD_COST_S``), ``hybrid_percentile`` the previous default (the paper's percentiles with the cap),
``hybrid_paper`` the policy as published; ``--cold-cost 150,300,600`` adds the cost rule at other prices.

    PYTHONPATH=src python bench/keep_alive.py [--quick] [--seed N] [--cold-cost S,S,...]
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import emit, quick

from squall.scheduler.keep_alive import FunctionKeepAlive, HistogramConfig

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class Trace:
    shape: str
    memory_mb: int
    #: (start, duration) seconds, sorted by start
    invocations: list[tuple[float, float]]


def _duration(rng: random.Random) -> float:
    return min(30.0, rng.lognormvariate(-1.0, 1.0))  # median ~0.37 s, like most Azure functions (< 1 s)


def periodic(rng: random.Random, days: float) -> list[tuple[float, float]]:
    period = rng.choice([60, 300, 600, 900, 1800, 3600, 7200])
    jitter = 1.0 + 0.01 * period
    t = rng.uniform(0, period)
    out = []
    while t < days * DAY:
        out.append((max(0.0, t + rng.uniform(-jitter, jitter)), _duration(rng)))
        t += period
    return out


def bursty(rng: random.Random, days: float) -> list[tuple[float, float]]:
    rate = 1 / rng.uniform(2, 60)  # during a burst: one request every 2..60 s on average
    on_mean, off_mean = rng.uniform(5, 30) * 60, rng.uniform(1, 6) * HOUR
    t, out = rng.uniform(0, off_mean), []
    while t < days * DAY:
        end = t + rng.expovariate(1 / on_mean)
        while t < end:
            out.append((t, _duration(rng)))
            t += rng.expovariate(rate)
        t = end + rng.expovariate(1 / off_mean)
    return out


def poisson(rng: random.Random, days: float, mean_lo: float, mean_hi: float) -> list[tuple[float, float]]:
    mean = rng.uniform(mean_lo, mean_hi)
    t, out = rng.expovariate(1 / mean), []
    while t < days * DAY:
        out.append((t, _duration(rng)))
        t += rng.expovariate(1 / mean)
    return out


SHAPES: dict[str, Callable[[random.Random, float], list[tuple[float, float]]]] = {
    "periodic": periodic,
    "bursty": bursty,
    "steady": lambda rng, days: poisson(rng, days, 30, 20 * 60),  # HTTP, a request every 30 s .. 20 min
    "rare": lambda rng, days: poisson(rng, days, 3 * HOUR, 24 * HOUR),
}
#: share of each shape in the mix (the paper: timers in ~30% of apps; 45% of apps invoked at most hourly)
MIX = {"periodic": 0.3, "bursty": 0.25, "steady": 0.25, "rare": 0.2}


def traces(rng: random.Random, n: int, days: float) -> list[Trace]:
    out = []
    shapes = list(MIX)
    weights = [MIX[s] for s in shapes]
    for _ in range(n):
        shape = rng.choices(shapes, weights)[0]
        out.append(Trace(shape, rng.choice([128, 256, 512]), SHAPES[shape](rng, days)))
    return out


@dataclass
class Tally:
    invocations: int = 0
    cold: int = 0
    idle_mb_s: float = 0.0
    prewarms: int = 0

    def add(self, other: Tally) -> None:
        self.invocations += other.invocations
        self.cold += other.cold
        self.idle_mb_s += other.idle_mb_s
        self.prewarms += other.prewarms


def simulate(trace: Trace, cfg: HistogramConfig | None, fixed_s: float) -> Tally:
    """Replay one function's trace.  ``cfg`` None: a fixed keep-alive of ``fixed_s``; else the hybrid policy."""
    policy = FunctionKeepAlive(cfg) if cfg is not None else None
    tally = Tally()
    busy_until: float | None = None  # end of the current busy period (overlapping invocations)
    for start, duration in trace.invocations:
        tally.invocations += 1
        if busy_until is not None and start <= busy_until:
            busy_until = max(busy_until, start + duration)  # runs alongside: warm, no idle time
            continue
        if busy_until is None:
            tally.cold += 1
        else:
            if policy is None:
                warm_from, until = busy_until, busy_until + fixed_s
            else:
                policy.invocation_ended(busy_until)
                keep = policy.keep_until(busy_until)
                assert keep is not None
                warm_from, until = keep.warm_from, keep.until
                if policy.prewarm_at(busy_until).at is not None and warm_from <= start:
                    tally.prewarms += 1
            loaded = max(0.0, min(until, start) - max(warm_from, busy_until))
            tally.idle_mb_s += loaded * trace.memory_mb
            if not warm_from <= start <= until:
                tally.cold += 1
        if policy is not None:
            policy.invocation_started(start)
        busy_until = start + duration
    if busy_until is not None:  # the tail after the last invocation: loaded until the window ends
        if policy is None:
            tally.idle_mb_s += fixed_s * trace.memory_mb
        else:
            policy.invocation_ended(busy_until)
            keep = policy.keep_until(busy_until)
            assert keep is not None
            tally.idle_mb_s += (keep.until - keep.warm_from) * trace.memory_mb
    return tally


def main() -> None:
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 7
    n, days = (120, 2.0) if quick() else (400, 7.0)
    rng = random.Random(seed)
    population = traces(rng, n, days)
    hybrid = HistogramConfig()
    policies: dict[str, tuple[HistogramConfig | None, float]] = {
        "fixed_60": (None, 60.0),
        "fixed_300": (None, 300.0),
        "fixed_600": (None, 600.0),
        "hybrid": (hybrid, 300.0),
        # the paper's percentile windows with the cap: the default before the cost rule
        "hybrid_percentile": (replace(hybrid, cold_start_cost_s=0.0), 300.0),
        # the paper's policy as published: a window with no pre-warm is not capped at the fixed keep-alive
        "hybrid_paper": (replace(hybrid, cold_start_cost_s=0.0, cap_without_prewarm=False), 300.0),
    }
    if "--cold-cost" in sys.argv:
        for price in sys.argv[sys.argv.index("--cold-cost") + 1].split(","):
            policies[f"hybrid_cost_{float(price):g}"] = (replace(hybrid, cold_start_cost_s=float(price)), 300.0)
    adaptive = [p for p in policies if p.startswith("hybrid")]
    results: dict[str, dict[str, Tally]] = {p: {} for p in policies}
    for name, (cfg, fixed_s) in policies.items():
        for tr in population:
            t = simulate(tr, cfg, fixed_s)
            for shape in (tr.shape, "mix"):
                results[name].setdefault(shape, Tally()).add(t)
    shapes = ["mix", *MIX]
    info = {"functions": n, "days": days, "seed": seed}
    for shape in shapes:
        for metric, unit, get in (
            ("cold_start_rate", "ratio", lambda t: t.cold / max(1, t.invocations)),
            ("idle_memory_gb_s", "GB-s", lambda t: t.idle_mb_s / 1024),
        ):
            base = {p: round(get(results[p][shape]), 4) for p in ("fixed_60", "fixed_300", "fixed_600")}
            for p in adaptive:
                emit(
                    f"keep_alive.{metric}",
                    get(results[p][shape]),
                    unit,
                    policy=p,
                    shape=shape,
                    baseline=base,
                    **info,
                )
    f300 = results["fixed_300"]["mix"]
    lines = [
        f"{n} functions, {days:g} days, seed {seed}; idle memory relative to fixed 300 s",
        "| policy | shape | invocations | cold-start rate | idle memory GB-s | idle memory vs fixed 300 s |",
        "|---|---|---|---|---|---|",
    ]
    for shape in shapes:
        for p in policies:
            t = results[p][shape]
            ref = results["fixed_300"][shape].idle_mb_s or 1.0
            lines.append(
                f"| {p} | {shape} | {t.invocations} | {t.cold / max(1, t.invocations):.2%} | "
                f"{t.idle_mb_s / 1024:,.0f} | {t.idle_mb_s / ref:.2f} |"
            )
    for p in adaptive:
        h = results[p]["mix"]
        lines.append(
            f"mix: {p} cold-start rate {h.cold / h.invocations:.2%} vs fixed 300 s "
            f"{f300.cold / f300.invocations:.2%}, at {h.idle_mb_s / f300.idle_mb_s:.2f} of its idle memory"
        )
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
