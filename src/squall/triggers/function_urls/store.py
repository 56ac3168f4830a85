"""Persistence for function URL configs and per-function HTTP routes (one small SQLite file, WAL).

``url_configs``: one row per (function, qualifier) with its 32-character url id, auth type, CORS config and times.
``routes``: route keys ("GET /hello/{name}") owned by a function; a route key belongs to at most one function,
with the payload format version its events use ("2.0", or "1.0" for the REST API proxy event).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squall.store.sqlite_conn import SqliteDb

__all__ = ["FunctionUrlStore", "UrlConfig"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS url_configs (
    url_id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    auth_type TEXT NOT NULL,
    cors TEXT,
    invoke_mode TEXT NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    UNIQUE (function, qualifier)
);
CREATE TABLE IF NOT EXISTS routes (
    route_key TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    position INTEGER NOT NULL,
    payload_format TEXT NOT NULL DEFAULT '2.0'
);
CREATE INDEX IF NOT EXISTS routes_function ON routes (function);
"""


@dataclass(frozen=True)
class UrlConfig:
    """One function URL: ``qualifier`` is ``""`` for the unqualified function."""

    url_id: str
    function: str
    qualifier: str
    auth_type: str
    cors: dict[str, Any] | None
    invoke_mode: str
    created: str
    modified: str


def _row(r: tuple[Any, ...]) -> UrlConfig:
    return UrlConfig(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None, r[5], r[6], r[7])


_COLUMNS = "url_id, function, qualifier, auth_type, cors, invoke_mode, created, modified"


class FunctionUrlStore(SqliteDb):
    """Thread-safe (one connection behind a lock); every write is its own transaction."""

    def __init__(self, path: Path) -> None:
        self._open_db(path, durable_by_default=False)
        self._conn.executescript(_SCHEMA)
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(routes)")}
        if "payload_format" not in columns:  # a database from before per-route payload formats
            self._conn.execute("ALTER TABLE routes ADD COLUMN payload_format TEXT NOT NULL DEFAULT '2.0'")

    # -- URL configs -------------------------------------------------------------------------------------------
    def get(self, function: str, qualifier: str) -> UrlConfig | None:
        with self._lock:
            r = self._conn.execute(
                f"SELECT {_COLUMNS} FROM url_configs WHERE function = ? AND qualifier = ?", (function, qualifier)
            ).fetchone()
        return None if r is None else _row(r)

    def insert(self, cfg: UrlConfig) -> bool:
        """Add ``cfg``; False when the function/qualifier already has a URL."""
        try:
            with self._tx() as c:
                c.execute(
                    f"INSERT INTO url_configs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        cfg.url_id, cfg.function, cfg.qualifier, cfg.auth_type,
                        json.dumps(cfg.cors) if cfg.cors is not None else None, cfg.invoke_mode, cfg.created,
                        cfg.modified,
                    ),
                )  # fmt: skip
        except sqlite3.IntegrityError:
            return False
        return True

    def update(self, cfg: UrlConfig) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE url_configs SET auth_type = ?, cors = ?, invoke_mode = ?, modified = ? WHERE url_id = ?",
                (
                    cfg.auth_type, json.dumps(cfg.cors) if cfg.cors is not None else None, cfg.invoke_mode,
                    cfg.modified, cfg.url_id,
                ),
            )  # fmt: skip

    def delete(self, function: str, qualifier: str) -> bool:
        with self._tx() as c:
            n = c.execute(
                "DELETE FROM url_configs WHERE function = ? AND qualifier = ?", (function, qualifier)
            ).rowcount
        return n > 0

    def list_configs(self, function: str | None = None) -> list[UrlConfig]:
        with self._lock:
            if function is None:
                rows = self._conn.execute(f"SELECT {_COLUMNS} FROM url_configs ORDER BY url_id").fetchall()
            else:
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM url_configs WHERE function = ? ORDER BY qualifier", (function,)
                ).fetchall()
        return [_row(r) for r in rows]

    # -- routes ------------------------------------------------------------------------------------------------
    def routes(self, function: str | None = None) -> list[tuple[str, str]]:
        """(route key, function) pairs in declaration order."""
        with self._lock:
            if function is None:
                rows = self._conn.execute("SELECT route_key, function FROM routes ORDER BY function, position")
            else:
                rows = self._conn.execute(
                    "SELECT route_key, function FROM routes WHERE function = ? ORDER BY position", (function,)
                )
            return [(str(r[0]), str(r[1])) for r in rows.fetchall()]

    def route_formats(self) -> list[tuple[str, str, str]]:
        """(route key, function, payload format version) of every route, in declaration order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT route_key, function, payload_format FROM routes ORDER BY function, position"
            ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def replace_routes(self, function: str, keys: Sequence[str], formats: Sequence[str] | None = None) -> None:
        """Make ``keys`` the function's routes (the caller checked conflicts with other functions); ``formats``
        gives each its payload format version (default "2.0")."""
        fmts = list(formats) if formats is not None else ["2.0"] * len(keys)
        with self._tx() as c:
            c.execute("DELETE FROM routes WHERE function = ?", (function,))
            c.executemany(
                "INSERT INTO routes (route_key, function, position, payload_format) VALUES (?, ?, ?, ?)",
                [(k, function, i, f) for i, (k, f) in enumerate(zip(keys, fmts, strict=True))],
            )

    def delete_function(self, function: str) -> int:
        """Drop every URL config and route of ``function``; returns how many rows went."""
        with self._tx() as c:
            n = c.execute("DELETE FROM url_configs WHERE function = ?", (function,)).rowcount
            n += c.execute("DELETE FROM routes WHERE function = ?", (function,)).rowcount
        return int(n)
