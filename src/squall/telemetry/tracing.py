"""Spans of invocations, cheap enough for the hot path; OpenTelemetry data off it.

On the hot path a span is a small slotted record (ids as ints, wall-clock nanoseconds, a dict of attributes), and the
inner spans of an invocation are not even that: :class:`InvocationTrace` keeps the phases' timestamps and builds the
spans when they are read.  Ended, sampled spans and invocations go to the sinks: the local
:class:`~squall.telemetry.trace_store.TraceStore` (a dict insert) and, when an OTLP endpoint is configured,
:class:`~squall.telemetry.otlp.OtlpExport`, which turns them into OpenTelemetry SDK ``ReadableSpan`` objects in
a background thread and exports them with the OTLP/HTTP exporter.

Sampling (AWS X-Ray's default rule): a caller's decision (the ``traceparent`` flags, ``Sampled=0|1`` of
``X-Amzn-Trace-Id``) is always followed.  A new or undecided trace is sampled if it is one of the first
``reservoir`` of the current second for its key (the function; ``"S3 API"``/``"SQS API"`` for those APIs), else
with probability ``sample_ratio`` (decided on the trace id, as OpenTelemetry's TraceIdRatioBased).  Defaults:
1 per second per function plus 5%.  An unsampled span or invocation records no timestamps or attributes and never
reaches a sink; it still has ids, so the function and the caller get a trace context (flags ``00``, ``Sampled=0``).

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

from squall.core.model import InvokeOutcome

__all__ = [
    "KIND_CLIENT",
    "KIND_CONSUMER",
    "KIND_INTERNAL",
    "KIND_SERVER",
    "Finished",
    "InvocationTrace",
    "Span",
    "Tracer",
    "expand",
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
#: keys the reservoir tracks at most (names come from requests, even of functions that do not exist); past it, it
#: starts over (at worst a few extra traces in that second)
_RESERVOIR_KEYS = 4096


class Span:
    """One finished (or running) span.  Ids are ints; times are epoch nanoseconds (0 when not sampled: an unsampled
    span only carries the trace context)."""

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
        return self.trace_id.to_bytes(16, "big").hex()

    def traceparent(self) -> str:
        return format_traceparent(self.trace_id, self.span_id, self.sampled)

    def amzn_trace_id(self) -> str:
        return format_amzn_trace_id(self.trace_id, self.span_id, self.sampled)

    def __repr__(self) -> str:
        return f"Span({self.name!r}, {self.trace_id:032x}/{self.span_id:016x}, parent={self.parent_id})"


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id.to_bytes(16, 'big').hex()}-{span_id.to_bytes(8, 'big').hex()}-{'01' if sampled else '00'}"


def format_amzn_trace_id(trace_id: int, span_id: int, sampled: bool) -> str:
    t = trace_id.to_bytes(16, "big").hex()
    return f"Root=1-{t[:8]}-{t[8:]};Parent={span_id.to_bytes(8, 'big').hex()};Sampled={'1' if sampled else '0'}"


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
    """Makes spans, decides which traces are sampled, and hands the sampled, ended ones to the sinks (the local
    store, the OTLP export).

    ``reservoir``: new traces sampled per second per key (a function's name) before ``sample_ratio`` applies to the
    rest; ``clock``: epoch seconds (injected by tests).  Everything runs on the event loop thread: no locks."""

    def __init__(
        self,
        sample_ratio: float = 0.05,
        sinks: list[Callable[[Finished], None]] | None = None,
        reservoir: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        ratio = min(1.0, max(0.0, sample_ratio))
        self.ratio = ratio
        self.sample_all = ratio >= 1.0
        self._bound = round(ratio * _MASK64)
        self.reservoir = max(0, int(reservoir))
        self._clock = clock
        #: key -> [second, traces sampled by the reservoir in that second]
        self._slots: dict[str, list[int]] = {}
        self.sinks: list[Callable[[Finished], None]] = sinks or []

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

    def decide(self, key: str, trace_id: int, second: int | None = None) -> bool:
        """Sample a new or undecided trace?  One of the first ``reservoir`` of this second for ``key``, or else the
        ratio decision on its id (X-Ray's rule: a reservoir per second, then a fixed rate of the rest)."""
        if self.sample_all:
            return True
        if self.reservoir:
            sec = int(self._clock()) if second is None else second
            slots = self._slots
            slot = slots.get(key)
            if slot is None:
                if len(slots) >= _RESERVOIR_KEYS:
                    slots.clear()
                slots[key] = [sec, 1]
                return True
            if slot[0] != sec:
                slot[0] = sec
                slot[1] = 1
                return True
            if slot[1] < self.reservoir:
                slot[1] += 1
                return True
        return (trace_id & _MASK64) < self._bound

    def parent_from_headers(self, traceparent: str, amzn_trace_id: str, key: str = "") -> tuple[int, int | None, bool]:
        """(trace id, remote parent span id or None, sampled): the incoming context (its decision followed), or a
        new trace (decided by :meth:`decide` for ``key``)."""
        if traceparent:
            parsed = parse_traceparent(traceparent)
            if parsed is not None:
                return parsed
        if amzn_trace_id:
            amzn = parse_amzn_trace_id(amzn_trace_id)
            if amzn is not None:
                trace_id, parent, decided = amzn
                return trace_id, parent, self.decide(key, trace_id) if decided is None else decided
        sec = int(self._clock())
        trace_id = (sec << 96) | _bits(96) or 1
        return trace_id, None, self.decide(key, trace_id, sec)

    # -- spans --------------------------------------------------------------------------------------------------
    def entry_span(
        self,
        name: str,
        traceparent: str,
        amzn_trace_id: str,
        kind: str,
        attributes: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> Span:
        """A span where a request enters Squall, continuing the caller's trace if it sent one; a new trace is decided
        for ``key`` (default: ``name``).  Callers that build many attributes can pass none and set
        ``span.attributes`` only ``if span.sampled`` (an unsampled span's attributes go nowhere)."""
        trace_id, parent, sampled = self.parent_from_headers(traceparent, amzn_trace_id, name if key is None else key)
        return Span(
            name,
            trace_id,
            _bits(64) or 1,
            parent,
            kind,
            _time_ns() if sampled else 0,
            {} if attributes is None else attributes,
            sampled,
            parent is not None,
        )

    def child(
        self, parent: Span, name: str, kind: str = KIND_INTERNAL, attributes: dict[str, Any] | None = None
    ) -> Span:
        sampled = parent.sampled
        return Span(
            name, parent.trace_id, _bits(64) or 1, parent.span_id, kind, _time_ns() if sampled else 0,
            attributes or {}, sampled,
        )  # fmt: skip

    def end(self, span: Span, error: bool = False, end_ns: int = 0) -> None:
        """End ``span``: a sampled one gets its end time and goes to the sinks; an unsampled one costs nothing."""
        if error:
            span.error = True
        if span.sampled:
            span.end_ns = end_ns or _time_ns()
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
        makes its own "Invoke <fn>" entry span, continuing ``traceparent``/``amzn_trace_id`` if given (else a new
        trace, decided for ``function``): a server span when ``sync`` (a caller waits for the answer), else a
        consumer span (an event is delivered)."""
        owns = parent is None
        if parent is None:
            kind = KIND_SERVER if sync else KIND_CONSUMER
            parent = self.entry_span(f"Invoke {function}", traceparent, amzn_trace_id, kind, None, function)
            if parent.sampled:
                parent.attributes = {
                    "faas.invocation_id": request_id,
                    "faas.name": function,
                    "faas.trigger": _FAAS_TRIGGER.get(trigger, "other"),
                    "squall.trigger": trigger,
                }
        return InvocationTrace(self, parent, owns, function, request_id, trigger)


def _derived_id(seed: int, n: int) -> int:
    """The n-th span id derived from ``seed`` (splitmix64): a lazily built span gets the same id on every read."""
    z = (seed + n * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) or 1


class InvocationTrace:
    """One invocation's phases as a handful of timestamps; its child spans are built only when read or exported.

    Use: ``acquired()`` after the pool returned an instance, ``instance_context()`` for what the function sees,
    then ``finish(...)`` (``outcome`` None when no instance ran).  Finished and sampled, the record itself goes to
    the sinks; ``spans()`` turns it into the "invoker", "acquire instance", ["cold start", "init"], "instance"
    spans (ids derived from the instance span's id, so every read gives the same spans).

    Unsampled (``sampled`` False), it is only a trace context: no timestamps, nothing recorded by ``finish``, no
    spans; ``instance_context()`` still gives the function its ids (with flags ``00`` / ``Sampled=0``)."""

    __slots__ = (
        "billed_ms",
        "cold",
        "duration_ms",
        "error_type",
        "function",
        "init_ms",
        "instance_id",
        "instance_span_id",
        "max_memory_mb",
        "owns_parent",
        "parent",
        "ran",
        "request_id",
        "sampled",
        "status",
        "t_acquired",
        "t_end",
        "t_start",
        "tracer",
        "trigger",
        "version",
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
        self.instance_span_id = _bits(64) or 1
        self.t_acquired = 0
        self.t_end = 0
        sampled = self.sampled = parent.sampled
        if not sampled:  # a trace context only: the rest is never read
            self.t_start = 0
            return
        self.t_start = _time_ns()
        self.version = ""
        self.status = ""
        self.error_type: str | None = None
        self.cold = False
        self.init_ms: float | None = None
        self.ran = False
        self.instance_id = ""
        self.duration_ms = 0.0
        self.billed_ms = 0
        self.max_memory_mb = 0

    @property
    def trace_id(self) -> int:
        return self.parent.trace_id

    def acquired(self) -> None:
        if self.sampled:
            self.t_acquired = _time_ns()

    def instance_context(self) -> tuple[str, str]:
        """(_X_AMZN_TRACE_ID, traceparent) of the instance span: what the function continues."""
        t = self.parent.trace_id.to_bytes(16, "big").hex()
        s = self.instance_span_id.to_bytes(8, "big").hex()
        if self.sampled:
            return f"Root=1-{t[:8]}-{t[8:]};Parent={s};Sampled=1", f"00-{t}-{s}-01"
        return f"Root=1-{t[:8]}-{t[8:]};Parent={s};Sampled=0", f"00-{t}-{s}-00"

    def finish(
        self,
        version: str,
        outcome: InvokeOutcome | None,
        status: str,
        error_type: str | None,
        init_ms: float | None = None,
        cold: bool | None = None,
    ) -> None:
        """Record the end (``outcome`` None: no instance ran: throttled, or init failed) and hand the record to
        the sinks; end the entry span if this invocation made it.  Unsampled: nothing to do."""
        if not self.sampled:
            return
        end = self.t_end = _time_ns()
        p = self.parent
        self.version, self.status, self.error_type = version, status, error_type
        if outcome is not None:
            self.ran = True
            self.cold, self.init_ms = outcome.cold, outcome.init_ms
            self.instance_id, self.duration_ms = outcome.instance_id, outcome.duration_ms
            self.billed_ms, self.max_memory_mb = outcome.billed_ms, outcome.max_memory_mb
        else:
            self.cold, self.init_ms = bool(cold), init_ms
        tracer = self.tracer
        for sink in tracer.sinks:
            sink(self)
        if self.owns_parent:
            p.attributes["faas.version"] = version
            tracer.end(p, error=status != "ok", end_ns=end)

    def spans(self) -> list[Span]:
        """The child spans of the entry span (built on each call; same ids every time; none when unsampled)."""
        if not self.sampled:
            return []
        p, rid, fn, seed = self.parent, self.request_id, self.function, self.instance_span_id
        tid, sampled, start = p.trace_id, p.sampled, self.t_start
        end = self.t_end or _time_ns()
        acquired = self.t_acquired or end
        status, error_type, is_cold = self.status, self.error_type, self.cold
        common = {"faas.invocation_id": rid, "faas.name": fn, "faas.version": self.version}
        invoker = Span(
            "invoker", tid, _derived_id(seed, 1), p.span_id, KIND_INTERNAL, start,
            {**common, "faas.coldstart": is_cold, "squall.trigger": self.trigger, "squall.status": status},
            sampled,
        )  # fmt: skip
        if error_type:
            invoker.attributes["error.type"] = error_type
        invoker.end_ns = end
        invoker.error = status != "ok"
        acquire_attrs: dict[str, Any] = {"faas.name": fn, "faas.coldstart": is_cold}
        if status == "throttled":
            acquire_attrs["error.type"] = error_type or "TooManyRequestsException"
        acquire = Span(
            "acquire instance", tid, _derived_id(seed, 2), invoker.span_id, KIND_INTERNAL, start, acquire_attrs, sampled
        )
        acquire.end_ns = acquired
        acquire.error = not self.ran
        out = [invoker, acquire]
        if is_cold:
            cold_span = Span(
                "cold start", tid, _derived_id(seed, 3), acquire.span_id, KIND_INTERNAL, start,
                {"faas.name": fn, "faas.coldstart": True}, sampled,
            )  # fmt: skip
            init_ms = self.init_ms or 0.0
            init = Span(
                "init", tid, _derived_id(seed, 4), cold_span.span_id, KIND_INTERNAL,
                max(start, acquired - int(init_ms * 1e6)), {"faas.name": fn, "faas.init_duration_ms": init_ms},
                sampled,
            )  # fmt: skip
            init.end_ns = cold_span.end_ns = acquired
            init.error = cold_span.error = not self.ran
            out += [cold_span, init]
        if self.ran:
            inst = Span(
                "instance", tid, seed, invoker.span_id, KIND_INTERNAL, acquired,
                {
                    **common, "faas.coldstart": is_cold, "faas.instance": self.instance_id,
                    "faas.duration_ms": self.duration_ms, "faas.billed_ms": self.billed_ms,
                    "faas.max_memory_mb": self.max_memory_mb,
                },
                sampled,
            )  # fmt: skip
            if error_type:
                inst.attributes["error.type"] = error_type
                inst.error = True
            inst.end_ns = end
            out.append(inst)
        return out


#: what the sinks receive: an ended span, or a finished invocation (expanded with ``spans()``)
Finished = Span | InvocationTrace


def expand(items: list[Finished]) -> list[Span]:
    out: list[Span] = []
    for item in items:
        if isinstance(item, Span):
            out.append(item)
        else:
            out += item.spans()
    return out
