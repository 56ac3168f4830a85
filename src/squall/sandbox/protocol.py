"""Node <-> instance frames.  Pure: no I/O (sans-I/O, in the manner of h11).

A frame on the instance's stream socket is::

    u32 length (big-endian, bytes that follow)  | u8 kind | u32 header length | header (UTF-8 JSON) | body

The body is raw bytes (an event payload or a response), so payloads never pay for a second JSON encoding.
See docs/protocol.md for the conversation; tests/contract/test_protocol.py is the conformance suite every runtime
must pass.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = [
    "MAX_FRAME_BYTES",
    "Frame",
    "FrameDecoder",
    "Kind",
    "ProtocolError",
    "encode",
    "encode_raw",
]

_PREFIX = struct.Struct(">IBI")
_LENGTH = struct.Struct(">I")
#: largest frame either side accepts: a 6 MB payload plus headers, with room to spare
MAX_FRAME_BYTES = 8 * 1024 * 1024


class Kind(IntEnum):
    #: instance -> node, once: init finished; header {"init_ms": float, "init_type": str}
    READY = 1
    #: instance -> node, once, then the instance exits: init failed; body is the Lambda error JSON
    INIT_ERROR = 2
    #: node -> instance: run the handler; header {"request_id", "deadline_ms", "invoked_arn", "trace_id",
    #: "client_context", "identity", "traceparent"}; body is the event JSON
    INVOKE = 3
    #: instance -> node: header {"request_id", "ok": bool, "error_type": str|None}; body is the response JSON
    #: (or the Lambda error JSON when ok is false)
    RESULT = 4
    #: node -> instance: leave cleanly
    SHUTDOWN = 5
    #: instance -> node, once, from a spare instance (made ahead of need): sandboxed, none of the function's code run
    #: yet, waiting for START; header {}
    PARKED = 6
    #: node -> spare instance, once: run the init now (then READY or INIT_ERROR); header {"init_type": str}
    START = 7


_KINDS = {int(k): k for k in Kind}


class ProtocolError(Exception):
    """The peer sent something that is not a frame.  The connection cannot be trusted after this."""


@dataclass(frozen=True)
class Frame:
    kind: Kind
    header: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""


def encode(kind: Kind, header: dict[str, Any] | None = None, body: bytes = b"") -> bytes:
    h = json.dumps(header or {}, separators=(",", ":")).encode()
    length = 1 + 4 + len(h) + len(body)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    return _PREFIX.pack(length, int(kind), len(h)) + h + body


def encode_raw(kind: Kind, header_json: bytes, body: bytes = b"") -> bytes:
    """``encode`` for a header the caller already serialised (a JSON object, UTF-8)."""
    length = 1 + 4 + len(header_json) + len(body)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    return _PREFIX.pack(length, int(kind), len(header_json)) + header_json + body


class FrameDecoder:
    """Feed bytes in any chunking; take whole frames out.  A read that holds whole frames only (the usual case: one
    RESULT per read) is parsed where it lies, without going through the buffer."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes
        self._used = 0

    def feed(self, data: bytes) -> list[Frame]:
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        frames: list[Frame] = []
        try:
            self._parse(buf, frames)
        finally:
            if buf is self._buf:
                del self._buf[: self._used]
            elif self._used < len(buf):
                self._buf += memoryview(buf)[self._used :]
        return frames

    def _parse(self, buf: bytes | bytearray, frames: list[Frame]) -> None:
        """Append the whole frames at the start of ``buf`` to ``frames``; ``self._used``: the bytes they took (so far,
        if a bad frame raises ProtocolError)."""
        pos = 0
        self._used = 0
        size = len(buf)
        while size - pos >= 4:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length < 5 or length > self._max:
                raise ProtocolError(f"bad frame length {length}")
            end = pos + 4 + length
            if size < end:
                break
            _, kind_raw, hlen = _PREFIX.unpack_from(buf, pos)
            if hlen > length - 5:
                raise ProtocolError(f"header length {hlen} overruns frame of {length}")
            kind = _KINDS.get(kind_raw)
            if kind is None:
                raise ProtocolError(f"unknown frame kind {kind_raw}")
            start = pos + _PREFIX.size
            try:
                header = json.loads(buf[start : start + hlen] or b"{}")
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ProtocolError(f"frame header is not JSON: {e}")
            if not isinstance(header, dict):
                raise ProtocolError("frame header must be a JSON object")
            body = buf[start + hlen : end]
            frames.append(Frame(kind, header, body if type(body) is bytes else bytes(body)))
            pos = end
            self._used = pos

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet make a whole frame."""
        return len(self._buf)
