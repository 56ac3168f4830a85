"""The dashboard's time series (store/series.py) against a brute-force computation over 100k synthetic records."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from squall.core.errors import InvalidParameterValue
from squall.functions.store.metadata import SqliteMetadataStore
from squall.functions.store.records import InvocationRecord

T0 = 1_700_000_000.0
N = 100_000
SPAN_S = 3600.0


def _records(seed: int = 7) -> list[InvocationRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(N):
        fn = ("alpha", "beta", "gamma")[i % 3]
        start = T0 + rng.random() * SPAN_S
        duration = round(rng.expovariate(1 / 40.0), 3)
        status = rng.choices(["ok", "error", "timeout", "throttled"], [90, 6, 1, 3])[0]
        if status == "throttled":
            duration = 0.0
        billed = max(1, math.ceil(duration))
        cold = rng.random() < 0.05 and status != "throttled"
        out.append(
            InvocationRecord(
                f"r{i}", fn, "$LATEST", "sync", start, duration, billed, 120.0 if cold else None, 128 * (1 + i % 2),
                30, status, None if status == "ok" else "Boom", cold, False,
            )
        )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[SqliteMetadataStore, list[InvocationRecord]]:
    store = SqliteMetadataStore(Path(tmp_path_factory.mktemp("series")) / "m.db")
    records = _records()
    for i in range(0, N, 10_000):
        store.write_batch(records[i : i + 10_000], [])
    return store, records


def _nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[max(1, math.ceil(p * len(values))) - 1]


def _brute(records: list[InvocationRecord], fn: str | None, since: float, until: float, step: float) -> dict:
    n = math.ceil((until - since) / step)
    b: dict = {k: [] for k in range(n)}
    for r in records:
        if (fn is None or r.function == fn) and since <= r.start < until:
            b[int((r.start - since) / step)].append(r)
    out: dict = {"invocations": [], "errors": [], "throttles": [], "cold": [], "p50": [], "p99": [], "gbs": []}
    for k in range(n):
        ran = [r for r in b[k] if r.status != "throttled"]
        out["invocations"].append(len(ran))
        out["errors"].append(sum(r.status != "ok" for r in ran))
        out["throttles"].append(len(b[k]) - len(ran))
        out["cold"].append(sum(r.cold for r in ran))
        out["p50"].append(_nearest_rank([r.duration_ms for r in ran], 0.5))
        out["p99"].append(_nearest_rank([r.duration_ms for r in ran], 0.99))
        out["gbs"].append(sum(r.billed_ms * r.memory_mb for r in ran) / 1024 / 1000)
    return out


def _brute_peak(records: list[InvocationRecord], fn: str | None, since: float, until: float, step: float) -> list[int]:
    events = []
    for r in records:
        if (fn is None or r.function == fn) and r.status != "throttled":
            events += [(r.start, 1), (r.start + r.duration_ms / 1000.0, -1)]
    events.sort()
    n = math.ceil((until - since) / step)
    peaks = []
    level = 0
    i = 0
    for k in range(n):
        lo, hi = since + k * step, since + (k + 1) * step
        while i < len(events) and events[i][0] < lo:
            level += events[i][1]
            i += 1
        peak = level
        while i < len(events) and events[i][0] < hi:
            level += events[i][1]
            peak = max(peak, level)
            i += 1
        peaks.append(peak)
    return peaks


@pytest.mark.parametrize("fn", [None, "beta"])
def test_series_matches_brute_force_over_100k_records(loaded, fn) -> None:
    store, records = loaded
    since, until, step = T0 + 60, T0 + SPAN_S - 60, 120.0
    s = store.series(fn, since, until, step)
    want = _brute(records, fn, since, until, step)
    assert len(s.t) == 29 and s.t[0] == since and s.t[1] == since + step
    assert s.invocations == want["invocations"]
    assert s.errors == want["errors"]
    assert s.throttles == want["throttles"]
    assert s.cold_starts == want["cold"]
    assert s.p50_ms == want["p50"]
    assert s.p99_ms == want["p99"]
    assert s.gb_seconds == pytest.approx(want["gbs"])
    assert s.max_concurrency == _brute_peak(records, fn, since, until, step)
    assert all(c > 0 for c in s.avg_concurrency)


def test_summaries_match_usage(loaded) -> None:
    store, records = loaded
    since, until = T0, T0 + SPAN_S
    summaries = {x.function: x for x in store.summaries(since, until)}
    for row in store.usage(since, until):
        got = summaries[row.function]
        assert (got.invocations, got.errors, got.throttles, got.cold_starts, got.billed_ms) == (
            row.requests, row.errors, row.throttles, row.cold_starts, row.billed_ms,
        )  # fmt: skip
        assert (got.p50_ms, got.p99_ms) == (row.p50_ms, row.p99_ms)
        assert got.last_start == max(r.start for r in records if r.function == row.function)


def test_sparklines_count_per_bucket(loaded) -> None:
    store, records = loaded
    lines = store.sparklines(T0, T0 + SPAN_S, 60.0)
    assert set(lines) == {"alpha", "beta", "gamma"}
    inv, err = lines["gamma"]
    assert len(inv) == 60 and sum(inv) == sum(1 for r in records if r.function == "gamma" and r.status != "throttled")
    assert sum(err) == sum(1 for r in records if r.function == "gamma" and r.status in ("error", "timeout"))


def test_empty_window_and_bad_steps(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "m.db")
    s = store.series(None, T0, T0 + 600, 60)
    assert s.invocations == [0] * 10 and s.p99_ms == [None] * 10 and s.max_concurrency == [0] * 10
    with pytest.raises(InvalidParameterValue):
        store.series(None, T0, T0 + 600, 0)
    with pytest.raises(InvalidParameterValue):
        store.series(None, T0, T0 + 1_000_000, 1)
    with pytest.raises(InvalidParameterValue):
        store.series(None, T0, T0, 1)
