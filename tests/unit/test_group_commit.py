"""GroupCommit: submissions made while a batch is being written go out together in the next one."""

from __future__ import annotations

import asyncio
import threading

import pytest

from squall.store.group_commit import GroupCommit


def test_a_lone_submission_is_one_batch() -> None:
    written: list[list[int]] = []
    gc: GroupCommit[int] = GroupCommit(written.append)

    async def main() -> None:
        await gc.submit(1)
        await gc.submit(2)

    asyncio.run(main())
    assert written == [[1], [2]]
    assert gc.batches == 2


def test_submissions_during_a_write_share_the_next_batch() -> None:
    release = threading.Event()
    written: list[list[int]] = []

    def commit(items: list[int]) -> None:
        if not written:
            release.wait(5)  # the first batch is slow: everything else queues up behind it
        written.append(items)

    gc: GroupCommit[int] = GroupCommit(commit)

    async def main() -> None:
        first = asyncio.create_task(gc.submit(0))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(gc.submit(i)) for i in range(1, 50)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert written == [[0], list(range(1, 50))]
    assert gc.batches == 2


def test_a_failed_batch_fails_each_of_its_submitters_and_the_next_batch_still_runs() -> None:
    calls: list[list[str]] = []

    def commit(items: list[str]) -> None:
        calls.append(items)
        if "bad" in items:
            raise OSError("disk full")

    gc: GroupCommit[str] = GroupCommit(commit)

    async def main() -> None:
        with pytest.raises(OSError, match="disk full"):
            await gc.submit("bad")
        await gc.submit("good")

    asyncio.run(main())
    assert calls == [["bad"], ["good"]]


def test_a_cancelled_submitter_does_not_disturb_the_others() -> None:
    release = threading.Event()
    written: list[list[int]] = []

    def commit(items: list[int]) -> None:
        release.wait(5)
        written.append(items)

    gc: GroupCommit[int] = GroupCommit(commit)

    async def main() -> None:
        a = asyncio.create_task(gc.submit(1))
        b = asyncio.create_task(gc.submit(2))
        await asyncio.sleep(0.05)
        a.cancel()
        release.set()
        await b
        with pytest.raises(asyncio.CancelledError):
            await a

    asyncio.run(main())
    assert written == [[1, 2]]  # the write itself is not undone by a caller giving up
