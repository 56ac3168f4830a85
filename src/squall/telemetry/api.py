"""The routes of metrics and traces.

Behind SigV4 like everything else; ``SQUALL_METRICS_PUBLIC=1`` lets ``/metrics`` be scraped unsigned:

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

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.aws.json_api import json_response, lambda_error
from squall.core.errors import ResourceNotFound, SquallError
from squall.functions.squall_api import API_PREFIX, QueryParams
from squall.telemetry.setup import METRICS_PATH, Observability

__all__ = ["telemetry_routes"]


def telemetry_routes(obs: Observability) -> list[Route]:
    routes: list[Route] = []
    metrics = obs.metrics
    if metrics is not None:

        async def scrape(_: Request) -> Response:
            from prometheus_client import CONTENT_TYPE_LATEST

            return Response(metrics.exposition(), 200, media_type=CONTENT_TYPE_LATEST)

        routes.append(Route(METRICS_PATH, scrape, methods=["GET"]))
    store = obs.traces
    tracer = obs.tracer

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
                traces = [t for t in traces if any(s["attributes"].get("faas.name") == function for s in t["spans"])]
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
