"""The small interfaces services meet through, so that none imports another (they are wired in the server).

``Enqueue`` puts events into the durable async queue of the Lambda service (durable when it returns): S3
notifications, schedules and destinations hand their Lambda targets' events over through it.  ``QueueSink`` is
what S3 notifications and Lambda destinations need of SQS: a message sent to the queue an ARN names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired, Protocol, TypedDict

__all__ = ["Enqueue", "NewEvent", "QueueSink"]


class NewEvent(TypedDict):
    """What ``enqueue`` takes.  Missing optional keys get defaults (qualifier "$LATEST", enqueued_at now,
    next_attempt_at = enqueued_at, source "lambda-invoke", a fresh id)."""

    function: str
    payload: bytes
    request_id: str
    qualifier: NotRequired[str]
    enqueued_at: NotRequired[float]
    next_attempt_at: NotRequired[float]
    source: NotRequired[str]
    extra: NotRequired[dict[str, Any]]
    attempt: NotRequired[int]
    id: NotRequired[str]


#: a batch of events into the durable async queue, in one transaction
Enqueue = Callable[[list[NewEvent]], object]


class QueueSink(Protocol):
    def send_to_queue_arn(self, arn: str, body: str) -> object:
        """Send ``body`` to the queue ``arn`` names."""
        ...
