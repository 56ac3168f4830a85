"""The schedule runner's firing decisions with a fake clock: a real SQLite schedule store and event queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from squall.core.errors import InvalidParameterValue
from squall.functions.store.metadata import SqliteMetadataStore
from squall.triggers.schedules.runner import ScheduleRunner, parse_rules
from squall.triggers.schedules.store import ScheduleStore

T0 = 1_700_000_000.0


class Sink:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, events) -> None:  # type: ignore[no-untyped-def]
        self.events.extend(events)


def runner(db: Path, sink: Sink) -> ScheduleRunner:
    return ScheduleRunner(ScheduleStore(db), sink, region="us-east-1", account="000000000000")


def put(r: ScheduleRunner, function: str, schedules: list[dict], now: float = T0) -> None:
    r.store.replace(function, parse_rules(function, {"schedules": schedules}), now)


def test_each_tick_fires_once_across_restart(tmp_path: Path) -> None:
    db = tmp_path / "schedules.db"
    sink = Sink()
    r1 = runner(db, sink)
    put(r1, "f", [{"name": "every5", "expression": "rate(5 minutes)"}])
    assert r1.tick(T0 + 299) == 0
    assert r1.tick(T0 + 300) == 1
    assert r1.tick(T0 + 300) == 0  # same now: nothing new
    assert r1.tick(T0 + 450) == 0
    r1.store.close()

    r2 = runner(db, sink)  # "restart": a new runner on the same file
    assert r2.tick(T0 + 450) == 0  # the 300 s tick was persisted as fired
    assert r2.tick(T0 + 600) == 1
    assert r2.tick(T0 + 601) == 0
    events = [json.loads(e["payload"]) for e in sink.events]
    assert [e["time"] for e in events] == ["2023-11-14T22:18:20Z", "2023-11-14T22:23:20Z"]
    assert all(e["source"] == "aws.events" and e["detail-type"] == "Scheduled Event" for e in events)
    assert events[0]["resources"] == ["arn:aws:events:us-east-1:000000000000:rule/squall-f-every5"]
    assert {e["source"] for e in sink.events} == {"schedule"}
    assert {e["function"] for e in sink.events} == {"f"}


def test_last_fire_persisted_before_enqueue(tmp_path: Path) -> None:
    db = tmp_path / "schedules.db"
    calls: list[float | None] = []
    store = ScheduleStore(db)

    def enqueue(events) -> None:  # type: ignore[no-untyped-def]
        calls.append(ScheduleStore(db).list("f")[0].last_fire)  # what another process would see now
        raise RuntimeError("crash while enqueueing")

    r = ScheduleRunner(store, enqueue, region="us-east-1", account="000000000000")
    put(r, "f", [{"name": "a", "expression": "rate(1 minute)"}])
    with pytest.raises(RuntimeError):
        r.tick(T0 + 60)
    assert calls == [T0 + 60]
    sink = Sink()
    r2 = runner(db, sink)
    assert r2.tick(T0 + 61) == 0  # at most once: the crashed tick is not re-fired


def test_catch_up_and_no_catch_up_after_downtime(tmp_path: Path) -> None:
    sink = Sink()
    r = runner(tmp_path / "s.db", sink)
    put(r, "f", [
        {"name": "skip", "expression": "rate(1 minute)"},
        {"name": "fill", "expression": "rate(1 minute)", "catch_up": True, "input": {"k": 1}},
    ])  # fmt: skip
    assert r.tick(T0 + 60 * 5 + 10) == 1 + 5
    fill = [e for e in sink.events if e["extra"]["schedule"] == "fill"]
    assert [json.loads(e["payload"]) for e in fill] == [{"k": 1}] * 5
    assert [e["extra"]["tick"] for e in fill] == [T0 + 60 * k for k in range(1, 6)]
    assert r.tick(T0 + 60 * 5 + 20) == 0


def test_disabled_replaced_and_deleted_rules(tmp_path: Path) -> None:
    sink = Sink()
    r = runner(tmp_path / "s.db", sink)
    put(r, "f", [{"name": "a", "expression": "rate(1 minute)", "enabled": False}])
    assert r.tick(T0 + 120) == 0
    # re-put with the same expression keeps created_at (phase); a changed expression restarts it
    put(r, "f", [{"name": "a", "expression": "rate(1 minute)"}], now=T0 + 130)
    assert r.store.list("f")[0].created_at == T0
    put(r, "f", [{"name": "a", "expression": "rate(2 minutes)"}], now=T0 + 130)
    assert r.store.list("f")[0].created_at == T0 + 130
    assert r.tick(T0 + 249) == 0
    assert r.tick(T0 + 250) == 1
    put(r, "g", [{"name": "b", "expression": "rate(1 minute)"}])
    assert r.store.delete_function("f") == 1
    assert [x.function for x in r.store.list()] == ["g"]


def test_enqueues_into_the_durable_queue(tmp_path: Path) -> None:
    meta = SqliteMetadataStore(tmp_path / "squall.db", region="us-east-1", account_id="000000000000")
    r = ScheduleRunner(ScheduleStore(tmp_path / "s.db"), meta.enqueue_many, region="us-east-1", account="0")
    put(r, "f", [{"name": "a", "expression": "cron(0/5 * * * ? *)"}])
    assert r.tick(T0 + 600) == 1
    assert meta.depth("f") == 1
    assert r.tick(T0 + 600) == 0
    assert meta.depth("f") == 1
    meta.close()


@pytest.mark.parametrize(
    "body",
    [
        {"schedules": [{"name": "a", "expression": "rate(5 minute)"}]},
        {"schedules": [{"name": "a", "expression": "every day"}]},
        {"schedules": [{"name": "bad name!", "expression": "rate(1 hour)"}]},
        {"schedules": [{"name": "a", "expression": "rate(1 hour)"}, {"name": "a", "expression": "rate(2 hours)"}]},
        {"schedules": [{"name": "a", "expression": "rate(1 hour)", "enabled": "yes"}]},
        {"nope": []},
    ],
)
def test_invalid_bodies(body: dict) -> None:
    with pytest.raises(InvalidParameterValue):
        parse_rules("f", body)
