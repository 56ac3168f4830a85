"""Group commit: many coroutines hand small blocking writes to one worker-thread call per batch.

While one batch is being written in a worker thread, everything submitted meanwhile queues up and goes out in the
next call.  A lone submission costs exactly one thread hop, as before; under load N submissions share one hop and one
transaction instead of N.  Each ``submit`` returns when its batch is done (or raises what the batch raised).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, commit: Callable[[list[T]], object]) -> None:
        self._commit = commit
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    async def submit(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((item, done))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                self.batches += 1
                error: BaseException | None = None
                try:
                    await asyncio.to_thread(self._commit, [item for item, _ in batch])
                except Exception as e:
                    error = e
                for _, done in batch:
                    if done.done():  # its submitter was cancelled: the write happened (or failed) all the same
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
        finally:
            self._task = None
