"""Read APIs the dashboard needs beyond ``squall_api`` (records, logs, usage), plus the redrive action.

Behind the same auth as the rest of ``/_squall/api/`` (SigV4, or a dashboard session cookie; see
``squall.dashboard.ui.sessions``).  Errors use Lambda's error shape, like ``squall_api``.

* ``GET /_squall/api/series?function=&since=&until=&step=`` -> columnar buckets (``t``, ``invocations``,
  ``errors``, ``throttles``, ``cold_starts``, ``p50_ms``, ``p99_ms``, ``billed_ms``, ``gb_seconds``,
  ``cost_usd``, ``avg_concurrency``, ``max_concurrency``).  Default window: the last hour; default step: the
  window / 60.  ``avg_concurrency`` is busy time / step; ``max_concurrency`` is exact (a sweep over starts and
  ends).  ``cost_usd`` prices requests and GB-seconds at the on-demand rates of the price table.
* ``GET /_squall/api/dashboard/overview?window=`` -> every function with its configuration, triggers, totals
  over the window (default 3600 s) and a 60-point sparkline; plus the async-invocation queue.
* ``GET /_squall/api/dashboard/functions/{name}`` -> configuration, versions, aliases, concurrency, triggers.
* ``GET /_squall/api/dashboard/queues`` -> SQS queues (depth, in flight, delayed, dead-letter relations) and
  the async-invocation queue (depth per function, events waiting for a retry and their last error).
* ``GET /_squall/api/dashboard/queues/{name}/messages?limit=`` -> messages without receiving them.
* ``POST /_squall/api/dashboard/queues/{name}/redrive`` (body ``{"destination": queue name}`` optional) ->
  StartMessageMoveTask on that dead-letter queue; answers the task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.aws.json_api import json_object, json_response, lambda_error
from squall.core.arn import function_of_arn, resource_name
from squall.core.errors import InvalidParameterValue, ResourceNotFound, SquallError
from squall.functions.metering import PriceTable
from squall.functions.squall_api import QueryParams, parse_time
from squall.sqs.store.attrs import redrive_policy
from squall.sqs.store.moves import list_move_tasks, peek_messages, start_move_task
from squall.triggers.event_source_mappings.store import MappingStore
from squall.triggers.function_urls.store import FunctionUrlStore
from squall.triggers.schedules.store import ScheduleStore

if TYPE_CHECKING:
    from squall.server import Squall

__all__ = ["DashboardApi", "dashboard_api_routes"]

API = "/_squall/api"
DEFAULT_WINDOW_S = 3600.0
SPARK_POINTS = 60
URL_PREFIX = "/lambda-url/"


def _float(request: Request, name: str, default: float, lo: float, hi: float) -> float:
    return QueryParams(request).number(name, default, lo, hi)


def bucket_cost(prices: PriceTable, invocations: int, gb_seconds: float) -> float:
    return invocations * prices.request_usd_per_million / 1e6 + gb_seconds * prices.duration_usd_per_gb_s


class DashboardApi:
    """The handlers, over a running ``Squall``'s stores.  The trigger stores (function URLs, schedules, event
    source mappings) are opened read-mostly on their database files, next to the plugins' own connections."""

    def __init__(self, squall: Squall) -> None:
        self.squall = squall
        self.store = squall.store
        self.prices = squall.prices
        data = squall.config.data_dir
        self._urls: FunctionUrlStore | None = None
        self._schedules: ScheduleStore | None = None
        self._mappings: MappingStore | None = None
        self._paths = (data / "function_urls.db", data / "schedules.db", data / "esm.db")

    def close(self) -> None:
        for s in (self._urls, self._schedules, self._mappings):
            if s is not None:
                s.close()

    # -- triggers ---------------------------------------------------------------------------------------------
    def _trigger_stores(self) -> tuple[FunctionUrlStore, ScheduleStore, MappingStore]:
        if self._urls is None:
            self._urls = FunctionUrlStore(self._paths[0])
        if self._schedules is None:
            self._schedules = ScheduleStore(self._paths[1])
        if self._mappings is None:
            self._mappings = MappingStore(self._paths[2])
        return self._urls, self._schedules, self._mappings

    def triggers(self, function: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every trigger, by function name: function URLs, HTTP routes, schedules, SQS mappings, S3 events."""
        urls, schedules, mappings = self._trigger_stores()
        public = self.squall.config.public_url.rstrip("/")
        out: dict[str, list[dict[str, Any]]] = {}

        def add(name: str, item: dict[str, Any]) -> None:
            if function is None or name == function:
                out.setdefault(name, []).append(item)

        for cfg in urls.list_configs(function):
            add(
                cfg.function,
                {
                    "type": "url",
                    "label": f"{public}{URL_PREFIX}{cfg.url_id}/",
                    "qualifier": cfg.qualifier or None,
                    "detail": f"auth {cfg.auth_type}",
                },
            )
        for key, fn in urls.routes(function):
            add(fn, {"type": "route", "label": key, "detail": "squall.yaml route"})
        for rule in schedules.list(function):
            add(
                rule.function,
                {
                    "type": "schedule",
                    "label": rule.expression,
                    "detail": rule.name,
                    "enabled": rule.enabled,
                    "last_fire": rule.last_fire,
                },
            )
        for _, fn, esm in mappings.list(function):
            add(
                fn,
                {
                    "type": "sqs",
                    "label": resource_name(str(esm.get("EventSourceArn", ""))),
                    "detail": f"batch {esm.get('BatchSize')}",
                    "enabled": esm.get("State") == "Enabled",
                    "uuid": esm.get("UUID"),
                },
            )
        objects = self.squall.objects
        for bucket in objects.list_buckets():
            try:
                config = objects.get_bucket_notification(bucket.name)
            except SquallError:
                continue
            for item in config.get("LambdaFunctionConfigurations", []):
                ref = function_of_arn(str(item.get("LambdaFunctionArn", "")))
                if ref is not None:
                    add(ref[0], {"type": "s3", "label": bucket.name, "detail": ", ".join(item.get("Events", []))})
        return out

    # -- functions --------------------------------------------------------------------------------------------
    def _functions(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            page, marker = self.store.list_functions(marker, 50)
            out += [f.config for f in page]
            if not marker:
                return out

    @staticmethod
    def _config_view(config: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": config.get("FunctionName"),
            "runtime": config.get("Runtime"),
            "handler": config.get("Handler"),
            "memory_mb": config.get("MemorySize"),
            "timeout_s": config.get("Timeout"),
            "state": config.get("State"),
            "last_modified": config.get("LastModified"),
            "description": config.get("Description") or "",
            "code_size": config.get("CodeSize"),
        }

    def overview(self, window_s: float, now: float) -> dict[str, Any]:
        since = now - window_s
        step = window_s / SPARK_POINTS
        summaries = {s.function: s for s in self.store.summaries(since, now)}
        sparks = self.store.sparklines(since, since + step * SPARK_POINTS, step)
        triggers = self.triggers()
        functions = []
        for config in self._functions():
            view = self._config_view(config)
            name = str(view["name"])
            s = summaries.get(name)
            inv, err = sparks.get(name, ([0] * SPARK_POINTS, [0] * SPARK_POINTS))
            view["triggers"] = triggers.get(name, [])
            view["stats"] = {
                "invocations": s.invocations if s else 0,
                "errors": s.errors if s else 0,
                "throttles": s.throttles if s else 0,
                "cold_starts": s.cold_starts if s else 0,
                "p50_ms": s.p50_ms if s else None,
                "p99_ms": s.p99_ms if s else None,
                "cost_usd": bucket_cost(self.prices, s.invocations, s.gb_seconds) if s else 0.0,
                "last_invoked": s.last_start if s else None,
            }
            view["spark"] = {"invocations": inv, "errors": err}
            functions.append(view)
        return {
            "since": since,
            "until": now,
            "window_s": window_s,
            "functions": functions,
            "async_queue": {"depth": self.store.depth(), "oldest_age_s": self.store.oldest_age(now)},
            "pool": self._pool(),
        }

    def _pool(self) -> dict[str, Any]:
        try:
            pool = self.squall.pool_summary()
        except Exception:
            return {}
        return {
            "instances": len(pool.get("instances", [])),
            "zygotes": len(pool.get("zygotes", [])),
            "concurrency": pool.get("concurrency"),
        }

    def function(self, name: str) -> dict[str, Any]:
        latest = self.store.get_function(name)
        versions, _ = self.store.list_versions(name, None, 50)
        aliases, _ = self.store.list_aliases(name, max_items=50)
        provisioned, _ = self.store.list_provisioned_concurrency(name, None, 50)
        config = dict(latest.config)
        env = (config.get("Environment") or {}).get("Variables") or {}
        return {
            **self._config_view(config),
            "arn": config.get("FunctionArn"),
            "environment": sorted(env),
            "architectures": config.get("Architectures"),
            "ephemeral_mb": (config.get("EphemeralStorage") or {}).get("Size"),
            "reserved_concurrency": self.store.get_function_concurrency(name),
            "provisioned": [{"qualifier": q.qualifier, **q.config} for q in provisioned],
            "versions": [v.version for v in versions],
            "aliases": [{"name": a.get("Name"), "version": a.get("FunctionVersion")} for a in aliases],
            "async_depth": self.store.depth(name),
            "squall": latest.squall,
            "triggers": self.triggers(name).get(name, []),
        }

    # -- series -----------------------------------------------------------------------------------------------
    def series(self, function: str | None, since: float, until: float, step: float) -> dict[str, Any]:
        s = self.store.series(function, since, until, step).to_dict()
        s["cost_usd"] = [bucket_cost(self.prices, i, g) for i, g in zip(s["invocations"], s["gb_seconds"], strict=True)]
        s["function"] = function
        return s

    # -- queues -----------------------------------------------------------------------------------------------
    def queues(self, now: float) -> dict[str, Any]:
        qs = self.squall.queues
        names = qs.list_queues()
        rows: list[dict[str, Any]] = []
        arn_to_name = {qs.queue_arn(n): n for n in names}
        dlq_of: dict[str, list[str]] = {}
        for name in names:
            try:
                attrs = qs.get_attributes(name, ["All"])
            except SquallError:
                continue
            dlq = None
            max_receive = None
            policy = attrs.get("RedrivePolicy")
            if policy:
                arn, max_receive = redrive_policy(policy)
                dlq = arn_to_name.get(arn, arn)
                dlq_of.setdefault(dlq, []).append(name)
            rows.append(
                {
                    "name": name,
                    "arn": attrs.get("QueueArn"),
                    "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
                    "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                    "delayed": int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
                    "visibility_timeout_s": int(attrs.get("VisibilityTimeout", 30)),
                    "retention_s": int(attrs.get("MessageRetentionPeriod", 0)),
                    "dead_letter_queue": dlq,
                    "max_receive_count": max_receive,
                    "created": float(attrs.get("CreatedTimestamp", 0)),
                }
            )
        for row in rows:
            row["dead_letter_for"] = sorted(dlq_of.get(row["name"], []))
            row["is_dlq"] = bool(row["dead_letter_for"])
        return {"queues": rows, "async": self.async_queue(now), "generated_at": now}

    def async_queue(self, now: float) -> dict[str, Any]:
        return {
            "depth": self.store.depth(),
            "oldest_age_s": self.store.oldest_age(now),
            **self.store.async_events(now),
        }

    def redrive(self, name: str, destination: str | None) -> dict[str, Any]:
        qs = self.squall.queues
        if not qs.queue_exists(name):
            raise ResourceNotFound(f"Queue not found: {name}")
        if destination is not None and not qs.queue_exists(destination):
            raise ResourceNotFound(f"Queue not found: {destination}")
        task = start_move_task(qs, qs.queue_arn(name), qs.queue_arn(destination) if destination else None)
        return {"task": task.to_sqs(), "tasks": [t.to_sqs() for t in list_move_tasks(qs, qs.queue_arn(name), 10)]}

    def messages(self, name: str, limit: int) -> dict[str, Any]:
        qs = self.squall.queues
        if not qs.queue_exists(name):
            raise ResourceNotFound(f"Queue not found: {name}")
        tasks = list_move_tasks(qs, qs.queue_arn(name), 10)
        return {"queue": name, "messages": peek_messages(qs, name, limit), "move_tasks": [t.to_sqs() for t in tasks]}


Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(fn: Callable[[Request], Any]) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return json_response(await fn(request))
        except SquallError as e:
            return lambda_error(request, e)

    return endpoint


def dashboard_api_routes(squall: Squall) -> list[Route]:
    """The dashboard's routes (mount behind the SigV4 middleware, like ``squall_api_routes``)."""
    api = DashboardApi(squall)

    async def series(request: Request) -> dict[str, Any]:
        q = request.query_params
        now = time.time()
        until = parse_time("until", q["until"]) if q.get("until") else now
        since = parse_time("since", q["since"]) if q.get("since") else until - DEFAULT_WINDOW_S
        if since >= until:
            raise InvalidParameterValue(f"Invalid time range: 'since' ({since}) must be before 'until' ({until}).")
        step = _float(request, "step", max(1.0, (until - since) / 60), 1.0, 86400.0 * 31)
        function = q.get("function") or None
        return await asyncio.to_thread(api.series, function, since, until, step)

    async def overview(request: Request) -> dict[str, Any]:
        window = _float(request, "window", DEFAULT_WINDOW_S, 60.0, 86400.0 * 31)
        return await asyncio.to_thread(api.overview, window, time.time())

    async def function(request: Request) -> dict[str, Any]:
        return await asyncio.to_thread(api.function, request.path_params["name"])

    async def queues(request: Request) -> dict[str, Any]:
        return await asyncio.to_thread(api.queues, time.time())

    async def messages(request: Request) -> dict[str, Any]:
        limit = int(_float(request, "limit", 50, 1, 1000))
        return await asyncio.to_thread(api.messages, request.path_params["name"], limit)

    async def redrive(request: Request) -> dict[str, Any]:
        body = json_object(await request.body())
        destination = body.get("destination")
        if destination is not None and not isinstance(destination, str):
            raise InvalidParameterValue("'destination' must be a queue name.")
        return await asyncio.to_thread(api.redrive, request.path_params["name"], destination or None)

    return [
        Route(f"{API}/series", _endpoint(series), methods=["GET"]),
        Route(f"{API}/dashboard/overview", _endpoint(overview), methods=["GET"]),
        Route(f"{API}/dashboard/functions/{{name}}", _endpoint(function), methods=["GET"]),
        Route(f"{API}/dashboard/queues", _endpoint(queues), methods=["GET"]),
        Route(f"{API}/dashboard/queues/{{name}}/messages", _endpoint(messages), methods=["GET"]),
        Route(f"{API}/dashboard/queues/{{name}}/redrive", _endpoint(redrive), methods=["POST"]),
    ]
