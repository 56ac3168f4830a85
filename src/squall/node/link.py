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
    def __init__(self, sock: socket.socket, on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._unsolicited: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._on_event = on_event
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
            for fd in fds:
                socket.close(fd)
            mid = msg.get("id")
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
        self, msg: dict[str, Any], fds: list[int] | None = None, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        if self.closed.is_set():
            raise ConnectionError("zygote exited")
        mid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._waiting[mid] = fut
        try:
            await self._send({**msg, "id": mid}, fds)
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._waiting.pop(mid, None)

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
