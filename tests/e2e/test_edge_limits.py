"""The HTTP edge before authentication, attacked over raw sockets on 127.0.0.1 against a real ``squall up``.

Oversized request heads are refused with 431/414 without being buffered (the server's RSS is read from /proc before
and after), slowloris connections (a head that trickles or never starts) are closed by the server, connections past
the cap get a 503 and a clear sentence, and normal requests keep working afterwards.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._platform import SquallProcess, eventually

MiB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    return s


def read_until_eof(s: socket.socket, bound_s: float = 60.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes the connection (True) or ``bound_s`` passes (False)."""
    data = b""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def flood(s: socket.socket, head: bytes, filler: bytes, total: int) -> threading.Thread:
    """Send ``head`` then ``total`` bytes of ``filler`` from a thread; stops quietly when the server hangs up."""

    def run() -> None:
        try:
            s.sendall(head)
            sent = 0
            while sent < total:
                s.sendall(filler)
                sent += len(filler)
        except OSError:
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


def health(port: int) -> int:
    with connect(port) as s:
        s.sendall(b"GET /_squall/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data, _ = read_until_eof(s)
    return status_of(data)


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(
        tmp_path_factory.mktemp("edge") / "data",
        SQUALL_HTTP_HEADER_TIMEOUT_S="1",
        SQUALL_HTTP_IDLE_TIMEOUT_S="1",
        SQUALL_HTTP_BODY_TIMEOUT_S="1",
    ).start()
    yield proc
    assert proc.stop() == 0


def test_30_mb_of_headers_get_431_and_the_server_does_not_buffer_them(squall: SquallProcess) -> None:
    assert squall.proc is not None
    pid = squall.proc.pid
    assert health(squall.port) == 200
    before = rss_bytes(pid)
    for _ in range(4):
        with connect(squall.port) as s:
            sender = flood(s, b"GET /_squall/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ", b"a" * 65536, 30 * MiB)
            data, closed = read_until_eof(s)
            sender.join(60)
        assert status_of(data) == 431, data[:300]
        assert b"16384" in data  # the message says what the limit is
        assert closed
    grown = rss_bytes(pid) - before
    assert grown < 8 * MiB, f"server RSS grew by {grown / MiB:.1f} MiB under 4 x 30 MB of headers"
    assert health(squall.port) == 200


def test_many_small_headers_past_the_limit_get_431(squall: SquallProcess) -> None:
    with connect(squall.port) as s:
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(400))  # ~44 KB in one write
        s.sendall(b"GET /_squall/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many + b"\r\n")
        data, closed = read_until_eof(s)
    assert status_of(data) == 431 and closed


def test_a_30_mb_request_line_gets_414(squall: SquallProcess) -> None:
    with connect(squall.port) as s:
        sender = flood(s, b"GET /_squall/health?x=", b"b" * 65536, 30 * MiB)
        data, closed = read_until_eof(s)
        sender.join(60)
    assert status_of(data) == 414, data[:300]
    assert closed


def test_a_trickling_head_is_closed_by_the_server(squall: SquallProcess) -> None:
    """Slowloris: a new header line every 0.2 s, forever; the header timeout (1 s here) closes it."""
    with connect(squall.port) as s:
        s.sendall(b"GET /_squall/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        deadline = time.monotonic() + 60
        data = b""
        while time.monotonic() < deadline and not closed:
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                closed = True
                break
            chunk, closed = read_until_eof(s, 0.2)
            data += chunk
        assert closed, "the server kept a trickling request head open for 60 s"
    assert status_of(data) == 408


def test_a_silent_connection_is_closed_by_the_server(squall: SquallProcess) -> None:
    with connect(squall.port) as s:
        data, closed = read_until_eof(s, 60)
    assert closed and data == b""


def test_an_idle_keep_alive_connection_is_closed(squall: SquallProcess) -> None:
    with connect(squall.port) as s:
        s.sendall(b"GET /_squall/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data, closed = read_until_eof(s, 60)
    assert status_of(data) == 200 and closed


def test_a_stalled_body_is_closed(squall: SquallProcess) -> None:
    with connect(squall.port) as s:
        s.sendall(b"POST /2015-03-31/functions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{")
        data, closed = read_until_eof(s, 60)
    assert closed
    assert status_of(data) == 408


def test_normal_requests_still_work_with_boto3(squall: SquallProcess) -> None:
    lam = squall.client("lambda")
    assert lam.list_functions()["Functions"] == []
    s3 = squall.client("s3")
    s3.create_bucket(Bucket="edge-still-works")
    s3.put_object(Bucket="edge-still-works", Key="k", Body=b"x" * 100_000)
    assert s3.get_object(Bucket="edge-still-works", Key="k")["Body"].read() == b"x" * 100_000


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(
        tmp_path_factory.mktemp("edge-capped") / "data",
        SQUALL_HTTP_MAX_CONNECTIONS="6",
        SQUALL_HTTP_HEADER_TIMEOUT_S="600",
    ).start()
    yield proc
    assert proc.stop() == 0


def test_connections_past_the_cap_are_refused_with_503(capped: SquallProcess) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(6):
            s = connect(capped.port)
            s.sendall(b"GET /_squall/health HTTP/1.1\r\n")  # a head that never completes
            held.append(s)
        with connect(capped.port) as extra:
            extra.sendall(b"GET /_squall/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data, closed = read_until_eof(extra)
        assert status_of(data) == 503, data[:300]
        assert b"connection limit" in data and b"6" in data
        assert closed
    finally:
        for s in held:
            s.close()

    def answers() -> Any:
        try:
            return health(capped.port) == 200
        except OSError:
            return False

    eventually(answers, 30, what="the server serving again after the held connections closed")
    assert capped.client("lambda").list_functions()["Functions"] == []
