"""One way to open an embedded SQLite database: WAL, autocommit (explicit transactions), a busy timeout."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SqliteDb", "open_sqlite"]


def open_sqlite(path: str | Path) -> sqlite3.Connection:
    """A connection shared across threads (callers serialise with their own lock); the parent dir is created."""
    path = str(path)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class SqliteDb:
    """One connection behind a lock, and transactions that are fsync'd when asked (``synchronous=FULL`` for that
    commit only).  The small per-feature stores (function URLs, schedules, event source mappings) build on it."""

    _conn: sqlite3.Connection
    _lock: threading.RLock

    def _open_db(self, path: str | Path, *, durable_by_default: bool = False) -> None:
        self._lock = threading.RLock()
        self._conn = open_sqlite(path)
        self._durable_by_default = durable_by_default

    @contextmanager
    def _tx(self, durable: bool | None = None) -> Iterator[sqlite3.Connection]:
        fsync = self._durable_by_default if durable is None else durable
        with self._lock:
            conn = self._conn
            if fsync:
                conn.execute("PRAGMA synchronous = FULL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if fsync:
                    conn.execute("PRAGMA synchronous = NORMAL")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
