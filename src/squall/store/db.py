"""Where a store keeps its tables: an SQLite file (the embedded default) or a PostgreSQL database (cluster mode).

Every store is written once, against the DB-API surface of ``sqlite3`` (``execute`` with ``?`` placeholders,
``fetchone``/``fetchall``, ``rowcount``, ``executescript``, ``BEGIN IMMEDIATE``/``COMMIT``/``ROLLBACK``, and
``sqlite3.IntegrityError``).  ``open_connection(target)`` returns a real ``sqlite3.Connection`` for a path, and a
:class:`squall.store.pg.PgConnection` for a :class:`PgTarget`: the same surface over psycopg, translating what differs
(placeholders, ``INSERT OR IGNORE``, column types, ``COLLATE NOCASE``, ``rowid``) and taking the store's advisory
lock at ``BEGIN IMMEDIATE`` so writers on several nodes are serialised exactly as SQLite serialises its writers.
SQL whose semantics differ (``FOR UPDATE SKIP LOCKED``, LISTEN/NOTIFY, chunked bytes) is written per dialect, behind
``is_pg(conn)``.

Schema: SQLite files keep their own versioning (``PRAGMA user_version`` or a ``schema_version`` table, as before);
PostgreSQL databases record one version per store in ``squall_schema`` and migrate under an advisory lock, so two
nodes starting at once apply each migration exactly once (``migrate``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from squall.store.disk import create_private_file
from squall.store.targets import DatabaseUnavailable, DbTarget, PgTarget, target_for

if TYPE_CHECKING:
    from squall.store.pg import PgConnection

__all__ = [
    "DATABASE_URL_ENV",
    "DatabaseUnavailable",
    "DbTarget",
    "PgTarget",
    "as_pg",
    "is_pg",
    "migrate",
    "open_connection",
    "open_sqlite",
    "target_for",
]

#: the environment variable that selects PostgreSQL (``squall up --database-url`` sets it too)
DATABASE_URL_ENV = "SQUALL_DATABASE_URL"


def open_connection(target: DbTarget, *, bulk: bool = False) -> Any:
    """An ``sqlite3.Connection`` for a path, a ``PgConnection`` for a ``PgTarget`` (psycopg imported only then;
    ``bulk``: binary transfer for large values, see ``PgConnection``)."""
    if isinstance(target, PgTarget):
        from squall.store.pg import PgConnection

        return PgConnection(target.url, target.name, bulk=bulk)
    if str(target).startswith("postgresql:"):  # a PgTarget turned into a string on the way: never a file of that name
        raise TypeError(f"{target}: pass the PgTarget itself, not its string")
    return open_sqlite(target)


def is_pg(conn: object) -> bool:
    """The connection is a PostgreSQL one (for the few statements written per dialect)."""
    return type(conn).__name__ == "PgConnection"


def as_pg(conn: object) -> PgConnection:
    """``conn`` as the PostgreSQL connection it is (after ``is_pg``), for its own methods."""
    return cast("PgConnection", conn)


def migrate(
    conn: Any,
    name: str,
    migrations: Sequence[str],
    sqlite: Callable[[], None] | None = None,
) -> None:
    """Bring store ``name``'s tables to ``len(migrations)``: on PostgreSQL under the migration lock, one recorded
    version per store; on SQLite by calling ``sqlite`` (the store's own versioning), or by running every script
    (each ``CREATE ... IF NOT EXISTS``) when there is none."""
    if is_pg(conn):
        conn.migrate(name, migrations)
    elif sqlite is not None:
        sqlite()
    else:
        for script in migrations:
            conn.executescript(script)


def env_database_url(environ: Mapping[str, str] | None = None) -> str | None:
    """``SQUALL_DATABASE_URL`` from the environment, or None."""
    value = (environ if environ is not None else os.environ).get(DATABASE_URL_ENV, "").strip()
    return value or None


def open_sqlite(path: str | Path) -> sqlite3.Connection:
    """A connection shared across threads (callers serialise with their own lock); the parent dir is created."""
    path = str(path)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        create_private_file(path)  # 0600: SQLite gives its -wal and -shm files the database's mode
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn
