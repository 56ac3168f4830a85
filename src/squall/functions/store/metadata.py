"""The metadata store: one interface (``MetadataStore``) and its embedded implementation on SQLite.

``SqliteMetadataStore`` keeps everything in one database file: functions, versions and aliases (as Lambda's
own JSON shapes), concurrency and event invoke configs, the durable async event queue, and invocation records
and logs.  Calls are short and thread-safe; the server may make them from a worker thread or, for quick
lookups, directly on the event loop.  A PostgreSQL store can replace it by implementing ``MetadataStore``.

Control-plane writes and ``enqueue`` are fsync'd before they return; leases, acks, retries, records and logs
are not (see ``squall.functions.store.sqlite``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from squall.core.clock import Clock
from squall.functions.store.configs import ConfigsMixin
from squall.functions.store.event_queue import EventQueueMixin
from squall.functions.store.functions import FunctionsMixin, RevisionMismatch
from squall.functions.store.invocations import InvocationsMixin, PendingLog, RecordWriter
from squall.functions.store.records import (
    InvocationRecord,
    LogLine,
    NewEvent,
    QualifiedConfig,
    QueuedEvent,
    StoredFunction,
    UsageRow,
)
from squall.functions.store.series import SeriesMixin

__all__ = ["MetadataStore", "RecordWriter", "RevisionMismatch", "SqliteMetadataStore", "open_store"]

Page = tuple[list[StoredFunction], str | None]


class MetadataStore(Protocol):
    """What the platform needs from its metadata database.  Every list returns (items, next_marker); the
    marker is opaque and None on the last page."""

    # functions, versions, aliases
    def create_function(
        self, name: str, config: dict[str, Any], code_path: str, squall: dict[str, Any] | None = None
    ) -> StoredFunction: ...
    def get_function(self, name: str, qualifier: str | None = None) -> StoredFunction: ...
    def list_functions(self, marker: str | None = None, max_items: int = 50) -> Page: ...
    def update_function(
        self,
        name: str,
        config: dict[str, Any],
        *,
        code_path: str | None = None,
        squall: dict[str, Any] | None = None,
        expected_revision: str | None = None,
    ) -> StoredFunction: ...
    def delete_function(self, name: str) -> None: ...
    def publish_version(
        self,
        name: str,
        config_snapshot: dict[str, Any] | None = None,
        *,
        code_path: str | None = None,
        squall: dict[str, Any] | None = None,
        expected_revision: str | None = None,
    ) -> StoredFunction: ...
    def get_version(self, name: str, version: str) -> StoredFunction: ...
    def list_versions(self, name: str, marker: str | None = None, max_items: int = 50) -> Page: ...
    def delete_version(self, name: str, version: str) -> None: ...
    def create_alias(
        self,
        name: str,
        alias: str,
        function_version: str,
        *,
        description: str = "",
        routing_config: dict[str, Any] | None = None,
    ) -> dict[str, Any]: ...
    def get_alias(self, name: str, alias: str) -> dict[str, Any]: ...
    def update_alias(
        self,
        name: str,
        alias: str,
        *,
        function_version: str | None = None,
        description: str | None = None,
        routing_config: dict[str, Any] | None = None,
        expected_revision: str | None = None,
    ) -> dict[str, Any]: ...
    def delete_alias(self, name: str, alias: str) -> bool: ...
    def list_aliases(
        self,
        name: str,
        *,
        function_version: str | None = None,
        marker: str | None = None,
        max_items: int = 50,
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    # concurrency and per-qualifier configs
    def get_function_concurrency(self, name: str) -> int | None: ...
    def put_function_concurrency(self, name: str, reserved: int) -> int: ...
    def delete_function_concurrency(self, name: str) -> None: ...
    def total_reserved_concurrency(self, exclude: str | None = None) -> int: ...
    def put_provisioned_concurrency(self, name: str, qualifier: str, config: dict[str, Any]) -> dict[str, Any]: ...
    def get_provisioned_concurrency(self, name: str, qualifier: str) -> dict[str, Any] | None: ...
    def update_provisioned_concurrency(
        self, name: str, qualifier: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None: ...
    def delete_provisioned_concurrency(self, name: str, qualifier: str) -> bool: ...
    def list_provisioned_concurrency(
        self, name: str | None = None, marker: str | None = None, max_items: int = 50
    ) -> tuple[list[QualifiedConfig], str | None]: ...
    def put_event_invoke_config(self, name: str, qualifier: str, config: dict[str, Any]) -> dict[str, Any]: ...
    def get_event_invoke_config(self, name: str, qualifier: str) -> dict[str, Any] | None: ...
    def delete_event_invoke_config(self, name: str, qualifier: str) -> bool: ...
    def list_event_invoke_configs(
        self, name: str, marker: str | None = None, max_items: int = 50
    ) -> tuple[list[QualifiedConfig], str | None]: ...

    # durable event queue
    def enqueue(self, event: NewEvent) -> str: ...
    def enqueue_many(self, events: Iterable[NewEvent]) -> list[str]: ...
    def enqueue_leased(self, events: Iterable[NewEvent], lease_s: float) -> list[QueuedEvent]: ...
    def lease(self, now: float, limit: int, lease_s: float) -> list[QueuedEvent]: ...
    def ack(self, event_id: str) -> bool: ...
    def ack_many(self, event_ids: Sequence[str]) -> int: ...
    def retry(self, event_id: str, next_attempt_at: float, attempt: int, last_error: str | None = None) -> bool: ...
    def get_event(self, event_id: str) -> QueuedEvent | None: ...
    def depth(self, function: str | None = None) -> int: ...
    def oldest_age(self, now: float) -> float: ...

    # invocation records and logs
    def write_batch(self, records: Sequence[InvocationRecord], logs: Sequence[PendingLog]) -> None: ...
    def get_invocation(self, request_id: str) -> InvocationRecord | None: ...
    def list_invocations(
        self,
        function: str | None = None,
        since: float | None = None,
        until: float | None = None,
        status: str | None = None,
        limit: int = 50,
        before_cursor: str | None = None,
    ) -> tuple[list[InvocationRecord], str | None]: ...
    def usage(self, since: float, until: float) -> list[UsageRow]: ...
    def get_logs(self, request_id: str) -> list[LogLine]: ...
    def tail_logs(self, function: str | None, since_id: int = 0, limit: int = 100) -> list[LogLine]: ...
    def search_logs(
        self,
        function: str | None,
        text: str,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[LogLine]: ...
    def prune(self, before: float, batch_size: int = 2000, max_batches: int | None = None) -> int: ...

    def close(self) -> None: ...


class SqliteMetadataStore(FunctionsMixin, ConfigsMixin, EventQueueMixin, InvocationsMixin, SeriesMixin):
    """The embedded store: ``SqliteMetadataStore(data_dir / "metadata.db", region=..., account_id=...,
    clock=...)``.  Opening applies pending schema migrations."""

    def record_writer(self, max_pending: int = 100_000) -> RecordWriter:
        return RecordWriter(self, max_pending=max_pending)

    def __enter__(self) -> SqliteMetadataStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_store(
    path: str | Path,
    *,
    region: str = "us-east-1",
    account_id: str = "000000000000",
    clock: Clock | None = None,
) -> MetadataStore:
    """Open the default store implementation, typed as the interface."""
    return SqliteMetadataStore(path, region=region, account_id=account_id, clock=clock)
