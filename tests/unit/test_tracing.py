"""Trace context parsing and formatting, sampling, the span tree of an invocation, the trace store, OTLP spans."""

from __future__ import annotations

import time
from typing import Any

import pytest

from squall.core.model import InvokeOutcome
from squall.telemetry.otlp import OtlpExport, otlp_traces_url, to_readable
from squall.telemetry.trace_store import TraceStore
from squall.telemetry.tracing import (
    KIND_CONSUMER,
    KIND_SERVER,
    Finished,
    InvocationTrace,
    Span,
    Tracer,
    expand,
    format_amzn_trace_id,
    format_traceparent,
    parse_amzn_trace_id,
    parse_traceparent,
)

TID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SID = 0x00F067AA0BA902B7


def outcome(cold: bool = False, init_ms: float | None = None, error: str | None = None) -> InvokeOutcome:
    return InvokeOutcome("rid", b"{}", error, 1.5, 2, init_ms, 10, 128, "", cold, "i-1")


def collect() -> tuple[Tracer, list[Finished]]:
    got: list[Finished] = []
    return Tracer(1.0, [got.append]), got


# ------------------------------------------------------------------------------------------------ propagation


def test_traceparent_round_trip_and_rejects() -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent(tp) == (TID, SID, True)
    assert parse_traceparent(tp.upper()) == (TID, SID, True)
    assert parse_traceparent(tp[:-2] + "00") == (TID, SID, False)
    assert format_traceparent(TID, SID, True) == tp
    for bad in (
        "",
        "garbage",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # all-zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has exactly 4 fields
        "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
    ):
        assert parse_traceparent(bad) is None, bad
    # a future version may append fields
    assert parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz") == (TID, SID, True)


def test_amzn_trace_id_maps_to_the_same_w3c_trace_id() -> None:
    amzn = format_amzn_trace_id(TID, SID, True)
    assert amzn == "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
    assert parse_amzn_trace_id(amzn) == (TID, SID, True)
    assert parse_amzn_trace_id("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736") == (TID, None, None)
    assert parse_amzn_trace_id("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Sampled=0;Lineage=a:1") == (TID, None, False)
    assert parse_amzn_trace_id("Self=1-abc;Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Sampled=?") == (TID, None, None)
    for bad in ("", "Parent=00f067aa0ba902b7", "Root=2-4bf92f35-77b34da6a3ce929d0e0e4736", "Root=1-xyz-abc"):
        assert parse_amzn_trace_id(bad) is None, bad


def test_entry_span_continues_either_header_traceparent_first() -> None:
    tracer, _ = collect()
    tp = format_traceparent(TID, SID, True)
    span = tracer.entry_span("Invoke f", tp, "", KIND_SERVER, {})
    assert (span.trace_id, span.parent_id, span.sampled, span.remote_parent) == (TID, SID, True, True)
    other = 0x11111111222222223333333344444444
    both = tracer.entry_span("Invoke f", tp, format_amzn_trace_id(other, 5, True), KIND_SERVER, {})
    assert both.trace_id == TID
    amzn = tracer.entry_span("Invoke f", "not-valid", format_amzn_trace_id(other, 5, True), KIND_SERVER, {})
    assert (amzn.trace_id, amzn.parent_id) == (other, 5)
    fresh = tracer.entry_span("Invoke f", "", "", KIND_SERVER, {})
    assert fresh.parent_id is None and not fresh.remote_parent
    # new trace ids start with the epoch seconds, as X-Ray wants
    assert abs((fresh.trace_id >> 96) - time.time()) < 5
    assert parse_amzn_trace_id(fresh.amzn_trace_id()) == (fresh.trace_id, fresh.span_id, True)


def test_sampling_ratio_and_callers_decision() -> None:
    got: list[Finished] = []
    never = Tracer(0.0, [got.append], reservoir=0)
    span = never.entry_span("Invoke f", "", "", KIND_SERVER, {})
    assert not span.sampled and span.traceparent().endswith("-00")
    never.end(span)
    assert got == []
    # the caller's sampled flag wins over the local ratio
    sampled = never.entry_span("Invoke f", format_traceparent(TID, SID, True), "", KIND_SERVER, {})
    assert sampled.sampled
    never.end(sampled)
    assert got == [sampled]
    half = Tracer(0.5)
    decisions = [half.sampled(half.new_trace_id()) for _ in range(4000)]
    assert 1600 < sum(decisions) < 2400
    # the decision is a function of the trace id (every node of a trace agrees)
    assert half.sampled((1 << 64) - 1) is False and half.sampled(1) is True


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


LOW = 1  # a trace id the ratio samples (its low 64 bits are below any bound > 0)
HIGH = (1 << 64) - 1  # one the ratio never samples (below 1)


def test_reservoir_samples_the_first_n_per_second_per_function_then_the_ratio() -> None:
    clock = FakeClock()
    tracer = Tracer(0.0, reservoir=2, clock=clock)
    # the first 2 of this second for "f" are sampled whatever their ids; then only the ratio (0 here) decides
    assert [tracer.decide("f", HIGH) for _ in range(4)] == [True, True, False, False]
    # another function has its own reservoir
    assert [tracer.decide("g", HIGH) for _ in range(3)] == [True, True, False]
    # still the same second (a fraction later): spent
    clock.now += 0.7
    assert tracer.decide("f", HIGH) is False
    # a new second refills it
    clock.now += 0.1
    assert [tracer.decide("f", HIGH) for _ in range(3)] == [True, True, False]
    # a clock that steps back is another second too (refills, never starves)
    clock.now -= 10
    assert tracer.decide("f", HIGH) is True


def test_ratio_applies_after_the_reservoir_and_one_means_everything() -> None:
    clock = FakeClock()
    tracer = Tracer(0.05, reservoir=1, clock=clock)
    assert tracer.decide("f", HIGH) is True  # the reservoir
    assert tracer.decide("f", HIGH) is False  # past it: the ratio on the id
    assert tracer.decide("f", LOW) is True
    rest = [tracer.decide("f", tracer.new_trace_id()) for _ in range(4000)]
    assert 100 < sum(rest) < 300  # ~5%
    everything = Tracer(1.0, reservoir=0, clock=clock)
    assert all(everything.decide("f", HIGH) for _ in range(100))
    nothing = Tracer(0.0, reservoir=0, clock=clock)
    assert not any(nothing.decide("f", LOW) for _ in range(100))


def test_new_traces_use_the_rule_and_incoming_decisions_are_followed() -> None:
    clock = FakeClock()
    got: list[Finished] = []
    tracer = Tracer(0.0, [got.append], reservoir=1, clock=clock)
    first = tracer.entry_span("Invoke f", "", "", KIND_SERVER)
    second = tracer.entry_span("Invoke f", "", "", KIND_SERVER)
    assert first.sampled and not second.sampled
    assert first.trace_id >> 96 == int(clock.now)  # the id's epoch is the same clock's second
    # the key defaults to the span name; an explicit key shares the function's reservoir
    other = tracer.entry_span("Invoke g", "", "", KIND_SERVER, None, "g")
    assert other.sampled
    assert not tracer.invocation("g", "rid", "lambda-api", None).sampled
    # a caller's decision wins both ways, and does not spend the reservoir
    clock.now += 1
    no = tracer.entry_span("Invoke f", format_traceparent(TID, SID, False), "", KIND_SERVER)
    assert not no.sampled and no.traceparent().endswith("-00")
    no_amzn = tracer.entry_span("Invoke f", "", format_amzn_trace_id(TID, SID, False), KIND_SERVER)
    assert not no_amzn.sampled
    yes = Tracer(0.0, reservoir=0, clock=clock).entry_span(
        "Invoke f", "", format_amzn_trace_id(TID, SID, True), KIND_SERVER
    )
    assert yes.sampled
    assert tracer.entry_span("Invoke f", "", "", KIND_SERVER).sampled  # the reservoir of this second is untouched
    # an X-Amzn-Trace-Id without Sampled= is undecided: the rule decides it (the reservoir is spent now)
    undecided = f"Root=1-{TID >> 96:08x}-{TID & ((1 << 96) - 1):024x}"
    assert not tracer.entry_span("Invoke f", "", undecided, KIND_SERVER).sampled


def test_the_reservoir_forgets_keys_past_its_bound() -> None:
    clock = FakeClock()
    tracer = Tracer(0.0, reservoir=1, clock=clock)
    for i in range(5000):  # e.g. Invoke requests naming functions that do not exist
        tracer.decide(f"fn-{i}", HIGH)
    assert len(tracer._slots) <= 4096


# ------------------------------------------------------------------------------------------------ invocation tree


def tree(spans: list[Span]) -> dict[str, Span]:
    by_name = {s.name: s for s in spans}
    assert len(by_name) == len(spans)
    return by_name


def test_lazy_spans_are_the_same_on_every_read() -> None:
    tracer, got = collect()
    trace = tracer.invocation("f", "rid", "lambda-api", None)
    trace.acquired()
    trace.finish("$LATEST", outcome(cold=True, init_ms=0.5), "ok", None)
    [item, _entry] = got
    assert isinstance(item, InvocationTrace)
    first = [(s.name, s.span_id, s.parent_id, s.start_ns, s.end_ns) for s in item.spans()]
    second = [(s.name, s.span_id, s.parent_id, s.start_ns, s.end_ns) for s in item.spans()]
    assert first == second
    assert len({s[1] for s in first}) == len(first) == 5


def test_cold_invocation_spans_form_the_documented_tree() -> None:
    tracer, got = collect()
    edge = tracer.entry_span("Invoke f", format_traceparent(TID, SID, True), "", KIND_SERVER, {})
    trace = tracer.invocation("f", "rid-1", "lambda-api", edge)
    time.sleep(0.002)
    trace.acquired()
    amzn, tp = trace.instance_context()
    trace.finish("$LATEST", outcome(cold=True, init_ms=1.0), "ok", None)
    tracer.end(edge)
    t = tree(expand(got))
    assert set(t) == {"invoker", "acquire instance", "cold start", "init", "instance", "Invoke f"}
    assert t["invoker"].parent_id == edge.span_id
    assert t["acquire instance"].parent_id == t["invoker"].span_id
    assert t["cold start"].parent_id == t["acquire instance"].span_id
    assert t["init"].parent_id == t["cold start"].span_id
    assert t["instance"].parent_id == t["invoker"].span_id
    assert all(s.trace_id == TID for s in expand(got))
    # what the function sees is the instance span's context, in both formats
    assert tp == format_traceparent(TID, t["instance"].span_id, True)
    assert amzn == format_amzn_trace_id(TID, t["instance"].span_id, True)
    init, acquire = t["init"], t["acquire instance"]
    assert init.end_ns == acquire.end_ns == t["instance"].start_ns
    assert 0 < init.end_ns - init.start_ns <= 1_000_000 + 1
    assert t["instance"].attributes["faas.invocation_id"] == "rid-1"
    assert t["instance"].attributes["faas.coldstart"] is True
    assert not any(s.error for s in expand(got))


def test_warm_error_and_throttle_and_own_entry_span() -> None:
    tracer, got = collect()
    trace = tracer.invocation("f", "rid-2", "sqs", None, "", "")
    trace.acquired()
    trace.finish("3", outcome(error="Unhandled"), "error", "Unhandled")
    t = tree(expand(got))
    assert set(t) == {"Invoke f", "invoker", "acquire instance", "instance"}
    entry = t["Invoke f"]
    assert entry.kind == KIND_CONSUMER and entry.parent_id is None
    assert entry.attributes["faas.trigger"] == "pubsub" and entry.attributes["faas.version"] == "3"
    assert entry.error and t["instance"].error and t["invoker"].error and not t["acquire instance"].error

    got.clear()
    sync = tracer.invocation("f", "rid-3", "function-url", None, format_traceparent(TID, SID, True), "", sync=True)
    sync.finish("$LATEST", None, "throttled", "TooManyRequestsException")
    t = tree(expand(got))
    assert set(t) == {"Invoke f", "invoker", "acquire instance"}
    assert t["Invoke f"].kind == KIND_SERVER and t["Invoke f"].parent_id == SID and t["Invoke f"].remote_parent
    assert t["acquire instance"].error
    assert t["acquire instance"].attributes["error.type"] == "TooManyRequestsException"

    got.clear()
    failed_init = tracer.invocation("f", "rid-4", "lambda-api", None)
    failed_init.finish("$LATEST", None, "error", "Runtime.ImportModuleError", init_ms=3.0, cold=True)
    t = tree(expand(got))
    assert set(t) == {"Invoke f", "invoker", "acquire instance", "cold start", "init"}
    assert t["init"].error


def test_unsampled_invocations_emit_nothing_but_propagate() -> None:
    got: list[Finished] = []
    tracer = Tracer(0.0, [got.append], reservoir=0)
    trace = tracer.invocation("f", "rid", "lambda-api", None)
    assert not trace.sampled and trace.parent.attributes == {} and trace.parent.start_ns == 0
    trace.acquired()
    amzn, tp = trace.instance_context()
    trace.finish("$LATEST", outcome(), "ok", None)
    assert got == [] and trace.spans() == []
    # the function still gets the context, in both formats, with the same ids (as Lambda does when not sampled)
    assert tp == format_traceparent(trace.trace_id, trace.instance_span_id, False) and tp.endswith("-00")
    assert amzn == format_amzn_trace_id(trace.trace_id, trace.instance_span_id, False) and amzn.endswith("Sampled=0")
    assert parse_traceparent(tp) == (trace.trace_id, trace.instance_span_id, False)
    # an edge span of an unsampled request: ended, it reaches no sink either
    edge = tracer.entry_span("Invoke f", "", "", KIND_SERVER)
    inner = tracer.invocation("f", "rid-2", "lambda-api", edge)
    inner.finish("$LATEST", outcome(), "ok", None)
    tracer.end(edge, error=True)
    assert got == [] and edge.error and edge.traceparent().endswith("-00")


# ------------------------------------------------------------------------------------------------ store


def test_trace_store_shapes_lookups_and_bounds() -> None:
    store = TraceStore(max_traces=3, max_spans_per_trace=100)
    tracer = Tracer(1.0, [store.add])
    ids = []
    for i in range(4):
        trace = tracer.invocation(f"f{i % 2}", f"rid-{i}", "lambda-api", None, sync=True)
        trace.acquired()
        trace.finish("$LATEST", outcome(cold=i == 0, init_ms=1.0), "ok", None)
        ids.append(trace.parent.trace_id_hex)
        time.sleep(0.001)
    assert len(store) == 3
    assert store.by_request("rid-0") == [] and store.get(ids[0]) is None  # the oldest trace was dropped
    [t] = store.by_request("rid-3")
    assert t["trace_id"] == ids[3] and t["root"] == "Invoke f1"
    assert set(t) == {"trace_id", "root", "start", "duration_ms", "spans"}
    root = next(s for s in t["spans"] if s["name"] == "Invoke f1")
    assert root["parent_span_id"] is None and root["kind"] == "server" and root["status"] == "ok"
    assert root["attributes"]["faas.invocation_id"] == "rid-3"
    assert {s["parent_span_id"] for s in t["spans"]} - {None} <= {s["span_id"] for s in t["spans"]}
    assert t["spans"][0]["name"] == "Invoke f1"  # ordered by start, parents first
    assert abs(t["duration_ms"] - root["duration_ms"]) < 1e-6
    assert [x["trace_id"] for x in store.recent()] == [ids[3], ids[2], ids[1]]
    assert [x["trace_id"] for x in store.recent("f1", 10)] == [ids[3], ids[1]]
    assert [x["trace_id"] for x in store.recent(None, 1)] == [ids[3]]
    assert store.get(ids[2]) is not None and store.get(ids[2].upper().lower()) is not None
    for bad in ("xyz", ids[2][:-1], "0" * 32):
        assert store.get(bad) is None


def test_trace_store_knows_since_when_a_missing_trace_means_not_sampled() -> None:
    before = time.time_ns()
    store = TraceStore(max_traces=2)
    assert before <= store.kept_since_ns <= time.time_ns()  # nothing dropped: everything since it was made
    created = store.kept_since_ns
    tracer = Tracer(1.0, [store.add])
    traces = []
    for i in range(3):
        trace = tracer.invocation("f", f"rid-{i}", "lambda-api", None, sync=True)
        trace.acquired()
        trace.finish("$LATEST", outcome(), "ok", None)
        traces.append(trace)
        time.sleep(0.001)
        if i < 2:
            assert store.kept_since_ns == created
    # the first trace was dropped for room: what started after its last entry is still kept
    assert store.by_request("rid-0") == []
    assert store.kept_since_ns == max(traces[0].t_start, traces[0].parent.start_ns)
    assert all(store.by_request(t.request_id) for t in traces[1:])
    assert all(t.t_start > store.kept_since_ns for t in traces[1:])


def test_spans_with_a_remote_parent_are_roots_and_traces_are_capped() -> None:
    store = TraceStore(max_traces=10, max_spans_per_trace=5)
    tracer = Tracer(1.0, [store.add])
    edge = tracer.entry_span("Invoke f", format_traceparent(TID, SID, True), "", KIND_SERVER, {"faas.name": "f"})
    tracer.end(edge)
    t = store.get(f"{TID:032x}")
    assert t is not None
    [span] = t["spans"]
    assert span["parent_span_id"] is None
    assert span["attributes"]["squall.remote_parent_span_id"] == f"{SID:016x}"
    for _ in range(10):
        tracer.end(tracer.child(edge, "more"))
    t = store.get(f"{TID:032x}")
    assert t is not None and len(t["spans"]) == 5


# ------------------------------------------------------------------------------------------------ OTLP


def test_spans_become_sdk_readable_spans() -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanKind, StatusCode

    tracer, got = collect()
    trace = tracer.invocation("f", "rid", "lambda-api", None, format_traceparent(TID, SID, True), "", sync=True)
    trace.acquired()
    trace.finish("$LATEST", outcome(error="Unhandled"), "error", "Unhandled")
    readable = {s.name: s for s in to_readable(expand(got), Resource.create({}), InstrumentationScope("squall"))}
    entry, instance = readable["Invoke f"], readable["instance"]
    assert entry.context is not None and entry.parent is not None
    assert entry.context.trace_id == TID and entry.parent.span_id == SID and entry.parent.is_remote
    assert entry.kind == SpanKind.SERVER and entry.status.status_code == StatusCode.ERROR
    assert instance.parent is not None and instance.parent.span_id == readable["invoker"].context.span_id  # type: ignore[union-attr]
    assert instance.attributes is not None and instance.attributes["faas.invocation_id"] == "rid"
    assert instance.start_time is not None and instance.end_time is not None
    assert instance.start_time <= instance.end_time


class FakeExporter:
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.shut = False

    def export(self, spans: list[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.batches.append(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True


def test_otlp_export_batches_off_the_hot_path_and_flushes_on_close() -> None:
    fake = FakeExporter()
    export = OtlpExport("http://127.0.0.1:1", interval_s=60, batch_size=4, exporter=fake)
    tracer = Tracer(1.0, [export])
    for i in range(3):
        trace = tracer.invocation("f", f"rid-{i}", "lambda-api", None)
        trace.acquired()
        trace.finish("$LATEST", outcome(), "ok", None)
    export.close()
    assert fake.shut
    names = [s.name for batch in fake.batches for s in batch]
    assert len(names) == 12 and names.count("instance") == 3
    assert len(fake.batches) == 2  # 6 items (3 invocations + their entry spans) in batches of 4, expanded there
    assert export.exported == 12 and export.failed == 0


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
        ("http://collector/v1/traces", "http://collector/v1/traces"),
    ],
)
def test_otlp_traces_url(endpoint: str, url: str) -> None:
    assert otlp_traces_url(endpoint) == url
