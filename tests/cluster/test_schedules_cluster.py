"""Schedules in a real two-node cluster (two ``squall up`` processes on one PostgreSQL and one nats-server, both
running the schedules runner): each tick fires exactly once, on one node, and none is lost.

The shortest real schedule is a minute, so the test moves the rules' anchor (``created_at``) back by three and a
half minutes in the database at one instant: both runners then find the same due ticks at the same time (three per
``catch_up`` rule, the latest one per plain rule), which is the race that must produce each tick once.  Before the
claim (each runner enqueued, then wrote ``last_fire``) both nodes fired the ticks they found."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from squall.cluster.natsd import NatsCluster
from tests.e2e._platform import SquallProcess, create, eventually, signed_get
from tests.e2e.test_schedule_api import signed_put

pytestmark = pytest.mark.timeout(600)

TICKER = """
import json
def handler(event, context):
    print("TICK", json.dumps([event["id"], event["resources"][0], event["time"]]))
"""

CATCH_UP_RULES = 12
PLAIN_RULES = 12


@pytest.fixture
def nodes(nats1: NatsCluster, pg_url: str, tmp_path: Path) -> Iterator[list[SquallProcess]]:
    env = {"SQUALL_DATABASE_URL": pg_url, "SQUALL_NATS_URL": nats1.url}
    started: list[SquallProcess] = []
    try:
        for name in ("n1", "n2"):
            started.append(SquallProcess(tmp_path / name / "data", None, (), SQUALL_NODE_ID=name, **env).start())
        yield started
    finally:
        for node in started:
            node.stop()


def _ticks(node: SquallProcess) -> list[tuple[str, str, str]]:
    status, body = signed_get(node.url, "/_squall/api/logs?function=ticker&q=TICK&limit=1000")
    assert status == 200, body
    return [tuple(json.loads(line["text"].split("TICK ", 1)[1].splitlines()[0])) for line in body["lines"]]


def _settled(node: SquallProcess, pg_url: str) -> bool:
    """Nothing left to deliver: the outbox is empty and every event in the stream was acked (the records of a
    delivery are written before its ack)."""
    with psycopg.connect(pg_url) as c:
        table = c.execute("SELECT to_regclass('event_outbox')").fetchone()
        waiting = c.execute("SELECT COUNT(*) FROM event_outbox").fetchone() if table and table[0] else (0,)
    status, body = signed_get(node.url, "/_squall/api/cluster")
    return status == 200 and waiting is not None and waiting[0] == 0 and body["event_stream"]["pending"] == 0


def test_each_tick_fires_once_with_two_nodes_racing(nodes: list[SquallProcess], pg_url: str) -> None:
    n1, n2 = nodes
    create(n1.client(), "ticker", TICKER)
    rules: list[dict[str, Any]] = [
        {"name": f"c{i}", "expression": "rate(1 minute)", "catch_up": True} for i in range(CATCH_UP_RULES)
    ] + [{"name": f"p{i}", "expression": "rate(1 minute)"} for i in range(PLAIN_RULES)]
    status, out = signed_put(n2.url, "/_squall/api/schedules/ticker", {"schedules": rules})
    assert status == 200, out
    with psycopg.connect(pg_url, autocommit=True) as c:  # three and a half periods ago, for every rule at once
        assert c.execute("UPDATE schedules SET created_at = created_at - 210").rowcount == len(rules)

    def arns_of(prefix: str) -> set[str]:
        return {f"arn:aws:events:us-east-1:000000000000:rule/squall-ticker-{prefix}{i}" for i in range(12)}

    def all_fired() -> list[tuple[str, str, str]] | None:
        ticks = _ticks(n1)
        per_rule = Counter(arn for _, arn, _ in set(ticks))
        catch_up = all(per_rule[a] >= 3 for a in arns_of("c"))
        plain = all(per_rule[a] >= 1 for a in arns_of("p"))
        return ticks if catch_up and plain else None

    eventually(all_fired, timeout_s=180, interval_s=0.5, what="every due tick of every rule fired")
    eventually(lambda: _settled(n1, pg_url), timeout_s=120, interval_s=0.2, what="every event delivered")
    ticks = _ticks(n2)  # either node's view: the records are the cluster's
    ids = Counter(t[0] for t in ticks)
    twice = {i: n for i, n in ids.items() if n > 1}
    assert not twice, f"{len(twice)} ticks fired more than once: {sorted(twice.items())[:5]}"
    by_rule: dict[str, list[str]] = {}
    for _, arn, when in ticks:
        by_rule.setdefault(arn, []).append(when)
    for arn in arns_of("c"):  # catch-up rules: every tick since the anchor, one minute apart, none skipped
        times = sorted(by_rule[arn])
        assert len(times) >= 3 and len(set(times)) == len(times), (arn, times)
    status, listed = signed_get(n1.url, "/_squall/api/schedules/ticker")
    assert status == 200 and all(r["last_fire"] is not None for r in listed["schedules"])


def test_a_tick_is_claimed_by_one_store_of_many(pg_url: str) -> None:
    """``ScheduleStore.fire`` on PostgreSQL, eight "nodes" (connections) claiming the same tick at once: one wins,
    and only its event is in the outbox; a claim computed from a rule that was replaced meanwhile fails."""
    import threading
    import time

    from squall.store.db import PgTarget
    from squall.store.outbox import EventOutbox
    from squall.triggers.schedules.store import ScheduleRule, ScheduleStore

    stores = [ScheduleStore(PgTarget(pg_url, "schedules"), outbox=True) for _ in range(8)]
    outbox = EventOutbox(PgTarget(pg_url, "outbox"))
    try:
        (rule,) = stores[0].replace("fn", [ScheduleRule("fn", "r", "rate(1 minute)")], now=1000.0)
        start = threading.Barrier(len(stores))
        won: list[bool] = [False] * len(stores)

        def claim(i: int) -> None:
            start.wait()
            event = {"id": f"tick-1060-by-{i}", "function": "fn", "payload": b"{}", "request_id": f"r{i}"}
            won[i] = stores[i].fire(rule, 1060.0, [event], time.time())  # type: ignore[list-item]

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert won.count(True) == 1, won
        rows = outbox.outbox_claim("n", time.time(), 5, 100)
        assert [r.id for r in rows] == [f"tick-1060-by-{won.index(True)}"]
        assert stores[3].list("fn")[0].last_fire == 1060.0
        # the next tick, computed from the rule as read before it was replaced: refused
        (now_rule,) = stores[0].list("fn")
        stores[1].replace("fn", [ScheduleRule("fn", "r", "rate(2 minutes)")], now=1070.0)
        assert not stores[2].fire(now_rule, 1120.0, [], time.time())
        assert outbox.count() == 1
    finally:
        outbox.close()
        for s in stores:
            s.close()
