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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from squall.core.errors import ServiceError

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
    "target_for",
]

#: the environment variable that selects PostgreSQL (``squall up --database-url`` sets it too)
DATABASE_URL_ENV = "SQUALL_DATABASE_URL"


@dataclass(frozen=True)
class PgTarget:
    """A store's tables in the PostgreSQL database at ``url``; ``name`` keys its schema version and its lock."""

    url: str
    name: str

    def __str__(self) -> str:  # error messages name the store, never the URL (it may hold a password)
        return f"postgresql:{self.name}"


DbTarget = str | Path | PgTarget


def target_for(path: str | Path, name: str, database_url: str | None) -> DbTarget:
    """``path`` (an SQLite file) when ``database_url`` is empty, else the store ``name`` in that database."""
    return PgTarget(database_url, name) if database_url else path


class DatabaseUnavailable(ServiceError):
    """PostgreSQL cannot be reached (stopped, restarting, network): the request is refused, nothing half-done."""

    status = 503
    codes: ClassVar[Mapping[str, tuple[str, int]]] = {
        "s3": ("ServiceUnavailable", 503),
        "sqs": ("ServiceUnavailable", 503),
        "iam": ("ServiceFailure", 503),
        "*": ("ServiceException", 503),
    }

    def __init__(self, where: object, detail: str = "") -> None:
        super().__init__(
            f"Squall's database is unavailable ({where}{': ' + detail if detail else ''}); the request was not "
            "carried out. Retry shortly; if it persists, check that PostgreSQL is running and reachable."
        )

    def code_for(self, service: str) -> str:
        return self.codes.get(service, self.codes["*"])[0]

    def status_for(self, service: str) -> int:
        return self.codes.get(service, self.codes["*"])[1]


def open_connection(target: DbTarget, *, bulk: bool = False) -> Any:
    """An ``sqlite3.Connection`` for a path, a ``PgConnection`` for a ``PgTarget`` (psycopg imported only then;
    ``bulk``: binary transfer for large values, see ``PgConnection``)."""
    if isinstance(target, PgTarget):
        from squall.store.pg import PgConnection

        return PgConnection(target.url, target.name, bulk=bulk)
    from squall.store.sqlite_conn import open_sqlite

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
