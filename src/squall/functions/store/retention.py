"""Retention: invocation records and logs older than the configured number of days are deleted.

Pruning runs in a worker thread, in small transactions (``prune`` releases the SQLite write lock between
batches, and SQLite releases the GIL while it works), so the record flusher writing new records meanwhile waits
at most for one small batch: invocations themselves never touch the database.  A retention of 0 (or less) keeps everything.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from squall.core.clock import Clock, SystemClock

__all__ = ["Prunable", "Retention"]

log = logging.getLogger("squall.retention")

DAY_S = 86400.0


class Prunable(Protocol):
    def prune(self, before: float, batch_size: int = 2000, max_batches: int | None = None) -> int: ...


@dataclass
class Retention:
    store: Prunable
    days: float
    interval_s: float = 600.0
    batch_size: int = 2000
    clock: Clock = field(default_factory=SystemClock)

    def cutoff(self) -> float | None:
        """Records that started before this time are pruned; None when retention is unlimited."""
        if self.days <= 0:
            return None
        return self.clock.now() - self.days * DAY_S

    async def prune_once(self) -> int:
        """Delete everything older than the cutoff, one small batch per transaction; returns rows deleted."""
        cutoff = self.cutoff()
        if cutoff is None:
            return 0
        deleted = await asyncio.to_thread(self.store.prune, cutoff, self.batch_size)
        if deleted:
            log.info("pruned %d invocation records and log entries older than %.3g days", deleted, self.days)
        return deleted

    async def run_forever(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:
                log.exception("pruning old records and logs")
            await asyncio.sleep(self.interval_s)
