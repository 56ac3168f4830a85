"""The event outbox: events written in their cause's own transaction, published to the bus by any node.

An upload commits its object and, in the same database transaction, one outbox row per Lambda target of its
bucket notifications; the S3 API answers after that commit.  A schedule tick is claimed (the rule's ``last_fire``
moved by compare-and-set) in the transaction that writes its event's row.  ``OutboxDrain`` (one per node) claims rows, publishes
them to the event bus and deletes them.  So an event exists as soon as its object does, whatever dies when:

* the node that wrote the row dies before publishing: another node's drain claims the row once it is unclaimed
  (claims expire after ``lease_s``) and publishes it;
* a drain dies after publishing, before deleting: the row is claimed again and published again with the same id
  (the row id is the message id), and JetStream's duplicate window (120 s > ``lease_s``) stores it once.

The store interface (``OutboxStore``) is what ``squall.store.outbox.EventOutbox`` implements on PostgreSQL: the
table ``event_outbox`` and its versioned migration are there; a claim is one ``UPDATE ... WHERE id IN (SELECT ...
FOR UPDATE SKIP LOCKED) RETURNING ...``, so drains on several nodes never wait for each other and never take the
same live row.  Writers insert rows inside their own transactions (``squall.store.outbox.write_outbox``): the
object store (storage events, ``squall.s3.notifications``) and the schedule store (ticks,
``squall.triggers.schedules``).

A node that wrote rows calls ``kick`` after its commit so that they go out at once; the drains of the other nodes
poll every ``interval_s``, which is how a dead node's rows are found (once their claim, if any, expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from squall.cluster.bus import EventBus
from squall.core.errors import SquallError
from squall.core.ports import QueueSink
from squall.store.outbox import OutboxRow

__all__ = ["OutboxDrain", "OutboxRow", "OutboxStore"]

log = logging.getLogger("squall.cluster.outbox")


class OutboxStore(Protocol):
    def outbox_claim(self, node_id: str, now: float, lease_s: float, limit: int) -> list[OutboxRow]:
        """Claim up to ``limit`` unclaimed (or claim-expired) rows, oldest first, until ``now + lease_s``."""
        ...

    def outbox_delete(self, ids: Sequence[str]) -> int:
        """Delete published rows; how many were there."""
        ...

    def outbox_release(self, node_id: str) -> int:
        """Drop every claim ``node_id`` holds; how many."""
        ...


class OutboxDrain:
    def __init__(
        self,
        store: OutboxStore,
        bus: EventBus,
        node_id: str,
        *,
        interval_s: float = 0.2,
        lease_s: float = 30.0,
        batch: int = 256,
        queues: QueueSink | None = None,
    ) -> None:
        """``queues``: where rows holding SQS messages (storage events for queue targets) are sent."""
        if lease_s >= bus.duplicate_window_s:
            raise ValueError("the outbox lease must be shorter than the stream's duplicate window")
        self.store = store
        self.bus = bus
        self.queues = queues
        self.node_id = node_id
        self.interval_s = interval_s
        self.lease_s = lease_s
        self.batch = batch
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0
        self._published_ids: list[str] = []
        self._warned = -1e9

    def kick(self) -> None:
        """Rows were committed: drain now (from any thread)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    async def drain_once(self) -> int:
        """Claim, publish and delete one batch; how many rows went out."""
        if self._published_ids:  # published before, the delete failed (the database was away): delete them first,
            # so they are not published again once their claim expires (possibly after the duplicate window)
            await asyncio.to_thread(self.store.outbox_delete, self._published_ids)
            self._published_ids = []
        rows = await asyncio.to_thread(self.store.outbox_claim, self.node_id, time.time(), self.lease_s, self.batch)
        if not rows:
            return 0
        events = [r for r in rows if r.queue_arn is None]
        if events:
            await self.bus.publish([{**r.event, "id": r.id} for r in events])  # acked by JetStream before the delete
        done = [r.id for r in events]
        messages = [r for r in rows if r.queue_arn is not None]
        if messages:
            done += await asyncio.to_thread(self._send, messages)
        self.published += len(done)
        self._published_ids = done
        await asyncio.to_thread(self.store.outbox_delete, done)
        self._published_ids = []
        return len(rows)

    def _send(self, rows: list[OutboxRow]) -> list[str]:
        """Send SQS messages (a worker thread); the ids of the rows that are done with.  A refused send (the queue
        was deleted) is dropped with a warning, as an event for a deleted function is; any other failure keeps the
        row, sent again once its claim expires."""
        done: list[str] = []
        for r in rows:
            if self.queues is None:
                log.warning("an SQS message in the event outbox and no queues to send it to: %s", r.queue_arn)
                continue
            try:
                self.queues.send_to_queue_arn(str(r.queue_arn), bytes(r.event["payload"]).decode())
            except SquallError as e:
                if e.status >= 500:  # the database or the disk: try again later
                    log.warning("storage event for %s waits: %s", r.queue_arn, e)
                    continue
                log.warning("storage event for %s dropped: %s", r.queue_arn, e)
            except Exception as e:
                log.warning("storage event for %s waits: %s", r.queue_arn, e)
                continue
            done.append(r.id)
        return done

    async def run_forever(self) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):  # claims of this node's previous run (it restarted): free them now
            await asyncio.to_thread(self.store.outbox_release, self.node_id)
        try:
            while True:
                self._wake.clear()  # before the claim: a kick that comes during this round is not lost
                try:
                    n = await self.drain_once()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the database or NATS is away: the rows wait, claimed or not
                    if time.monotonic() - self._warned > 60:  # said once a minute, not at every poll
                        self._warned = time.monotonic()
                        log.warning("draining the event outbox: %s", e)
                    n = 0
                if n >= self.batch:
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)
        finally:
            # a clean stop: what this drain claimed and did not finish goes to the other nodes now, not after the
            # lease (one short statement; a row it had published goes out again and is stored once)
            with contextlib.suppress(Exception):
                self.store.outbox_release(self.node_id)
