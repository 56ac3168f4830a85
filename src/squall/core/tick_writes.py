"""Socket writes that wake another process, issued together at the end of an event-loop pass.

Each write to an instance's socket (an INVOKE frame) or to a client's (a response) wakes the process reading it.  On
a machine with few CPUs, in a VM above all, a wake-up aimed at an idle CPU costs an inter-processor interrupt (a VM
exit): py-spy put 35 % of the server's main thread in the write to the instance and 10 % in the response write at
concurrency 32.  Written one by one, between the Python work of the requests handled in the same pass, every write
finds the other CPU idle again and pays that interrupt; written back to back at the end of the pass, the first one
wakes the other CPU and the rest only queue work on a CPU that is already running.

``TickWriter.write(transport, data)`` keeps the bytes and writes them, in order, in one callback at the end of the
pass; ``TickWriter.later(flush)`` runs a flush function there (the HTTP edge's coalescing transports).  One writer per
event loop (``tick_writer(loop)``).  Nothing is reordered: per transport, bytes leave in the order they were given.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["TickWriter", "tick_writer"]


class TickWriter:
    __slots__ = ("_flushes", "_loop", "_scheduled", "_writes")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._writes: list[tuple[Any, bytes]] = []
        self._flushes: list[Callable[[], None]] = []
        self._scheduled = False

    def write(self, transport: Any, data: bytes) -> None:
        """Write ``data`` to ``transport`` at the end of this pass (dropped if the transport is closing by then)."""
        self._writes.append((transport, data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.run)

    def later(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` at the end of this pass, after the pending ``write``s."""
        self._flushes.append(flush)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.run)

    def run(self) -> None:
        """Issue everything pending now (also what the scheduled callback does)."""
        self._scheduled = False
        writes, self._writes = self._writes, []
        flushes, self._flushes = self._flushes, []
        for transport, data in writes:
            if not transport.is_closing():
                transport.write(data)
        for flush in flushes:
            flush()


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TickWriter] = weakref.WeakKeyDictionary()


def tick_writer(loop: asyncio.AbstractEventLoop) -> TickWriter:
    """The loop's writer (made on first use)."""
    w = _writers.get(loop)
    if w is None:
        w = _writers[loop] = TickWriter(loop)
    return w
