"""Runtime hooks for SnapStart-style snapshots, API-compatible with AWS's ``snapshot-restore-py`` package.

Code written for Lambda SnapStart (``from snapshot_restore_py import register_before_snapshot,
register_after_restore``) works unchanged on Squall.  If a function vendors AWS's own package, Squall calls the hooks
registered there instead: both expose ``get_before_snapshot()`` and ``get_after_restore()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["get_after_restore", "get_before_snapshot", "register_after_restore", "register_before_snapshot"]

_before_snapshot: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
_after_restore: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []


def register_before_snapshot(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """Run ``func(*args, **kwargs)`` once before the snapshot is taken (hooks run in reverse order)."""
    _before_snapshot.append((func, args, kwargs))
    return func


def register_after_restore(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """Run ``func(*args, **kwargs)`` in every instance restored from the snapshot (in registration order)."""
    _after_restore.append((func, args, kwargs))
    return func


def get_before_snapshot() -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
    return _before_snapshot


def get_after_restore() -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
    return _after_restore
