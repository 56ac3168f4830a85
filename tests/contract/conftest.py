"""The runtime under test, as a fixture: any runtime that speaks squall.sandbox.protocol can be plugged in here.

A runtime is started with a code directory and a handler name, connected to the node's end of a stream socket pair
(fd given to it), with its stdout and stderr on a pipe.  The conformance suite in test_protocol.py only talks to it
through :class:`RuntimePeer`.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox_helpers import write_tree
from squall.sandbox.protocol import Frame, FrameDecoder, Kind, encode


class RuntimePeer:
    """The node's side of one runtime process."""

    def __init__(self, pid: int, sock: socket.socket, log_r: int) -> None:
        self.pid = pid
        self.sock = sock
        self.log_r = log_r
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []
        self.status: int | None = None
        self._pidfd = os.pidfd_open(pid)
        self._log = bytearray()

    def send(self, kind: Kind, header: dict | None = None, body: bytes = b"") -> None:
        self.sock.sendall(encode(kind, header, body))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float = 10.0) -> Frame | None:
        """The next frame, or None at EOF.  Fails the test if nothing arrives in ``timeout`` seconds."""
        while not self.frames:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            assert ready, f"runtime sent nothing within {timeout} s"
            data = self.sock.recv(1 << 16)
            if not data:
                return None
            self.frames.extend(self.decoder.feed(data))
        return self.frames.pop(0)

    def invoke(self, request_id: str, body: bytes = b"{}", **header: object) -> Frame:
        h = {
            "request_id": request_id, "deadline_ms": 2**62, "invoked_arn": "arn:aws:lambda:us-east-1:0:function:f",
            "trace_id": "", "client_context": None, "identity": None, "traceparent": "", **header,
        }  # fmt: skip
        self.send(Kind.INVOKE, h, body)
        frame = self.recv()
        assert frame is not None, "runtime closed the connection instead of answering"
        return frame

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Exit code (negative: killed by that signal)."""
        if self.status is None:
            ready, _, _ = select.select([self._pidfd], [], [], timeout)
            assert ready, f"runtime did not exit within {timeout} s"
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def logs(self) -> str:
        while select.select([self.log_r], [], [], 0)[0]:
            chunk = os.read(self.log_r, 1 << 16)
            if not chunk:
                break
            self._log += chunk
        return self._log.decode(errors="replace")

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, 9)
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(self.pid, 0)
                self.status = os.waitstatus_to_exitcode(status)
        self.sock.close()
        os.close(self._pidfd)
        os.close(self.log_r)


def _fork_squall_runtime(code_dir: Path, handler: str) -> RuntimePeer:
    """Squall's own runtime loop (squall.sandbox.runtime.loop.serve) in a forked child, WITHOUT any sandbox."""
    node_end, rt_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    log_r, log_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            node_end.close()
            os.close(log_r)
            os.dup2(log_w, 1)
            os.dup2(log_w, 2)
            os.close(log_w)
            os.chdir(code_dir)
            sys.path.insert(0, str(code_dir))
            from squall.sandbox.runtime.loop import serve

            serve(rt_end, handler, "on-demand")
        finally:
            os._exit(99)
    rt_end.close()
    os.close(log_w)
    return RuntimePeer(pid, node_end, log_r)


RUNTIMES: dict[str, Callable[[Path, str], RuntimePeer]] = {
    "squall-python": _fork_squall_runtime,
}

StartRuntime = Callable[..., RuntimePeer]


@pytest.fixture(params=sorted(RUNTIMES))
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartRuntime]:
    """``runtime(files, handler="app.handler")`` starts the runtime under test on a fresh code dir."""
    factory = RUNTIMES[request.param]
    peers: list[RuntimePeer] = []

    def start(files: dict[str, str], handler: str = "app.handler") -> RuntimePeer:
        code = write_tree(tmp_path / f"code{len(peers)}", files)
        peer = factory(code, handler)
        peers.append(peer)
        return peer

    yield start
    for p in peers:
        p.close()
