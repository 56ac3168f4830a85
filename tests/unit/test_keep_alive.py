"""Table tests of the adaptive keep-alive policy (hybrid histogram, Shahrad et al. 2020) with a fake clock."""

from __future__ import annotations

import random

import pytest

from squall.core.clock import FakeClock
from squall.scheduler import InstanceView, SchedulerState
from squall.scheduler.keep_alive import (
    FunctionKeepAlive,
    HistogramConfig,
    KeepUntil,
    PrewarmAt,
    coefficient_of_variation,
    reap_idle,
    reap_zygotes_adaptive,
)

#: the paper's percentile windows (cold_start_cost_s=0); the cost rule (the default) has its own tests below
CFG = HistogramConfig(bin_s=60.0, range_s=4 * 3600.0, min_samples=10, fixed_keep_alive_s=300.0, cold_start_cost_s=0.0)


def run(policy: FunctionKeepAlive, clock: FakeClock, gap_s: float, duration_s: float = 1.0) -> None:
    """Wait ``gap_s`` idle, then one invocation of ``duration_s``."""
    clock.advance(gap_s)
    policy.invocation_started(clock.monotonic())
    clock.advance(duration_s)
    policy.invocation_ended(clock.monotonic())


def test_periodic_function_learns_its_period_prewarms_and_unloads_in_between() -> None:
    clock = FakeClock()
    p = FunctionKeepAlive(CFG)
    rng = random.Random(1)
    run(p, clock, 0)
    for _ in range(12):  # a 10-minute timer with a few seconds of jitter
        run(p, clock, 600 + rng.uniform(-5, 5))
    w = p.windows()
    assert w.mode == "histogram"
    # head: the 540..600 s bin's lower edge (idle times 595..605 s) minus 10%; tail: 660 s plus 10%
    assert w.prewarm_s == pytest.approx(540 * 0.9)
    assert w.prewarm_s + w.keep_alive_s == pytest.approx(660 * 1.1)
    end = clock.monotonic()
    keep = p.keep_until(end)
    assert keep is not None
    assert not keep.keeps(end + 1)  # unloaded right after the invocation
    assert not keep.keeps(end + 400)
    pre = p.prewarm_at(end)
    assert pre == PrewarmAt(end + 486)  # pre-warmed before the next call ...
    assert keep.keeps(end + 486) and keep.keeps(end + 600)  # ... which finds it warm
    assert not keep.keeps(end + 727)  # and let go if the call does not come
    assert keep.keeps_zygote(end + 600) and not keep.keeps_zygote(end + 100)  # zygote: the same windows
    p.prewarm_started()
    assert p.prewarm_at(end + 500) == PrewarmAt(None)  # once per idle period
    run(p, clock, 600)
    assert p.prewarm_at(clock.monotonic()).at == pytest.approx(clock.monotonic() + 486)


def test_bursty_function_keeps_warm_from_the_end() -> None:
    clock = FakeClock()
    p = FunctionKeepAlive(CFG)
    rng = random.Random(2)
    run(p, clock, 0)
    for _ in range(40):  # HTTP bursts: most gaps are seconds, a few are minutes
        run(p, clock, rng.expovariate(1 / 20.0), 0.1)
    w = p.windows()
    assert w.mode == "histogram" and w.prewarm_s == 0
    end = clock.monotonic()
    keep = p.keep_until(end)
    assert keep is not None and keep.keeps(end) and keep.keeps(end + 60)
    assert p.prewarm_at(end) == PrewarmAt(None)  # already warm: nothing to pre-warm
    # the keep-alive covers the 99th percentile of gaps (+10%), far less than the fixed 300 s
    assert 60 <= w.keep_alive_s < 300


@pytest.mark.parametrize(("cap", "until"), [(True, 300.0), (False, 1320.0)])
def test_a_window_without_prewarm_is_capped_at_the_fixed_keep_alive(cap: bool, until: float) -> None:
    clock = FakeClock()
    p = FunctionKeepAlive(
        HistogramConfig(min_samples=10, fixed_keep_alive_s=300.0, cap_without_prewarm=cap, cold_start_cost_s=0.0)
    )
    run(p, clock, 0)
    for gap in [10.0] * 30 + [1150.0]:  # mostly seconds apart, once ~20 minutes: head 0, 99th percentile 20 min
        run(p, clock, gap)
    w = p.windows()
    assert w.mode == "histogram" and w.prewarm_s == 0
    assert w.keep_alive_s == pytest.approx(until)
    assert w.zygote_until_s == pytest.approx(600.0 if cap else until)  # capped: the fixed zygote keep-alive too


def test_rare_function_falls_back_to_the_fixed_keep_alive() -> None:
    clock = FakeClock()
    p = FunctionKeepAlive(CFG)
    rng = random.Random(3)
    run(p, clock, 0)
    for _ in range(20):  # invoked every few hours: beyond the 4-hour histogram
        run(p, clock, rng.uniform(5 * 3600, 12 * 3600))
    w = p.windows()
    assert w.mode == "fixed" and "beyond" in w.reason
    end = clock.monotonic()
    assert p.keep_until(end) == KeepUntil(end, end + 300, 300, end, end + 600)
    assert p.prewarm_at(end) == PrewarmAt(None)


@pytest.mark.parametrize(
    ("gaps", "reason"),
    [
        ([600.0] * 5, "learning: 5 of 10"),  # too few samples
        ([60.0 * k + 30 for k in range(240)], "too spread"),  # one in every bin: CV 0 < 2
    ],
)
def test_thin_or_flat_histograms_use_the_fixed_keep_alive(gaps: list[float], reason: str) -> None:
    clock = FakeClock()
    p = FunctionKeepAlive(CFG)
    run(p, clock, 0)
    for g in gaps:
        run(p, clock, g)
    w = p.windows()
    assert w.mode == "fixed" and reason in w.reason
    assert (w.prewarm_s, w.keep_alive_s, w.zygote_until_s) == (0.0, 300.0, 600.0)


def test_deploy_resets_what_was_learned() -> None:
    clock = FakeClock()
    p = FunctionKeepAlive(CFG)
    run(p, clock, 0)
    for _ in range(12):
        run(p, clock, 600)
    assert p.windows().mode == "histogram"
    p.reset()
    assert p.windows().mode == "fixed" and p.samples == 0
    assert p.keep_until(clock.monotonic()) is None and p.prewarm_at(clock.monotonic()) == PrewarmAt(None)
    run(p, clock, 600)  # the first invocation after the reset records no idle time (no previous end)
    assert p.samples == 0


def test_idle_time_counts_only_when_nothing_runs_and_busy_keeps_everything() -> None:
    clock = FakeClock()
    p = FunctionKeepAlive(CFG)
    t = clock.monotonic()
    p.invocation_started(t)
    p.invocation_started(t + 1)  # overlapping: not an idle time
    p.invocation_ended(t + 2)
    keep = p.keep_until(t + 2)
    assert keep is not None and keep.keeps(t + 10**6)  # one still running: the function stays ...
    assert keep.max_idle_s == 300  # ... but extras idle longer than the window still go
    p.invocation_ended(t + 3)
    assert p.last_end == t + 3 and p.samples == 0
    p.invocation_started(t + 63)
    assert p.samples == 1 and p.counts[1] == 1  # 60 s idle -> bin [60, 120)
    p.record_idle(5 * 3600)
    assert p.oob == 1 and sum(p.counts) == 1


def test_config_is_validated_and_the_cv_is_the_papers() -> None:
    with pytest.raises(ValueError):
        HistogramConfig(bin_s=0)
    with pytest.raises(ValueError):
        HistogramConfig(head_percentile=50, tail_percentile=10)
    assert coefficient_of_variation([0, 0, 0]) == 0.0
    assert coefficient_of_variation([5, 5, 5, 5]) == 0.0
    assert coefficient_of_variation([4, 0, 0, 0]) == pytest.approx(3**0.5)


def _inst(i: str, fn: str, state: str, last_used: float, provisioned: bool = False) -> InstanceView:
    return InstanceView(i, fn, "$LATEST", state, 64, last_used, provisioned)  # type: ignore[arg-type]


def test_reap_idle_follows_each_functions_window() -> None:
    now = 1000.0
    state = SchedulerState(
        instances=(
            _inst("a1", "periodic", "idle", 990),  # before its pre-warm window: unloaded
            _inst("b1", "bursty", "idle", 995),  # inside its window: kept
            _inst("b2", "bursty", "idle", 900),  # idle longer than the whole window: an extra, stopped
            _inst("c1", "unknown", "idle", 750),  # no window: fixed fallback 300 s -> kept
            _inst("c2", "unknown", "idle", 600),  # -> stopped
            _inst("p1", "bursty", "idle", 0, provisioned=True),  # provisioned: never
            _inst("x1", "periodic", "busy", 0),  # busy: never
        )
    )
    keep = {
        "periodic": KeepUntil(1400, 1700, 710, 1400, 1700),
        "bursty": KeepUntil(990, 1050, 60, 990, 1050),
    }
    assert reap_idle(state, now, keep, 300) == ["c2", "b2", "a1"]


def test_reap_zygotes_adaptive() -> None:
    zygotes = {"k-periodic": "periodic", "k-unknown": "unknown", "k-old": "unknown2", "k-live": "periodic2"}
    last = {"k-unknown": 900.0, "k-old": 100.0, "k-live": 0.0}
    keep = {"periodic": KeepUntil(1400, 1700, 710, 1400, 1700), "periodic2": KeepUntil(1400, 1700, 710, 1400, 1700)}
    assert reap_zygotes_adaptive(zygotes, last, 1000.0, keep, 600, {"k-live"}) == ["k-old", "k-periodic"]


# -- the cost rule: the window that minimises idle seconds + cold_start_cost_s x cold starts ----------------------


def _cost(idle_times: list[float], a: float, b: float, lam: float) -> float:
    """Brute force: idle seconds + lam x cold starts over ``idle_times`` for a window loaded over [a, b]."""
    total = 0.0
    for x in idle_times:
        if x < a:
            total += lam  # arrives before the pre-warm
        elif x < b:
            total += x - a  # warm: loaded from a until it arrives
        else:
            total += (b - a) + lam  # loaded a..b, then cold
    return total


@pytest.mark.parametrize("lam", [30.0, 300.0, 1200.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_cost_rule_picks_the_cheapest_window(lam: float, seed: int) -> None:
    """Against brute force over every bin edge: no keep-alive end does better than the one chosen."""
    cfg = HistogramConfig(min_samples=10, cold_start_cost_s=lam, cv_min=0.0, margin=0.0)
    rng = random.Random(seed)
    p = FunctionKeepAlive(cfg)
    mean = rng.choice([120.0, 900.0, 3600.0])
    gaps = [rng.expovariate(1 / mean) for _ in range(60)]
    for g in gaps:
        p.record_idle(g)
    w = p.windows()
    assert w.mode == "histogram"
    mid = [(g // 60 + 0.5) * 60 if g < cfg.range_s else g for g in gaps]  # the rule counts a bin at its middle
    a = w.prewarm_s
    chosen = _cost(mid, a, a + w.keep_alive_s, lam)
    for b_bin in range(int(a // 60), cfg.bins + 1):
        assert chosen <= _cost(mid, a, b_bin * 60.0, lam) + 1e-6, (b_bin, w)


def test_the_cost_rule_trades_memory_for_cold_starts_by_its_price() -> None:
    """Poisson arrivals (mean 10 min) are memoryless: keeping warm pays only if a cold start costs more than the
    mean idle time (then through the tail), else unloading after each call does; the window grows with the price."""
    rng = random.Random(4)
    gaps = [rng.expovariate(1 / 600.0) for _ in range(200)]
    windows = []
    for lam in (10.0, 300.0, 1200.0, 5000.0):
        p = FunctionKeepAlive(HistogramConfig(cold_start_cost_s=lam, cv_min=0.0))
        for g in gaps:
            p.record_idle(g)
        windows.append(p.windows())
    assert windows[0].keep_alive_s == 0 and windows[0].prewarm_s == 0  # not worth keeping: unload
    keeps = [w.prewarm_s + w.keep_alive_s for w in windows]
    assert keeps == sorted(keeps) and keeps[1] == 0 and keeps[2] > 3000


def test_the_cost_rule_unloads_a_function_at_once_and_the_reaper_follows() -> None:
    clock = FakeClock()
    p = FunctionKeepAlive(HistogramConfig(cold_start_cost_s=10.0, cv_min=0.0))
    run(p, clock, 0)
    for _ in range(12):
        run(p, clock, 1800 + 60 * (_ % 5))  # every half hour or so: keeping it 30 min is not worth 10 s
    end = clock.monotonic()
    keep = p.keep_until(end)
    assert keep is not None and not keep.keeps(end + 1)
    # the zygote stays its fixed keep-alive (600 s): the next cold start within it is a fork, not a load
    assert keep.keeps_zygote(end + 599) and not keep.keeps_zygote(end + 601)
    state = SchedulerState(instances=(_inst("i1", "f", "idle", end),))
    assert reap_idle(state, end + 1, {"f": keep}, 300.0) == ["i1"]
    assert p.prewarm_at(end) == PrewarmAt(None)


def test_the_cost_rule_keeps_the_papers_prewarm_for_a_periodic_function() -> None:
    clock = FakeClock()
    p = FunctionKeepAlive(HistogramConfig(cold_start_cost_s=300.0))
    run(p, clock, 0)
    for _ in range(12):
        run(p, clock, 600)
    w = p.windows()
    assert w.mode == "histogram" and w.prewarm_s == pytest.approx(600 * 0.9)  # unloaded, pre-warmed at 540 s
    assert w.prewarm_s + w.keep_alive_s == pytest.approx(660 * 1.1)  # kept through the next call's bin
