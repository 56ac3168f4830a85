"""The schedules API and plugin (signed, on the main port).

* ``PUT /_squall/api/schedules/{function}`` with ``{"schedules": [{"name", "expression", "enabled"?, "input"?,
  "catch_up"?}]}`` replaces the function's schedules (expressions as in ``squall.triggers.schedules.expressions``;
  an invalid one is a 400 ``InvalidParameterValueException``, an unknown function a 404).
* ``GET /_squall/api/schedules`` (optionally ``?function=NAME``) and ``GET /_squall/api/schedules/{function}``
  list them, with each rule's ``next_fire``.

The plugin's task fires due ticks (``squall.triggers.schedules.runner``); deleting a function drops its rules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.aws.json_api import json_response, lambda_error, parse_json
from squall.core.errors import ResourceNotFound, SquallError
from squall.core.ports import Enqueue, FunctionExists
from squall.store.db import DatabaseUnavailable
from squall.triggers.plugin import Plugin
from squall.triggers.schedules.runner import ScheduleRunner, parse_rules
from squall.triggers.schedules.store import ScheduleStore

__all__ = ["install"]

log = logging.getLogger("squall.schedules")


def install(
    store: ScheduleStore, enqueue: Enqueue, function_exists: FunctionExists, *, region: str, account_id: str,
    interval_s: float = 0.5, outbox_kick: Callable[[], object] | None = None,
) -> Plugin:  # fmt: skip
    """The schedules plugin: API routes, the firing task and the function-deleted hook.  Due ticks go into the
    durable async queue through ``enqueue`` (the async dispatcher's hand-over); in cluster mode (``outbox_kick``,
    the store opened with ``outbox=True``) into the event outbox, claimed by exactly one node."""
    runner = ScheduleRunner(
        store, lambda events: enqueue(list(events)), region=region, account=account_id, outbox_kick=outbox_kick
    )

    async def put_schedules(request: Request) -> Response:
        function = request.path_params["function"]
        try:
            body = parse_json(await request.body() or b"null")
            rules = parse_rules(function, body)
            if not await asyncio.to_thread(function_exists, function):
                raise ResourceNotFound(f"Function not found: {function}")
            stored = await asyncio.to_thread(store.replace, function, rules, time.time())
        except SquallError as e:
            return lambda_error(request, e)
        return json_response({"function": function, "schedules": [runner.describe(r) for r in stored]})

    async def list_schedules(request: Request) -> Response:
        function = request.path_params.get("function") or request.query_params.get("function") or None
        rules = await asyncio.to_thread(store.list, function)
        return json_response({"schedules": [runner.describe(r) for r in rules]})

    async def run_forever() -> None:
        warned = 0.0
        while True:
            try:
                await asyncio.to_thread(runner.tick, time.time())
            except DatabaseUnavailable as e:  # ticks resume (and catch up) when it is back; said once a minute
                if time.monotonic() - warned > 60:
                    warned = time.monotonic()
                    log.warning("schedules wait: %s", e)
            except Exception:
                log.exception("firing schedules")
            await asyncio.sleep(interval_s)

    async def on_change(name: str, _qualifier: str) -> None:
        if not await asyncio.to_thread(function_exists, name):
            dropped = await asyncio.to_thread(store.delete_function, name)
            if dropped:
                log.info("function %s deleted: dropped its %d schedule(s)", name, dropped)

    return Plugin(
        name="schedules",
        routes=[
            Route("/_squall/api/schedules", list_schedules, methods=["GET"]),
            Route("/_squall/api/schedules/{function}", list_schedules, methods=["GET"]),
            Route("/_squall/api/schedules/{function}", put_schedules, methods=["PUT"]),
        ],
        tasks=[run_forever],
        on_change=on_change,
        close=store.close,
        query=runner,
    )
