"""SQLite persistence of event source mappings (``data_dir / "esm.db"``).

Each mapping is stored as its Lambda API configuration (a JSON object: UUID, EventSourceArn, FunctionArn,
BatchSize, ...) plus the function name and the event source ARN as columns for filtering.  One connection,
serialised by a lock; callers run these methods in worker threads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from squall.core.errors import ResourceNotFound
from squall.store.sqlite_conn import SqliteDb

__all__ = ["MappingStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mappings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    function_name TEXT NOT NULL,
    source_arn TEXT NOT NULL,
    config TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mappings_function ON mappings (function_name);
"""


def _not_found() -> ResourceNotFound:
    return ResourceNotFound("The resource you requested does not exist.")


class MappingStore(SqliteDb):
    """CRUD of mapping configurations, in creation order."""

    def __init__(self, path: Path) -> None:
        self._open_db(path)
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def put(self, function_name: str, config: dict[str, Any]) -> None:
        """Insert or replace the mapping ``config["UUID"]`` (keeps its position in the listing)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO mappings (uuid, function_name, source_arn, config) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (uuid) DO UPDATE SET function_name = excluded.function_name, "
                "source_arn = excluded.source_arn, config = excluded.config",
                (config["UUID"], function_name, config["EventSourceArn"], json.dumps(config)),
            )

    def get(self, uuid: str) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute("SELECT config FROM mappings WHERE uuid = ?", (uuid,)).fetchone()
        if row is None:
            raise _not_found()
        return dict(json.loads(row[0]))

    def delete(self, uuid: str) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute("DELETE FROM mappings WHERE uuid = ? RETURNING config", (uuid,)).fetchone()
        if row is None:
            raise _not_found()
        return dict(json.loads(row[0]))

    def list(
        self, function_name: str | None = None, source_arn: str | None = None, after_seq: int = 0, limit: int = 10_000
    ) -> list[tuple[int, str, dict[str, Any]]]:
        """(seq, function name, config) in creation order, optionally filtered, starting after ``after_seq``."""
        sql = "SELECT seq, function_name, config FROM mappings WHERE seq > ?"
        args: list[Any] = [after_seq]
        if function_name is not None:
            sql += " AND function_name = ?"
            args.append(function_name)
        if source_arn is not None:
            sql += " AND source_arn = ?"
            args.append(source_arn)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [(int(seq), str(fn), dict(json.loads(cfg))) for seq, fn, cfg in rows]
