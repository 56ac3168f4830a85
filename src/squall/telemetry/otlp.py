"""Export spans over OTLP/HTTP (protobuf) with the OpenTelemetry SDK, off the invocation path.

The invocation path only appends ended spans to a deque.  A daemon thread wakes every ``interval_s`` (or when
``batch_size`` spans wait), turns them into SDK ``ReadableSpan`` objects and hands them to the SDK's
``OTLPSpanExporter``; this is what a ``BatchSpanProcessor`` would do, minus the SDK span objects on the hot path.
The queue is bounded: when the collector is slow or gone, the oldest spans are dropped (and counted).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from squall.telemetry.tracing import KIND_CLIENT, KIND_CONSUMER, KIND_SERVER, Finished, Span, expand

__all__ = ["OtlpExport", "otlp_traces_url", "to_readable"]

log = logging.getLogger("squall.tracing")


def otlp_traces_url(endpoint: str) -> str:
    """The traces URL of an OTLP/HTTP endpoint: a base URL gets ``/v1/traces`` (as OTEL_EXPORTER_OTLP_ENDPOINT)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def to_readable(spans: list[Span], resource: Any, scope: Any) -> list[Any]:
    """SDK ``ReadableSpan`` objects of our spans (what an SDK span processor hands its exporter)."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    kinds = {KIND_SERVER: SpanKind.SERVER, KIND_CONSUMER: SpanKind.CONSUMER, KIND_CLIENT: SpanKind.CLIENT}
    sampled = TraceFlags(TraceFlags.SAMPLED)
    out = []
    for s in spans:
        parent = (
            None
            if s.parent_id is None
            else SpanContext(s.trace_id, s.parent_id, is_remote=s.remote_parent, trace_flags=sampled)
        )
        attributes = {k: v for k, v in s.attributes.items() if v is not None}
        out.append(
            ReadableSpan(
                name=s.name,
                context=SpanContext(s.trace_id, s.span_id, is_remote=False, trace_flags=sampled),
                parent=parent,
                resource=resource,
                attributes=attributes,
                kind=kinds.get(s.kind, SpanKind.INTERNAL),
                status=Status(StatusCode.ERROR) if s.error else Status(StatusCode.UNSET),
                start_time=s.start_ns,
                end_time=s.end_ns,
                instrumentation_scope=scope,
            )
        )
    return out


class OtlpExport:
    """A span sink: ``export(span)`` on the hot path, the OTLP exporter in a background thread."""

    def __init__(
        self,
        endpoint: str,
        service_name: str = "squall",
        interval_s: float = 1.0,
        batch_size: int = 512,
        max_queue: int = 20_000,
        exporter: Any = None,
    ) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from squall import __version__

        self.url = otlp_traces_url(endpoint)
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=self.url, timeout=10)
        self.exporter = exporter
        self.resource = Resource.create({"service.name": service_name, "service.version": __version__})
        self.scope = InstrumentationScope("squall", __version__)
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.queue: deque[Finished] = deque(maxlen=max_queue)
        self.exported = 0
        self.failed = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()

    def __call__(self, item: Finished) -> None:
        self.queue.append(item)
        if len(self.queue) >= self.batch_size:
            self._wake.set()

    def _drain(self) -> None:
        while self.queue:
            items: list[Finished] = []
            while self.queue and len(items) < self.batch_size:
                items.append(self.queue.popleft())
            batch = expand(items)
            try:
                result = self.exporter.export(to_readable(batch, self.resource, self.scope))
                ok = getattr(result, "name", "SUCCESS") == "SUCCESS"
            except Exception:
                log.exception("exporting %d spans to %s", len(batch), self.url)
                ok = False
            if ok:
                self.exported += len(batch)
            else:
                self.failed += len(batch)
                log.warning("OTLP export of %d spans to %s failed", len(batch), self.url)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self._drain()

    def flush(self) -> None:
        self._drain()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        self._drain()
        try:
            self.exporter.shutdown()
        except Exception:
            log.exception("shutting the OTLP exporter down")
