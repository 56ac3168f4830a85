"""Storage events: an object written to or deleted from the object store becomes an S3 event notification.

Called by the object store after the write is durable and before the S3 API answers (``ObjectStore.on_event``,
in a worker thread); ``targets`` says where an event goes under its bucket's notification configuration (the object
store's ``notification_targets``).  Lambda targets are inserted into the durable async queue in one fsync'd batch,
so an upload the client saw succeed always produces its event, even if the server is killed right after answering;
delivery then follows the async retry policy.  SQS targets get the event as a message.

Cluster mode (PostgreSQL state and NATS events: ``outbox_kick`` given): the events are not enqueued or sent
after the commit but written as ``event_outbox`` rows *inside* the object's transaction (``in_transaction``, the
object store's ``tx_events``), so the object and its events commit together; after the commit the node's outbox
drain is kicked, and any node's drain publishes rows whose node died (``squall.cluster.outbox``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from squall.core.arn import function_of_arn
from squall.core.errors import SquallError
from squall.core.ports import Enqueue, NewEvent, QueueSink
from squall.s3.store.events import NotificationTarget, ObjectEvent, event_payload
from squall.s3.store.objects import ObjectStore
from squall.store.outbox import write_outbox

__all__ = ["NotificationQuery", "StorageEvents"]

log = logging.getLogger("squall.storage_events")


class StorageEvents:
    """``enqueue``: how Lambda targets' events get into the durable async queue (durable when it returns; the app
    passes its dispatcher's hand-over, which also gets them delivered); ``queues``: SQS targets; ``targets``: where
    an event goes; ``outbox_kick`` (cluster mode): the events for Lambda and SQS targets go into the outbox in the
    object's transaction (``in_transaction``), and this wakes the node's drain after the commit."""

    def __init__(
        self,
        queues: QueueSink,
        region: str,
        enqueue: Enqueue,
        targets: Callable[[ObjectEvent], list[NotificationTarget]],
        *,
        outbox_kick: Callable[[], object] | None = None,
    ) -> None:
        self.queues = queues
        self.region = region
        self.enqueue = enqueue
        self.targets = targets
        self.outbox_kick = outbox_kick
        self.emitted = 0
        #: the targets ``in_transaction`` read, for the ``__call__`` after that commit (same thread): not read twice
        self._read = threading.local()

    def _lambda_events(self, event: ObjectEvent, targets: list[NotificationTarget]) -> list[NewEvent]:
        batch: list[NewEvent] = []
        for target in targets:
            if target.kind != "lambda":
                continue
            ref = function_of_arn(target.arn)
            if ref is None:  # refused when the configuration was put; never reached
                continue
            body = json.dumps(event_payload(event, self.region, configuration_id=target.configuration_id))
            batch.append(
                {
                    "function": ref[0], "qualifier": ref[1] or "$LATEST", "payload": body.encode(),
                    "request_id": f"{event.origin.request_id or 's3'}-{event.sequencer}-{len(batch)}",
                    "source": "s3",
                }
            )  # fmt: skip
        return batch

    def in_transaction(self, db: Any, events: list[ObjectEvent]) -> None:
        """The object store's ``tx_events`` in cluster mode: the events of ``events`` for their Lambda and SQS
        targets as outbox rows, through ``db`` inside the object's transaction (the targets are read in it too: the
        object store's ``notification_targets`` runs on the same connection, under the same lock, in this
        thread).  SQS messages are sent by the drain (at least once: a drain that dies after sending and before
        deleting the row sends it again)."""
        batch: list[NewEvent] = []
        messages: list[tuple[str, str, str]] = []
        read: dict[tuple[str, str], list[NotificationTarget]] = {}
        self._read.targets = read
        for event in events:
            targets = read[(event.bucket, event.sequencer)] = self.targets(event)
            batch += self._lambda_events(event, targets)
            messages += [
                (t.arn, json.dumps(event_payload(event, self.region, configuration_id=t.configuration_id)),
                 f"{event.origin.request_id or 's3'}-{event.sequencer}")
                for t in targets if t.kind == "sqs"
            ]  # fmt: skip
        if batch or messages:
            write_outbox(db, batch, time.time(), messages)
            self.emitted += len(batch)

    def __call__(self, event: ObjectEvent) -> None:
        read = getattr(self._read, "targets", None) if self.outbox_kick is not None else None
        targets = read.pop((event.bucket, event.sequencer), None) if read else None
        if targets is None:
            targets = self.targets(event)
        for target in targets:
            if target.kind == "sqs":
                if self.outbox_kick is None:
                    body = json.dumps(event_payload(event, self.region, configuration_id=target.configuration_id))
                    self.queues.send_to_queue_arn(target.arn, body)
            elif target.kind != "lambda":
                log.warning("storage event for %s: unsupported target %s", event.bucket, target.arn)
        if self.outbox_kick is not None:
            if any(t.kind in ("lambda", "sqs") for t in targets):  # in the outbox since the commit: send it now
                self.outbox_kick()
            return
        batch = self._lambda_events(event, targets)
        if batch:
            self.enqueue(batch)
            self.emitted += len(batch)


class NotificationQuery:
    """The dashboard's view of storage events (``core.ports.TriggerQuery``): the buckets that notify a function."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def triggers(self, function: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        for bucket in self.objects.list_buckets():
            try:
                config = self.objects.get_bucket_notification(bucket.name)
            except SquallError:
                continue
            for item in config.get("LambdaFunctionConfigurations", []):
                ref = function_of_arn(str(item.get("LambdaFunctionArn", "")))
                if ref is not None and (function is None or ref[0] == function):
                    out.append(
                        (ref[0], {"type": "s3", "label": bucket.name, "detail": ", ".join(item.get("Events", []))})
                    )
        return out
