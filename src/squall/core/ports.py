"""The small interfaces services meet through, so that none imports another (they are wired in ``squall.app``).

``Enqueue`` puts events into the durable async queue of the Lambda service (durable when it returns): S3
notifications, schedules and destinations hand their Lambda targets' events over through it.  ``QueueSink`` is
what S3 notifications and Lambda destinations need of SQS: a message sent to the queue an ARN names.
``FunctionExists`` is what triggers and S3 ask of the Lambda control plane before they point at a function.
``InvocationObserver`` is what the invoker tells about every finished invocation (metrics).  ``TriggerQuery`` and
``PoolQuery`` are the read-only views the dashboard reads through (never the services' databases).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired, Protocol, TypedDict

__all__ = ["Enqueue", "FunctionExists", "InvocationObserver", "NewEvent", "PoolQuery", "QueueSink", "TriggerQuery"]


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


class FunctionExists(Protocol):
    def __call__(self, name: str, qualifier: str | None = None) -> bool:
        """True when the function (or that version or alias of it) exists now."""
        ...


class InvocationObserver(Protocol):
    def observe(self, function: str, trigger: str, outcome: Any, status: str, init_ms: float | None = None) -> None:
        """One finished invocation (``outcome``: the node's ``InvokeOutcome``, None when it never ran)."""
        ...


class TriggerQuery(Protocol):
    def triggers(self, function: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(function name, view) of every trigger of this kind (of ``function`` only, when given)."""
        ...


class PoolQuery(Protocol):
    def pool_summary(self) -> dict[str, Any]:
        """What is running now: instances by state, loaded zygotes, concurrency, memory."""
        ...
