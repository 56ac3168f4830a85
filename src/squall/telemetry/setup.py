"""Wiring of metrics and traces into one server: what to build (``build``) and the S3/SQS entry spans (``traced``).

Their HTTP routes are in ``squall.telemetry.api``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from squall.core.asgi import ASGIApp, Message, Scope
from squall.core.config import ServerConfig
from squall.telemetry.metrics import Metrics, StateSnapshot
from squall.telemetry.otlp import OtlpExport
from squall.telemetry.trace_store import TraceStore
from squall.telemetry.tracing import KIND_SERVER, Finished, Tracer

__all__ = ["METRICS_PATH", "Observability", "build"]

log = logging.getLogger("squall.observability")


METRICS_PATH = "/metrics"


@dataclass
class Observability:
    metrics: Metrics | None = None
    tracer: Tracer | None = None
    traces: TraceStore | None = None
    otlp: OtlpExport | None = None
    metrics_public: bool = False

    @property
    def public_prefixes(self) -> tuple[str, ...]:
        return (METRICS_PATH,) if self.metrics is not None and self.metrics_public else ()

    def traced(self, service: str, app: ASGIApp) -> ASGIApp:
        """``app`` (the S3 or SQS API) with a server span for each request that carries a trace context
        (``traceparent`` or ``X-Amzn-Trace-Id``, as boto3 inside a function sends): a function's S3 or SQS calls
        continue its trace (and its sampling decision).  Requests without one pass straight through.  An undecided
        context (``X-Amzn-Trace-Id`` without ``Sampled=``) is decided with the API's own reservoir (key
        ``"<service> API"``: no function name has a space)."""
        tracer = self.tracer
        if tracer is None:
            return app
        key = f"{service} API"

        async def traced_app(scope: Scope, receive: Any, send: Any) -> None:
            traceparent = amzn = ""
            target = ""
            for k, v in scope["headers"]:
                if k == b"traceparent":
                    traceparent = v.decode("latin-1")
                elif k == b"x-amzn-trace-id":
                    amzn = v.decode("latin-1")
                elif k == b"x-amz-target":
                    target = v.decode("latin-1")
            if not traceparent and not amzn:
                await app(scope, receive, send)
                return
            method, path = scope["method"], scope["path"]
            op = method if service == "S3" else (target.rpartition(".")[2] or method)
            span = tracer.entry_span(f"{service} {op}", traceparent, amzn, KIND_SERVER, None, key)
            if span.sampled:  # attributes only for spans that are kept
                attrs = span.attributes
                attrs.update(
                    {"rpc.system": "aws-api", "rpc.service": service, "rpc.method": op, "http.request.method": method}
                )
                if service == "S3":
                    bucket, _, obj = path.lstrip("/").partition("/")
                    attrs["aws.s3.bucket"] = bucket
                    if obj:
                        attrs["aws.s3.key"] = obj
                else:
                    attrs["url.path"] = path
                request_id = scope.get("squall.request_id")
                if request_id:
                    attrs["aws.request_id"] = request_id
            status = 500

            async def send_traced(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    if span.sampled:
                        span.attributes["http.response.status_code"] = status
                    headers = [*message.get("headers", []), (b"traceparent", span.traceparent().encode())]
                    message = {**message, "headers": headers}
                await send(message)

            try:
                await app(scope, receive, send_traced)
            finally:
                tracer.end(span, error=status >= 500)

        return traced_app

    def close(self) -> None:
        if self.otlp is not None:
            self.otlp.close()


def build(c: ServerConfig, snapshot: Callable[[], StateSnapshot]) -> Observability:
    """Metrics and tracing as ``c`` asks; ``snapshot`` reads the platform's state at each scrape.  The app hands
    ``metrics`` (as the invoker's observer) and ``tracer`` to the invoker when it builds it."""
    obs = Observability(metrics_public=c.metrics_public)
    if c.metrics:
        obs.metrics = Metrics(snapshot, node=c.cluster_node_id if c.nats_url else None)
    if c.tracing:
        obs.traces = TraceStore(max_traces=c.trace_buffer)
        sinks: list[Callable[[Finished], None]] = [obs.traces.add]
        if c.otlp_endpoint:
            obs.otlp = OtlpExport(c.otlp_endpoint)
            sinks.append(obs.otlp)
            log.info("exporting traces over OTLP/HTTP to %s", obs.otlp.url)
        obs.tracer = Tracer(c.trace_sample, sinks, reservoir=c.trace_reservoir)
    return obs
