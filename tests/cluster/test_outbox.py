"""The event outbox on a real PostgreSQL, drained to a real JetStream stream (nats-server):

* two drains on two "nodes" (each its own database connection and NATS connection) publish every row exactly once
  (``FOR UPDATE SKIP LOCKED``: no row claimed by both);
* rows claimed by a drain that died (after claiming, or after publishing and before deleting) are published by
  another drain once the claim expires, and the re-published ones are stored once (the row id is the message id);
* the rows are written in the writer's own transaction: an object store write that fails leaves no row, and a row
  that cannot be written undoes the object.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from squall.cluster.bus import EventBus, connect
from squall.cluster.natsd import NatsCluster
from squall.cluster.outbox import OutboxDrain
from squall.core.ports import NewEvent
from squall.s3.errors import PreconditionFailed
from squall.s3.store.events import ObjectEvent
from squall.s3.store.objects import ObjectStore
from squall.store.db import PgTarget, open_connection
from squall.store.outbox import EventOutbox, write_outbox

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def outbox(pg_url: str) -> Iterator[EventOutbox]:
    store = EventOutbox(PgTarget(pg_url, "outbox"))
    yield store
    store.close()


def _events(n: int, prefix: str) -> list[NewEvent]:
    return [
        {"function": "fn", "payload": json.dumps({"i": i}).encode(), "request_id": f"{prefix}-req-{i}",
         "source": "s3", "extra": {"i": i}}
        for i in range(n)
    ]  # fmt: skip


def _insert(url: str, events: list[NewEvent]) -> list[str]:
    """Rows committed by a writer of its own (as the object store writes them, in a transaction)."""
    conn = open_connection(PgTarget(url, "writer"))
    try:
        conn.execute("BEGIN IMMEDIATE")
        ids = write_outbox(conn, events, time.time())
        conn.execute("COMMIT")
        return ids
    finally:
        conn.close()


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


async def _until_empty(store: EventOutbox, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while store.count():
        assert time.monotonic() < deadline, f"{what}: {store.count()} rows still in the outbox after {timeout_s} s"
        await asyncio.sleep(0.05)


def test_two_drains_publish_every_row_once(nats1: NatsCluster, outbox: EventOutbox, pg_url: str) -> None:
    _insert(pg_url, _events(600, "row"))
    other = EventOutbox(PgTarget(pg_url, "outbox"))  # the second node's own connection

    async def main() -> None:
        bus1 = EventBus(await connect(nats1.url))
        bus2 = EventBus(await connect(nats1.url))
        await bus1.setup()
        await bus2.setup()
        d1 = OutboxDrain(outbox, bus1, "n1", batch=40)
        d2 = OutboxDrain(other, bus2, "n2", batch=40)
        tasks = [asyncio.create_task(d1.run_forever()), asyncio.create_task(d2.run_forever())]
        await _until_empty(outbox, "two drains")
        for t in tasks:
            t.cancel()
        # no row was claimed by both: each drain counts what it published itself
        assert d1.published + d2.published == 600, (d1.published, d2.published)
        assert await bus1.pending() == 600
        got = await _all_events(bus1, 600)
        assert sorted(got) == sorted(f"row-req-{i}" for i in range(600))
        await bus1.nc.close()
        await bus2.nc.close()

    try:
        asyncio.run(main())
    finally:
        other.close()


def test_rows_of_a_dead_drain_are_published_by_another_once(
    nats1: NatsCluster, outbox: EventOutbox, pg_url: str
) -> None:
    _insert(pg_url, _events(30, "row"))

    async def main() -> None:
        bus = EventBus(await connect(nats1.url))
        await bus.setup()
        # drain "a" claims 10 rows, publishes them and dies before deleting them; drain "b" claims 10 and dies
        # before publishing; 10 rows nobody touched
        a = outbox.outbox_claim("a", time.time(), 1.0, 10)
        await bus.publish([{**r.event, "id": r.id} for r in a])
        b = outbox.outbox_claim("b", time.time(), 1.0, 10)
        assert len(a) == len(b) == 10 and not {r.id for r in a} & {r.id for r in b}
        claimed = time.time()
        live = OutboxDrain(outbox, bus, "live", lease_s=5.0)
        assert await live.drain_once() == 10  # only the free rows: the others are claimed
        # ...and the claimed ones once their claim expired (drain_once until the outbox is empty; bounded)
        deadline = time.monotonic() + 60
        while outbox.count():
            assert time.monotonic() < deadline
            if await live.drain_once() == 0:
                await asyncio.sleep(0.1)
        assert time.time() >= claimed + 1.0  # not before the dead drains' claims ran out
        assert live.published == 30
        # the 10 that "a" had published went out twice, with the same ids: stored once
        assert await bus.pending() == 30
        got = await _all_events(bus, 30)
        assert sorted(got) == sorted(f"row-req-{i}" for i in range(30))
        await bus.nc.close()

    asyncio.run(main())


def test_a_published_row_whose_delete_failed_is_deleted_before_the_next_claim(
    nats1: NatsCluster, outbox: EventOutbox, pg_url: str
) -> None:
    """The database went away between the publish and the delete: the drain deletes those rows first when it is
    back, rather than let their claim expire and publish them again (maybe after the duplicate window)."""
    ids = _insert(pg_url, _events(3, "row"))

    class FailingDelete:
        def __init__(self) -> None:
            self.fail = True

        def outbox_claim(self, *a: object) -> object:
            return outbox.outbox_claim(*a)  # type: ignore[arg-type]

        def outbox_delete(self, ids: list[str]) -> int:
            if self.fail:
                raise ConnectionError("the database is away")
            return outbox.outbox_delete(ids)

    async def main() -> None:
        bus = EventBus(await connect(nats1.url))
        await bus.setup()
        store = FailingDelete()
        drain = OutboxDrain(store, bus, "n1", lease_s=60.0)  # type: ignore[arg-type]
        with pytest.raises(ConnectionError):
            await drain.drain_once()
        assert outbox.count() == 3 and await bus.pending() == 3
        store.fail = False
        assert await drain.drain_once() == 0  # deleted the 3, claimed nothing new
        assert outbox.count() == 0 and drain.published == 3
        assert sorted(d for d in await _all_events(bus, 3)) == sorted(f"row-req-{i}" for i in range(3))
        await bus.nc.close()

    asyncio.run(main())
    assert len(ids) == 3


def test_outbox_rows_commit_with_the_object_or_not_at_all(outbox: EventOutbox, pg_url: str, tmp_path: Path) -> None:
    """The object store's ``tx_events`` runs inside the object's transaction: a write refused after it ran (a
    failed precondition) leaves no row, and a row that cannot be written leaves no object."""
    fail = {"now": False}

    def rows(db: object, events: list[ObjectEvent]) -> None:
        write_outbox(db, [{"function": "fn", "payload": e.key.encode(), "request_id": e.sequencer} for e in events], 0)
        if fail["now"]:
            raise RuntimeError("the outbox insert failed")

    store = ObjectStore(tmp_path / "objects", database=PgTarget(pg_url, "s3"), tx_events=rows)
    try:
        store.create_bucket("box")
        store.put_object("box", "a", b"1")
        assert outbox.count() == 1
        with pytest.raises(PreconditionFailed):
            store.put_object("box", "a", b"2", if_none_match=True)
        assert outbox.count() == 1 and store.get_object("box", "a").read() == b"1"
        fail["now"] = True
        with pytest.raises(RuntimeError):
            store.put_object("box", "b", b"3")
        assert outbox.count() == 1 and [o.key for o in store.list_objects_v2("box").contents] == ["a"]
        fail["now"] = False
        store.copy_object("box", "a", "box", "c")
        store.delete_objects("box", ["a", "c", "never"])
        claimed = outbox.outbox_claim("n", time.time(), 5, 100)
        assert [bytes(r.event["payload"]) for r in claimed] == [b"a", b"c", b"a", b"c"]
    finally:
        store.close()


def test_sqs_rows_are_sent_by_the_drain_and_a_deleted_queue_drops_its_row(
    nats1: NatsCluster, outbox: EventOutbox, pg_url: str
) -> None:
    """Storage events for SQS targets are outbox rows too: the drain sends them to the queue (the real SQS store
    on the same database) and deletes them; a row for a queue deleted meanwhile is dropped, not retried forever."""
    from squall.sqs.store.queues import QueueStore

    queues = QueueStore(PgTarget(pg_url, "sqs"))
    try:
        arn = queues.create_queue("events").arn
        queues.create_queue("gone")
        writer = open_connection(PgTarget(pg_url, "writer"))
        writer.execute("BEGIN IMMEDIATE")
        write_outbox(writer, _events(1, "bus"), time.time(), [(arn, '{"n": 1}', "r1"), (arn.replace("events", "gone"),
                     '{"n": 2}', "r2")])  # fmt: skip
        writer.execute("COMMIT")
        writer.close()
        queues.delete_queue("gone")

        async def main() -> None:
            bus = EventBus(await connect(nats1.url))
            await bus.setup()
            drain = OutboxDrain(outbox, bus, "n1", queues=queues)
            assert await drain.drain_once() == 3
            assert outbox.count() == 0 and drain.published == 3  # 1 event, 1 message sent, 1 dropped
            assert await _all_events(bus, 1) == ["bus-req-0"]
            await bus.nc.close()

        asyncio.run(main())
        assert [m.body for m in queues.receive("events", 10)] == ['{"n": 1}']
    finally:
        queues.close()


def test_released_claims_are_free_at_once(outbox: EventOutbox, pg_url: str) -> None:
    """A drain that stops cleanly (or a node that restarts) gives up its claims: the rows are not held for the
    lease."""
    _insert(pg_url, _events(5, "row"))
    assert len(outbox.outbox_claim("n1", time.time(), 60, 10)) == 5
    assert outbox.outbox_claim("n2", time.time(), 60, 10) == []
    assert outbox.outbox_release("n2") == 0 and outbox.outbox_release("n1") == 5
    assert [r.event["request_id"] for r in outbox.outbox_claim("n2", time.time(), 60, 10)] == [
        f"row-req-{i}" for i in range(5)
    ]
