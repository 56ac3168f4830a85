"""The names a store is opened by: an SQLite path or a :class:`PgTarget`, and the error a lost database is
(``squall.store.db`` re-exports both; ``squall.store.pg`` imports them from here, so the two never import each other)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from squall.core.errors import ServiceError

__all__ = ["DatabaseUnavailable", "DbTarget", "PgTarget", "target_for"]


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
