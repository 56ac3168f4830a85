"""The cluster's event bus: asynchronous invocations, storage events, schedule ticks and destinations on JetStream.

One replicated stream (``SQUALL_EVENTS``, subjects ``squall.events.<function>``, work-queue retention, file storage,
R3 on a three-server NATS cluster, R1 on one) and one durable pull consumer (``squall-workers``, explicit ack)
that every node fetches from: JetStream hands each event to one node at a time.

* ``publish`` returns once JetStream acknowledged every event of the batch (the stream leader stored it and, with
  R3, a quorum of replicas did): only then does the caller get its 202.  The event id is the message id
  (``Nats-Msg-Id``), so a publish repeated within the duplicate window (a retried publish, an outbox row drained
  twice) is stored once.
* A fetched event is a ``Delivery``: ``ack`` (done), ``nak(delay)`` (redeliver after ``delay``: the backoff of
  throttles), ``in_progress`` (still working: resets the ack wait, so the ack wait can be short and a dead node's
  events come back quickly while a 15-minute function keeps its event).
* What the event carries (function, qualifier, request id, enqueue time, attempts made, not-before) travels in
  headers; the body is the payload, untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from squall.core.ports import NewEvent
from squall.functions.store.records import QueuedEvent

__all__ = ["CONSUMER", "STREAM", "Delivery", "EventBus", "connect", "decode", "encode"]

log = logging.getLogger("squall.cluster.bus")

STREAM = "SQUALL_EVENTS"
SUBJECT_PREFIX = "squall.events"
CONSUMER = "squall-workers"

_H = "Squall-"


async def connect(urls: str | Sequence[str], name: str = "squall") -> Client:
    """One connection to the NATS cluster (comma-separated URLs or a list); reconnects forever."""
    servers = [u.strip() for u in urls.split(",")] if isinstance(urls, str) else list(urls)
    return await nats.connect(
        servers=[u for u in servers if u],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        connect_timeout=2,
        allow_reconnect=True,
    )


def encode(ev: NewEvent, now: float) -> tuple[str, bytes, dict[str, str]]:
    """An event as (subject, body, headers)."""
    enqueued_at = float(ev.get("enqueued_at", now))
    headers = {
        "Nats-Msg-Id": ev.get("id") or uuid.uuid4().hex,
        _H + "Function": ev["function"],
        _H + "Qualifier": ev.get("qualifier", "$LATEST"),
        _H + "Request-Id": ev["request_id"],
        _H + "Enqueued-At": repr(enqueued_at),
        _H + "Attempt": str(ev.get("attempt", 0)),
        _H + "Not-Before": repr(float(ev.get("next_attempt_at", enqueued_at))),
        _H + "Source": ev.get("source", "lambda-invoke"),
    }
    extra = ev.get("extra")
    if extra:
        headers[_H + "Extra"] = json.dumps(extra, separators=(",", ":"))
    return f"{SUBJECT_PREFIX}.{ev['function']}", bytes(ev["payload"]), headers


def decode(msg: Msg) -> QueuedEvent:
    h = msg.headers or {}
    extra_raw = h.get(_H + "Extra")
    enqueued_at = float(h.get(_H + "Enqueued-At", "0"))
    return QueuedEvent(
        id=h.get("Nats-Msg-Id", ""),
        function=h.get(_H + "Function", ""),
        qualifier=h.get(_H + "Qualifier", "$LATEST"),
        payload=bytes(msg.data),
        request_id=h.get(_H + "Request-Id", ""),
        enqueued_at=enqueued_at,
        attempt=int(h.get(_H + "Attempt", "0")),
        next_attempt_at=float(h.get(_H + "Not-Before", repr(enqueued_at))),
        source=h.get(_H + "Source", "lambda-invoke"),
        extra=json.loads(extra_raw) if extra_raw else {},
        last_error=None,
        leased_until=None,
    )


@dataclass
class Delivery:
    """One fetched event and the message that carries it."""

    event: QueuedEvent
    msg: Msg

    @property
    def num_delivered(self) -> int:
        """How many times JetStream handed out this message (1 = the first time)."""
        return int(self.msg.metadata.num_delivered)

    async def ack(self, timeout_s: float = 5.0) -> None:
        """Done with the event.  A synchronous ack (the event is gone from the stream when this returns); when its
        confirmation does not come in time (a loaded or paused server) the ack is sent again without waiting, and
        this returns: the event ran, and must not go back to the stream to run again (a nak would).  Should that
        ack be lost too, JetStream hands the event out once more after the ack wait: a duplicate, never a loss."""
        try:
            await self.msg.ack_sync(timeout=timeout_s)
        except (NatsTimeout, TimeoutError) as e:
            log.warning("the ack of event %s was not confirmed in %.1f s (%s); acked again", self.event.id,
                        timeout_s, type(e).__name__)  # fmt: skip
            await self.msg.ack()

    async def nak(self, delay_s: float) -> None:
        await self.msg.nak(delay=max(0.001, delay_s))

    async def in_progress(self) -> None:
        await self.msg.in_progress()


class EventBus:
    def __init__(
        self,
        nc: Client,
        *,
        replicas: int = 1,
        ack_wait_s: float = 10.0,
        max_ack_pending: int = 20_000,
        duplicate_window_s: float = 120.0,
        stream: str = STREAM,
        consumer: str = CONSUMER,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self.replicas = replicas
        self.ack_wait_s = ack_wait_s
        self.max_ack_pending = max_ack_pending
        self.duplicate_window_s = duplicate_window_s
        self.stream = stream
        self.consumer = consumer
        self._sub: JetStreamContext.PullSubscription | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def setup(self) -> None:
        """Create the stream and the consumer, or check they exist (every node does this at start: the first
        creates, the others find them)."""
        self.loop = asyncio.get_running_loop()
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window_s,
        )
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            try:
                await self.js.add_stream(config)
            except Exception:  # another node created it meanwhile
                await self.js.stream_info(self.stream)
        cc = ConsumerConfig(
            durable_name=self.consumer,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
            max_waiting=512,
        )
        try:
            info = await self.js.consumer_info(self.stream, self.consumer)
        except NotFoundError:
            try:
                await self.js.add_consumer(self.stream, cc)
            except Exception:
                await self.js.consumer_info(self.stream, self.consumer)
        else:  # the consumer exists: the ack wait is the one knob a node may change (every node should agree)
            if info.config.ack_wait is not None and abs(info.config.ack_wait - self.ack_wait_s) > 1e-3:
                try:
                    await self.js.add_consumer(self.stream, cc)  # JetStream updates a durable's editable fields
                except Exception as e:
                    log.warning("the event consumer keeps its ack wait of %s s: %s", info.config.ack_wait, e)
        self._sub = await self.js.pull_subscribe_bind(self.consumer, self.stream)

    async def publish(self, events: Sequence[NewEvent]) -> list[str]:
        """Publish ``events``; returns their ids once JetStream acknowledged all of them (raises otherwise: the
        caller answers with an error and the client retries, and the ids make the retry idempotent)."""
        now = time.time()
        encoded = [encode(ev, now) for ev in events]
        acks = await asyncio.gather(*(self.js.publish(s, b, headers=h, timeout=10.0) for s, b, h in encoded))
        for ack in acks:
            if ack.stream != self.stream:
                raise RuntimeError(f"event stored in stream {ack.stream!r}, not {self.stream!r}")
        return [h["Nats-Msg-Id"] for _, _, h in encoded]

    def publish_threadsafe(self, events: Sequence[NewEvent], timeout_s: float = 30.0) -> list[str]:
        """``publish`` from a worker thread (the S3 API's and the Invoke endpoint's): blocks until acknowledged."""
        if self.loop is None:
            raise RuntimeError("the event bus is not set up")
        return asyncio.run_coroutine_threadsafe(self.publish(events), self.loop).result(timeout_s)

    async def fetch(self, limit: int, wait_s: float = 1.0) -> list[Delivery]:
        """Up to ``limit`` events for this node; waits up to ``wait_s`` for the first one."""
        if self._sub is None:
            raise RuntimeError("the event bus is not set up")
        try:
            msgs = await self._sub.fetch(max(1, limit), timeout=wait_s)
        except (TimeoutError, NatsTimeout):  # nats-py raises either when nothing came in time
            return []
        return [Delivery(decode(m), m) for m in msgs]

    async def pending(self) -> int:
        """Events in the stream (not yet acked, delivered or not)."""
        info = await self.js.stream_info(self.stream)
        return int(info.state.messages)

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # already closed by the connection
                pass
            self._sub = None
