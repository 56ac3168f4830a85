"""The cross-process floor: plain Starlette + uvicorn that hands each request to one of N pre-forked worker
processes (one request per worker at a time, like an instance) over a socketpair with a 4-byte length prefix.

No sandbox, no SigV4, no scheduler, no records: the least any design that runs the handler outside the web
server's process pays per request in Python.  bench/invoke_http.py measures it beside the ceiling and Squall.

    python bench/_floor.py PORT [WORKERS]
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.aws.http_protocol import CoalescingHttpProtocol


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"ok": True, "n": event.get("n", 0)}


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _worker(sock: socket.socket) -> None:
    try:
        while True:
            (n,) = struct.unpack("!I", _recv_exact(sock, 4))
            body = _recv_exact(sock, n)
            out = json.dumps(handler(json.loads(body) if body else {}, None)).encode()
            sock.sendall(struct.pack("!I", len(out)) + out)
    except EOFError:
        os._exit(0)


class Workers:
    def __init__(self, count: int) -> None:
        self.socks: list[socket.socket] = []
        for _ in range(count):
            parent, child = socket.socketpair()
            if os.fork() == 0:
                parent.close()
                _worker(child)
            child.close()
            self.socks.append(parent)
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None

    async def call(self, body: bytes) -> bytes:
        if self.idle is None:
            self.idle = asyncio.Queue()
            for s in self.socks:
                self.idle.put_nowait(await asyncio.open_unix_connection(sock=s))
        reader, writer = await self.idle.get()
        try:
            writer.write(struct.pack("!I", len(body)) + body)
            (n,) = struct.unpack("!I", await reader.readexactly(4))
            return await reader.readexactly(n)
        finally:
            self.idle.put_nowait((reader, writer))


workers = Workers(int(sys.argv[2]) if len(sys.argv) > 2 else 32)


async def invoke(request: Request) -> Response:
    return Response(await workers.call(await request.body()), media_type="application/json")


app = Starlette(routes=[Route("/2015-03-31/functions/{function:path}/invocations", invoke, methods=["POST"])])

if __name__ == "__main__":
    # the same one-write-per-response transport as Squall's edge, so the ratio compares like with like
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, http=CoalescingHttpProtocol
    )
