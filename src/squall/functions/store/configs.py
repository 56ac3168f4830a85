"""Per-function and per-(function, qualifier) settings: reserved concurrency, provisioned concurrency configs
and event invoke configs.  Getters return None when nothing is set; the API layer picks the error to raise."""

from __future__ import annotations

import sqlite3
from typing import Any

from squall.functions.store.records import QualifiedConfig
from squall.functions.store.sqlite import SqliteBase, dumps, loads, paginate

__all__ = ["ConfigsMixin"]

_QUALIFIED_TABLES = ("provisioned_concurrency", "event_invoke_configs")


class ConfigsMixin(SqliteBase):
    # -- reserved concurrency --

    def get_function_concurrency(self, name: str) -> int | None:
        """ReservedConcurrentExecutions, or None when unset.  ResourceNotFound for unknown functions."""
        with self._read() as conn:
            self._require_function(conn, name)
            row = conn.execute("SELECT reserved FROM function_concurrency WHERE function = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def put_function_concurrency(self, name: str, reserved: int) -> int:
        with self._tx() as conn:
            self._require_function(conn, name)
            conn.execute(
                "INSERT INTO function_concurrency (function, reserved) VALUES (?, ?) "
                "ON CONFLICT (function) DO UPDATE SET reserved = excluded.reserved",
                (name, reserved),
            )
        return reserved

    def delete_function_concurrency(self, name: str) -> None:
        with self._tx(write=False) as conn:
            self._require_function(conn, name)
            conn.execute("DELETE FROM function_concurrency WHERE function = ?", (name,))

    def total_reserved_concurrency(self, exclude: str | None = None) -> int:
        """Sum of reserved concurrency over all functions (but ``exclude``), for the account-level check."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(reserved), 0) FROM function_concurrency WHERE function != ?",
                (exclude or "",),
            ).fetchone()
        return int(row[0])

    # -- provisioned concurrency --

    def put_provisioned_concurrency(self, name: str, qualifier: str, config: dict[str, Any]) -> dict[str, Any]:
        """Store (replace) the config of (function, qualifier): Lambda's
        RequestedProvisionedConcurrentExecutions, AllocatedProvisionedConcurrentExecutions,
        AvailableProvisionedConcurrentExecutions, Status, StatusReason, LastModified.  The qualifier must
        name a version or an alias (refusing "$LATEST" is the caller's job)."""
        return self._put_qualified("provisioned_concurrency", name, qualifier, config)

    def get_provisioned_concurrency(self, name: str, qualifier: str) -> dict[str, Any] | None:
        return self._get_qualified("provisioned_concurrency", name, qualifier)

    def update_provisioned_concurrency(self, name: str, qualifier: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge ``patch`` (e.g. Allocated..., Available..., Status) into an existing config; None if there is
        none (it may have been deleted meanwhile)."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT config FROM provisioned_concurrency WHERE function = ? AND qualifier = ?",
                (name, qualifier),
            ).fetchone()
            if row is None:
                return None
            config: dict[str, Any] = {**loads(row[0]), **patch}
            conn.execute(
                "UPDATE provisioned_concurrency SET config = ? WHERE function = ? AND qualifier = ?",
                (dumps(config), name, qualifier),
            )
        return config

    def delete_provisioned_concurrency(self, name: str, qualifier: str) -> bool:
        return self._delete_qualified("provisioned_concurrency", name, qualifier)

    def list_provisioned_concurrency(
        self, name: str | None = None, marker: str | None = None, max_items: int = 50
    ) -> tuple[list[QualifiedConfig], str | None]:
        """Configs of one function (ordered by qualifier) or, with ``name`` None, of all functions (ordered by
        function then qualifier; what the scheduler reads on start)."""
        return self._list_qualified("provisioned_concurrency", name, marker, max_items)

    # -- event invoke configs --

    def put_event_invoke_config(self, name: str, qualifier: str, config: dict[str, Any]) -> dict[str, Any]:
        """Store (replace) MaximumRetryAttempts, MaximumEventAgeInSeconds, DestinationConfig, LastModified,
        FunctionArn... as the caller built them.  UpdateFunctionEventInvokeConfig = get, merge, put."""
        return self._put_qualified("event_invoke_configs", name, qualifier, config)

    def get_event_invoke_config(self, name: str, qualifier: str) -> dict[str, Any] | None:
        return self._get_qualified("event_invoke_configs", name, qualifier)

    def delete_event_invoke_config(self, name: str, qualifier: str) -> bool:
        return self._delete_qualified("event_invoke_configs", name, qualifier)

    def list_event_invoke_configs(
        self, name: str, marker: str | None = None, max_items: int = 50
    ) -> tuple[list[QualifiedConfig], str | None]:
        return self._list_qualified("event_invoke_configs", name, marker, max_items)

    # -- shared --

    def _put_qualified(self, table: str, name: str, qualifier: str, config: dict[str, Any]) -> dict[str, Any]:
        assert table in _QUALIFIED_TABLES
        with self._tx() as conn:
            self._require_qualifier(conn, name, qualifier)
            conn.execute(
                f"INSERT INTO {table} (function, qualifier, config) VALUES (?, ?, ?) "
                "ON CONFLICT (function, qualifier) DO UPDATE SET config = excluded.config",
                (name, qualifier, dumps(config)),
            )
        return dict(config)

    def _get_qualified(self, table: str, name: str, qualifier: str) -> dict[str, Any] | None:
        assert table in _QUALIFIED_TABLES
        with self._read() as conn:
            self._require_function(conn, name)
            row = conn.execute(
                f"SELECT config FROM {table} WHERE function = ? AND qualifier = ?", (name, qualifier)
            ).fetchone()
        if row is None:
            return None
        config: dict[str, Any] = loads(row[0])
        return config

    def _delete_qualified(self, table: str, name: str, qualifier: str) -> bool:
        assert table in _QUALIFIED_TABLES
        with self._tx() as conn:
            self._require_function(conn, name)
            cur = conn.execute(f"DELETE FROM {table} WHERE function = ? AND qualifier = ?", (name, qualifier))
            return cur.rowcount > 0

    def _list_qualified(
        self, table: str, name: str | None, marker: str | None, max_items: int
    ) -> tuple[list[QualifiedConfig], str | None]:
        assert table in _QUALIFIED_TABLES
        with self._read() as conn:
            rows = self._qualified_rows(conn, table, name, marker, max_items + 1)
        items = [QualifiedConfig(r[0], r[1], loads(r[2])) for r in rows]
        # the marker is "function\nqualifier" when listing across functions, else the qualifier
        if name is None:
            return paginate(items, max_items, lambda c: f"{c.function}\n{c.qualifier}")
        return paginate(items, max_items, lambda c: c.qualifier)

    def _qualified_rows(
        self, conn: sqlite3.Connection, table: str, name: str | None, marker: str | None, limit: int
    ) -> list[tuple[str, str, str]]:
        if name is not None:
            self._require_function(conn, name)
            return conn.execute(
                f"SELECT function, qualifier, config FROM {table} WHERE function = ? AND qualifier > ? "
                "ORDER BY qualifier LIMIT ?",
                (name, marker or "", limit),
            ).fetchall()
        after_fn, _, after_q = (marker or "").partition("\n")
        return conn.execute(
            f"SELECT function, qualifier, config FROM {table} WHERE (function, qualifier) > (?, ?) "
            "ORDER BY function, qualifier LIMIT ?",
            (after_fn, after_q, limit),
        ).fetchall()
