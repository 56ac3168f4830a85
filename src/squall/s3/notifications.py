"""Storage events: an object written to or deleted from the object store becomes an S3 event notification.

Called by the object store after the write is durable and before the S3 API answers (``ObjectStore.on_event``,
in a worker thread).  Lambda targets are inserted into the durable async queue in one fsync'd batch, so an upload
the client saw succeed always produces its event, even if the server is killed right after answering; delivery then
follows the async retry policy.  SQS targets get the event as a message.
"""

from __future__ import annotations

import json
import logging
from typing import Protocol

from squall.core.arn import function_of_arn
from squall.core.ports import Enqueue, NewEvent, QueueSink
from squall.s3.store.events import ObjectEvent, event_payload
from squall.s3.store.objects import ObjectStore

__all__ = ["EventStore", "StorageEvents"]

log = logging.getLogger("squall.storage_events")


class EventStore(Protocol):
    """The durable async queue, when no ``enqueue`` is given (tests)."""

    def enqueue_many(self, events: list[NewEvent]) -> object: ...


class StorageEvents:
    def __init__(
        self,
        meta: EventStore,
        queues: QueueSink,
        region: str,
        enqueue: Enqueue | None = None,
    ) -> None:
        self.meta = meta
        self.queues = queues
        self.region = region
        #: how Lambda targets' events get into the durable async queue (durable when it returns); the server
        #: passes its dispatcher's enqueue_threadsafe, which also hands them over for delivery
        self.enqueue: Enqueue = enqueue or meta.enqueue_many
        self.objects: ObjectStore | None = None  # set once the object store exists (it takes this as on_event)
        self.emitted = 0

    def __call__(self, event: ObjectEvent) -> None:
        if self.objects is None:
            return
        batch: list[NewEvent] = []
        for target in self.objects.notification_targets(event):
            body = json.dumps(event_payload(event, self.region, configuration_id=target.configuration_id))
            if target.kind == "lambda":
                ref = function_of_arn(target.arn)
                if ref is None:  # refused when the configuration was put; never reached
                    continue
                name, qualifier = ref[0], ref[1] or "$LATEST"
                batch.append(
                    {
                        "function": name, "qualifier": qualifier, "payload": body.encode(),
                        "request_id": f"{event.origin.request_id or 's3'}-{event.sequencer}-{len(batch)}",
                        "source": "s3",
                    }
                )  # fmt: skip
            elif target.kind == "sqs":
                self.queues.send_to_queue_arn(target.arn, body)
            else:
                log.warning("storage event for %s: unsupported target %s", event.bucket, target.arn)
        if batch:
            self.enqueue(batch)
            self.emitted += len(batch)
