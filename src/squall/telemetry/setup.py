"""Wiring of metrics and traces into one server: the hooks, the routes, the S3/SQS entry spans.

Routes (behind SigV4 like everything else; ``SQUALL_METRICS_PUBLIC=1`` lets ``/metrics`` be scraped unsigned):

* ``GET /metrics``: Prometheus text format (see ``squall.telemetry.metrics``)
* ``GET /_squall/api/traces?request_id=RID`` -> ``{"traces": [TRACE]}``: the trace containing that invocation.
  If none is kept: ``{"traces": [], "sampling": {"reservoir_per_s": N, "ratio": R}, "kept_since": EPOCH_S}``:
  an invocation that started after ``kept_since`` and has no trace was not sampled (``SQUALL_TRACE_RESERVOIR`` /
  ``SQUALL_TRACE_SAMPLE``); an older one may have been dropped from the buffer or predates this server process
* ``GET /_squall/api/traces?function=NAME&limit=N`` -> ``{"traces": [TRACE, ...]}``: newest first (``function``
  optional, ``limit`` 1 to 1000, default 50)
* ``GET /_squall/api/traces/{trace_id}`` -> TRACE, or 404 ``ResourceNotFoundException``

TRACE = ``{"trace_id", "root", "start", "duration_ms", "spans": [{"trace_id", "span_id", "parent_span_id",
"name", "start", "end", "duration_ms", "kind", "status", "attributes"}]}`` (see ``trace_store.trace_dict``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Scope

from squall.core.errors import ResourceNotFound, SquallError
from squall.telemetry.metrics import Metrics, StateSnapshot
from squall.telemetry.otlp import OtlpExport
from squall.telemetry.trace_store import TraceStore
from squall.telemetry.tracing import KIND_SERVER, Finished, Tracer

if TYPE_CHECKING:
    from squall.server import Squall

__all__ = ["Observability", "install"]

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

    def routes(self) -> list[Route]:
        from squall.aws.json_api import json_response, lambda_error
        from squall.functions.squall_api import API_PREFIX, QueryParams

        routes: list[Route] = []
        metrics = self.metrics
        if metrics is not None:

            async def scrape(_: Request) -> Response:
                from prometheus_client import CONTENT_TYPE_LATEST

                return Response(metrics.exposition(), 200, media_type=CONTENT_TYPE_LATEST)

            routes.append(Route(METRICS_PATH, scrape, methods=["GET"]))
        store = self.traces
        tracer = self.tracer

        async def list_traces(request: Request) -> Response:
            try:
                p = QueryParams(request)
                request_id = p.text("request_id")
                function = p.text("function", 170)
                limit = p.integer("limit", 50, 1, 1000)
            except SquallError as e:
                return lambda_error(request, e)
            if store is None:
                return json_response({"traces": [], "tracing": False})
            if request_id is not None:
                traces = store.by_request(request_id)
                if function is not None:
                    traces = [
                        t for t in traces if any(s["attributes"].get("faas.name") == function for s in t["spans"])
                    ]
                if traces or tracer is None:
                    return json_response({"traces": traces[:limit]})
                # none kept: say why it may be missing (the dashboard tells "not sampled" from "too old")
                return json_response(
                    {
                        "traces": [],
                        "sampling": {"reservoir_per_s": tracer.reservoir, "ratio": tracer.ratio},
                        "kept_since": store.kept_since_ns / 1e9,
                    }
                )
            return json_response({"traces": store.recent(function, limit)})

        async def get_trace(request: Request) -> Response:
            trace_id = str(request.path_params["trace_id"]).lower()
            trace = store.get(trace_id) if store is not None else None
            if trace is None:
                return lambda_error(request, ResourceNotFound(f"Trace not found: {trace_id}"))
            return json_response(trace)

        routes += [
            Route(f"{API_PREFIX}/traces", list_traces, methods=["GET"]),
            Route(f"{API_PREFIX}/traces/{{trace_id}}", get_trace, methods=["GET"]),
        ]
        return routes

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


def _snapshot(squall: Squall) -> Callable[[], StateSnapshot]:
    def snapshot() -> StateSnapshot:
        try:
            memory = int(squall.node.cgroups.node_memory_in_use())
        except Exception:
            memory = 0
        return StateSnapshot(
            instances=[(i.function, str(i.state)) for i in squall.pool.state.instances],
            zygotes=len(squall.pool.loaded),
            async_queue_depth=squall.store.depth(),
            async_event_age_s=squall.store.oldest_age(time.time()),
            async_succeeded=squall.dispatcher.delivered,
            async_failed=squall.dispatcher.failed,
            node_memory_bytes=memory,
            prewarms=squall.pool.prewarms,
        )

    return snapshot


def install(squall: Squall) -> Observability:
    """Build metrics and tracing for ``squall`` (per its config) and hook them into its invoker."""
    c = squall.config
    obs = Observability(metrics_public=c.metrics_public)
    if c.metrics:
        obs.metrics = Metrics(_snapshot(squall))
        squall.invoker.metrics = obs.metrics
    if c.tracing:
        obs.traces = TraceStore(max_traces=c.trace_buffer)
        sinks: list[Callable[[Finished], None]] = [obs.traces.add]
        if c.otlp_endpoint:
            obs.otlp = OtlpExport(c.otlp_endpoint)
            sinks.append(obs.otlp)
            log.info("exporting traces over OTLP/HTTP to %s", obs.otlp.url)
        obs.tracer = Tracer(c.trace_sample, sinks, reservoir=c.trace_reservoir)
        squall.invoker.tracer = obs.tracer
    return obs
