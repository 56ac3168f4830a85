"""Scheduled invocations (EventBridge-style rules per function): the API, the firing loop and the cleanup hook.

API (signed, on the main port):

* ``PUT /_squall/api/schedules/{function}`` with ``{"schedules": [{"name", "expression", "enabled"?, "input"?,
  "catch_up"?}]}`` replaces the function's schedules (expressions as in ``squall.triggers.schedules.expressions``; an invalid
  one is a 400 ``InvalidParameterValueException``, an unknown function a 404).
* ``GET /_squall/api/schedules`` (optionally ``?function=NAME``) and ``GET /_squall/api/schedules/{function}``
  list them, with each rule's ``next_fire``.

Firing: every ``interval_s`` the runner computes ``due_fires`` for each enabled rule from its persisted
``last_fire`` and ``created_at``, durably writes the new ``last_fire`` and only then enqueues the events in the
durable async queue (``source`` "schedule"), so a tick fires at most once even across crashes and restarts (a crash
between the two writes loses that tick rather than doubling it).  The payload is the rule's ``input`` when given,
else EventBridge's "Scheduled Event" for rule ``squall-{function}-{name}``.  Deleting a function drops its rules.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.aws.json_api import json_response, lambda_error, parse_json
from squall.core.errors import InvalidParameterValue, ResourceNotFound, SquallError
from squall.functions.store.records import NewEvent
from squall.triggers.plugin import Plugin
from squall.triggers.schedules.expressions import (
    Schedule,
    due_fires,
    event_id,
    next_fire,
    parse_schedule,
    scheduled_event,
)
from squall.triggers.schedules.store import ScheduleRule, ScheduleStore

if TYPE_CHECKING:
    from squall.server import Squall

__all__ = ["ScheduleRunner", "install", "parse_rules", "rule_arn"]

log = logging.getLogger("squall.schedules")

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MAX_RULES = 100


def rule_arn(region: str, account: str, function: str, name: str) -> str:
    return f"arn:aws:events:{region}:{account}:rule/squall-{function}-{name}"


def parse_rules(function: str, body: Any) -> list[ScheduleRule]:
    """Validate a PUT body into rules (``created_at``/``last_fire`` unset); raises InvalidParameterValue."""
    if not isinstance(body, dict) or not isinstance(body.get("schedules"), list):
        raise InvalidParameterValue('The request body must be a JSON object {"schedules": [...]}.')
    items = body["schedules"]
    if len(items) > _MAX_RULES:
        raise InvalidParameterValue(f"A function can have at most {_MAX_RULES} schedules.")
    rules: list[ScheduleRule] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidParameterValue(f"schedules[{i}] must be an object.")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidParameterValue(f"schedules[{i}].name must be 1-64 characters of A-Z a-z 0-9 . _ -.")
        if name in seen:
            raise InvalidParameterValue(f"Schedule name {name!r} is used twice.")
        seen.add(name)
        expression = item.get("expression")
        if not isinstance(expression, str):
            raise InvalidParameterValue(f"schedules[{i}].expression must be a string such as 'rate(5 minutes)'.")
        parse_schedule(expression)  # raises InvalidParameterValue with the reason and an example
        enabled = item.get("enabled", True)
        catch_up = item.get("catch_up", False)
        if not isinstance(enabled, bool) or not isinstance(catch_up, bool):
            raise InvalidParameterValue(f"schedules[{i}].enabled and .catch_up must be booleans.")
        payload = json.dumps(item["input"]) if item.get("input") is not None else None
        rules.append(ScheduleRule(function, name, expression.strip(), enabled, payload, catch_up))
    return rules


class ScheduleRunner:
    """Decides and enqueues due ticks.  ``tick(now)`` is synchronous (SQLite, fsync): run it in a thread."""

    def __init__(
        self,
        store: ScheduleStore,
        enqueue_many: Callable[[Iterable[NewEvent]], Any],
        *,
        region: str,
        account: str,
    ) -> None:
        self.store = store
        self.enqueue_many = enqueue_many
        self.region = region
        self.account = account
        self.fired = 0
        self._parsed: dict[str, Schedule] = {}

    def _schedule(self, expression: str) -> Schedule:
        s = self._parsed.get(expression)
        if s is None:
            s = self._parsed[expression] = parse_schedule(expression)
        return s

    def tick(self, now: float) -> int:
        """Fire every due tick of every enabled rule; returns how many events were enqueued."""
        total = 0
        for rule in self.store.list():
            if not rule.enabled:
                continue
            try:
                schedule = self._schedule(rule.expression)
            except InvalidParameterValue:
                continue
            fires = due_fires(schedule, rule.last_fire, rule.created_at, now, rule.catch_up)
            if not fires:
                continue
            # durable "fired" mark first: a crash after this loses the ticks rather than firing them twice
            if not self.store.set_last_fire(rule.function, rule.name, fires[-1]):
                continue  # the rule was replaced or deleted meanwhile
            arn = rule_arn(self.region, self.account, rule.function, rule.name)
            events: list[NewEvent] = []
            for t in fires:
                if rule.input is not None:
                    payload = rule.input.encode()
                else:
                    payload = json.dumps(scheduled_event(rule.name, arn, t, self.region, self.account)).encode()
                events.append(
                    {
                        "function": rule.function,
                        "payload": payload,
                        "request_id": str(uuid.uuid4()),
                        "source": "schedule",
                        "extra": {"schedule": rule.name, "event_id": event_id(arn, t), "tick": t},
                    }
                )
            self.enqueue_many(events)
            total += len(events)
        self.fired += total
        return total

    def describe(self, rule: ScheduleRule) -> dict[str, Any]:
        d = rule.to_dict()
        d["rule_arn"] = rule_arn(self.region, self.account, rule.function, rule.name)
        try:
            nxt = next_fire(self._schedule(rule.expression), max(time.time(), rule.created_at), anchor=rule.created_at)
            d["next_fire"] = nxt if nxt != float("inf") else None
        except InvalidParameterValue:
            d["next_fire"] = None
        return d


def install(squall: Squall, interval_s: float = 0.5) -> Plugin:
    """The schedules plugin: API routes, the firing task and the function-deleted hook."""
    c = squall.config
    store = ScheduleStore(c.data_dir / "schedules.db")
    # through the invoker's async path (the dispatcher's hand-over), looked up at each tick
    runner = ScheduleRunner(
        store, lambda events: squall.invoker.enqueue_async(list(events)), region=c.region, account=c.account_id
    )

    def function_exists(name: str) -> bool:
        try:
            squall.store.get_function(name)
            return True
        except ResourceNotFound:
            return False

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
        while True:
            try:
                await asyncio.to_thread(runner.tick, time.time())
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
    )
