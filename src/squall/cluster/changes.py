"""The cluster's change log: every control-plane change made through a node, as a row in PostgreSQL.

Core NATS carries a change to the other nodes at once (``squall.cluster.changed``), but at most once: a node
cut off from NATS at that moment would keep its cached specs, idle instances with the old code and IAM's parsed
policies until the function's next change or its restart.  So every change is also appended here, and every node
reads the rows after the last one it applied, every ``poll_s`` (1 s): a missed message is made up within a
second of the node reaching PostgreSQL again, whatever happened to NATS.  One indexed range query per second per
node (empty almost always); the NATS message carries the row id, so a change applied from NATS is not applied
again from the log.

Ordering: rows are appended under the store's cluster-wide advisory lock (``SqliteDb._tx``'s default), so ids
are committed in increasing order and a reader that has seen id ``n`` can never later find a row below ``n``
(without the lock, a transaction holding id 5 could commit after one holding id 6 was read, and 5 be skipped).
Rows older than ``RETAIN_S`` are pruned; a node whose cursor is older than the oldest row left (PostgreSQL
unreachable for a day while it kept running) is told so (``gap``) and drops everything it caches.

The table (SQLite syntax; the PostgreSQL backend turns ``INTEGER PRIMARY KEY`` into ``BIGSERIAL``):

    CREATE TABLE cluster_changes (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        REAL NOT NULL,     -- unix seconds
        node      TEXT NOT NULL,     -- the node the change was made through
        kind      TEXT NOT NULL,     -- "function", "iam", "esm"
        name      TEXT NOT NULL,     -- the function's name, the mapping's UUID; "" for IAM
        qualifier TEXT NOT NULL
    );
    CREATE TABLE cluster_changes_pruned (upto INTEGER NOT NULL);  -- rows up to this id were pruned
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from squall.store.db import DbTarget, migrate
from squall.store.sqlite_conn import SqliteDb

__all__ = ["RETAIN_S", "Change", "ChangeLog"]

#: how long a change stays in the log (a node that cannot read it for longer resynchronises everything)
RETAIN_S = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    qualifier TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_changes_pruned (
    upto INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Change:
    id: int
    node: str
    kind: str
    name: str
    qualifier: str


class ChangeLog(SqliteDb):
    """Thread-safe (one connection behind a lock); callers on the event loop use ``asyncio.to_thread``."""

    def __init__(self, target: DbTarget) -> None:
        self._open_db(target)
        with self._lock:
            migrate(self._conn, "cluster_changes", [_SCHEMA])

    def append(self, node: str, kind: str, name: str, qualifier: str) -> int:
        """Record a change (after the change itself committed); its id."""
        with self._tx(durable=False) as conn:
            row = conn.execute(
                "INSERT INTO cluster_changes (at, node, kind, name, qualifier) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (time.time(), node, kind, name, qualifier),
            ).fetchone()
        return int(row[0])

    def last_id(self) -> int:
        """The id of the last change (or of the last pruned one, when the log is empty)."""
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM cluster_changes").fetchone()
            pruned = self._conn.execute("SELECT COALESCE(MAX(upto), 0) FROM cluster_changes_pruned").fetchone()
        return max(int(row[0]), int(pruned[0]))

    def since(self, after: int, limit: int = 1000) -> tuple[list[Change], int]:
        """The changes after id ``after`` in order, and, when changes after ``after`` were pruned before they
        could be read, the id up to which they were (else 0)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, node, kind, name, qualifier FROM cluster_changes WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
            gap = self._conn.execute("SELECT MAX(upto) FROM cluster_changes_pruned WHERE upto > ?", (after,)).fetchone()
        changes = [Change(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]
        return changes, int(gap[0]) if gap and gap[0] is not None else 0

    def prune(self, retain_s: float = RETAIN_S) -> int:
        """Delete rows older than ``retain_s`` (and say up to which id they are gone); how many."""
        cutoff = time.time() - retain_s
        with self._tx(durable=False) as conn:
            row = conn.execute("SELECT MAX(id) FROM cluster_changes WHERE at < ?", (cutoff,)).fetchone()
            upto = int(row[0]) if row and row[0] is not None else 0
            if not upto:
                return 0
            n = conn.execute("DELETE FROM cluster_changes WHERE id <= ?", (upto,)).rowcount
            conn.execute("DELETE FROM cluster_changes_pruned")
            conn.execute("INSERT INTO cluster_changes_pruned (upto) VALUES (?)", (upto,))
        return int(n)
