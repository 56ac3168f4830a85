"""Schedule expressions and next/due fire decisions: table tests with explicit times, no sleeps."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from squall.core.clock import FakeClock
from squall.core.errors import InvalidParameterValue
from squall.triggers.schedules.expressions import (
    CATCH_UP_LIMIT,
    due_fires,
    latest_tick,
    next_fire,
    parse_schedule,
    scheduled_event,
)


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, sec: int = 0) -> float:
    return datetime(y, mo, d, h, mi, sec, tzinfo=UTC).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M %a")


def fires_after(expr: str, start: float, n: int) -> list[str]:
    s = parse_schedule(expr)
    out, t = [], start
    for _ in range(n):
        t = next_fire(s, t)
        out.append(iso(t))
    return out


# --- rate ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "period"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43200),
        ("rate(1 day)", 86400),
        ("rate(2 days)", 172800),
        ("  rate(10 minutes) ", 600),
    ],
)
def test_rate_parses(expr: str, period: int) -> None:
    s = parse_schedule(expr)
    assert s.kind == "rate"
    assert s.period == period


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("rate(5 minute)", "use 'rate(5 minutes)'"),
        ("rate(2 day)", "use 'rate(2 days)'"),
        ("rate(1 minutes)", "use 'rate(1 minute)'"),
        ("rate(1 hours)", "use 'rate(1 hour)'"),
        ("rate(0 minutes)", "positive whole number"),
        ("rate(-5 minutes)", "positive whole number"),
        ("rate(1.5 hours)", "positive whole number"),
        ("rate(30 seconds)", "unknown unit 'seconds'"),
        ("rate(2 weeks)", "unknown unit 'weeks'"),
        ("rate(5)", "rate(value unit)"),
        ("rate()", "rate(value unit)"),
    ],
)
def test_rate_invalid(expr: str, fragment: str) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        parse_schedule(expr)
    assert exc.value.message.startswith(f"Parameter ScheduleExpression is not valid: {expr.strip()} — ")
    assert fragment in exc.value.message
    assert exc.value.code == "InvalidParameterValueException"


def test_rate_is_anchored_at_created_at() -> None:
    s = parse_schedule("rate(5 minutes)")
    created = 1_700_000_123.5
    assert next_fire(s, created, anchor=created) == created + 300
    assert next_fire(s, created + 299.9, anchor=created) == created + 300
    assert next_fire(s, created + 300, anchor=created) == created + 600  # strictly after
    assert next_fire(s, created - 10_000, anchor=created) == created + 300  # first tick is created + period
    assert latest_tick(s, created + 299, anchor=created) is None
    assert latest_tick(s, created + 300, anchor=created) == created + 300


# --- EventBridge cron ---------------------------------------------------------------------------------------

JAN1 = ts(2026, 1, 1)  # a Thursday


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # daily at 12:00 UTC
        ("cron(0 12 * * ? *)", ["2026-01-01 12:00 Thu", "2026-01-02 12:00 Fri", "2026-01-03 12:00 Sat"]),
        ("cron(0 12 ? * * *)", ["2026-01-01 12:00 Thu", "2026-01-02 12:00 Fri", "2026-01-03 12:00 Sat"]),
        # weekdays at 18:00
        (
            "cron(0 18 ? * MON-FRI *)",
            ["2026-01-01 18:00 Thu", "2026-01-02 18:00 Fri", "2026-01-05 18:00 Mon", "2026-01-06 18:00 Tue"],
        ),
        ("cron(0 18 ? * 2-6 *)", ["2026-01-01 18:00 Thu", "2026-01-02 18:00 Fri", "2026-01-05 18:00 Mon"]),
        # monthly on the 1st at 08:00
        ("cron(0 8 1 * ? *)", ["2026-01-01 08:00 Thu", "2026-02-01 08:00 Sun", "2026-03-01 08:00 Sun"]),
        # last Friday of the month, 2026 only (6 = FRI in EventBridge)
        ("cron(15 10 ? * 6L 2026)", ["2026-01-30 10:15 Fri", "2026-02-27 10:15 Fri", "2026-03-27 10:15 Fri"]),
        ("cron(15 10 ? * FRIL 2026)", ["2026-01-30 10:15 Fri", "2026-02-27 10:15 Fri"]),
        # day-of-week 1 is Sunday, 7 is Saturday
        ("cron(0 10 ? * 1 *)", ["2026-01-04 10:00 Sun", "2026-01-11 10:00 Sun"]),
        ("cron(0 10 ? * SUN *)", ["2026-01-04 10:00 Sun", "2026-01-11 10:00 Sun"]),
        ("cron(0 10 ? * 7 *)", ["2026-01-03 10:00 Sat", "2026-01-10 10:00 Sat"]),
        ("cron(0 10 ? * 1,7 *)", ["2026-01-03 10:00 Sat", "2026-01-04 10:00 Sun", "2026-01-10 10:00 Sat"]),
        # L alone in day-of-week: the last day of the week, Saturday
        ("cron(0 10 ? * L *)", ["2026-01-03 10:00 Sat", "2026-01-10 10:00 Sat"]),
        # second Tuesday of the month (3 = TUE)
        ("cron(0 10 ? * 3#2 *)", ["2026-01-13 10:00 Tue", "2026-02-10 10:00 Tue"]),
        ("cron(0 10 ? * TUE#2 *)", ["2026-01-13 10:00 Tue", "2026-02-10 10:00 Tue"]),
        # last day of the month; weekday nearest the 3rd (Jan 3 2026 is a Saturday -> Friday 2nd)
        ("cron(0 0 L * ? *)", ["2026-01-31 00:00 Sat", "2026-02-28 00:00 Sat"]),
        ("cron(0 9 3W * ? *)", ["2026-01-02 09:00 Fri", "2026-02-03 09:00 Tue"]),
        # increments, month names, years
        ("cron(0/15 * * * ? *)", ["2026-01-01 00:15 Thu", "2026-01-01 00:30 Thu", "2026-01-01 00:45 Thu"]),
        ("cron(1/20 * * * ? *)", ["2026-01-01 00:01 Thu", "2026-01-01 00:21 Thu", "2026-01-01 00:41 Thu"]),
        ("cron(0 0 1 JUN,DEC ? *)", ["2026-06-01 00:00 Mon", "2026-12-01 00:00 Tue", "2027-06-01 00:00 Tue"]),
        ("cron(0 0 1 1 ? 2027-2028)", ["2027-01-01 00:00 Fri", "2028-01-01 00:00 Sat"]),
        ("cron(0 0 1 1 ? 2099)", ["2099-01-01 00:00 Thu"]),
    ],
)
def test_eventbridge_cron(expr: str, expected: list[str]) -> None:
    assert fires_after(expr, JAN1, len(expected)) == expected


def test_cron_past_year_never_fires_again() -> None:
    s = parse_schedule("cron(0 0 1 1 ? 2020)")
    assert next_fire(s, JAN1) == math.inf
    assert latest_tick(s, JAN1) == ts(2020, 1, 1)


def test_cron_impossible_date_never_fires() -> None:
    s = parse_schedule("cron(0 0 30 2 ? *)")
    assert next_fire(s, JAN1) == math.inf
    assert due_fires(s, None, JAN1, JAN1 + 10 * 365 * 86400, catch_up=True) == []


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("cron(0 12 * * * *)", "exactly one of Day-of-month and Day-of-week must be '?'"),
        ("cron(0 12 ? * ? *)", "exactly one of Day-of-month and Day-of-week must be '?'"),
        ("cron(0 12 1 * MON *)", "exactly one of Day-of-month and Day-of-week must be '?'"),
        ("cron(0 12 * * ?)", "needs 6 fields"),
        ("cron(0 0 12 * * ? *)", "needs 6 fields"),
        ("cron(0 12 ? * 0 *)", "Day-of-week value '0' is not 1-7 or SUN-SAT"),
        ("cron(0 12 ? * 8 *)", "Day-of-week value '8'"),
        ("cron(0 12 ? * FUNDAY *)", "Day-of-week value 'FUNDAY'"),
        ("cron(0 10 ? * 3#1,6#3 *)", "'#' must be the only expression"),
        ("cron(0 12 ? * 2/2 *)", "characters EventBridge does not allow"),
        ("cron(0 12 LW * ? *)", "'LW' in Day-of-month is not supported"),
        ("cron(61 12 * * ? *)", "not a valid cron expression"),
        ("cron(0 24 * * ? *)", "not a valid cron expression"),
        ("cron(0 12 32 * ? *)", "not a valid cron expression"),
        ("cron(0 12 * 13 ? *)", "not a valid cron expression"),
        ("cron(0 12 * * ? 1969)", "Year 1969 is outside"),
        ("cron(0 12 * * ? 2150)", "Year 2150 is outside"),
        ("cron(0 12 ?5 * ? *)", "'?' must be the whole"),
        ("every day", "expected rate(value unit)"),
        ("", "empty"),
        ("61 * * * *", "not a valid cron expression"),
    ],
)
def test_cron_invalid(expr: str, fragment: str) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        parse_schedule(expr)
    assert fragment in exc.value.message
    assert " use " in exc.value.message  # every message shows a valid example


# --- Unix cron ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("*/5 * * * *", ["2026-01-01 00:05 Thu", "2026-01-01 00:10 Thu"]),
        ("0 12 * * *", ["2026-01-01 12:00 Thu", "2026-01-02 12:00 Fri"]),
        ("0 9 * * 0", ["2026-01-04 09:00 Sun", "2026-01-11 09:00 Sun"]),  # Unix: 0 = Sunday
        ("0 9 * * 1-5", ["2026-01-01 09:00 Thu", "2026-01-02 09:00 Fri", "2026-01-05 09:00 Mon"]),
    ],
)
def test_unix_cron(expr: str, expected: list[str]) -> None:
    assert parse_schedule(expr).kind == "unix-cron"
    assert fires_after(expr, JAN1, len(expected)) == expected


# --- next_fire ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr", ["cron(0 12 * * ? *)", "*/5 * * * *", "rate(5 minutes)"])
def test_next_fire_is_strictly_after(expr: str) -> None:
    s = parse_schedule(expr)
    t = next_fire(s, JAN1)
    assert t > JAN1
    assert next_fire(s, t) > t  # standing exactly on a tick gives the next one
    assert next_fire(s, t - 0.001) == t


# --- due_fires ----------------------------------------------------------------------------------------------


def test_due_fires_normal_operation_with_fake_clock() -> None:
    clock = FakeClock(start=JAN1)
    s = parse_schedule("rate(1 minute)")
    created, last = clock.now(), None
    fired: list[float] = []
    for _ in range(10):
        clock.advance(30)
        batch = due_fires(s, last, created, clock.now(), catch_up=False)
        fired += batch
        last = batch[-1] if batch else last
    assert fired == [created + 60 * k for k in range(1, 6)]


@pytest.mark.parametrize(
    "expr", ["rate(1 minute)", "cron(* * * * ? *)", "*/5 * * * *", "cron(0 * * * ? *)", "rate(3 hours)"]
)
def test_restart_downtime_of_ten_ticks(expr: str) -> None:
    """The server fires a tick, is down for ten more, and comes back: one fire, or ten with catch_up."""
    s = parse_schedule(expr)
    created = JAN1
    first = next_fire(s, created, anchor=created)
    assert due_fires(s, None, created, first, catch_up=False) == [first]
    last_fire = first  # persisted before the crash
    missed = [first]
    for _ in range(10):
        missed.append(next_fire(s, missed[-1], anchor=created))
    missed = missed[1:]
    now = missed[-1] + 1.0  # back up just after the 10th missed tick, before the 11th
    assert due_fires(s, last_fire, created, now, catch_up=False) == [missed[-1]]
    assert due_fires(s, last_fire, created, now, catch_up=True) == missed


def test_catch_up_is_capped_to_the_most_recent() -> None:
    s = parse_schedule("rate(1 minute)")
    fires = due_fires(s, None, JAN1, JAN1 + 1000 * 60, catch_up=True)
    assert len(fires) == CATCH_UP_LIMIT
    assert fires[0] == JAN1 + 901 * 60
    assert fires[-1] == JAN1 + 1000 * 60
    cron = parse_schedule("cron(* * * * ? *)")
    assert due_fires(cron, None, JAN1, JAN1 + 1000 * 60, catch_up=True) == fires
    assert len(due_fires(s, None, JAN1, JAN1 + 1000 * 60, catch_up=True, limit=3)) == 3


@pytest.mark.parametrize("catch_up", [False, True])
@pytest.mark.parametrize("expr", ["rate(5 minutes)", "cron(0/5 * * * ? *)"])
def test_no_double_fire_at_the_same_now(expr: str, catch_up: bool) -> None:
    s = parse_schedule(expr)
    now = JAN1 + 3600 + 17
    first = due_fires(s, None, JAN1, now, catch_up)
    assert first
    assert due_fires(s, first[-1], JAN1, now, catch_up) == []
    assert due_fires(s, first[-1], JAN1, now + 0.5, catch_up) == []


def test_nothing_due_before_the_first_tick() -> None:
    s = parse_schedule("cron(0 12 * * ? *)")
    assert due_fires(s, None, JAN1, JAN1 + 11 * 3600, catch_up=True) == []
    assert due_fires(s, None, JAN1, JAN1 + 12 * 3600, catch_up=False) == [JAN1 + 12 * 3600]  # tick == now is due
    # a tick exactly at created_at does not count (strictly after)
    assert due_fires(s, None, JAN1 + 12 * 3600, JAN1 + 13 * 3600, catch_up=True) == []
    assert due_fires(s, None, JAN1, JAN1 - 5, catch_up=True) == []  # clock behind creation


def test_cron_ticks_before_creation_are_ignored() -> None:
    s = parse_schedule("cron(0 * * * ? *)")
    created = JAN1 + 5 * 3600 + 30
    assert due_fires(s, None, created, created + 3600, catch_up=True) == [JAN1 + 6 * 3600]


SCHEDULES = ["rate(1 minute)", "rate(7 minutes)", "rate(2 hours)", "cron(0/10 * * * ? *)", "*/3 * * * *"]


def test_next_cron_fire_just_before_a_tick_is_that_tick() -> None:
    """A rule created 0.2 µs before 12:00:00 fires at 12:00:00 (croniter rounded the start up and skipped it)."""
    s = parse_schedule("cron(0/10 * * * ? *)")
    tick = 1767312000.0  # 2026-01-02 00:00:00 UTC
    assert next_fire(s, tick - 2e-7) == tick
    assert next_fire(s, tick) == tick + 600
    assert due_fires(s, None, tick - 2e-7, tick + 1, True) == [tick]


@settings(max_examples=150, deadline=None)
@example(expr="cron(0/10 * * * ? *)", created=1767311999.9999998, steps=[1.0], catch_up=True)
@given(
    expr=st.sampled_from(SCHEDULES),
    created=st.floats(min_value=JAN1, max_value=JAN1 + 86400, allow_nan=False),
    steps=st.lists(st.floats(min_value=0, max_value=6 * 3600, allow_nan=False), min_size=1, max_size=25),
    catch_up=st.booleans(),
)
def test_fires_are_strictly_increasing_and_after_last_fire(
    expr: str, created: float, steps: list[float], catch_up: bool
) -> None:
    s = parse_schedule(expr)
    now, last = created, None
    history: list[float] = []
    for step in steps:
        now += step
        batch = due_fires(s, last, created, now, catch_up)
        assert batch == sorted(set(batch))
        assert all(created < t <= now for t in batch)
        if last is not None:
            assert all(t > last for t in batch)
        assert len(batch) <= (CATCH_UP_LIMIT if catch_up else 1)
        history += batch
        last = batch[-1] if batch else last
    assert history == sorted(set(history))
    if catch_up and len(history) < CATCH_UP_LIMIT:
        # with catch_up and no cap hit, every tick up to now fired exactly once
        expected, t = [], next_fire(s, created, anchor=created)
        while t <= now:
            expected.append(t)
            t = next_fire(s, t, anchor=created)
        assert history == expected


# --- scheduled event ----------------------------------------------------------------------------------------


def test_scheduled_event_shape() -> None:
    arn = "arn:aws:events:us-east-1:123456789012:rule/nightly"
    tick = ts(2026, 3, 12, 19, 3, 0)
    ev = scheduled_event("nightly", arn, tick, "us-east-1", "123456789012")
    assert ev == {
        "version": "0",
        "id": ev["id"],
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-03-12T19:03:00Z",
        "region": "us-east-1",
        "resources": [arn],
        "detail": {},
    }
    assert list(ev) == ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"]
    assert uuid.UUID(ev["id"]).version == 5
    # deterministic per (rule, tick): a re-fire after a crash carries the same id
    assert scheduled_event("nightly", arn, tick, "us-east-1", "123456789012")["id"] == ev["id"]
    assert scheduled_event("nightly", arn, tick + 60, "us-east-1", "123456789012")["id"] != ev["id"]
    assert scheduled_event("other", arn.replace("nightly", "other"), tick, "us-east-1", "1")["id"] != ev["id"]
