"""Asynchronous delivery on the JetStream bus: the embedded dispatcher's policy, the bus as its transport.

``BusDispatcher`` is ``AsyncDispatcher`` (Lambda's retry policy, maximum event age, destinations, the invocation
record before the ack) with the queue swapped: events are published to the stream instead of inserted into the
SQLite queue, and fetched from the shared durable consumer instead of leased.

* ``enqueue_threadsafe`` publishes and returns once JetStream acknowledged (the caller's 202 comes after).
* A function error with retries left: a copy carrying the new attempt count and its not-before time is
  published, then the delivered message is acked (publish first: a crash in between leaves a duplicate, never a
  lost event).  The copy is fetched at once by some node, which sees its not-before time and naks it with that
  delay: the stream's own redelivery timer holds the event, on no node, through Lambda's 1- and 2-minute waits.
* A throttle or platform error does not use up a retry: the message is nak'ed with the backoff delay (the count of
  throttles survives a move to another node: it is the message's delivery count).
* Done: the invocation records are flushed, then the message is acked (a flush refused because PostgreSQL is away
  or the disk is full is retried, the message held by in-progress reports: the event ran, it does not run again).
  A node killed before that leaves the message unacked: JetStream hands it to another node once the ack wait
  passes (in-progress acks every third of the ack wait keep a long-running delivery's message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from squall.cluster.bus import Delivery, EventBus
from squall.core.errors import ServiceError
from squall.core.ports import NewEvent
from squall.functions.async_delivery import AsyncDispatcher
from squall.functions.invoker import Invoker
from squall.functions.store.records import QueuedEvent
from squall.store.disk import DiskFull
from squall.store.group_commit import GroupCommit
from squall.store.targets import DatabaseUnavailable

__all__ = ["BusDispatcher"]

log = logging.getLogger("squall.cluster.dispatch")


class BusDispatcher(AsyncDispatcher):
    def __init__(self, invoker: Invoker, bus: EventBus | None, **kwargs: Any) -> None:
        """``bus`` may come later (set ``.bus`` before ``run_forever``): it needs the NATS connection."""
        super().__init__(invoker, **kwargs)
        self.bus: EventBus | None = bus
        self._deliveries: dict[int, Delivery] = {}
        self._flushes: GroupCommit[None] = GroupCommit(lambda _: self.invoker.records.flush())
        self._slot = asyncio.Event()
        self.redelivered = 0  # deliveries of a message handed out before (a node died, or a nak)
        self.published = 0
        self.flush_waits = 0  # record flushes retried before an ack (the database was away)

    def enqueue_threadsafe(self, batch: list[NewEvent]) -> None:
        """From a worker thread: publish ``batch``; returns once JetStream acknowledged every event."""
        if self.bus is None:
            raise ServiceError("the cluster's event bus is not connected yet; retry")
        self.bus.publish_threadsafe(batch)
        self.published += len(batch)

    async def run_forever(self) -> None:
        self._loop = asyncio.get_running_loop()
        bus = self.bus
        if bus is None:
            raise RuntimeError("BusDispatcher.run_forever before its bus is set")
        while True:
            free = self.max_in_flight - len(self._in_flight)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                deliveries = await bus.fetch(free, wait_s=self.poll_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # NATS unreachable: the connection reconnects by itself
                log.warning("fetching events: %s", e)
                await asyncio.sleep(0.5)
                continue
            now = self.clock()
            for d in deliveries:
                ev = d.event
                if ev.next_attempt_at > now + 0.001:  # a retry copy, not due yet: the stream holds it meanwhile
                    with contextlib.suppress(Exception):
                        await d.nak(ev.next_attempt_at - now)
                    continue
                # earlier deliveries of this message: throttles (or a node that died with it); a retry copy's first
                # delivery was its not-before nak
                earlier = d.num_delivered - 1 - (1 if ev.attempt > 0 else 0)
                if earlier > 0:
                    self.redelivered += 1
                    # so that the throttle backoff goes on where it was, on whichever node
                    self._throttles[ev.id] = max(self._throttles.get(ev.id, 0), earlier)
                self._deliveries[id(ev)] = d
                self._start([ev])

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot.set()

    async def _deliver(self, ev: QueuedEvent) -> None:
        d = self._deliveries[id(ev)]
        keep = asyncio.create_task(self._keep(d))
        try:
            await super()._deliver(ev)
        finally:
            keep.cancel()
            self._deliveries.pop(id(ev), None)

    async def _keep(self, d: Delivery) -> None:
        """In-progress acks while the delivery runs, so the short ack wait does not hand the event to another node."""
        while True:
            await asyncio.sleep((self.bus.ack_wait_s if self.bus else 10.0) / 3)
            with contextlib.suppress(Exception):
                await d.in_progress()

    async def _retry(self, ev: QueuedEvent, at: float, attempt: int, error: str) -> None:
        d = self._deliveries[id(ev)]
        if attempt == ev.attempt:  # throttled or a platform error: redeliver after the backoff
            await d.nak(at - self.clock())
            return
        base = ev.id.split("~", 1)[0]
        copy: NewEvent = {
            "id": f"{base}~{attempt}",
            "function": ev.function,
            "qualifier": ev.qualifier,
            "payload": ev.payload,
            "request_id": ev.request_id,
            "enqueued_at": ev.enqueued_at,
            "next_attempt_at": at,
            "attempt": attempt,
            "source": ev.source,
            "extra": {**(ev.extra or {}), "last_error": error[:200]},
        }
        assert self.bus is not None
        await self.bus.publish([copy])
        self._throttles.pop(ev.id, None)
        await d.ack()

    async def _drop(self, ev: QueuedEvent) -> None:
        await self._deliveries[id(ev)].ack()

    async def _ack(self, ev: QueuedEvent) -> None:
        # the records of this delivery are written before the event leaves.  While the database is away (or the
        # disk full) the event has run: it waits here for its records, its message kept by the in-progress
        # reports, instead of going back to the stream to run again every few seconds of the outage
        delay = 0.2
        while True:
            try:
                await self._flushes.submit(None)
                break
            except (DatabaseUnavailable, DiskFull) as e:
                self.flush_waits += 1
                if self.flush_waits == 1 or delay >= 2.0:
                    log.warning("event %s ran; its invocation record waits for the database: %s", ev.id, e)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
        await self._deliveries[id(ev)].ack()
