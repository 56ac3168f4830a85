"""Dead-letter redrive (SQS's StartMessageMoveTask / ListMessageMoveTasks) and a read-only peek at messages.

A move task takes every message of a dead-letter queue that is visible when the task starts and moves it, in one
transaction, to ``destination`` or (without one) back to the queue it was dead-lettered from (its
``DeadLetterQueueSourceArn``).  A moved message keeps its id, body and attributes, is visible at once, and starts
over: receive count 0 and a fresh retention period (a message that sat in a DLQ for days would otherwise expire
the moment it is back).  Messages whose original queue no longer exists stay in the DLQ; the task then reports
``FAILED`` with a reason.  Differences from SQS: the move is immediate (``MaxNumberOfMessagesPerSecond`` is
validated and recorded, not enforced), so tasks are never ``RUNNING`` and cannot be cancelled.

Tasks are kept in the queue database (``move_tasks``) so ListMessageMoveTasks survives restarts.
"""

from __future__ import annotations

import base64
import json
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

from squall.core.errors import InvalidParameterValue
from squall.sqs.errors import QueueDoesNotExist, SqsError
from squall.sqs.store.queues import QueueStore

__all__ = ["MoveTask", "ResourceNotFound", "list_move_tasks", "peek_messages", "start_move_task"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS move_tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    handle TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    destination TEXT,
    max_per_second INTEGER,
    status TEXT NOT NULL,
    moved INTEGER NOT NULL,
    to_move INTEGER NOT NULL,
    failure TEXT,
    started_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS move_tasks_source ON move_tasks (source, seq);
"""


class ResourceNotFound(SqsError):
    code = "ResourceNotFoundException"


@dataclass(frozen=True)
class MoveTask:
    task_handle: str
    source_arn: str
    destination_arn: str | None
    max_per_second: int | None
    status: str
    moved: int
    to_move: int
    failure_reason: str | None
    started_at: float

    def to_sqs(self) -> dict[str, Any]:
        """One entry of ListMessageMoveTasks' ``Results``."""
        out: dict[str, Any] = {
            "TaskHandle": self.task_handle,
            "Status": self.status,
            "SourceArn": self.source_arn,
            "ApproximateNumberOfMessagesMoved": self.moved,
            "ApproximateNumberOfMessagesToMove": self.to_move,
            "StartedTimestamp": int(self.started_at * 1000),
        }
        if self.destination_arn:
            out["DestinationArn"] = self.destination_arn
        if self.max_per_second is not None:
            out["MaxNumberOfMessagesPerSecond"] = self.max_per_second
        if self.failure_reason:
            out["FailureReason"] = self.failure_reason
        return out


_READY: weakref.WeakSet[QueueStore] = weakref.WeakSet()


def _ensure_schema(store: QueueStore) -> None:
    if store in _READY:
        return
    with store._lock:
        store._conn.executescript(_SCHEMA)
    _READY.add(store)


def _source_name(store: QueueStore, arn: str, what: str) -> str:
    try:
        name = store.name_from_arn(arn)
    except QueueDoesNotExist:
        raise ResourceNotFound(f"The resource that you specified for the {what} parameter doesn't exist.")
    if not store.queue_exists(name):
        raise ResourceNotFound(f"The resource that you specified for the {what} parameter doesn't exist.")
    return name


def start_move_task(
    store: QueueStore, source_arn: str, destination_arn: str | None = None, max_per_second: int | None = None
) -> MoveTask:
    """Redrive the visible messages of the dead-letter queue ``source_arn`` (see the module docstring)."""
    _ensure_schema(store)
    if max_per_second is not None and not 1 <= max_per_second <= 500:
        raise InvalidParameterValue(
            f"Value {max_per_second} for parameter MaxNumberOfMessagesPerSecond is invalid. "
            "Reason: Must be between 1 and 500."
        )
    source = _source_name(store, source_arn, "SourceArn")
    if not store.dead_letter_sources(source):
        raise InvalidParameterValue("Source queue must be configured as a Dead Letter Queue.")
    fixed_target = _source_name(store, destination_arn, "DestinationArn") if destination_arn else None
    now = store.now()
    moved = left = 0
    missing: set[str] = set()
    targets: set[str] = set()
    with store._tx(durable=True) as conn:
        busy = conn.execute(
            "SELECT 1 FROM move_tasks WHERE source = ? AND status = 'RUNNING'", (source_arn,)
        ).fetchone()
        if busy is not None:
            raise InvalidParameterValue("There is already a task running. Only one active task is allowed per queue.")
        rows = conn.execute(
            "SELECT seq, id, system FROM messages WHERE queue = ? AND visible_at <= ? ORDER BY seq", (source, now)
        ).fetchall()
        exists: dict[str, bool] = {}
        for seq, message_id, system_text in rows:
            system = json.loads(system_text)
            target = fixed_target
            if target is None:
                origin = str(system.get("DeadLetterQueueSourceArn", ""))
                try:
                    target = store.name_from_arn(origin) if origin else None
                except QueueDoesNotExist:
                    target = None
                if target is not None and target not in exists:
                    exists[target] = (
                        conn.execute("SELECT 1 FROM queues WHERE name = ?", (target,)).fetchone() is not None
                    )
                if target is None or not exists[target]:
                    missing.add(origin or "(unknown)")
                    left += 1
                    continue
            system.pop("DeadLetterQueueSourceArn", None)
            conn.execute("DELETE FROM messages WHERE queue = ? AND id = ?", (target, message_id))
            conn.execute(
                "UPDATE messages SET queue = ?, system = ?, sent_at = ?, visible_at = ?, receive_count = 0, "
                "first_receive_at = NULL, receipt = NULL WHERE seq = ?",
                (target, json.dumps(system), now, now, seq),
            )
            targets.add(target)
            moved += 1
        failure = (
            f"{left} message(s) were not moved: their source queue no longer exists ({', '.join(sorted(missing))})."
            if left
            else None
        )
        task_id = uuid.uuid4().hex
        handle = base64.b64encode(json.dumps({"taskId": task_id, "sourceArn": source_arn}).encode()).decode()
        conn.execute(
            "INSERT INTO move_tasks (handle, source, destination, max_per_second, status, moved, to_move, failure, "
            "started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (handle, source_arn, destination_arn, max_per_second, "FAILED" if left else "COMPLETED", moved,
             moved + left, failure, now),
        )  # fmt: skip
    store._notify(sorted(targets))
    return MoveTask(handle, source_arn, destination_arn, max_per_second, "FAILED" if left else "COMPLETED", moved,
                    moved + left, failure, now)  # fmt: skip


def list_move_tasks(store: QueueStore, source_arn: str, max_results: int = 1) -> list[MoveTask]:
    """The most recent ``max_results`` (1..10) tasks of a source queue, newest first."""
    _ensure_schema(store)
    if not 1 <= max_results <= 10:
        raise InvalidParameterValue(
            f"Value {max_results} for parameter MaxResults is invalid. Reason: Must be between 1 and 10."
        )
    _source_name(store, source_arn, "SourceArn")
    with store._lock:
        rows = store._conn.execute(
            "SELECT handle, source, destination, max_per_second, status, moved, to_move, failure, started_at "
            "FROM move_tasks WHERE source = ? ORDER BY seq DESC LIMIT ?",
            (source_arn, max_results),
        ).fetchall()
    return [MoveTask(*r) for r in rows]


def peek_messages(store: QueueStore, name: str, limit: int = 50) -> list[dict[str, Any]]:
    """Up to ``limit`` messages of a queue, oldest first, without receiving them (no visibility change)."""
    now = store.now()
    with store._lock:
        queue = store._queue(store._conn, name)
        retention = queue.int_attribute("MessageRetentionPeriod")
        rows = store._conn.execute(
            "SELECT id, body, attributes, system, sent_at, visible_at, receive_count FROM messages "
            "WHERE queue = ? AND sent_at > ? ORDER BY seq LIMIT ?",
            (name, now - retention, limit),
        ).fetchall()
    out = []
    for message_id, body, attributes, system, sent_at, visible_at, receive_count in rows:
        sys_attrs = json.loads(system)
        out.append(
            {
                "message_id": message_id,
                "body": body,
                "message_attributes": sorted(json.loads(attributes)),
                "dead_letter_source_arn": sys_attrs.get("DeadLetterQueueSourceArn"),
                "sent_at": sent_at,
                "visible": visible_at <= now,
                "receive_count": receive_count,
            }
        )
    return out
