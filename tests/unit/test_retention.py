"""Retention pruning: what is older than the configured days goes, what is newer stays (real SQLite store)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from squall.core.clock import FakeClock
from squall.functions.store.metadata import SqliteMetadataStore
from squall.functions.store.records import InvocationRecord
from squall.functions.store.retention import DAY_S, Retention


def _record(request_id: str, start: float) -> InvocationRecord:
    return InvocationRecord(request_id, "f", "$LATEST", "lambda-api", start, 1.0, 1, None, 128, 30, "ok", None)


def test_prunes_records_and_logs_past_the_retention(tmp_path: Path) -> None:
    clock = FakeClock(start=100 * DAY_S)
    store = SqliteMetadataStore(tmp_path / "squall.db", clock=clock)
    try:
        now = clock.now()
        ages_days = [30.0, 8.0, 7.01, 6.99, 1.0, 0.0]
        store.write_batch(
            [_record(f"r{i}", now - a * DAY_S) for i, a in enumerate(ages_days)],
            [(f"r{i}", "f", now - a * DAY_S, f"line {i}") for i, a in enumerate(ages_days)],
        )
        retention = Retention(store, days=7, batch_size=2, clock=clock)
        assert asyncio.run(retention.prune_once()) == 3 + 3
        kept, _ = store.list_invocations(limit=100)
        assert sorted(r.request_id for r in kept) == ["r3", "r4", "r5"]
        assert [line.request_id for line in store.tail_logs("f", 0, 100)] == ["r3", "r4", "r5"]
        assert asyncio.run(retention.prune_once()) == 0
    finally:
        store.close()


def test_zero_days_keeps_everything(tmp_path: Path) -> None:
    clock = FakeClock(start=100 * DAY_S)
    store = SqliteMetadataStore(tmp_path / "squall.db", clock=clock)
    try:
        store.write_batch([_record("old", 0.0)], [("old", "f", 0.0, "x")])
        retention = Retention(store, days=0, clock=clock)
        assert retention.cutoff() is None
        assert asyncio.run(retention.prune_once()) == 0
        assert store.get_invocation("old") is not None
    finally:
        store.close()
