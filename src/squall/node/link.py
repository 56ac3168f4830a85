"""The node's asyncio end of a zygote control socket: requests with replies, plus unsolicited events."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Callable
from typing import Any

from squall.node.channel import recv_msg, send_msg

__all__ = ["ZygoteLink"]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ZygoteLink:
    """``on_fds`` receives the unsolicited messages whose op is in ``fd_ops`` with the fds that came with them (it
    owns them); every other fd a zygote sends is closed unread, except on replies to ``request(keep_fds=True)``."""

    def __init__(
        self,
        sock: socket.socket,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_fds: Callable[[dict[str, Any], list[int]], None] | None = None,
        fd_ops: tuple[str, ...] = (),
    ) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._unsolicited: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._on_event = on_event
        self._on_fds = on_fds
        self._fd_ops = fd_ops
        self._keep_fds: set[int] = set()
        self.closed = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                got = recv_msg(self.sock)
            except BlockingIOError:
                return
            except OSError:
                got = None
            if got is None:
                self._close()
                return
            msg, fds = got
            mid = msg.get("id")
            if self._on_fds is not None and msg.get("op") in self._fd_ops and mid is None:
                self._on_fds(msg, fds)
                continue
            if fds and mid is not None and mid in self._keep_fds and mid in self._waiting:
                msg["_fds"] = fds
            else:
                for fd in fds:
                    socket.close(fd)
            if mid is not None and mid in self._waiting:
                fut = self._waiting.pop(mid)
                if not fut.done():
                    fut.set_result(msg)
            elif msg.get("op") == "exited" and self._on_event is not None:
                self._on_event(msg)
            else:
                self._unsolicited.put_nowait(msg)

    def _close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("zygote exited"))
        self._waiting.clear()
        self._unsolicited.put_nowait(None)

    async def request(
        self, msg: dict[str, Any], fds: list[int] | None = None, timeout_s: float = 30.0, keep_fds: bool = False
    ) -> dict[str, Any]:
        """Send and wait for the reply.  With ``keep_fds`` the fds sent with the reply are in ``reply["_fds"]`` and
        the caller owns them."""
        if self.closed.is_set():
            raise ConnectionError("zygote exited")
        mid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._waiting[mid] = fut
        if keep_fds:
            self._keep_fds.add(mid)
        try:
            await self._send({**msg, "id": mid}, fds)
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._waiting.pop(mid, None)
            self._keep_fds.discard(mid)

    async def _send(self, msg: dict[str, Any], fds: list[int] | None) -> None:
        """Send, waiting for room when the socket buffer is full (a burst of spawn requests fills it).  One sender
        at a time: the loop keeps a single writer callback per fd."""
        async with self._send_lock:
            await self._send_locked(msg, fds)

    async def _send_locked(self, msg: dict[str, Any], fds: list[int] | None) -> None:
        while True:
            try:
                send_msg(self.sock, msg, fds)
                return
            except BlockingIOError:
                ready: asyncio.Future[None] = self.loop.create_future()
                fd = self.sock.fileno()
                self.loop.add_writer(fd, _wake, ready)
                try:
                    await ready
                finally:
                    self.loop.remove_writer(fd)
                if self.closed.is_set():
                    raise ConnectionError("zygote exited")

    async def next_unsolicited(self, timeout_s: float) -> dict[str, Any] | None:
        return await asyncio.wait_for(self._unsolicited.get(), timeout_s)

    def send(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            send_msg(self.sock, msg)

    def close(self) -> None:
        self._close()
        self.sock.close()
