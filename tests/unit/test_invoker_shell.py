"""The invoker and the async delivery (the shells around the pool and the retry policy) on the in-process fake node,
a real metadata store in a temporary file and a fake clock: what a caller gets back and what is recorded for a
success, a function error, a timeout, a throttle and an init failure; async events retried with Lambda's policy,
throttled events waiting without spending an attempt, and exhausted ones sent to their OnFailure destination.
No process is forked; the async tests wait (bounded) for the dispatcher's worker-thread steps, never a fixed time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from squall.core.clock import FakeClock
from squall.core.errors import TooManyRequests
from squall.functions.async_delivery import AsyncDispatcher
from squall.functions.invoker import Invoker
from squall.functions.pool import InstancePool, PoolConfig
from squall.functions.store.invocations import RecordWriter
from squall.functions.store.metadata import SqliteMetadataStore
from squall.functions.store.records import InvocationRecord, NewEvent, QueuedEvent
from squall.sandbox.fake import Call, FakeCode, FakeNode, Reply
from squall.sandbox.node.node import Node

T = TypeVar("T")
ARN = "arn:aws:lambda:us-east-1:000000000000:function"


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(main())


@dataclass
class Shell:
    clock: FakeClock
    node: FakeNode
    store: SqliteMetadataStore
    pool: InstancePool
    records: RecordWriter
    invoker: Invoker

    def deploy(self, name: str, code: FakeCode | None = None, timeout_s: int = 3) -> None:
        config = {
            "FunctionName": name, "FunctionArn": f"{ARN}:{name}", "Runtime": "python3.11", "Handler": "app.handler",
            "CodeSize": 1, "CodeSha256": "x", "Timeout": timeout_s, "MemorySize": 128, "State": "Active",
        }  # fmt: skip
        self.store.create_function(name, config, f"/code/{name}", {})
        if code is not None:
            self.node.code[name] = code

    def record(self, request_id: str) -> InvocationRecord:
        self.records.flush()
        rec = self.store.get_invocation(request_id)
        assert rec is not None, f"no record of {request_id}"
        return rec


@pytest.fixture
def shell(tmp_path: Path) -> Any:
    clock = FakeClock()
    node = FakeNode(clock)
    store = SqliteMetadataStore(tmp_path / "metadata.db", clock=clock)
    pool = InstancePool(
        cast(Node, node), PoolConfig(keep_alive_policy="fixed", memory_budget_mb=4096), clock=clock.monotonic
    )
    records = RecordWriter(store)
    yield Shell(clock, node, store, pool, records, Invoker(store, pool, records))
    store.close()


# -------------------------------------------------------------------------------------------------- invoker


def test_sync_invoke_returns_the_payload_and_records_cold_then_warm(shell: Shell) -> None:
    shell.deploy("f")

    async def main() -> None:
        first = await shell.invoker.invoke("f", None, b'{"n": 1}', request_id="r1")
        second = await shell.invoker.invoke("f", None, b'{"n": 2}', request_id="r2")
        assert (first.status, first.function_error, first.executed_version) == (200, None, "$LATEST")
        assert json.loads(first.payload)["event"] == {"n": 1}
        assert json.loads(second.payload)["instance"] == json.loads(first.payload)["instance"]  # warm reuse
        assert "Init Duration" in first.logs and "Init Duration" not in second.logs

    run(main)
    cold, warm = shell.record("r1"), shell.record("r2")
    assert (cold.status, cold.cold, warm.status, warm.cold) == ("ok", True, "ok", False)
    assert cold.init_ms == pytest.approx(50.0) and warm.init_ms is None
    assert cold.billed_ms == 1 and cold.memory_mb == 128 and cold.max_memory_mb == 20


def test_a_function_error_is_200_unhandled_and_recorded_as_an_error(shell: Shell) -> None:
    doc = {"errorType": "ValueError", "errorMessage": "boom"}
    shell.deploy("bad", FakeCode(lambda call: Reply(json.dumps(doc).encode(), error_type="ValueError")))

    async def main() -> None:
        got = await shell.invoker.invoke("bad", None, b"{}", request_id="e1")
        assert (got.status, got.function_error) == (200, "Unhandled")
        assert json.loads(got.payload) == doc

    run(main)
    rec = shell.record("e1")
    assert (rec.status, rec.error_type) == ("error", "ValueError")


def test_a_timeout_is_recorded_as_a_timeout_and_billed_the_timeout(shell: Shell) -> None:
    shell.deploy("slow", FakeCode(lambda call: Reply(duration_ms=60_000)), timeout_s=2)

    async def main() -> None:
        got = await shell.invoker.invoke("slow", None, b"{}", request_id="t1")
        assert got.function_error == "Unhandled"
        assert json.loads(got.payload)["errorType"] == "Sandbox.Timedout"

    run(main)
    rec = shell.record("t1")
    assert (rec.status, rec.error_type, rec.billed_ms) == ("timeout", "Sandbox.Timedout", 2000)


def test_a_throttled_invoke_raises_429_and_is_recorded(shell: Shell) -> None:
    release = asyncio.Event()

    async def hold(call: Call) -> Reply:
        await release.wait()
        return Reply(b'"done"')

    shell.deploy("held", FakeCode(hold))
    shell.pool.set_reserved("held", 1)

    async def main() -> None:
        first = asyncio.create_task(shell.invoker.invoke("held", None, b"{}", request_id="h1"))
        for _ in range(1000):  # until the first invocation holds the one instance (no timer involved)
            if shell.pool.concurrency("held") == 1 and shell.node.starts and shell.node.starts[0].busy:
                break
            await asyncio.sleep(0)
        with pytest.raises(TooManyRequests):
            await shell.invoker.run(shell.invoker.resolve("held", None), b"{}", "h2", "lambda-api", wait_s=0)
        release.set()
        assert (await first).payload == b'"done"'

    run(main)
    assert shell.record("h2").status == "throttled" and shell.record("h1").status == "ok"


def test_an_init_failure_returns_lambdas_error_document_and_is_recorded(shell: Shell) -> None:
    doc = {"errorType": "Runtime.ImportModuleError", "errorMessage": "Unable to import module 'app'"}
    shell.deploy("broken", FakeCode(init_error=doc, init_ms=30.0))

    async def main() -> None:
        got = await shell.invoker.invoke("broken", None, b"{}", request_id="i1")
        assert (got.status, got.function_error) == (200, "Unhandled")
        assert json.loads(got.payload) == {**doc, "requestId": "i1"}
        assert "START RequestId: i1" in got.logs and "REPORT RequestId: i1" in got.logs

    run(main)
    rec = shell.record("i1")
    assert (rec.status, rec.error_type, rec.cold) == ("error", "Runtime.ImportModuleError", True)
    assert rec.init_ms == pytest.approx(30.0)


# --------------------------------------------------------------------------------------------- async delivery


@asynccontextmanager
async def dispatching(shell: Shell, **kw: Any) -> AsyncIterator[AsyncDispatcher]:
    kw.setdefault("poll_interval_s", 0.005)  # how soon it looks again after the test moved the fake clock
    d = AsyncDispatcher(shell.invoker, clock=shell.clock.now, **kw)
    task = asyncio.create_task(d.run_forever())
    try:
        yield d
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await d.drain()


async def enqueue(d: AsyncDispatcher, function: str, event_id: str, payload: bytes = b"{}", **kw: Any) -> None:
    """One event through the dispatcher's own entry (as every async source), with an id the test can look up."""
    new: NewEvent = {"function": function, "payload": payload, "request_id": kw.get("request_id", event_id),
                     "id": event_id}  # fmt: skip
    await asyncio.to_thread(d.enqueue_threadsafe, [new])


def event(shell: Shell, event_id: str) -> QueuedEvent:
    ev = shell.store.get_event(event_id)
    assert ev is not None, f"event {event_id} is not queued"
    return ev


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Bounded wait for the dispatcher's steps (some run in worker threads) to make ``predicate`` hold."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        await asyncio.sleep(0.002)


def test_a_failing_event_is_retried_with_backoff_until_it_succeeds(shell: Shell) -> None:
    calls: list[int] = []

    def flaky(call: Call) -> Reply:
        calls.append(len(calls) + 1)
        if len(calls) < 3:
            return Reply(b'{"errorType": "E", "errorMessage": "not yet"}', error_type="E")
        return Reply(b'"ok"')

    shell.deploy("flaky", FakeCode(flaky))

    async def main() -> None:
        async with dispatching(shell, retry_base_delay_s=60) as d:
            await enqueue(d, "flaky", "ev-1")
            await until(lambda: len(calls) == 1, "the first attempt")
            await until(lambda: event(shell, "ev-1").attempt == 1, "the retry scheduled")
            failed_at = shell.clock.now()
            assert event(shell, "ev-1").next_attempt_at == failed_at + 60  # Lambda's first retry after a minute
            shell.clock.advance(60)
            await until(lambda: len(calls) == 2, "the second attempt")
            await until(lambda: event(shell, "ev-1").attempt == 2, "the second retry scheduled")
            assert event(shell, "ev-1").next_attempt_at == shell.clock.now() + 120  # then twice that
            shell.clock.advance(120)
            await until(lambda: d.delivered == 1, "the third attempt to succeed")
            assert calls == [1, 2, 3] and d.failed == 0
            await until(lambda: shell.store.get_event("ev-1") is None, "the event acked")

    run(main)


def test_an_async_invoke_is_accepted_then_delivered(shell: Shell) -> None:
    seen: list[str] = []

    def handler(call: Call) -> Reply:
        seen.append(call.request.request_id)
        return Reply(b"null")

    shell.deploy("later", FakeCode(handler))

    async def main() -> None:
        async with dispatching(shell) as d:
            got = await shell.invoker.invoke("later", None, b"{}", invocation_type="Event", request_id="a1")
            assert (got.status, got.payload) == (202, b"")
            await until(lambda: d.delivered == 1, "the delivery")
        assert seen == ["a1"]

    run(main)
    assert shell.record("a1").trigger == "lambda-api"


def test_an_exhausted_event_goes_to_its_on_failure_destination(shell: Shell) -> None:
    seen: list[Any] = []

    def dlq(call: Call) -> Reply:
        seen.append(call.event)
        return Reply(b"null")

    shell.deploy("fails", FakeCode(lambda call: Reply(b'{"errorType": "E", "errorMessage": "no"}', error_type="E")))
    shell.deploy("dlq", FakeCode(dlq))
    shell.store.put_event_invoke_config(
        "fails", "$LATEST",
        {"MaximumRetryAttempts": 1, "DestinationConfig": {"OnFailure": {"Destination": f"{ARN}:dlq"}}},
    )  # fmt: skip

    async def main() -> None:
        async with dispatching(shell, retry_base_delay_s=60) as d:
            await enqueue(d, "fails", "ev-x", b'{"k": "v"}', request_id="x1")
            await until(lambda: event(shell, "ev-x").attempt == 1, "the first attempt failed")
            assert d.failed == 0
            shell.clock.advance(60)
            await until(lambda: len(seen) == 1, "the invocation record at the destination")
            assert d.failed == 1

    run(main)
    (record,) = seen
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestContext"]["requestId"] == "x1"
    assert record["requestPayload"] == {"k": "v"}
    assert record["responseContext"]["functionError"] == "Unhandled"


def test_a_throttled_event_waits_without_spending_an_attempt(shell: Shell) -> None:
    calls: list[int] = []

    def handler(call: Call) -> Reply:
        calls.append(call.number)
        return Reply(b"null")

    shell.deploy("limited", FakeCode(handler))
    shell.pool.set_reserved("limited", 0)  # throttled until the reservation is lifted

    async def main() -> None:
        async with dispatching(shell, capacity_wait_s=0) as d:
            await enqueue(d, "limited", "ev-q")
            await until(lambda: event(shell, "ev-q").last_error == "throttled", "the event put back as throttled")
            assert event(shell, "ev-q").attempt == 0 and calls == [] and d.delivered == 0
            shell.pool.set_reserved("limited", None)
            shell.clock.advance(60)
            await until(lambda: d.delivered == 1, "the delivery once capacity is back")
            assert calls == [1]

    run(main)
