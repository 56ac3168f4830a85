"""The pool (the shell around the pure scheduler) on the in-process fake node and a fake clock: cold start, warm
reuse, throttling, waiting for capacity, timeouts, init failures, a dead zygote, eviction, provisioning and
keep-alive reaping.  No process is forked and nothing sleeps: each test runs in milliseconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from squall.core.clock import FakeClock
from squall.core.errors import TooManyRequests
from squall.core.model import FunctionSpec, InvokeRequest
from squall.functions.pool import InstancePool, PoolConfig
from squall.sandbox.fake import Call, Crash, FakeCode, FakeInstance, FakeNode, Reply
from squall.sandbox.node.instance import InitFailed, Instance
from squall.sandbox.node.node import Node

T = TypeVar("T")


def spec(name: str = "f", *, memory_mb: int = 128, timeout_s: float = 3.0, version: str = "$LATEST") -> FunctionSpec:
    return FunctionSpec(name=name, code_dir=Path("/nonexistent"), handler="app.handler", memory_mb=memory_mb,
                        timeout_s=timeout_s, version=version)  # fmt: skip


def make_pool(node: FakeNode, **config: Any) -> InstancePool:
    config.setdefault("keep_alive_policy", "fixed")
    config.setdefault("memory_budget_mb", 4096)
    # the fake offers the real Node's interface (tests/unit/test_fake_node.py checks the signatures)
    return InstancePool(cast(Node, node), PoolConfig(**config), clock=node.clock.monotonic)


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(main())


async def invoke(inst: Instance | FakeInstance, event: Any = None, rid: str = "r") -> Any:
    out = await inst.invoke(InvokeRequest(json.dumps(event or {}).encode(), request_id=rid))
    return out


async def until(predicate: Callable[[], bool], what: str, steps: int = 1000) -> None:
    """Let the event loop run (no timer) until ``predicate`` holds."""
    for _ in range(steps):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what} did not happen")


def test_cold_start_then_warm_reuse() -> None:
    node = FakeNode()

    async def main() -> None:
        pool = make_pool(node)
        first = await pool.acquire(spec())
        assert [i.id for i in node.starts] == [first.id] and pool.cold_starts == 1
        cold = await invoke(first, rid="r1")
        assert cold.cold and "Init Duration" in cold.logs
        await pool.release(first)
        assert pool.warm("f") == 1 and pool.concurrency("f") == 0
        again = await pool.acquire(spec())
        assert again is first and pool.cold_starts == 1 and len(node.starts) == 1
        warm = await invoke(again, rid="r2")
        assert not warm.cold and "Init Duration" not in warm.logs
        assert node.loads == [spec().key]  # one zygote for both

    run(main)


def test_concurrent_requests_get_their_own_instances() -> None:
    node = FakeNode()

    async def main() -> None:
        pool = make_pool(node)
        a, b = await pool.acquire(spec()), await pool.acquire(spec())
        assert a is not b and pool.concurrency("f") == 2 and pool.cold_starts == 2
        await pool.release(a)
        await pool.release(b)
        assert pool.warm("f") == 2

    run(main)


def test_account_limit_throttles_with_429() -> None:
    node = FakeNode()

    async def main() -> None:
        pool = make_pool(node, account_concurrency=1)
        busy = await pool.acquire(spec())
        with pytest.raises(TooManyRequests) as e:
            await pool.acquire(spec("g"), wait_s=0)
        assert e.value.reason == "ConcurrentInvocationLimitExceeded"
        assert len(node.starts) == 1  # nothing was started for the throttled request
        await pool.release(busy)
        assert (await pool.acquire(spec("g"), wait_s=0)).function == "g"

    run(main)


def test_reserved_concurrency_limits_one_function_only() -> None:
    node = FakeNode()

    async def main() -> None:
        pool = make_pool(node)
        pool.set_reserved("f", 1)
        await pool.acquire(spec("f"))
        with pytest.raises(TooManyRequests) as e:
            await pool.acquire(spec("f"), wait_s=0)
        assert e.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
        await pool.acquire(spec("g"), wait_s=0)  # other functions are not limited by f's reservation

    run(main)


def test_a_waiting_request_takes_the_instance_released_to_it() -> None:
    node = FakeNode()

    async def main() -> None:
        pool = make_pool(node, account_concurrency=1)
        busy = await pool.acquire(spec())
        waiting = asyncio.create_task(pool.acquire(spec(), wait_s=60))
        await until(lambda: len(pool.waiters) == 1, "the second request waiting for capacity")
        assert not waiting.done()
        await pool.release(busy)
        got = await asyncio.wait_for(waiting, 10)
        assert got is busy and len(node.starts) == 1  # warm, no second start

    run(main)


def test_a_timed_out_instance_is_gone_and_the_next_request_is_cold() -> None:
    clock = FakeClock()
    node = FakeNode(clock, {"slow": FakeCode(lambda call: Reply(b"1", duration_ms=5000 if call.event else 10))})

    async def main() -> None:
        pool = make_pool(node)
        s = spec("slow", timeout_s=2.0)
        inst = await pool.acquire(s)
        t0 = clock.monotonic()
        out = await invoke(inst, {"hang": True})
        assert out.error_type == "Sandbox.Timedout" and out.duration_ms == 2000
        assert clock.monotonic() - t0 == pytest.approx(2.0)  # the fake clock moved by the timeout, not more
        assert "Task timed out after 2.00 seconds" in json.loads(out.payload)["errorMessage"]
        assert not inst.alive
        await pool.release(inst)
        assert pool.warm("slow") == 0 and pool.concurrency("slow") == 0
        nxt = await pool.acquire(s)
        assert nxt is not inst and pool.cold_starts == 2
        assert (await invoke(nxt)).cold

    run(main)


def test_a_crashed_instance_is_not_reused() -> None:
    def handler(call: Call) -> Reply:
        raise Crash("signal: segmentation fault")

    node = FakeNode(code={"crash": FakeCode(handler)})

    async def main() -> None:
        pool = make_pool(node)
        inst = await pool.acquire(spec("crash"))
        out = await invoke(inst)
        assert out.error_type == "Runtime.ExitError" and not inst.alive
        await pool.release(inst)
        assert (await pool.acquire(spec("crash"))) is not inst

    run(main)


def test_an_init_failure_leaves_no_capacity_taken() -> None:
    doc = {"errorType": "Runtime.ImportModuleError", "errorMessage": "Unable to import module 'app'"}
    node = FakeNode(code={"broken": FakeCode(init_error=doc)})

    async def main() -> None:
        pool = make_pool(node, account_concurrency=1)
        for _ in range(2):  # the second try is not throttled by a placeholder the first one left behind
            with pytest.raises(InitFailed) as e:
                await pool.acquire(spec("broken"), wait_s=0)
            assert e.value.document == doc
        assert pool.concurrency() == 0 and node.starts == []
        assert node.init_failures == [("broken", "on-demand")] * 2

    run(main)


def test_a_dead_zygote_is_reloaded_and_its_idle_instances_forgotten() -> None:
    node = FakeNode()

    async def main() -> None:
        pool = make_pool(node)
        inst = await pool.acquire(spec())
        await pool.release(inst)
        node.kill_function(pool.loaded[spec().key])  # type: ignore[arg-type]
        again = await pool.acquire(spec())
        assert again is not inst and again.alive
        assert node.loads == [spec().key, spec().key]
        assert pool.warm() == 0 and pool.concurrency() == 1

    run(main)


def test_memory_pressure_evicts_the_least_recently_used_idle_instance() -> None:
    clock = FakeClock()
    node = FakeNode(clock)

    async def main() -> None:
        # room for two 128 MB instances (estimated at their size: nothing measured below it)
        pool = make_pool(node, memory_budget_mb=256, memory_estimate_min_mb=128)
        a = await pool.acquire(spec("a"))
        await pool.release(a)
        clock.advance(1)
        b = await pool.acquire(spec("b"))
        await pool.release(b)
        c = await pool.acquire(spec("c"))
        assert node.stops == [a.id]  # a was idle longest
        assert {i.function for i in node.live()} == {"b", "c"} and c.alive

    run(main)


def test_idle_instances_and_zygotes_are_reaped_after_their_keep_alive() -> None:
    clock = FakeClock()
    node = FakeNode(clock)

    async def main() -> None:
        pool = make_pool(node, keep_alive_s=10, zygote_keep_alive_s=30)
        inst = await pool.acquire(spec())
        await pool.release(inst)
        clock.advance(9.5)
        assert await pool.reap_once() == [] and inst.alive
        clock.advance(1)
        assert await pool.reap_once() == [inst.id]
        assert node.stops == [inst.id] and not inst.alive and node.unloads == []
        clock.advance(30)
        await pool.reap_once()
        assert node.unloads == [spec().key] and pool.loaded == {}
        # the next request is a cold start on a new zygote
        await pool.acquire(spec())
        assert node.loads == [spec().key, spec().key] and pool.cold_starts == 2

    run(main)


def test_a_busy_instance_is_never_reaped() -> None:
    clock = FakeClock()
    node = FakeNode(clock)

    async def main() -> None:
        pool = make_pool(node, keep_alive_s=1, zygote_keep_alive_s=1)
        inst = await pool.acquire(spec())
        clock.advance(100)
        assert await pool.reap_once() == []
        assert inst.alive and node.stops == [] and node.unloads == []

    run(main)


def test_provisioned_instances_are_started_ahead_and_their_first_call_is_warm() -> None:
    node = FakeNode()

    async def main() -> None:
        pool = make_pool(node)
        pool.set_provisioned(spec(), 2)
        await pool.provision_once()
        assert [i.init_type for i in node.starts] == ["provisioned-concurrency"] * 2
        assert pool.provisioned_ready("f", "$LATEST") == 2 and pool.warm("f") == 2
        inst = await pool.acquire(spec())
        assert inst in node.starts and len(node.starts) == 2
        out = await invoke(inst)
        assert not out.cold and out.init_ms is None
        pool.set_provisioned(spec(), 0)
        await pool.release(inst)
        await pool.provision_once()
        assert pool.provisioned_ready("f", "$LATEST") == 0

    run(main)


def test_drop_stops_idle_instances_and_unloads_the_function() -> None:
    node = FakeNode()

    async def main() -> None:
        pool = make_pool(node)
        idle = await pool.acquire(spec())
        busy = await pool.acquire(spec())
        await pool.release(idle)
        await pool.drop("f")
        assert node.stops == [idle.id] and busy.alive  # a running invocation finishes
        assert pool.loaded == {}

    run(main)
