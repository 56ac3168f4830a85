"""CoalescingTransport: what is written in one event-loop step reaches the socket as one write."""

from __future__ import annotations

import asyncio
from typing import Any

from squall.aws.http_protocol import CoalescingTransport


class RecordingTransport:
    """Stands in for the socket transport: records each write (pure logic under test, no socket needed)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def run(body: Any) -> RecordingTransport:
    raw = RecordingTransport()

    async def main() -> None:
        t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        await body(t)

    asyncio.run(main())
    return raw


def test_headers_and_body_written_in_one_step_leave_as_one_write() -> None:
    async def body(t: CoalescingTransport) -> None:
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.write(b"ok")
        assert t.get_write_buffer_size() == 40  # still pending within the step
        await asyncio.sleep(0)

    assert run(body).writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]


def test_writes_in_different_steps_stay_separate_and_in_order() -> None:
    async def body(t: CoalescingTransport) -> None:
        t.write(b"a")
        await asyncio.sleep(0)
        t.write(b"b")
        t.writelines([b"c", b"", b"d"])
        await asyncio.sleep(0)

    assert run(body).writes == [b"a", b"bcd"]


def test_close_flushes_first_and_abort_drops_what_is_pending() -> None:
    async def closing(t: CoalescingTransport) -> None:
        t.write(b"last words")
        t.close()
        await asyncio.sleep(0)  # the scheduled flush finds nothing left to write

    raw = run(closing)
    assert raw.writes == [b"last words"] and raw.closed

    async def aborting(t: CoalescingTransport) -> None:
        t.write(b"never sent")
        t.abort()
        await asyncio.sleep(0)

    raw = run(aborting)
    assert raw.writes == [] and raw.aborted


def test_other_transport_methods_pass_through() -> None:
    async def body(t: CoalescingTransport) -> None:
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)
        assert t.is_closing() is False

    run(body)
