"""One way to open an embedded SQLite database: WAL, autocommit (explicit transactions), a busy timeout."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from squall.store.db import DbTarget, as_pg, is_pg, open_connection, open_sqlite
from squall.store.disk import DiskFull, DiskGuard, is_disk_full

__all__ = ["SqliteDb", "open_sqlite"]


class SqliteDb:
    """One connection (SQLite, or PostgreSQL through the same surface) behind a lock, and transactions that are fsync'd when asked (``synchronous=FULL`` for that
    commit only).  The small per-feature stores (function URLs, schedules, event source mappings) build on it."""

    _conn: sqlite3.Connection  # or a PgConnection (squall.store.pg): the same surface
    _lock: threading.RLock
    #: the data directory's free-space guard (set by the server; None: no checks, as in unit tests)
    disk: DiskGuard | None = None

    def _open_db(self, path: DbTarget, *, durable_by_default: bool = False) -> None:
        """Open ``path``: an SQLite file, or a ``PgTarget`` (PostgreSQL, see ``squall.store.db``)."""
        self._lock = threading.RLock()
        self._conn = open_connection(path)
        self._durable_by_default = durable_by_default

    @contextmanager
    def _tx(
        self, durable: bool | None = None, *, write: bool = True, lock: str | None = None
    ) -> Iterator[sqlite3.Connection]:
        """A transaction.  ``write=False`` for one that frees space (a delete): it is let through on a full disk
        (the guard releases its reserve for the journal) where a write is refused with ``DiskFull``.

        ``lock`` matters on PostgreSQL only (SQLite always has one writer): None serialises the transaction with
        every other write transaction of this store on every node (what SQLite does); a name serialises it only
        with those holding the same name (one queue's FIFO receives); "" takes no lock (the caller locks rows,
        e.g. ``FOR UPDATE SKIP LOCKED``)."""
        fsync = self._durable_by_default if durable is None else durable
        disk = self.disk
        if disk is not None:
            if write:
                disk.check_write()
            elif disk.before_delete():
                with self._lock, suppress(sqlite3.Error):  # a full disk and no reserve left: shrink the WAL
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with self._lock:
            conn = self._conn
            try:
                if fsync:
                    conn.execute("PRAGMA synchronous = FULL")
                try:
                    if is_pg(conn):
                        as_pg(conn).begin(lock)
                    else:
                        conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield conn
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    try:
                        conn.execute("COMMIT")
                    except sqlite3.Error:
                        # SQLite may or may not have rolled back (SQLITE_FULL, IOERR): end the transaction either
                        # way, or every later BEGIN on this connection would fail
                        with suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                        raise
                finally:
                    if fsync:
                        conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.OperationalError as e:
                full = (
                    disk.failed(e) if disk is not None else (DiskFull(self._conn_path()) if is_disk_full(e) else None)
                )
                if full is not None:
                    raise full from e
                raise

    def _conn_path(self) -> str:
        return str(getattr(self, "path", "the data directory"))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
