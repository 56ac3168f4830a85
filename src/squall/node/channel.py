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


def recv_msg(sock: socket.socket, max_fds: int = 8) -> tuple[dict[str, Any], list[int]] | None:
    """One message and the fds that came with it, or None at EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_CONTROL_BYTES, max_fds)
    if not data:
        for fd in fds:
            socket.close(fd)
        return None
    return json.loads(data), list(fds)
