"""The node's per-invocation log capture (squall.sandbox.node.instance.Instance), without a sandbox."""

from __future__ import annotations

import asyncio
import os

from squall.sandbox.node.instance import Instance, _Conn


async def _capture(writes: list[bytes], limit: int) -> str:
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    inst = Instance(
        instance_id="t", pid=0, slot=1, function="f", version="$LATEST", memory_mb=128, timeout_s=1.0,
        init_type="on-demand", conn=_Conn(), log_fd=r, memory_cgroup=None, exited=loop.create_future(),
        log_max_bytes=limit,
    )  # fmt: skip
    try:
        for data in writes:
            os.write(w, data)
            inst._drain_logs()  # the node reads each write as one chunk
        return inst._take_logs()
    finally:
        inst.alive = False
        inst.close()
        os.close(w)


def test_log_under_limit_is_kept_whole() -> None:
    assert asyncio.run(_capture([b"a" * 100, b"b" * 100], 1024)) == "a" * 100 + "b" * 100


def test_log_over_limit_in_one_chunk_is_cut_with_marker() -> None:
    text = asyncio.run(_capture([b"a" * 2000], 1024))
    assert text.startswith("a" * 1024)
    assert "log truncated" in text
    assert len(text) < 1024 + 200


def test_log_filled_exactly_then_more_gets_marker() -> None:
    text = asyncio.run(_capture([b"a" * 1024, b"b" * 10], 1024))
    assert "b" not in text.replace("bytes", "")
    assert "log truncated" in text
