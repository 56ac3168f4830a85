"""The SQLite connection shared by the store's parts: pragmas, the lock, transactions and schema migrations.

One connection, serialised by a lock.  WAL mode with ``synchronous=NORMAL`` by default (a commit survives a
crash of the process but may be lost on power failure); transactions opened with ``durable=True`` switch to
``synchronous=FULL`` for their commit, so the WAL is fsync'd before they return.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from squall.core.arn import function_arn
from squall.core.clock import Clock, SystemClock
from squall.core.errors import InvalidParameterValue, ResourceNotFound, ServiceError
from squall.store.env_crypto import EnvCipher
from squall.store.sqlite_conn import SqliteDb

__all__ = ["MIGRATIONS", "SqliteBase", "dumps", "is_version_number", "loads", "paginate"]

T = TypeVar("T")

#: Ordered schema migrations; migration i brings the schema from version i to i + 1.  Append only.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE functions (
        name TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        code_path TEXT NOT NULL,
        squall TEXT NOT NULL DEFAULT '{}',
        revision_id TEXT NOT NULL,
        last_version INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE versions (
        function TEXT NOT NULL,
        version INTEGER NOT NULL,
        config TEXT NOT NULL,
        code_path TEXT NOT NULL,
        squall TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        PRIMARY KEY (function, version)
    );
    CREATE TABLE aliases (
        function TEXT NOT NULL,
        name TEXT NOT NULL,
        config TEXT NOT NULL,
        revision_id TEXT NOT NULL,
        PRIMARY KEY (function, name)
    );
    CREATE TABLE function_concurrency (
        function TEXT PRIMARY KEY,
        reserved INTEGER NOT NULL
    );
    CREATE TABLE provisioned_concurrency (
        function TEXT NOT NULL,
        qualifier TEXT NOT NULL,
        config TEXT NOT NULL,
        PRIMARY KEY (function, qualifier)
    );
    CREATE TABLE event_invoke_configs (
        function TEXT NOT NULL,
        qualifier TEXT NOT NULL,
        config TEXT NOT NULL,
        PRIMARY KEY (function, qualifier)
    );
    CREATE TABLE event_queue (
        id TEXT PRIMARY KEY,
        function TEXT NOT NULL,
        qualifier TEXT NOT NULL,
        payload BLOB NOT NULL,
        request_id TEXT NOT NULL,
        enqueued_at REAL NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        leased_until REAL,
        due_at REAL NOT NULL,
        source TEXT NOT NULL,
        extra TEXT NOT NULL DEFAULT '{}',
        last_error TEXT
    );
    CREATE INDEX event_queue_due ON event_queue (due_at);
    CREATE INDEX event_queue_function ON event_queue (function);
    CREATE INDEX event_queue_enqueued ON event_queue (enqueued_at);
    CREATE TABLE invocations (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL,
        function TEXT NOT NULL,
        version TEXT NOT NULL,
        trigger TEXT NOT NULL,
        start REAL NOT NULL,
        duration_ms REAL NOT NULL,
        billed_ms INTEGER NOT NULL,
        init_ms REAL,
        memory_mb INTEGER NOT NULL,
        max_memory_mb INTEGER NOT NULL,
        status TEXT NOT NULL,
        error_type TEXT,
        cold INTEGER NOT NULL,
        provisioned INTEGER NOT NULL
    );
    CREATE INDEX invocations_function_start ON invocations (function, start);
    CREATE INDEX invocations_start ON invocations (start);
    CREATE INDEX invocations_request_id ON invocations (request_id);
    CREATE TABLE logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL,
        function TEXT NOT NULL,
        ts REAL NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX logs_request_id ON logs (request_id);
    CREATE INDEX logs_function_id ON logs (function, id);
    CREATE INDEX logs_ts ON logs (ts);
    """,
]


def is_version_number(qualifier: str) -> bool:
    """True for "1", "2", ... (the qualifiers that name published versions)."""
    return qualifier.isascii() and qualifier.isdigit()


def paginate(items: list[T], max_items: int, key: Callable[[T], str]) -> tuple[list[T], str | None]:
    """Trim a list fetched with ``max_items + 1`` rows; the next marker is the key of the last item kept, or
    None on the last page."""
    if max_items < 1:
        raise InvalidParameterValue("MaxItems must be at least 1")
    if len(items) > max_items:
        items = items[:max_items]
        return items, key(items[-1])
    return items, None


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


class SqliteBase(SqliteDb):
    """Connection, lock, transactions and the lookups every part needs."""

    def __init__(
        self,
        path: str | Path,
        *,
        region: str = "us-east-1",
        account_id: str = "000000000000",
        clock: Clock | None = None,
        env_cipher: EnvCipher | None = None,
    ) -> None:
        self.path = str(path)
        self.region = region
        self.account_id = account_id
        self._clock: Clock = clock or SystemClock()
        #: seals functions' Environment.Variables at rest (None: stored as given, for tests and tools)
        self._env_cipher = env_cipher
        self._open_db(self.path, durable_by_default=True)
        self._migrate()
        self._after_open()

    def _after_open(self) -> None:
        """Hook for the parts (the functions part seals environment variables still stored in the clear)."""

    # -- lifecycle --

    def schema_version(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT version FROM schema_version").fetchone()
            return int(row[0])

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                current = 0
            else:
                current = int(row[0])
            if current > len(MIGRATIONS):
                raise ServiceError(
                    f"metadata database {self.path} has schema version {current}, newer than this Squall "
                    f"({len(MIGRATIONS)}); upgrade Squall"
                )
            for version in range(current, len(MIGRATIONS)):
                # executescript commits any open transaction first, then runs the script as given
                self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{MIGRATIONS[version]};\n"
                    f"UPDATE schema_version SET version = {version + 1};\nCOMMIT;"
                )

    # -- transactions --

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    # -- shared lookups --

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(self.region, self.account_id, name, qualifier)

    def _not_found(self, name: str, qualifier: str | None = None) -> ResourceNotFound:
        return ResourceNotFound(f"Function not found: {self.arn(name, qualifier)}")

    def _require_function(self, conn: sqlite3.Connection, name: str) -> None:
        if conn.execute("SELECT 1 FROM functions WHERE name = ?", (name,)).fetchone() is None:
            raise self._not_found(name)

    def _require_qualifier(self, conn: sqlite3.Connection, name: str, qualifier: str) -> None:
        """The function exists and ``qualifier`` ("$LATEST", a version number or an alias) names something."""
        self._require_function(conn, name)
        if qualifier == "$LATEST":
            return
        if is_version_number(qualifier):
            row = conn.execute(
                "SELECT 1 FROM versions WHERE function = ? AND version = ?", (name, int(qualifier))
            ).fetchone()
        else:
            row = conn.execute("SELECT 1 FROM aliases WHERE function = ? AND name = ?", (name, qualifier)).fetchone()
        if row is None:
            raise self._not_found(name, qualifier)
