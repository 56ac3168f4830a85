"""The node's asyncio end of a zygote control socket: requests with replies, plus unsolicited events.

A function zygote runs the function's code, so what comes over this socket is untrusted: a malformed message, a flood
of unsolicited ones or an unexpected descriptor closes the link (the node then stops the whole function); fds come
only with replies to requests that expect them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Callable
from typing import Any

from squall.sandbox.node.channel import MAX_CONTROL_BYTES, recv_msg, send_msg

__all__ = ["ZygoteLink"]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


#: unsolicited messages kept before the link is deemed abusive (a function zygote sends one: its load report)
MAX_UNSOLICITED = 16


class ZygoteLink:
    """``on_fds`` receives the unsolicited messages whose op is in ``fd_ops`` with the fds that came with them (it
    owns them and must check them: the sender is untrusted); every other fd a zygote sends is closed unread, except
    on replies to ``request(keep_fds=True)``."""

    def __init__(
        self,
        sock: socket.socket,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_close: Callable[[], None] | None = None,
        max_bytes: int = MAX_CONTROL_BYTES,
        on_fds: Callable[[dict[str, Any], list[int]], None] | None = None,
        fd_ops: tuple[str, ...] = (),
    ) -> None:
        self.sock = sock
        self.max_bytes = max_bytes
        sock.setblocking(False)
        self.loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._unsolicited: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._on_event = on_event
        self._on_close = on_close
        self._on_fds = on_fds
        self._fd_ops = fd_ops
        self.closed = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                got = recv_msg(self.sock, max_bytes=self.max_bytes)
            except BlockingIOError:
                return
            except (OSError, ValueError, RecursionError):  # gone, or not our protocol
                got = None
            if got is None or not isinstance(got[0], dict):
                self._close()
                return
            msg, fds = got
            mid = msg.get("id")
            if mid is not None and mid in self._waiting:
                fut = self._waiting.pop(mid)
                if not fut.done():
                    fut.set_result({**msg, "_fds": fds})
                    continue
            if self._on_fds is not None and mid is None and msg.get("op") in self._fd_ops:
                try:
                    self._on_fds(msg, fds)
                except (TypeError, ValueError, KeyError):
                    self._close()
                    return
                continue
            for fd in fds:
                socket.close(fd)
            if msg.get("op") == "exited" and self._on_event is not None:
                try:
                    self._on_event(msg)
                except (TypeError, ValueError, KeyError):
                    self._close()
                    return
            elif self._unsolicited.qsize() >= MAX_UNSOLICITED:
                self._close()
                return
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
        if self._on_close is not None:
            cb, self._on_close = self._on_close, None
            self.loop.call_soon(cb)

    async def request(
        self, msg: dict[str, Any], fds: list[int] | None = None, timeout_s: float = 30.0, keep_fds: bool = False
    ) -> dict[str, Any]:
        """Send a request and wait (bounded) for its reply; TimeoutError, or ConnectionError if the zygote is gone.
        Descriptors that come with the reply are closed unless ``keep_fds`` (then the caller owns ``reply["_fds"]``).
        """
        if self.closed.is_set():
            raise ConnectionError("zygote exited")
        mid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._waiting[mid] = fut
        try:
            await self._send({**msg, "id": mid}, fds)
            reply = await asyncio.wait_for(fut, timeout_s)
        finally:
            self._waiting.pop(mid, None)
        got_fds = reply.pop("_fds", [])
        if keep_fds:
            reply["_fds"] = got_fds
        else:
            for fd in got_fds:
                socket.close(fd)
        return reply

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
