"""Lambda layers: the versions of each layer, with Lambda's own field names, in their own SQLite file.

A layer version's content lives in the code store like any function package (content-addressed, extracted once,
read-only); this store keeps the metadata and where the extracted tree lives.  Version numbers are never reused:
``layers.last_version`` keeps counting after a version is deleted, as on Lambda.  Deleting a version removes only
its metadata: functions that already reference it keep their copy of the content (as on Lambda).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squall.core.clock import Clock, SystemClock
from squall.core.errors import ServiceError
from squall.functions.store.sqlite import dumps, loads
from squall.store.sqlite_conn import SqliteDb

__all__ = ["LayerStore", "StoredLayerVersion"]

_SCHEMA = [
    """
    CREATE TABLE layers (
        name TEXT PRIMARY KEY,
        last_version INTEGER NOT NULL
    );
    CREATE TABLE layer_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        config TEXT NOT NULL,
        code_path TEXT NOT NULL,
        unpacked_size INTEGER NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (name, version)
    );
    """,
]


@dataclass(frozen=True)
class StoredLayerVersion:
    """One published layer version."""

    name: str
    version: int
    #: Description, CompatibleRuntimes, CompatibleArchitectures, LicenseInfo, CreatedDate, CodeSha256, CodeSize
    config: dict[str, Any]
    #: the extracted, read-only tree in the code store
    code_path: str
    #: bytes of the extracted tree (counts towards a function's 250 MB unzipped limit)
    unpacked_size: int


class LayerStore(SqliteDb):
    """``LayerStore(data_dir / "layers.db")``.  Thread-safe; every write is fsync'd before it returns."""

    def __init__(self, path: str | Path, *, clock: Clock | None = None) -> None:
        self.path = str(path)
        self._clock: Clock = clock or SystemClock()
        self._open_db(self.path, durable_by_default=True)
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            current = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            if current > len(_SCHEMA):
                raise ServiceError(
                    f"layer database {self.path} has schema version {current}, newer than this Squall "
                    f"({len(_SCHEMA)}); upgrade Squall"
                )
            for version in range(current, len(_SCHEMA)):
                self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{_SCHEMA[version]};\nPRAGMA user_version = {version + 1};\nCOMMIT;"
                )

    def publish(self, name: str, config: dict[str, Any], code_path: str, unpacked_size: int) -> StoredLayerVersion:
        """Store the next version of ``name`` (1 for a new layer)."""
        with self._tx() as conn:
            row = conn.execute("SELECT last_version FROM layers WHERE name = ?", (name,)).fetchone()
            version = (int(row[0]) if row else 0) + 1
            if row:
                conn.execute("UPDATE layers SET last_version = ? WHERE name = ?", (version, name))
            else:
                conn.execute("INSERT INTO layers (name, last_version) VALUES (?, ?)", (name, version))
            conn.execute(
                "INSERT INTO layer_versions (name, version, config, code_path, unpacked_size, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, version, dumps(config), code_path, unpacked_size, self._clock.now()),
            )
        return StoredLayerVersion(name, version, dict(config), code_path, unpacked_size)

    def get(self, name: str, version: int) -> StoredLayerVersion | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT config, code_path, unpacked_size FROM layer_versions WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
        return None if row is None else StoredLayerVersion(name, version, loads(row[0]), row[1], int(row[2]))

    def versions(self, name: str) -> list[StoredLayerVersion]:
        """Every version of ``name``, newest first (Lambda's listing order)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT version, config, code_path, unpacked_size FROM layer_versions WHERE name = ? "
                "ORDER BY version DESC",
                (name,),
            ).fetchall()
        return [StoredLayerVersion(name, int(r[0]), loads(r[1]), r[2], int(r[3])) for r in rows]

    def names(self) -> list[str]:
        """Names of the layers that have at least one version, in order."""
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT name FROM layer_versions ORDER BY name").fetchall()
        return [str(r[0]) for r in rows]

    def delete(self, name: str, version: int) -> bool:
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM layer_versions WHERE name = ? AND version = ?", (name, version))
            return cur.rowcount > 0

    def code_paths(self) -> set[str]:
        """Every stored version's tree (what a code-store garbage collection must keep)."""
        with self._lock:
            return {str(r[0]) for r in self._conn.execute("SELECT code_path FROM layer_versions")}
