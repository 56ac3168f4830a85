"""The outbox drain against a real nats-server and a real database (SQLite here, with the claim the PostgreSQL
backend does with SKIP LOCKED done by an immediate transaction): every row becomes exactly one event, with two
drains racing, and the rows a drain claimed and then died holding are published by the other after the lease."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from squall.cluster.bus import EventBus, connect
from squall.cluster.natsd import NatsCluster
from squall.cluster.outbox import OutboxDrain, OutboxRow


class SqliteOutbox:
    """The ``OutboxStore`` interface over the table docs/design.md and squall.cluster.outbox describe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        with self._conn() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS event_outbox (id TEXT PRIMARY KEY, created_at REAL NOT NULL, "
                "function TEXT NOT NULL, qualifier TEXT NOT NULL DEFAULT '$LATEST', payload BLOB NOT NULL, "
                "request_id TEXT NOT NULL, source TEXT NOT NULL DEFAULT 'storage-event', extra TEXT NOT NULL "
                "DEFAULT '{}', claimed_by TEXT, claimed_until REAL)"
            )

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "c", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            self._local.c = c
        return c

    def insert(self, n: int, prefix: str = "row") -> None:
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        c.executemany(
            "INSERT INTO event_outbox (id, created_at, function, payload, request_id) VALUES (?, ?, ?, ?, ?)",
            [
                (f"{prefix}-{i}", time.time(), "fn", json.dumps({"i": i}).encode(), f"{prefix}-req-{i}")
                for i in range(n)
            ],
        )
        c.execute("COMMIT")

    def outbox_claim(self, node_id: str, now: float, lease_s: float, limit: int) -> list[OutboxRow]:
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        rows = c.execute(
            "SELECT id, created_at, function, qualifier, payload, request_id, source, extra FROM event_outbox "
            "WHERE claimed_until IS NULL OR claimed_until < ? ORDER BY created_at LIMIT ?",
            (now, limit),
        ).fetchall()
        c.executemany(
            "UPDATE event_outbox SET claimed_by = ?, claimed_until = ? WHERE id = ?",
            [(node_id, now + lease_s, r[0]) for r in rows],
        )
        c.execute("COMMIT")
        return [
            OutboxRow(r[0], {"function": r[2], "qualifier": r[3], "payload": bytes(r[4]), "request_id": r[5],
                             "source": r[6], "extra": json.loads(r[7]), "enqueued_at": r[1]})
            for r in rows
        ]  # fmt: skip

    def outbox_delete(self, ids: Sequence[str]) -> int:
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        n = c.executemany("DELETE FROM event_outbox WHERE id = ?", [(i,) for i in ids]).rowcount
        c.execute("COMMIT")
        return n

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM event_outbox").fetchone()[0])


async def _all_events(bus: EventBus, n: int) -> list[str]:
    got: list[str] = []
    while len(got) < n:
        batch = await bus.fetch(500, wait_s=5)
        assert batch, f"only {len(got)} of {n} events arrived"
        for d in batch:
            got.append(d.event.request_id)
            await d.ack()
    assert await bus.fetch(10, wait_s=0.3) == []  # and no more
    return got


def test_two_drains_publish_every_row_once(nats1: NatsCluster, tmp_path: Path) -> None:
    store = SqliteOutbox(tmp_path / "outbox.db")
    store.insert(600)

    async def main() -> None:
        bus1 = EventBus(await connect(nats1.url))
        bus2 = EventBus(await connect(nats1.url))
        await bus1.setup()
        await bus2.setup()
        d1 = OutboxDrain(store, bus1, "n1", batch=50)
        d2 = OutboxDrain(SqliteOutbox(tmp_path / "outbox.db"), bus2, "n2", batch=50)
        tasks = [asyncio.create_task(d1.run_forever()), asyncio.create_task(d2.run_forever())]
        deadline = time.monotonic() + 60
        while store.count():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        assert d1.published + d2.published == 600
        got = await _all_events(bus1, 600)
        assert sorted(got) == sorted(f"row-req-{i}" for i in range(600))
        await bus1.nc.close()
        await bus2.nc.close()

    asyncio.run(main())


def test_rows_held_by_a_dead_drain_are_published_by_another_once(nats1: NatsCluster, tmp_path: Path) -> None:
    store = SqliteOutbox(tmp_path / "outbox.db")
    store.insert(20)

    async def main() -> None:
        bus = EventBus(await connect(nats1.url))
        await bus.setup()
        # a drain claims 10 rows, publishes them and dies before deleting them...
        dead = store.outbox_claim("dead", time.time(), 0.5, 10)
        await bus.publish([{**r.event, "id": r.id} for r in dead])
        # ...and the rest it never touched.  The live drain takes the 10 free rows at once, the dead drain's 10
        # once their claim expires, and publishes those again with the same ids: stored once.
        live = OutboxDrain(store, bus, "live", lease_s=5.0)
        deadline = time.monotonic() + 30
        while store.count():
            assert time.monotonic() < deadline
            await live.drain_once()
            await asyncio.sleep(0.1)
        assert live.published == 20
        got = await _all_events(bus, 20)
        assert sorted(got) == sorted(f"row-req-{i}" for i in range(20))  # 20 events, not 30
        await bus.nc.close()

    asyncio.run(main())
