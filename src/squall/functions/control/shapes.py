"""Lambda's output shapes: dates, FunctionConfiguration as each operation reports it, and paging parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from squall.core.arn import function_arn
from squall.functions.control.names import validation_error
from squall.functions.store.records import StoredFunction

__all__ = [
    "LIST_HIDDEN",
    "check_max_items",
    "code_hex",
    "render_config",
]

#: fields ListFunctions and ListVersionsByFunction leave out of each FunctionConfiguration
LIST_HIDDEN = (
    "State",
    "StateReason",
    "StateReasonCode",
    "LastUpdateStatus",
    "LastUpdateStatusReason",
    "LastUpdateStatusReasonCode",
)


def code_hex(stored: StoredFunction) -> str:
    """The hex SHA-256 of a version's zip: the name of its content-addressed code directory."""
    return Path(stored.code_path).name


def render_config(
    stored: StoredFunction, region: str, account_id: str, *, shown_qualifier: str | None = None, listing: bool = False
) -> dict[str, Any]:
    """A stored version as FunctionConfiguration.  ``shown_qualifier``: the qualifier the caller used (Lambda
    then reports a qualified FunctionArn, even for ``$LATEST`` or an alias)."""
    config = dict(stored.config)
    if shown_qualifier is not None:
        config["FunctionArn"] = function_arn(region, account_id, stored.name, shown_qualifier)
    if listing:
        for key in LIST_HIDDEN:
            config.pop(key, None)
    return config


def check_max_items(value: int | None, maximum: int = 10000, default: int = 50) -> int:
    if value is None:
        return default
    if value < 1:
        raise validation_error(
            f"Value '{value}' at 'maxItems' failed to satisfy constraint: Member must have value greater than or "
            "equal to 1"
        )
    if value > maximum:
        raise validation_error(
            f"Value '{value}' at 'maxItems' failed to satisfy constraint: Member must have value less than or "
            f"equal to {maximum}"
        )
    return value
