"""The durable queue of asynchronous invocations (InvocationType=Event, S3 notifications, ...).

Delivery is at-least-once.  ``enqueue`` returns only after the event is fsync'd.  ``lease`` hands out due
events and hides them until the lease ends; an event that is neither acked nor retried before then (the
server died) becomes due again.  Leases, acks and retries are not fsync'd: losing one to a power failure only
means an event runs again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from squall.functions.store.records import NewEvent, QueuedEvent
from squall.functions.store.sqlite import SqliteBase, dumps, loads

__all__ = ["EventQueueMixin"]

_COLUMNS = (
    "id, function, qualifier, payload, request_id, enqueued_at, attempt, next_attempt_at, source, extra, "
    "last_error, leased_until"
)


def _event(row: tuple[Any, ...]) -> QueuedEvent:
    return QueuedEvent(
        id=row[0],
        function=row[1],
        qualifier=row[2],
        payload=bytes(row[3]),
        request_id=row[4],
        enqueued_at=row[5],
        attempt=row[6],
        next_attempt_at=row[7],
        source=row[8],
        extra=loads(row[9]),
        last_error=row[10],
        leased_until=row[11],
    )


class EventQueueMixin(SqliteBase):
    def enqueue(self, event: NewEvent) -> str:
        """Add one event; durable (fsync'd) when this returns.  Returns the event id."""
        return self.enqueue_many([event])[0]

    def enqueue_many(self, events: Iterable[NewEvent]) -> list[str]:
        """Add several events in one durable transaction (one fsync)."""
        return [r[0] for r in self._insert(events, None)]

    def enqueue_leased(self, events: Iterable[NewEvent], lease_s: float) -> list[QueuedEvent]:
        """``enqueue_many``, the events already leased to the caller for ``lease_s``: for a dispatcher in this
        process that delivers them at once, without a second transaction to lease them.  A crash before the ack
        leaves them leased; ``release_leases`` at the next start makes them due again."""
        rows = self._insert(events, lease_s)
        return [_event((*r[:8], r[9], r[10], None, r[11])) for r in rows]

    def _insert(self, events: Iterable[NewEvent], lease_s: float | None) -> list[tuple[Any, ...]]:
        now = self._clock.now()
        rows = []
        for ev in events:
            enqueued_at = ev.get("enqueued_at", now)
            next_at = ev.get("next_attempt_at", enqueued_at)
            rows.append(
                (
                    ev.get("id") or uuid.uuid4().hex,
                    ev["function"],
                    ev.get("qualifier", "$LATEST"),
                    bytes(ev["payload"]),
                    ev["request_id"],
                    enqueued_at,
                    ev.get("attempt", 0),
                    next_at,
                    next_at if lease_s is None else now + lease_s,  # due_at (a lease's end, when leased)
                    ev.get("source", "lambda-invoke"),
                    dumps(ev.get("extra", {})),
                    None if lease_s is None else now + lease_s,  # leased_until
                )
            )
        with self._tx(durable=True) as conn:
            conn.executemany(
                "INSERT INTO event_queue (id, function, qualifier, payload, request_id, enqueued_at, "
                "attempt, next_attempt_at, due_at, source, extra, leased_until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return rows

    def lease(self, now: float, limit: int, lease_s: float) -> list[QueuedEvent]:
        """Atomically take up to ``limit`` due events (next attempt reached, not leased or lease expired),
        oldest due first, and lease them until ``now + lease_s``."""
        until = now + lease_s
        with self._tx(durable=False) as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM event_queue WHERE due_at <= ? ORDER BY due_at, rowid LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE event_queue SET leased_until = ?, due_at = ? WHERE id = ?",
                [(until, until, r[0]) for r in rows],
            )
        return [_event((*r[:11], until)) for r in rows]

    def release_leases(self) -> int:
        """Make every leased event due again at once.  Called by a single node at start: whoever held the leases
        (a server that was killed) is gone, so there is no need to wait for the leases to expire."""
        with self._tx(durable=False) as conn:
            return conn.execute(
                "UPDATE event_queue SET leased_until = NULL, due_at = next_attempt_at WHERE leased_until IS NOT NULL"
            ).rowcount

    def ack(self, event_id: str) -> bool:
        """The event is done (succeeded, or failed for good and its destination was handled): delete it."""
        with self._tx(durable=False) as conn:
            return conn.execute("DELETE FROM event_queue WHERE id = ?", (event_id,)).rowcount > 0

    def ack_many(self, event_ids: Sequence[str]) -> int:
        """``ack`` for several events in one transaction; how many were still there."""
        with self._tx(durable=False) as conn:
            return conn.executemany("DELETE FROM event_queue WHERE id = ?", [(i,) for i in event_ids]).rowcount

    def retry(self, event_id: str, next_attempt_at: float, attempt: int, last_error: str | None = None) -> bool:
        """Release the lease and schedule attempt number ``attempt`` (attempts made so far) at
        ``next_attempt_at``.  False if the event is gone."""
        with self._tx(durable=False) as conn:
            cur = conn.execute(
                "UPDATE event_queue SET leased_until = NULL, due_at = ?, next_attempt_at = ?, attempt = ?, "
                "last_error = ? WHERE id = ?",
                (next_attempt_at, next_attempt_at, attempt, last_error, event_id),
            )
            return cur.rowcount > 0

    def get_event(self, event_id: str) -> QueuedEvent | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM event_queue WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else _event(row)

    def depth(self, function: str | None = None) -> int:
        """Events in the queue, leased or not (of one function, or of all)."""
        with self._read() as conn:
            if function is None:
                row = conn.execute("SELECT COUNT(*) FROM event_queue").fetchone()
            else:
                row = conn.execute("SELECT COUNT(*) FROM event_queue WHERE function = ?", (function,)).fetchone()
        return int(row[0])

    def oldest_age(self, now: float) -> float:
        """Seconds since the oldest queued event was enqueued; 0.0 when the queue is empty."""
        with self._read() as conn:
            row = conn.execute("SELECT MIN(enqueued_at) FROM event_queue").fetchone()
        return 0.0 if row[0] is None else max(0.0, now - float(row[0]))
