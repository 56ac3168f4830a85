"""Spans of invocations, cheap enough for the hot path; OpenTelemetry data off it.

On the hot path a span is a small slotted record (ids as ints, wall-clock nanoseconds, a dict of attributes). Ended,
sampled spans go to the sinks: the local :class:`~squall.observability.trace_store.TraceStore` (a dict insert) and,
when an OTLP endpoint is configured, :class:`~squall.observability.otlp.OtlpExport`, which turns them into
OpenTelemetry SDK ``ReadableSpan`` objects in a background thread and exports them with the OTLP/HTTP exporter.

Propagation: W3C ``traceparent`` (``00-<32 hex trace id>-<16 hex span id>-<flags>``) and AWS ``X-Amzn-Trace-Id``
(``Root=1-<first 8 hex>-<last 24 hex>;Parent=<16 hex>;Sampled=0|1``) name the same trace id both ways. New trace ids
start with the epoch seconds (as X-Ray requires), followed by 96 random bits.

The span tree of one invocation::

    Invoke <fn>            (server: the HTTP entry; consumer: async queue, SQS, S3, schedules)
      invoker
        acquire instance
          cold start       (cold only)
            init           (cold only: the function's init phase)
        instance           (the handler runs; its context is what the function sees as traceparent/_X_AMZN_TRACE_ID)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from squall.model import InvokeOutcome

__all__ = [
    "KIND_CLIENT",
    "KIND_CONSUMER",
    "KIND_INTERNAL",
    "KIND_SERVER",
    "InvocationTrace",
    "Span",
    "Tracer",
    "format_amzn_trace_id",
    "format_traceparent",
    "parse_amzn_trace_id",
    "parse_traceparent",
]

KIND_SERVER = "server"
KIND_INTERNAL = "internal"
KIND_CONSUMER = "consumer"
KIND_CLIENT = "client"

_MASK64 = (1 << 64) - 1
_HEX = frozenset("0123456789abcdef")
#: the OpenTelemetry faas.trigger value of each Squall trigger
_FAAS_TRIGGER = {"function-url": "http", "http-route": "http", "s3": "datasource", "sqs": "pubsub", "schedule": "timer"}

_time_ns = time.time_ns
_bits = random.getrandbits


class Span:
    """One finished (or running) span.  Ids are ints; times are epoch nanoseconds."""

    __slots__ = (
        "attributes",
        "end_ns",
        "error",
        "kind",
        "name",
        "parent_id",
        "remote_parent",
        "sampled",
        "span_id",
        "start_ns",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        trace_id: int,
        span_id: int,
        parent_id: int | None,
        kind: str,
        start_ns: int,
        attributes: dict[str, Any],
        sampled: bool,
        remote_parent: bool = False,
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.kind = kind
        self.start_ns = start_ns
        self.end_ns = 0
        self.attributes = attributes
        self.error = False
        self.sampled = sampled
        self.remote_parent = remote_parent

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    def traceparent(self) -> str:
        return format_traceparent(self.trace_id, self.span_id, self.sampled)

    def amzn_trace_id(self) -> str:
        return format_amzn_trace_id(self.trace_id, self.span_id, self.sampled)

    def __repr__(self) -> str:
        return f"Span({self.name!r}, {self.trace_id:032x}/{self.span_id:016x}, parent={self.parent_id})"


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def format_amzn_trace_id(trace_id: int, span_id: int, sampled: bool) -> str:
    t = f"{trace_id:032x}"
    return f"Root=1-{t[:8]}-{t[8:]};Parent={span_id:016x};Sampled={1 if sampled else 0}"


def _hex_int(value: str, length: int) -> int | None:
    if len(value) != length or not _HEX.issuperset(value):
        return None
    n = int(value, 16)
    return n or None


def parse_traceparent(value: str) -> tuple[int, int, bool] | None:
    """(trace id, parent span id, sampled) from a W3C traceparent header; None if it is not a valid one."""
    value = value.strip().lower()
    parts = value.split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or (parts[0] == "00" and len(parts) != 4):
        return None
    trace_id = _hex_int(parts[1], 32)
    span_id = _hex_int(parts[2], 16)
    if trace_id is None or span_id is None or len(parts[3]) != 2 or not _HEX.issuperset(parts[3]):
        return None
    return trace_id, span_id, bool(int(parts[3], 16) & 1)


def parse_amzn_trace_id(value: str) -> tuple[int, int | None, bool | None] | None:
    """(trace id, parent span id or None, sampled or None = not decided) from an X-Amzn-Trace-Id header."""
    root = parent = sampled = None
    for field in value.split(";"):
        key, _, val = field.strip().partition("=")
        if key == "Root":
            root = val
        elif key == "Parent":
            parent = val
        elif key == "Sampled":
            sampled = val
    if root is None:
        return None
    version, _, rest = root.partition("-")
    epoch, _, unique = rest.partition("-")
    if version != "1":
        return None
    trace_id = _hex_int((epoch + unique).lower(), 32)
    if trace_id is None:
        return None
    span_id = _hex_int(parent.lower(), 16) if parent else None
    decided = True if sampled == "1" else (False if sampled == "0" else None)
    return trace_id, span_id, decided


class Tracer:
    """Makes spans and hands the sampled, ended ones to the sinks (the local store, the OTLP export)."""

    def __init__(self, sample_ratio: float = 1.0, sinks: list[Callable[[Span], None]] | None = None) -> None:
        ratio = min(1.0, max(0.0, sample_ratio))
        self.sample_all = ratio >= 1.0
        self._bound = round(ratio * _MASK64)
        self.sinks: list[Callable[[Span], None]] = sinks or []

    # -- ids and sampling ---------------------------------------------------------------------------------------
    @staticmethod
    def new_trace_id() -> int:
        return (int(time.time()) << 96) | _bits(96) or 1

    @staticmethod
    def new_span_id() -> int:
        return _bits(64) or 1

    def sampled(self, trace_id: int) -> bool:
        """The ratio decision (OpenTelemetry's TraceIdRatioBased: the low 64 bits against the ratio)."""
        return self.sample_all or (trace_id & _MASK64) < self._bound

    def parent_from_headers(self, traceparent: str, amzn_trace_id: str) -> tuple[int, int | None, bool]:
        """(trace id, remote parent span id or None, sampled): the incoming context, or a new trace."""
        if traceparent:
            parsed = parse_traceparent(traceparent)
            if parsed is not None:
                return parsed
        if amzn_trace_id:
            amzn = parse_amzn_trace_id(amzn_trace_id)
            if amzn is not None:
                trace_id, parent, decided = amzn
                return trace_id, parent, self.sampled(trace_id) if decided is None else decided
        trace_id = self.new_trace_id()
        return trace_id, None, self.sampled(trace_id)

    # -- spans --------------------------------------------------------------------------------------------------
    def entry_span(
        self, name: str, traceparent: str, amzn_trace_id: str, kind: str, attributes: dict[str, Any]
    ) -> Span:
        """A span where a request enters Squall, continuing the caller's trace if it sent one."""
        trace_id, parent, sampled = self.parent_from_headers(traceparent, amzn_trace_id)
        return Span(
            name,
            trace_id,
            _bits(64) or 1,
            parent,
            kind,
            _time_ns(),
            attributes,
            sampled,
            remote_parent=parent is not None,
        )

    def child(
        self, parent: Span, name: str, kind: str = KIND_INTERNAL, attributes: dict[str, Any] | None = None
    ) -> Span:
        return Span(
            name, parent.trace_id, _bits(64) or 1, parent.span_id, kind, _time_ns(), attributes or {}, parent.sampled
        )

    def end(self, span: Span, error: bool = False, end_ns: int = 0) -> None:
        span.end_ns = end_ns or _time_ns()
        if error:
            span.error = True
        if span.sampled:
            for sink in self.sinks:
                sink(span)

    def invocation(
        self,
        function: str,
        request_id: str,
        trigger: str,
        parent: Span | None,
        traceparent: str = "",
        amzn_trace_id: str = "",
        sync: bool = False,
    ) -> InvocationTrace:
        """The trace of one run of a function.  Without ``parent`` (an entry span made by the edge), the invocation
        makes its own "Invoke <fn>" entry span, continuing ``traceparent``/``amzn_trace_id`` if given: a server span
        when ``sync`` (a caller waits for the answer), else a consumer span (an event is delivered)."""
        owns = parent is None
        if parent is None:
            attrs: dict[str, Any] = {
                "faas.invocation_id": request_id,
                "faas.name": function,
                "faas.trigger": _FAAS_TRIGGER.get(trigger, "other"),
                "squall.trigger": trigger,
            }
            kind = KIND_SERVER if sync else KIND_CONSUMER
            parent = self.entry_span(f"Invoke {function}", traceparent, amzn_trace_id, kind, attrs)
        return InvocationTrace(self, parent, owns, function, request_id, trigger)


class InvocationTrace:
    """Timestamps of one invocation's phases; the child spans are built only when it finishes.

    Use: ``acquired()`` after the pool returned an instance, ``instance_context()`` for what the function sees,
    ``finish(...)`` (or ``failed(...)`` when no instance ran)."""

    __slots__ = (
        "function",
        "instance_span_id",
        "owns_parent",
        "parent",
        "request_id",
        "t_acquired",
        "t_start",
        "tracer",
        "trigger",
    )

    def __init__(
        self, tracer: Tracer, parent: Span, owns_parent: bool, function: str, request_id: str, trigger: str
    ) -> None:
        self.tracer = tracer
        self.parent = parent
        self.owns_parent = owns_parent
        self.function = function
        self.request_id = request_id
        self.trigger = trigger
        self.t_start = _time_ns()
        self.t_acquired = 0
        self.instance_span_id = _bits(64) or 1

    @property
    def sampled(self) -> bool:
        return self.parent.sampled

    def acquired(self) -> None:
        self.t_acquired = _time_ns()

    def instance_context(self) -> tuple[str, str]:
        """(_X_AMZN_TRACE_ID, traceparent) of the instance span: what the function continues."""
        p = self.parent
        return (
            format_amzn_trace_id(p.trace_id, self.instance_span_id, p.sampled),
            format_traceparent(p.trace_id, self.instance_span_id, p.sampled),
        )

    def finish(
        self,
        version: str,
        outcome: InvokeOutcome | None,
        status: str,
        error_type: str | None,
        init_ms: float | None = None,
        cold: bool | None = None,
    ) -> None:
        """Build and end the spans.  ``outcome`` None: no instance ran (throttled, or init failed)."""
        end = _time_ns()
        p = self.parent
        if p.sampled:
            self._emit(end, version, outcome, status, error_type, init_ms, cold)
        if self.owns_parent:
            p.attributes["faas.version"] = version
            self.tracer.end(p, error=status != "ok", end_ns=end)

    def _emit(
        self,
        end: int,
        version: str,
        outcome: InvokeOutcome | None,
        status: str,
        error_type: str | None,
        init_ms: float | None,
        cold: bool | None,
    ) -> None:
        tracer, p, rid = self.tracer, self.parent, self.request_id
        tid, sampled = p.trace_id, p.sampled
        acquired = self.t_acquired or end
        if outcome is not None:
            cold = outcome.cold
            init_ms = outcome.init_ms
        is_cold = bool(cold)
        failed = status != "ok"
        common = {"faas.invocation_id": rid, "faas.name": self.function, "faas.version": version}
        invoker = Span(
            "invoker", tid, _bits(64) or 1, p.span_id, KIND_INTERNAL, self.t_start,
            {**common, "faas.coldstart": is_cold, "squall.trigger": self.trigger, "squall.status": status},
            sampled,
        )  # fmt: skip
        if error_type:
            invoker.attributes["error.type"] = error_type
        acquire_attrs: dict[str, Any] = {"faas.name": self.function, "faas.coldstart": is_cold}
        if status == "throttled":
            acquire_attrs["error.type"] = error_type or "TooManyRequestsException"
        acquire = Span(
            "acquire instance", tid, _bits(64) or 1, invoker.span_id, KIND_INTERNAL, self.t_start, acquire_attrs,
            sampled,
        )  # fmt: skip
        spans = [acquire]
        acquire_failed = outcome is None
        if is_cold:
            cold_span = Span(
                "cold start", tid, _bits(64) or 1, acquire.span_id, KIND_INTERNAL, self.t_start,
                {"faas.name": self.function, "faas.coldstart": True}, sampled,
            )  # fmt: skip
            init_start = acquired - int((init_ms or 0.0) * 1e6)
            init = Span(
                "init", tid, _bits(64) or 1, cold_span.span_id, KIND_INTERNAL, max(self.t_start, init_start),
                {"faas.name": self.function, "faas.init_duration_ms": init_ms or 0.0}, sampled,
            )  # fmt: skip
            init.end_ns = cold_span.end_ns = acquired
            init.error = cold_span.error = acquire_failed
            spans += [cold_span, init]
        acquire.end_ns = acquired
        acquire.error = acquire_failed
        if outcome is not None:
            inst = Span(
                "instance", tid, self.instance_span_id, invoker.span_id, KIND_INTERNAL, acquired,
                {
                    **common, "faas.coldstart": is_cold, "faas.instance": outcome.instance_id,
                    "faas.duration_ms": outcome.duration_ms, "faas.billed_ms": outcome.billed_ms,
                    "faas.max_memory_mb": outcome.max_memory_mb,
                },
                sampled,
            )  # fmt: skip
            if error_type:
                inst.attributes["error.type"] = error_type
                inst.error = True
            inst.end_ns = end
            spans.append(inst)
        invoker.end_ns = end
        invoker.error = failed
        spans.append(invoker)
        for sink in tracer.sinks:
            for s in spans:
                sink(s)
