"""Control messages between the node and its zygotes: one JSON object per SOCK_SEQPACKET datagram, fds attached."""

from __future__ import annotations

import json
import socket
from typing import Any

__all__ = ["MAX_CONTROL_BYTES", "recv_msg", "send_msg"]

MAX_CONTROL_BYTES = 1 << 20


def send_msg(sock: socket.socket, msg: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(msg, separators=(",", ":")).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv_msg(
    sock: socket.socket, max_fds: int = 8, max_bytes: int = MAX_CONTROL_BYTES
) -> tuple[dict[str, Any], list[int]] | None:
    """One message and the fds that came with it, or None at EOF.  A message longer than ``max_bytes`` (the
    datagram was truncated) or that is not a JSON object raises ValueError."""
    data, fds, flags, _addr = socket.recv_fds(sock, max_bytes, max_fds)
    if not data:
        for fd in fds:
            socket.close(fd)
        return None
    try:
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ValueError("control message too long")
        msg = json.loads(data)
        if not isinstance(msg, dict):
            raise ValueError("control message is not an object")
    except BaseException:
        for fd in fds:
            socket.close(fd)
        raise
    return msg, list(fds)
