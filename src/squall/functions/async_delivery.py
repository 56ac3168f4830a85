"""Delivery of asynchronous invocations (InvocationType=Event, storage events, ...).

Events are already durable in the store's queue when the caller got its 202.  The dispatcher leases due events,
runs each through the invoker, and on a function error schedules a retry with Lambda's policy (2 retries by
default, 0-2 configurable, maximum event age); when the function is throttled the event simply waits with backoff.
On final success or failure the outcome goes to the configured destination (another function, or a queue through a
``QueueSink``) as Lambda's invocation record.  An event is acked only after all that: a server killed at any point
re-delivers it after its lease expires (at-least-once, as Lambda).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from squall import scheduler
from squall.core import jsonlimits
from squall.core.arn import function_arn, function_of_arn, queue_of_arn
from squall.core.errors import ResourceNotFound, SquallError
from squall.core.jsonlimits import MAX_PAYLOAD_DEPTH
from squall.core.timefmt import iso_ms
from squall.functions.invoker import InvocationResult, Invoker
from squall.functions.store.records import NewEvent, QueuedEvent
from squall.store.disk import DiskFull
from squall.store.group_commit import GroupCommit

__all__ = ["AsyncDispatcher", "QueueSink", "invocation_record"]

log = logging.getLogger("squall.async")

#: how long a delivery holds its event; a server killed meanwhile re-delivers it at its next start
LEASE_S = 960.0


class QueueSink(Protocol):
    def send_to_queue_arn(self, arn: str, body: str) -> Any: ...


def invocation_record(
    ev: QueuedEvent, function_arn: str, condition: str, result: InvocationResult | None, attempts: int
) -> dict[str, Any]:
    """Lambda's destination payload for an asynchronous invocation."""
    try:
        request_payload: Any = jsonlimits.loads(ev.payload, max_depth=MAX_PAYLOAD_DEPTH) if ev.payload else {}
    except ValueError:
        request_payload = ev.payload.decode(errors="replace")
    rec: dict[str, Any] = {
        "version": "1.0",
        "timestamp": iso_ms(time.time()),
        "requestContext": {
            "requestId": ev.request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": request_payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
    }
    if result is not None:
        rec["responseContext"]["executedVersion"] = result.executed_version
        if result.function_error:
            rec["responseContext"]["functionError"] = result.function_error
        try:
            rec["responsePayload"] = (
                jsonlimits.loads(result.payload, max_depth=MAX_PAYLOAD_DEPTH) if result.payload else None
            )
        except ValueError:
            rec["responsePayload"] = result.payload.decode(errors="replace")
    return rec


class AsyncDispatcher:
    def __init__(
        self,
        invoker: Invoker,
        *,
        retry_base_delay_s: float = 60.0,
        max_in_flight: int = 256,
        poll_interval_s: float = 0.5,
        queue_sink: QueueSink | None = None,
        clock: Callable[[], float] = time.time,
        capacity_wait_s: float = 5.0,
    ) -> None:
        self.invoker = invoker
        self.store = invoker.store
        self.retry_base_delay_s = retry_base_delay_s
        self.max_in_flight = max_in_flight
        self.poll_interval_s = poll_interval_s
        self.queue_sink = queue_sink
        self.clock = clock
        #: how long an event waits for a free instance before it counts as throttled and backs off; capacity
        #: usually frees within milliseconds, so waiting is far cheaper than a requeue with exponential backoff
        self.capacity_wait_s = capacity_wait_s
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._throttles: dict[str, int] = {}
        invoker.enqueue_async = self.enqueue_threadsafe  # every async source goes through one path (FIFO)
        #: finished events leave the queue in batches: one worker-thread call and one transaction per batch
        self._acks: GroupCommit[str] = GroupCommit(self._flush_and_ack)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reserved = 0  # slots promised to events handed over by enqueue_threadsafe, not yet adopted
        self._backlog = False  # events wait in the queue: hand nothing over directly, or it would overtake them
        self._queued = 0  # events that went to the queue instead (to tell whether a lease saw all of them)
        self._reserve_lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    def _event_config(self, function: str, qualifier: str) -> dict[str, Any]:
        with contextlib.suppress(SquallError):
            cfg = self.store.get_event_invoke_config(function, qualifier)
            if cfg is None and qualifier != "$LATEST":
                cfg = self.store.get_event_invoke_config(function, "$LATEST")
            return cfg or {}
        return {}

    def enqueue_threadsafe(self, batch: list[NewEvent]) -> None:
        """From a worker thread: enqueue ``batch`` durably and get it delivered.  With room in flight the events
        are inserted already leased and handed straight to the loop: no lease transaction, no thread hop to take
        them, no wait for a wake-up.  Otherwise they wait in the queue for ``run_forever`` like any other."""
        loop = self._loop
        if loop is not None and not self._backlog and self._reserve(len(batch)):
            try:
                events = self.store.enqueue_leased(batch, LEASE_S)
            except BaseException:
                self._unreserve(len(batch))
                raise
            try:
                loop.call_soon_threadsafe(self._adopt, events)
            except RuntimeError:  # the loop closed (shutdown): the leases are released at the next start
                self._unreserve(len(batch))
            return
        self._backlog = True  # from now on new events queue behind this one until run_forever catches up (FIFO)
        self.store.enqueue_many(batch)
        with self._reserve_lock:  # several worker threads may get here at once
            self._queued += 1  # after the insert: a lease that started before it does not clear the backlog
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    def _reserve(self, n: int) -> bool:
        with self._reserve_lock:
            if len(self._in_flight) + self._reserved + n > self.max_in_flight:
                return False
            self._reserved += n
            return True

    def _unreserve(self, n: int) -> None:
        with self._reserve_lock:
            self._reserved -= n

    def _adopt(self, events: list[QueuedEvent]) -> None:
        self._unreserve(len(events))
        self._start(events)

    def _start(self, events: list[QueuedEvent]) -> None:
        for ev in events:
            task = asyncio.create_task(self._deliver(ev))
            self._in_flight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._backlog:
            self._wake.set()  # a slot is free and events wait in the queue: lease the next one now, not at the poll

    async def run_forever(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._disk_warned = 0.0
        while True:
            with self._reserve_lock:
                free = self.max_in_flight - len(self._in_flight) - self._reserved
            events = []
            if free > 0:
                queued = self._queued
                try:
                    events = await asyncio.to_thread(self.store.lease, self.clock(), free, LEASE_S)
                except DiskFull as e:  # events stay queued; said once a minute, not at every poll
                    if time.monotonic() - self._disk_warned > 60:
                        self._disk_warned = time.monotonic()
                        log.warning("async events wait for disk space: %s", e)
                except Exception:
                    log.exception("leasing async events")
                else:
                    if len(events) < free and queued == self._queued:
                        self._backlog = False  # every due event is taken: direct hand-overs cannot overtake any
            self._start(events)
            if events and len(events) == free:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    async def drain(self) -> None:
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _deliver(self, ev: QueuedEvent) -> None:
        try:
            await self._deliver_inner(ev)
        except Exception:
            log.exception("delivering event %s", ev.id)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.retry, ev.id, self.clock() + 5.0, ev.attempt, "platform error")

    async def _deliver_inner(self, ev: QueuedEvent) -> None:
        cfg = self._event_config(ev.function, ev.qualifier)
        max_retries = int(cfg.get("MaximumRetryAttempts", 2))
        max_age = float(cfg.get("MaximumEventAgeInSeconds", 21600))
        destinations = cfg.get("DestinationConfig") or {}
        now = self.clock()
        try:
            spec = self.invoker.resolve(ev.function, ev.qualifier)
        except ResourceNotFound:
            log.warning("dropping event %s: function %s:%s no longer exists", ev.id, ev.function, ev.qualifier)
            await asyncio.to_thread(self.store.ack, ev.id)
            return
        fn_arn = function_arn(self.invoker.region, self.invoker.account_id, ev.function, spec.version)
        if now - ev.enqueued_at > max_age:
            await self._finish(ev, fn_arn, "EventAgeExceeded", None, ev.attempt, destinations)
            return
        extra = ev.extra or {}
        try:
            result = await self.invoker.run(
                spec, ev.payload, ev.request_id, ev.source,
                trace_id=str(extra.get("trace_id", "")), traceparent=str(extra.get("traceparent", "")),
                wait_s=self.capacity_wait_s,
            )  # fmt: skip
        except SquallError as e:
            if e.code != "TooManyRequestsException":
                raise
            n = self._throttles.get(ev.id, 0) + 1
            self._throttles[ev.id] = n
            at = scheduler.next_throttled_attempt(
                n, ev.enqueued_at, self.clock(), max_event_age_s=max_age, base_delay_s=0.1, max_delay_s=30.0
            )
            if at is None:
                self._throttles.pop(ev.id, None)
                await self._finish(ev, fn_arn, "EventAgeExceeded", None, ev.attempt, destinations)
            else:
                await asyncio.to_thread(self.store.retry, ev.id, at, ev.attempt, "throttled")
            return
        self._throttles.pop(ev.id, None)
        attempt = ev.attempt + 1
        if result.function_error is None:
            await self._finish(ev, fn_arn, "Success", result, attempt, destinations)
            return
        at = scheduler.next_attempt(
            attempt, ev.enqueued_at, self.clock(),
            max_retries=max_retries, max_event_age_s=max_age, base_delay_s=self.retry_base_delay_s,
        )  # fmt: skip
        if at is None:
            condition = "RetriesExhausted" if attempt > max_retries else "EventAgeExceeded"
            await self._finish(ev, fn_arn, condition, result, attempt, destinations)
        else:
            await asyncio.to_thread(self.store.retry, ev.id, at, attempt, result.payload[:500].decode(errors="replace"))

    async def _finish(
        self,
        ev: QueuedEvent,
        fn_arn: str,
        condition: str,
        result: InvocationResult | None,
        attempts: int,
        destinations: dict[str, Any],
    ) -> None:
        ok = condition == "Success"
        dest = (destinations.get("OnSuccess" if ok else "OnFailure") or {}).get("Destination")
        if ok:
            self.delivered += 1
        else:
            self.failed += 1
            log.warning("async event %s for %s failed for good: %s", ev.request_id, ev.function, condition)
        if dest:
            body = json.dumps(invocation_record(ev, fn_arn, condition, result, attempts))
            await self._send(dest, body, ev)
        await self._acks.submit(ev.id)

    def _flush_and_ack(self, event_ids: list[str]) -> None:
        # the records of the deliveries are on disk before their events leave the queue, so a crash in between
        # leaves a re-delivery (at-least-once), never an event that ran without a trace
        self.invoker.records.flush()
        self.store.ack_many(event_ids)

    async def _send(self, dest: str, body: str, ev: QueuedEvent) -> None:
        target = function_of_arn(dest)
        if target is not None:
            name, qualifier = target
            await asyncio.to_thread(
                self.enqueue_threadsafe,
                [{"function": name, "qualifier": qualifier or "$LATEST", "payload": body.encode(),
                  "request_id": f"{ev.request_id}-destination", "source": "destination"}],
            )  # fmt: skip
        elif queue_of_arn(dest) is not None:
            if self.queue_sink is None:
                log.error("destination %s: queues are not available; invocation record: %s", dest, body)
                return
            self.queue_sink.send_to_queue_arn(dest, body)
        else:
            log.error("destination %s is neither a function nor a queue ARN; invocation record: %s", dest, body)
