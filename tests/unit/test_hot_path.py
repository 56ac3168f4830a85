"""The hot path's pieces: request ids, the INVOKE header written out by hand, end-of-pass writes, the record
writer's order under concurrency, the scheduler's cheap copies."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squall.aws.http_protocol import CoalescingTransport
from squall.core.ids import random_hex, request_id
from squall.core.model import InvokeRequest
from squall.core.tick_writes import TickWriter, tick_writer
from squall.functions.store.invocations import PendingLog, RecordWriter
from squall.functions.store.records import InvocationRecord
from squall.sandbox.node.instance import _invoke_header
from squall.sandbox.protocol import FrameDecoder, Kind, encode, encode_raw
from squall.scheduler import InstanceView, SchedulerState, evolve


def test_request_ids_are_distinct_uuid4() -> None:
    seen = set()
    for _ in range(2000):
        rid = request_id()
        u = uuid.UUID(rid)
        assert str(u) == rid and u.version == 4 and u.variant == uuid.RFC_4122
        seen.add(rid)
    assert len(seen) == 2000
    assert len(random_hex(12)) == 24


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200)
@given(
    st.text(), st.text(), st.text(), st.text(), st.integers(0, 2**53),
    st.none() | st.dictionaries(st.text(), json_values, max_size=3),
    st.none() | st.dictionaries(st.text(), json_values, max_size=3),
)  # fmt: skip
def test_invoke_header_is_exactly_json_dumps(
    rid: str, arn: str, trace: str, parent: str, deadline: int, cc: dict[str, Any] | None, ident: dict[str, Any] | None
) -> None:
    req = InvokeRequest(b"{}", rid, arn, trace, cc, ident, parent)
    expected = {
        "request_id": rid, "deadline_ms": deadline, "invoked_arn": arn, "trace_id": trace, "client_context": cc,
        "identity": ident, "traceparent": parent,
    }  # fmt: skip
    raw = _invoke_header(req, deadline)
    assert raw == json.dumps(expected, separators=(",", ":")).encode()
    frame = FrameDecoder().feed(encode_raw(Kind.INVOKE, raw, b'{"a":1}'))[0]
    assert frame.header == expected and frame.body == b'{"a":1}'
    assert encode_raw(Kind.INVOKE, raw, b"x") == encode(Kind.INVOKE, expected, b"x")


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing


def test_tick_writer_writes_at_the_end_of_the_pass_in_order() -> None:
    async def main() -> tuple[list[list[bytes]], list[list[bytes]]]:
        loop = asyncio.get_running_loop()
        w = tick_writer(loop)
        assert tick_writer(loop) is w
        a, b = FakeTransport(), FakeTransport()
        for i in range(5):
            w.write(a, b"a%d" % i)
            w.write(b, b"b%d" % i)
        before = [list(a.writes), list(b.writes)]
        await asyncio.sleep(0)  # one pass
        await asyncio.sleep(0)
        return before, [a.writes, b.writes]

    before, after = asyncio.run(main())
    assert before == [[], []]  # nothing left during the pass that queued it
    assert after == [[b"a%d" % i for i in range(5)], [b"b%d" % i for i in range(5)]]


def test_tick_writer_drops_writes_to_closing_transports_and_runs_flushes_after_writes() -> None:
    order: list[str] = []

    class Loop:
        def call_soon(self, cb: Any) -> None:
            order.append("scheduled")

    w = TickWriter(Loop())  # type: ignore[arg-type]
    t, gone = FakeTransport(), FakeTransport()
    gone.closing = True
    w.later(lambda: order.append("flush"))
    w.write(t, b"x")
    w.write(gone, b"y")
    w.later(lambda: order.append(f"flush after {t.writes}"))
    assert order == ["scheduled"]  # one callback per pass, however many writes
    w.run()
    assert t.writes == [b"x"] and gone.writes == []
    assert order == ["scheduled", "flush", "flush after [b'x']"]


def test_coalescing_transports_of_one_pass_flush_together() -> None:
    async def main() -> list[list[bytes]]:
        loop = asyncio.get_running_loop()
        raws = [FakeTransport() for _ in range(3)]
        wrapped = [CoalescingTransport(r, loop) for r in raws]  # type: ignore[arg-type]
        for n, t in enumerate(wrapped):
            t.write(b"head%d " % n)
            t.write(b"body%d" % n)
        assert all(not r.writes for r in raws)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return [r.writes for r in raws]

    assert asyncio.run(main()) == [[b"head%d body%d" % (n, n)] for n in range(3)]


class FlakySink:
    """Keeps what it is given; every third batch fails (the writer must put it back, in front, in order)."""

    def __init__(self) -> None:
        self.records: list[InvocationRecord] = []
        self.logs: list[PendingLog] = []
        self.calls = 0
        self.lock = threading.Lock()

    def write_batch(self, records: Any, logs: Any) -> None:
        with self.lock:
            self.calls += 1
            if self.calls % 3 == 0:
                raise OSError("disk hiccup")
            self.records.extend(records)
            self.logs.extend(logs)


def _rec(thread: int, n: int) -> InvocationRecord:
    return InvocationRecord(f"t{thread}-{n}", f"fn{thread}", "$LATEST", "lambda-api", float(n), 1.0, 1, None, 128, 10,
                            "ok", None)  # fmt: skip


def test_record_writer_never_reorders_or_loses_records_or_logs() -> None:
    sink = FlakySink()
    writer = RecordWriter(sink)
    threads, per_thread = 4, 3000
    done = threading.Event()

    def produce(t: int) -> None:
        for n in range(per_thread):
            rec = _rec(t, n)
            writer.add_invocation(rec, None if n % 7 == 0 else (rec.request_id, rec.function, rec.start, f"log {n}"))

    def flusher() -> None:
        while not done.is_set():
            try:
                writer.flush()
            except OSError:
                pass

    f = threading.Thread(target=flusher)
    f.start()
    producers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    done.set()
    f.join()
    while writer.pending():
        try:
            writer.flush()
        except OSError:
            pass
    assert writer.dropped == 0
    for t in range(threads):
        mine = [r.request_id for r in sink.records if r.function == f"fn{t}"]
        assert mine == [f"t{t}-{n}" for n in range(per_thread)]  # every record, once, in the order added
        logs = [entry[0] for entry in sink.logs if entry[1] == f"fn{t}"]
        assert logs == [f"t{t}-{n}" for n in range(per_thread) if n % 7]
    assert len(sink.records) == threads * per_thread


def _view(i: int, state: str = "idle") -> InstanceView:
    return InstanceView(f"i{i}", "fn", "$LATEST", state, 128, float(i))  # type: ignore[arg-type]


def test_scheduler_copies_match_dataclasses_replace() -> None:
    state = SchedulerState(instances=tuple(_view(i) for i in range(5)), reserved={"x": 3}, memory_budget_mb=999)
    busy = evolve(state.instances[2], state="busy", last_used=9.0)
    assert busy == dataclasses.replace(state.instances[2], state="busy", last_used=9.0)
    after = state.upsert(busy)
    # the replaced instance moves last, the others keep their order; the limits are kept
    assert [i.id for i in after.instances] == ["i0", "i1", "i3", "i4", "i2"]
    assert after.get("i2") == busy and after.reserved == {"x": 3} and after.memory_budget_mb == 999
    assert state.get("i2") == _view(2)  # the original is untouched
    added = after.upsert(_view(7))
    assert [i.id for i in added.instances][-1] == "i7" and len(added.instances) == 6
    assert [i.id for i in added.without(["i0", "i7"]).instances] == ["i1", "i3", "i4", "i2"]


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_decoder_keeps_a_partial_frame_after_whole_ones(chunk: int) -> None:
    frames = [encode(Kind.RESULT, {"request_id": str(n), "ok": True}, b"x" * n) for n in range(20)]
    data = b"".join(frames)
    d = FrameDecoder()
    got = []
    for i in range(0, len(data), chunk):
        got += d.feed(data[i : i + chunk])
    assert [f.header["request_id"] for f in got] == [str(n) for n in range(20)]
    assert [f.body for f in got] == [b"x" * n for n in range(20)] and d.pending == 0


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["upsert", "without", "count"]),
            st.integers(0, 6),
            st.sampled_from(["fa", "fb", "fr"]),
            st.sampled_from(["starting", "idle", "busy", "stopping"]),
        ),
        max_size=40,
    )
)
def test_carried_running_count_equals_a_recount(ops: list[tuple[str, int, str, str]]) -> None:
    """``unreserved_in_use`` is carried from state to state by ``upsert``: after any sequence of changes it must
    equal a count from scratch (``fr`` has a reservation and never counts)."""
    from squall.scheduler import unreserved_in_use

    state = SchedulerState(reserved={"fr": 5})
    for op, i, fn, st_ in ops:
        if op == "upsert":
            state = state.upsert(InstanceView(f"i{i}", fn, "$LATEST", st_, 128, 0.0))  # type: ignore[arg-type]
        elif op == "without":
            state = state.without([f"i{i}"])
        fresh = SchedulerState(instances=state.instances, reserved=state.reserved)
        expected = sum(1 for v in state.instances if v.function != "fr" and v.state in ("starting", "busy"))
        assert unreserved_in_use(fresh) == expected
        if op == "count":
            assert unreserved_in_use(state) == expected
        assert state.get(f"i{i}") == next((v for v in state.instances if v.id == f"i{i}"), None)
