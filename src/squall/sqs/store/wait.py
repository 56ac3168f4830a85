"""Long polling for ``QueueStore`` without busy waiting.

``QueueWaiter(store)`` registers a store listener.  The store calls it (from whichever thread sent the message,
after the commit); the listener hops onto the event loop with ``call_soon_threadsafe`` and sets that queue's
``asyncio.Event``.  A waiter takes the queue's current event *before* it looks at the store, so a message sent
between the look and the wait still wakes it.  When nothing is visible it sleeps until the event fires, the
earliest delayed or in-flight message becomes visible (``store.next_visible_at``), or the wait time is up.

Store calls run in worker threads (``asyncio.to_thread``) so an fsync never blocks the loop.  One waiter serves
one event loop; the SQS API and the event-source-mapping poller can share it.
"""

from __future__ import annotations

import asyncio
import contextlib

from squall.sqs.store.queues import QueueStore
from squall.sqs.store.records import QueueMessage

__all__ = ["QueueWaiter"]

_MIN_SLEEP_S = 0.005
_MAX_ROUNDS = 100_000


class QueueWaiter:
    def __init__(self, store: QueueStore) -> None:
        self.store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, asyncio.Event] = {}
        store.add_listener(self._on_change)

    def close(self) -> None:
        self.store.remove_listener(self._on_change)

    # -- called by the store, from any thread --

    def _on_change(self, name: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wake, name)

    # -- on the loop --

    def _wake(self, name: str) -> None:
        event = self._events.pop(name, None)
        if event is not None:
            event.set()

    def _event(self, name: str) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._events = {}
        event = self._events.get(name)
        if event is None:
            event = self._events[name] = asyncio.Event()
        return event

    async def wait_for_messages(self, name: str, timeout: float) -> bool:
        """Sleep until something was sent to ``name`` (True) or ``timeout`` seconds passed (False).  Callers
        that look at the store first should use ``receive`` instead, which cannot miss a wake-up."""
        event = self._event(name)
        try:
            await asyncio.wait_for(event.wait(), max(timeout, 0.0))
        except TimeoutError:
            return False
        return True

    async def receive(
        self,
        name: str,
        max_messages: int = 1,
        visibility_timeout: int | None = None,
        wait_seconds: float = 0.0,
    ) -> list[QueueMessage]:
        """``store.receive``, waiting up to ``wait_seconds`` for a message if none is visible yet.  Returns as
        soon as at least one message was received (like SQS long polling), or [] when the time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait_seconds, 0.0)
        for _ in range(_MAX_ROUNDS):
            event = self._event(name)
            messages = await asyncio.to_thread(self.store.receive, name, max_messages, visibility_timeout)
            remaining = deadline - loop.time()
            if messages or remaining <= 0:
                return messages
            upcoming = await asyncio.to_thread(self.store.next_visible_at, name)
            if upcoming is not None:
                remaining = min(remaining, max(upcoming - self.store.now(), _MIN_SLEEP_S))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
        return []
