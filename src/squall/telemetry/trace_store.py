"""Recent traces kept in memory, so the dashboard can show them without any other service.

Bounded: the newest ``max_traces`` traces (a trace is dropped whole, oldest first) and at most ``max_spans_per_trace``
entries (spans, or finished invocations that expand to their 2-5 inner spans) in any one trace.  Adding a span is a dict lookup and a list append (it runs on the invocation path); spans
become JSON only when read.  Everything runs on the server's event loop thread.

``kept_since_ns``: every sampled invocation that started after it is still here (the store's creation, then the
latest start of anything in a trace dropped for room).  So a missing trace of a newer invocation means it was not
sampled, which the dashboard says.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from squall.telemetry.tracing import Finished, Span, expand

__all__ = ["TraceStore", "span_dict", "trace_dict"]


class _Trace:
    __slots__ = ("dropped", "functions", "items", "request_ids")

    def __init__(self) -> None:
        #: ended spans and finished invocations (each expands to its child spans when read)
        self.items: list[Finished] = []
        self.request_ids: set[str] = set()
        self.functions: set[str] = set()
        self.dropped = 0


class TraceStore:
    def __init__(self, max_traces: int = 2000, max_spans_per_trace: int = 1000) -> None:
        self.max_traces = max(1, max_traces)
        self.max_spans_per_trace = max(1, max_spans_per_trace)
        self._traces: OrderedDict[int, _Trace] = OrderedDict()
        self._by_request: dict[str, int] = {}
        #: what started after this (epoch ns) and was sampled is kept (see the module doc)
        self.kept_since_ns = time.time_ns()

    def __len__(self) -> int:
        return len(self._traces)

    def add(self, item: Finished) -> None:
        trace_id = item.trace_id
        trace = self._traces.get(trace_id)
        if trace is None:
            trace = self._traces[trace_id] = _Trace()
            if len(self._traces) > self.max_traces:
                _, old = self._traces.popitem(last=False)
                for old_rid in old.request_ids:
                    self._by_request.pop(old_rid, None)
                if old.items:
                    self.kept_since_ns = max(self.kept_since_ns, max(_start(i) for i in old.items))
        if len(trace.items) >= self.max_spans_per_trace:
            trace.dropped += 1
            return
        trace.items.append(item)
        if isinstance(item, Span):
            rid = item.attributes.get("faas.invocation_id")
            function = item.attributes.get("faas.name")
        else:
            rid, function = item.request_id, item.function
        if rid and rid not in trace.request_ids:
            trace.request_ids.add(rid)
            self._by_request[rid] = trace_id
        if function:
            trace.functions.add(function)

    # -- reads --------------------------------------------------------------------------------------------------
    def get(self, trace_id: str) -> dict[str, Any] | None:
        try:
            key = int(trace_id, 16)
        except ValueError:
            return None
        trace = self._traces.get(key) if len(trace_id) == 32 else None
        return None if trace is None else trace_dict(key, expand(trace.items))

    def by_request(self, request_id: str) -> list[dict[str, Any]]:
        key = self._by_request.get(request_id)
        trace = self._traces.get(key) if key is not None else None
        return [] if key is None or trace is None else [trace_dict(key, expand(trace.items))]

    def recent(self, function: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first (by the start of the trace's earliest span)."""
        picked = [
            (min(_start(i) for i in t.items), key, t)
            for key, t in self._traces.items()
            if t.items and (function is None or function in t.functions)
        ]
        picked.sort(key=lambda x: x[0], reverse=True)
        return [trace_dict(key, expand(t.items)) for _, key, t in picked[:limit]]


def _start(item: Finished) -> int:
    return item.start_ns if isinstance(item, Span) else item.t_start


def span_dict(span: Span, parent_known: bool) -> dict[str, Any]:
    attrs = dict(span.attributes)
    if span.parent_id is not None and not parent_known:
        attrs["squall.remote_parent_span_id"] = f"{span.parent_id:016x}"
    return {
        "trace_id": f"{span.trace_id:032x}",
        "span_id": f"{span.span_id:016x}",
        "parent_span_id": f"{span.parent_id:016x}" if span.parent_id is not None and parent_known else None,
        "name": span.name,
        "start": span.start_ns / 1e9,
        "end": span.end_ns / 1e9,
        "duration_ms": (span.end_ns - span.start_ns) / 1e6,
        "kind": span.kind,
        "status": "error" if span.error else "ok",
        "attributes": attrs,
    }


def trace_dict(trace_id: int, spans: list[Span]) -> dict[str, Any]:
    """The API's TRACE shape.  A span whose parent is not in the trace (the caller's own span, outside Squall) is
    a root: its ``parent_span_id`` is null and the remote parent is kept as ``squall.remote_parent_span_id``."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, -s.end_ns))
    ids = {s.span_id for s in ordered}
    out = [span_dict(s, s.parent_id in ids) for s in ordered]
    roots = [s for s in ordered if s.parent_id not in ids]
    start = min(s.start_ns for s in ordered) if ordered else 0
    end = max(s.end_ns for s in ordered) if ordered else 0
    return {
        "trace_id": f"{trace_id:032x}",
        "root": roots[0].name if roots else "",
        "start": start / 1e9,
        "duration_ms": (end - start) / 1e6,
        "spans": out,
    }
