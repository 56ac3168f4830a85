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
]

_PREFIX = struct.Struct(">IBI")
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


class FrameDecoder:
    """Feed bytes in any chunking; take whole frames out."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 4:
            (length,) = struct.unpack_from(">I", self._buf, 0)
            if length < 5 or length > self._max:
                raise ProtocolError(f"bad frame length {length}")
            if len(self._buf) < 4 + length:
                break
            _, kind_raw, hlen = _PREFIX.unpack_from(self._buf, 0)
            if hlen > length - 5:
                raise ProtocolError(f"header length {hlen} overruns frame of {length}")
            try:
                kind = Kind(kind_raw)
            except ValueError:
                raise ProtocolError(f"unknown frame kind {kind_raw}")
            start = _PREFIX.size
            try:
                header = json.loads(bytes(self._buf[start : start + hlen]) or b"{}")
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ProtocolError(f"frame header is not JSON: {e}")
            if not isinstance(header, dict):
                raise ProtocolError("frame header must be a JSON object")
            body = bytes(self._buf[start + hlen : 4 + length])
            del self._buf[: 4 + length]
            frames.append(Frame(kind, header, body))
        return frames

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet make a whole frame."""
        return len(self._buf)
