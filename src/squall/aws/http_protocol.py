"""uvicorn's HTTP protocol with one socket write per response instead of two, and the edge's limits.

uvicorn writes a response's status line and headers as soon as the app sends ``http.response.start``, and the body
with a second write.  On loopback each write is a full trip through the TCP stack that also wakes the reader, and
Squall's callers (functions reading and writing the object store, Invoke clients) are mostly on the same machine:
py-spy put ~15% of the server's GIL time in those writes.  ``CoalescingTransport`` buffers what is written during
one event-loop step and writes it once at the end of the step, so headers and a small body leave together; a big
streamed body still goes out chunk by chunk (each chunk is its own step).

``EdgeLimits`` are enforced here, before any request reaches the app (so before authentication), because uvicorn
does not enforce them with its httptools parser: a request line longer than ``max_request_line`` gets 414 and a
head whose header fields exceed ``max_header_bytes`` gets 431 (both counted as bytes arrive, so at most the limit
plus one socket read is ever buffered); a head not complete ``header_timeout_s`` after its first byte (or after the
connection was accepted) gets 408 and the connection is closed (slowloris); a body that stalls for
``body_timeout_s`` likewise; connections past ``max_connections`` get a 503 with a sentence saying so.  Every
refusal half-closes the connection and drains what the client is still sending for a moment before closing, so the
client reads the status instead of a connection reset.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from squall.core.tick_writes import tick_writer

__all__ = ["CoalescingHttpProtocol", "CoalescingTransport", "EdgeLimits", "edge_protocol"]

#: seconds a refused connection is drained (its request read and thrown away) before it is closed
LINGER_S = 2.0


class CoalescingTransport:
    """A transport whose ``write``s within one event-loop step become one write of the underlying transport."""

    __slots__ = ("_loop", "_pending", "_tick", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        #: the loop's end-of-pass writer: the responses of one pass leave together (see squall.core.tick_writes)
        self._tick = tick_writer(loop)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._tick.later(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(b) for b in self._pending)

    def is_closing(self) -> bool:  # on every request: not through __getattr__
        return self._transport.is_closing()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


@dataclass
class EdgeLimits:
    """What one connection may cost before the app sees a request (docs/config.md: the ``http_*`` knobs)."""

    #: bytes of the request target (the URL in the request line) -> 414
    max_request_line: int = 16384
    #: bytes of all header fields of one request -> 431
    max_header_bytes: int = 16384
    #: seconds from the first byte of a request head (or the accept) to its end -> 408 and close
    header_timeout_s: float = 10.0
    #: seconds a request body may stall (no byte arrives while the app waits for it) -> 408 and close
    body_timeout_s: float = 30.0
    #: open connections served at once; more get 503 and are closed (0 = no cap)
    max_connections: int = 4096
    #: refused connections currently draining (shared by every connection of one server)
    lingering: list[int] = field(default_factory=lambda: [0])

    @property
    def sweep_interval_s(self) -> float:
        return min(1.0, max(0.05, min(self.header_timeout_s, self.body_timeout_s) / 4))


class _TooLarge(Exception):
    pass


def _plain_response(status: int, reason: str, message: str, *extra: bytes) -> bytes:
    body = message.encode()
    return b"".join(
        [
            f"HTTP/1.1 {status} {reason}\r\n".encode(),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            *extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class CoalescingHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a ``CoalescingTransport`` (pass as ``uvicorn.Config(http=...)``), with
    the ``EdgeLimits`` of the class (``edge_protocol(limits)`` makes a subclass with other limits)."""

    limits: ClassVar[EdgeLimits] = EdgeLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped: Any = CoalescingTransport(transport, self.loop)
        self._in_head = True  # the bytes arriving now belong to a request head
        self._head_bytes = 0  # bytes of the current head that arrived in earlier reads
        self._read_len = 0  # bytes of the read being parsed now
        self._too_large = 0  # 414 or 431: a parser callback found the head too large
        self._heads = 0  # heads completed on this connection
        self._refused = False
        self._lingering = False
        self._deadline = 0.0  # loop time when the current head or body wait times out (0: none)
        self._linger: asyncio.TimerHandle | None = None
        cap = self.limits.max_connections
        if cap and len(self.connections) >= cap:
            self.transport = wrapped
            message = (
                f"Squall is at its connection limit ({cap} open connections, SQUALL_HTTP_MAX_CONNECTIONS); "
                "retry shortly.\n"
            )
            self._refuse(_plain_response(503, "Service Unavailable", message, b"retry-after: 1\r\n"))
            return
        super().connection_made(wrapped)
        self._arm(self.limits.header_timeout_s)
        if getattr(self.server_state, "squall_sweeper", None) is None:
            self._schedule_sweep()

    # -- timers ----------------------------------------------------------------------------------------------
    def _schedule_sweep(self) -> None:
        """One timer per server checks every connection's deadline: a timer per request cost ~15% of the in-process
        request path, a deadline is one float assignment."""
        handle = self.loop.call_later(self.limits.sweep_interval_s, self._sweep)
        self.server_state.squall_sweeper = handle  # type: ignore[attr-defined]

    def _sweep(self) -> None:
        """Every connection whose deadline passed times out; then again in ``sweep_interval_s``."""
        now = self.loop.time()
        for proto in list(self.connections):
            if isinstance(proto, CoalescingHttpProtocol) and proto._deadline and now >= proto._deadline:
                proto._timed_out()
        if self.connections:
            self._schedule_sweep()
        else:
            self.server_state.squall_sweeper = None  # type: ignore[attr-defined]  # the next connection restarts it

    def _arm(self, delay: float) -> None:
        self._deadline = self.loop.time() + delay

    def _disarm(self) -> None:
        self._deadline = 0.0

    def _timed_out(self) -> None:
        self._deadline = 0.0
        if self._refused or self.transport.is_closing():
            return
        if self._in_head:
            if self.cycle is not None and not self.cycle.response_complete:
                self._arm(self.limits.header_timeout_s)  # a pipelined head while a response is in the works
                return
            if getattr(self, "url", b"") or self.headers or self._head_bytes:  # uvicorn sets url per message
                timeout = self.limits.header_timeout_s
                message = f"The request head was not complete within {timeout:g} s (SQUALL_HTTP_HEADER_TIMEOUT_S).\n"
                self._refuse(_plain_response(408, "Request Timeout", message))
            else:  # nothing sent: an idle connection
                self._close()
            return
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_complete or cycle.disconnected:
            return
        if self.flow.read_paused or cycle.waiting_for_100_continue:  # the app, not the client, is the slow one
            self._arm(self.limits.body_timeout_s)
            return
        timeout = self.limits.body_timeout_s
        message = f"No byte of the request body arrived for {timeout:g} s (SQUALL_HTTP_BODY_TIMEOUT_S).\n"
        self._refuse(_plain_response(408, "Request Timeout", message))
        cycle.disconnected = True
        cycle.message_event.set()

    def _close(self) -> None:
        self._disarm()
        self._linger = None
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, response: bytes) -> None:
        """Answer ``response``, half-close, drain what the client still sends for LINGER_S, then close."""
        if self._refused:
            return
        self._refused = True
        self._disarm()
        transport = self.transport
        if transport.is_closing():
            return
        if self.limits.lingering[0] >= max(self.limits.max_connections, 64):
            transport.write(response)
            transport.close()  # too many already draining: no courtesy, the socket is the scarce thing
            return
        self.limits.lingering[0] += 1
        self._lingering = True
        transport.write(response)
        try:
            transport.write_eof()
        except (NotImplementedError, RuntimeError, OSError):
            transport.close()
        self._linger = self.loop.call_later(LINGER_S, self._close)

    # -- asyncio.Protocol -------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # drained and thrown away
        was_in_head = self._in_head
        heads = self._heads
        self._read_len = len(data)
        if was_in_head and not self._deadline:
            self._deadline = self.loop.time() + self.limits.header_timeout_s
        super().data_received(data)
        if self._refused or self.transport.is_closing():
            return
        if was_in_head and self._in_head and heads == self._heads:
            # this whole read belongs to an unfinished head: what the parser holds is bounded by the limits plus
            # one read, even for a URL or header value it accumulates internally
            self._head_bytes += len(data)
            limits = self.limits
            if len(getattr(self, "url", b"")) > limits.max_request_line:
                self._refuse(self._head_refusal(414))
            elif self._head_bytes > limits.max_request_line + limits.max_header_bytes:
                self._refuse(self._head_refusal(431))
        elif not self._in_head:
            cycle = self.cycle
            if cycle is not None and cycle.more_body and not cycle.response_complete:
                self._deadline = self.loop.time() + self.limits.body_timeout_s
            else:
                self._deadline = 0.0

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._lingering:
            self._lingering = False
            self.limits.lingering[0] -= 1
        if self._refused and self.flow is None:  # refused at accept: uvicorn never knew this connection
            return
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        if self._too_large:  # a limit callback stopped the parser
            self._refuse(self._head_refusal(self._too_large))
            return
        super().send_400_response(msg)

    def _head_refusal(self, status: int) -> bytes:
        if status == 414:
            limit = self.limits.max_request_line
            message = f"The request line is longer than {limit} bytes (SQUALL_HTTP_MAX_REQUEST_LINE).\n"
            return _plain_response(414, "URI Too Long", message)
        limit = self.limits.max_header_bytes
        message = f"The request's header fields are larger than {limit} bytes (SQUALL_HTTP_MAX_HEADER_BYTES).\n"
        return _plain_response(431, "Request Header Fields Too Large", message)

    # -- parser callbacks ---------------------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        # a head that arrived within fewer bytes than the limit cannot exceed it: the fields are summed only when
        # this head's reads were bigger (no per-header or per-URL-piece work on the hot path)
        limits = self.limits
        seen = self._head_bytes + self._read_len
        if seen > limits.max_request_line and len(self.url) > limits.max_request_line:
            self._too_large = 414
            raise _TooLarge()
        if (
            seen > limits.max_header_bytes
            and sum(len(n) + len(v) + 4 for n, v in self.headers) > limits.max_header_bytes
        ):
            self._too_large = 431
            raise _TooLarge()
        self._in_head = False
        self._heads += 1
        self._head_bytes = 0
        self._deadline = 0.0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        self._deadline = 0.0


def edge_protocol(limits: EdgeLimits) -> type[CoalescingHttpProtocol]:
    """A ``CoalescingHttpProtocol`` subclass enforcing ``limits`` (for ``uvicorn.Config.http``)."""
    return type("EdgeHttpProtocol", (CoalescingHttpProtocol,), {"limits": limits})
