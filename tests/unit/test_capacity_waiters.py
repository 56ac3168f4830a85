"""The pool's capacity waiters: a release wakes the first waiter of its own version only; everything else wakes all."""

from __future__ import annotations

import asyncio

from squall.functions.pool import CapacityWaiters

A = ("fn", "$LATEST")
B = ("other", "1")


async def _started(waiters: CapacityWaiters, key: tuple[str, str], timeout_s: float = 5.0) -> asyncio.Task[None]:
    task = asyncio.create_task(waiters.wait(key, timeout_s))
    await asyncio.sleep(0)
    return task


def test_release_wakes_the_first_waiter_of_its_version_only() -> None:
    async def main() -> None:
        w = CapacityWaiters()
        a1, a2, b1 = await _started(w, A), await _started(w, A), await _started(w, B)
        assert len(w) == 3
        w.wake_one(A)
        await asyncio.sleep(0)
        assert a1.done() and not a2.done() and not b1.done()
        w.wake_one(A)
        await asyncio.sleep(0)
        assert a2.done() and not b1.done()
        # no waiter of A left: a release of A wakes everyone (the freed capacity may serve another function)
        w.wake_one(A)
        await asyncio.sleep(0)
        assert b1.done() and len(w) == 0

    asyncio.run(main())


def test_wake_all_and_timeouts_leave_no_entries() -> None:
    async def main() -> None:
        w = CapacityWaiters()
        slow = await _started(w, A, timeout_s=0.01)
        await asyncio.wait_for(slow, 2)  # returns by itself after the timeout
        assert len(w) == 0 and not w._queues
        tasks = [await _started(w, k) for k in (A, A, B)]
        w.wake_all()
        await asyncio.gather(*tasks)
        assert not w._queues

    asyncio.run(main())


def test_a_cancelled_waiter_is_skipped() -> None:
    async def main() -> None:
        w = CapacityWaiters()
        gone, stays = await _started(w, A), await _started(w, A)
        gone.cancel()
        await asyncio.sleep(0)
        w.wake_one(A)
        await asyncio.sleep(0)
        assert stays.done() and not stays.cancelled()
        assert not w._queues

    asyncio.run(main())
