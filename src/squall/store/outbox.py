"""The event outbox table (cluster mode): events written in the transaction of what caused them.

In a cluster (PostgreSQL state, NATS JetStream events) an event that must not be lost between a database commit and
its publish is written as a row of ``event_outbox`` *in the same transaction* as its cause: the object's metadata
(S3 storage events, ``squall.s3.notifications``) or the schedule rule's new ``last_fire`` (schedule ticks,
``squall.triggers.schedules``).  One commit makes both durable, or neither.  ``squall.cluster.outbox.OutboxDrain``
(one per node) claims rows through ``EventOutbox`` below, publishes them with the row id as ``Nats-Msg-Id`` and
deletes them; any node drains any node's rows, so a node killed after its commit loses nothing.

The table, created by the ``outbox`` store's migrations (applied under the cluster-wide migration lock by whichever
store opens it first: the object store, the schedule store, the drain's own connection):

    event_outbox (id TEXT PRIMARY KEY,          -- the event id, published as Nats-Msg-Id
                  created_at REAL,              -- the event's enqueued_at (unix seconds): claims go oldest first
                  function, qualifier, payload BLOB, request_id, source, extra TEXT (JSON),
                  claimed_by TEXT,              -- node id of the drain holding it
                  claimed_until REAL,           -- NULL or in the past: free to claim
                  queue_arn TEXT)               -- NULL: an event for the bus; else an SQS message (payload = body)

A claim is one statement, ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING ...``: drains on
several nodes never wait for each other and never claim the same live row.  Writers take no lock of the outbox
(an insert of a fresh id), so the outbox adds no serialisation between stores.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from squall.core.ports import NewEvent
from squall.store.db import PgTarget, is_pg, migrate, open_connection

__all__ = ["OUTBOX_MIGRATIONS", "EventOutbox", "OutboxRow", "ensure_outbox", "write_outbox"]

#: the ``outbox`` store's migrations (versioned in ``squall_schema`` like every store's)
OUTBOX_MIGRATIONS = [
    """
CREATE TABLE IF NOT EXISTS event_outbox (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL DEFAULT '$LATEST',
    payload BLOB NOT NULL,
    request_id TEXT NOT NULL,
    source TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    claimed_by TEXT,
    claimed_until REAL,
    queue_arn TEXT
);
CREATE INDEX IF NOT EXISTS event_outbox_free ON event_outbox (claimed_until, created_at);
""",
]

_INSERT = (
    "INSERT INTO event_outbox (id, created_at, function, qualifier, payload, request_id, source, extra, queue_arn) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "id, created_at, function, qualifier, payload, request_id, source, extra, queue_arn"
_CLAIM = (
    "UPDATE event_outbox SET claimed_by = ?, claimed_until = ? WHERE id IN ("
    "SELECT id FROM event_outbox WHERE claimed_until IS NULL OR claimed_until < ? "
    "ORDER BY created_at, rowid LIMIT ? FOR UPDATE SKIP LOCKED) "
    f"RETURNING {_COLUMNS}, rowid"
)


@dataclass(frozen=True)
class OutboxRow:
    """One claimed row: its id (the event id) and the event to publish, or (``queue_arn`` set) the SQS message to
    send (its body is the event's payload)."""

    id: str
    event: NewEvent
    queue_arn: str | None = None


def ensure_outbox(conn: Any) -> None:
    """Create or migrate ``event_outbox`` through ``conn`` (a PostgreSQL connection; idempotent)."""
    if not is_pg(conn):
        raise TypeError("the event outbox lives in PostgreSQL (cluster mode)")
    migrate(conn, "outbox", OUTBOX_MIGRATIONS)


def write_outbox(
    conn: Any, events: Sequence[NewEvent], now: float, queue_messages: Sequence[tuple[str, str, str]] = ()
) -> list[str]:
    """Insert ``events`` (for the bus) and ``queue_messages`` (``(queue ARN, body, request id)``: SQS messages)
    as outbox rows through ``conn`` inside the caller's open transaction; their ids (an event's own ``id`` when it
    has one, else a fresh one).  Committed (and so published, by some node) with that transaction or not at all."""
    ids: list[str] = []
    rows: list[tuple[Any, ...]] = []
    for ev in events:
        event_id = ev.get("id") or uuid.uuid4().hex
        ids.append(event_id)
        rows.append((
            event_id, float(ev.get("enqueued_at", now)), ev["function"], ev.get("qualifier", "$LATEST"),
            bytes(ev["payload"]), ev["request_id"], ev.get("source", "lambda-invoke"),
            json.dumps(ev.get("extra") or {}, separators=(",", ":")), None,
        ))  # fmt: skip
    for arn, body, request_id in queue_messages:
        ids.append(uuid.uuid4().hex)
        rows.append((ids[-1], now, "", "$LATEST", body.encode(), request_id, "s3", "{}", arn))
    if len(rows) == 1:
        conn.execute(_INSERT, rows[0])
    elif rows:
        conn.executemany(_INSERT, rows)
    return ids


def _event(row: tuple[Any, ...]) -> OutboxRow:
    ev: NewEvent = {
        "id": row[0], "enqueued_at": float(row[1]), "function": row[2], "qualifier": row[3],
        "payload": bytes(row[4]), "request_id": row[5], "source": row[6], "extra": json.loads(row[7] or "{}"),
    }  # fmt: skip
    return OutboxRow(row[0], ev, row[8])


class EventOutbox:
    """The drains' side of the table (``squall.cluster.outbox.OutboxStore``): claim, delete, count.  Its own
    connection (the writers write through theirs, in their transactions); thread-safe."""

    def __init__(self, target: PgTarget) -> None:
        self._lock = threading.Lock()
        self._conn = open_connection(target)
        ensure_outbox(self._conn)

    def outbox_claim(self, node_id: str, now: float, lease_s: float, limit: int) -> list[OutboxRow]:
        """Claim up to ``limit`` free rows (never claimed, or their claim expired), oldest first, until
        ``now + lease_s``.  One statement: rows another drain is claiming right now are skipped, not waited for."""
        with self._lock:
            rows = self._conn.execute(_CLAIM, (node_id, now + lease_s, now, limit)).fetchall()
        rows.sort(key=lambda r: (r[1], r[9]))  # oldest first, in insertion order (RETURNING keeps no order)
        return [_event(r) for r in rows]

    def outbox_delete(self, ids: Sequence[str]) -> int:
        """Delete published rows; how many were still there."""
        if not ids:
            return 0
        with self._lock:
            return int(self._conn.execute("DELETE FROM event_outbox WHERE id = ANY(?)", (list(ids),)).rowcount)

    def outbox_release(self, node_id: str) -> int:
        """Give up every claim of ``node_id`` (its drain stopped cleanly, or it restarted): other drains may take
        those rows at once instead of after the lease.  A row it had published already goes out again with the same
        id, which the stream stores once."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE event_outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?", (node_id,)
            )
            return int(cur.rowcount)

    def count(self) -> int:
        """Rows waiting (claimed or not)."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM event_outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
