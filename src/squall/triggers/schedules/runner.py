"""Scheduled invocations (EventBridge-style rules per function): validating rules and the firing decision's shell.

The API is ``squall.triggers.schedules.api``.  Firing: every ``interval_s`` the runner computes ``due_fires`` for
each enabled rule from its persisted ``last_fire`` and ``created_at``, enqueues the events in the durable async queue
(``source`` "schedule"; durable when ``enqueue`` returns) and only then durably writes the new ``last_fire``.  So a
tick fires *at least once*, as EventBridge Scheduler promises: a crash between the two writes fires that tick again
at the next start, with the same event ``id`` (a uuid5 of the rule ARN and the tick, see ``scheduled_event``), which
a handler can deduplicate on; a tick is never lost.

Cluster mode (``outbox_kick`` given; every node runs a runner on the shared PostgreSQL): a tick is *claimed* by a
compare-and-set of the rule's ``last_fire`` and its event written to the event outbox in that same transaction
(``ScheduleStore.fire``), so exactly one node fires each tick, and "claimed" and "will be delivered" are one
commit.  The event's id is then the uuid5 of rule and tick too (the outbox row id, published as ``Nats-Msg-Id``):
a re-publish of the row is stored once by JetStream.  The payload is the rule's ``input`` when given, else
EventBridge's "Scheduled Event" for rule ``squall-{function}-{name}``.  Deleting a function drops its rules.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from squall.core.errors import InvalidParameterValue
from squall.functions.store.records import NewEvent
from squall.triggers.schedules.expressions import (
    Schedule,
    due_fires,
    event_id,
    next_fire,
    parse_schedule,
    scheduled_event,
)
from squall.triggers.schedules.store import ScheduleRule, ScheduleStore

__all__ = ["ScheduleRunner", "parse_rules", "rule_arn"]

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
        outbox_kick: Callable[[], object] | None = None,
    ) -> None:
        """``outbox_kick``: cluster mode (the store opened with ``outbox=True``): ticks are claimed and written to
        the outbox by ``store.fire``; this wakes the node's outbox drain after a claim."""
        self.store = store
        self.enqueue_many = enqueue_many
        self.outbox_kick = outbox_kick
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
            if self.outbox_kick is not None:  # cluster mode: claim the ticks and write their events in one commit
                for ev in events:
                    ev["id"] = ev["extra"]["event_id"]
                if not self.store.fire(rule, fires[-1], events, now):
                    continue  # another node claimed them (or the rule changed): not ours to fire
                self.outbox_kick()
                total += len(events)
                continue
            self.enqueue_many(events)  # durable when it returns
            # then the "fired" mark: a crash in between fires these ticks again (same event ids), never loses them
            self.store.set_last_fire(rule.function, rule.name, fires[-1])  # False: replaced or deleted meanwhile
            total += len(events)
        self.fired += total
        return total

    def triggers(self, function: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The dashboard's view (``core.ports.TriggerQuery``): the schedules, by function."""
        return [
            (rule.function, {
                "type": "schedule", "label": rule.expression, "detail": rule.name, "enabled": rule.enabled,
                "last_fire": rule.last_fire,
            })
            for rule in self.store.list(function)
        ]  # fmt: skip

    def describe(self, rule: ScheduleRule) -> dict[str, Any]:
        d = rule.to_dict()
        d["rule_arn"] = rule_arn(self.region, self.account, rule.function, rule.name)
        try:
            nxt = next_fire(self._schedule(rule.expression), max(time.time(), rule.created_at), anchor=rule.created_at)
            d["next_fire"] = nxt if nxt != float("inf") else None
        except InvalidParameterValue:
            d["next_fire"] = None
        return d
