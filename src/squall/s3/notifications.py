"""Storage events: an object written to or deleted from the object store becomes an S3 event notification.

Called by the object store after the write is durable and before the S3 API answers (``ObjectStore.on_event``,
in a worker thread); ``targets`` says where an event goes under its bucket's notification configuration (the object
store's ``notification_targets``).  Lambda targets are
inserted into the durable async queue in one fsync'd batch, so an upload the client saw succeed always produces its event, even if the server is killed right after answering; delivery then
follows the async retry policy.  SQS targets get the event as a message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from squall.core.arn import function_of_arn
from squall.core.errors import SquallError
from squall.core.ports import Enqueue, NewEvent, QueueSink
from squall.s3.store.events import NotificationTarget, ObjectEvent, event_payload
from squall.s3.store.objects import ObjectStore

__all__ = ["NotificationQuery", "StorageEvents"]

log = logging.getLogger("squall.storage_events")


class StorageEvents:
    """``enqueue``: how Lambda targets' events get into the durable async queue (durable when it returns; the app
    passes its dispatcher's hand-over, which also gets them delivered); ``queues``: SQS targets; ``targets``: where
    an event goes."""

    def __init__(
        self,
        queues: QueueSink,
        region: str,
        enqueue: Enqueue,
        targets: Callable[[ObjectEvent], list[NotificationTarget]],
    ) -> None:
        self.queues = queues
        self.region = region
        self.enqueue = enqueue
        self.targets = targets
        self.emitted = 0

    def __call__(self, event: ObjectEvent) -> None:
        batch: list[NewEvent] = []
        for target in self.targets(event):
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
