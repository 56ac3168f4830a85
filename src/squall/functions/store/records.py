"""Value types of the metadata store.

Everything the store hands out is a fresh object built from the database: mutating a returned ``config`` dict
never changes what is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from squall.core.ports import NewEvent

__all__ = [
    "InvocationRecord",
    "LogLine",
    "NewEvent",
    "QualifiedConfig",
    "QueuedEvent",
    "StoredFunction",
    "UsageRow",
]


@dataclass(frozen=True)
class StoredFunction:
    """``$LATEST`` or one published version of a function."""

    name: str
    #: "$LATEST" or "1", "2", ...
    version: str
    #: Lambda's FunctionConfiguration, as the caller built it (the store sets Version and RevisionId)
    config: dict[str, Any]
    #: where the code of this version lives (must never change under a published version)
    code_path: str
    #: Squall's own extras (network mode, snapshot flag, ...)
    squall: dict[str, Any] = field(default_factory=dict)

    @property
    def revision_id(self) -> str:
        return str(self.config.get("RevisionId", ""))


@dataclass(frozen=True)
class QualifiedConfig:
    """A per-(function, qualifier) configuration: provisioned concurrency or event invoke config."""

    function: str
    qualifier: str
    config: dict[str, Any]


@dataclass(frozen=True)
class QueuedEvent:
    """One asynchronous invocation waiting in (or leased from) the durable queue."""

    id: str
    function: str
    qualifier: str
    payload: bytes
    request_id: str
    enqueued_at: float
    #: attempts already made (0 for a fresh event)
    attempt: int
    next_attempt_at: float
    source: str = "lambda-invoke"
    extra: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    #: set on events returned by ``lease``: the lease ends at this time
    leased_until: float | None = None


@dataclass(frozen=True)
class InvocationRecord:
    """One invocation (one attempt of an async event is one record; retries share the request id)."""

    request_id: str
    function: str
    version: str
    trigger: str
    #: epoch seconds
    start: float
    duration_ms: float
    billed_ms: int
    init_ms: float | None
    memory_mb: int
    max_memory_mb: int
    #: "ok" | "error" | "timeout" | "throttled" | ...
    status: str
    error_type: str | None = None
    cold: bool = False
    provisioned: bool = False


@dataclass(frozen=True)
class LogLine:
    """A stored log entry.  ``id`` only grows, so it is the cursor of follow mode."""

    id: int
    ts: float
    request_id: str
    text: str
    function: str = ""


@dataclass(frozen=True)
class UsageRow:
    """Per-function aggregate over a time range.  Throttled requests are counted apart and excluded from the
    other columns."""

    function: str
    requests: int
    errors: int
    throttles: int
    cold_starts: int
    billed_ms: int
    #: sum of billed_ms * memory_mb / 1024 / 1000
    gb_seconds: float
    #: nearest-rank percentiles of duration_ms (0.0 when there were no requests)
    p50_ms: float
    p99_ms: float
