"""Schedule expressions and the pure decision of which ticks to fire.

Accepted expressions (all times UTC):

* EventBridge ``rate(value unit)``: ``unit`` is ``minute``/``hour``/``day`` when ``value`` is 1 and
  ``minutes``/``hours``/``days`` otherwise (EventBridge rejects ``rate(5 minute)`` and ``rate(1 minutes)``);
  ``value`` is a positive integer.
* EventBridge ``cron(Minutes Hours Day-of-month Month Day-of-week Year)``: six fields; exactly one of
  Day-of-month/Day-of-week is ``?``; Day-of-week counts 1-7 = SUN-SAT (Unix cron counts 0-6); ``L`` (last day of
  month / last day of week, i.e. Saturday), ``nL`` in Day-of-week (last weekday *n* of the month), ``n#k`` (k-th
  weekday *n*, alone in its field) and ``nW`` (weekday nearest day *n*) are translated to croniter's syntax.
  ``LW`` is rejected (croniter cannot express it), as are years after 2099 (croniter's range, EventBridge allows
  2199).
* Plain Unix cron with five fields (``*/5 * * * *``), passed to croniter as is (Day-of-week 0-6 with 0 = Sunday,
  Day-of-month/Day-of-week combined with OR as in Vixie cron).

Firing rules (``due_fires``), each a function of ``(schedule, last_fire, created_at, now, catch_up)``:

* A *tick* is a time the expression designates.  ``rate()`` ticks are anchored at the rule's ``created_at``:
  ``created_at + k * period`` for k >= 1.  Cron ticks are wall-clock (UTC) times.  Only ticks strictly after
  ``created_at`` count.
* A tick is *due* when ``max(last_fire, created_at) < tick <= now``.  The caller persists the last fired tick as
  ``last_fire``, so each tick fires at most once (calling twice with the same ``now`` fires nothing the second time).
* Without ``catch_up`` only the most recent due tick fires; older due ticks are skipped for good.  The most recent
  due tick is by construction still within its own period (the next tick is after ``now``); a tick whose successor
  is already due is more than one period late and never fires.  This is EventBridge's behaviour: it does not
  backfill an outage, but a server that was down at 12:00 and comes back at 12:00:40 still delivers the 12:00 tick.
* With ``catch_up`` every due tick fires, oldest first, but at most ``CATCH_UP_LIMIT`` (100) of them: the 100 most
  recent due ticks.  Older ones are dropped permanently, so an outage never turns into unbounded work.

Each fired tick becomes EventBridge's "Scheduled Event" (``scheduled_event``), whose id is a uuid5 of the rule ARN
and the tick time: a tick re-fired after a crash (fired, but ``last_fire`` not yet persisted) carries the same id.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from croniter import croniter
from croniter.croniter import CroniterError

from squall.core.errors import InvalidParameterValue
from squall.core.timefmt import iso_s

__all__ = [
    "CATCH_UP_LIMIT",
    "Schedule",
    "due_fires",
    "event_id",
    "latest_tick",
    "next_fire",
    "parse_schedule",
    "scheduled_event",
]

CATCH_UP_LIMIT = 100
"""The most ticks one ``due_fires(catch_up=True)`` call returns (the most recent ones)."""

_RATE_UNITS: dict[str, float] = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE_EXAMPLE = "'rate(5 minutes)' or 'rate(1 hour)'"
_CRON_EXAMPLE = "'cron(0 12 * * ? *)' (every day at 12:00 UTC)"
_DOW_NAMES = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_YEAR_MAX = 2099  # croniter's upper bound; EventBridge allows up to 2199
_YEAR_MIN = 1970
_SEARCH_YEARS = _YEAR_MAX - _YEAR_MIN + 1  # croniter gives up after this many years without a match (default 50)
# Characters EventBridge documents for each field (names are checked by croniter / the day-of-week translation).
_FIELD_CHARS = (
    ("Minutes", re.compile(r"^[0-9,\-*/]+$")),
    ("Hours", re.compile(r"^[0-9,\-*/]+$")),
    ("Day-of-month", re.compile(r"^[0-9,\-*/?LW]+$")),
    ("Month", re.compile(r"^[0-9A-Za-z,\-*/]+$")),
    ("Day-of-week", re.compile(r"^[0-9A-Za-z,\-*?#]+$")),
    ("Year", re.compile(r"^[0-9,\-*/]+$")),
)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule expression.

    ``kind`` is ``"rate"`` (``period`` seconds set), ``"cron"`` (EventBridge 6-field) or ``"unix-cron"``
    (5-field); for both cron kinds ``cron`` holds the croniter expression evaluated in UTC.
    """

    expression: str
    kind: Literal["rate", "cron", "unix-cron"]
    period: float | None = None
    cron: str | None = None


def _invalid(expr: str, why: str, example: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Parameter ScheduleExpression is not valid: {expr} — {why}; use {example}")


def parse_schedule(expr: str) -> Schedule:
    """Parse ``rate(...)``, EventBridge ``cron(...)`` or 5-field Unix cron; raise InvalidParameterValue otherwise."""
    if not isinstance(expr, str) or not expr.strip():
        raise _invalid(repr(expr), "the expression is empty", f"{_RATE_EXAMPLE}, {_CRON_EXAMPLE} or '*/5 * * * *'")
    text = expr.strip()
    if text.startswith("rate(") or text.startswith("rate "):
        return _parse_rate(text)
    if text.startswith("cron(") or text.startswith("cron "):
        return _parse_eventbridge_cron(text)
    fields = text.split()
    if len(fields) == 5:
        return _parse_unix_cron(text)
    raise _invalid(
        text,
        "expected rate(value unit), cron(Minutes Hours Day-of-month Month Day-of-week Year) or a 5-field Unix cron",
        f"{_RATE_EXAMPLE}, {_CRON_EXAMPLE} or '*/5 * * * *'",
    )


def _parse_rate(text: str) -> Schedule:
    m = re.fullmatch(r"rate\(\s*(\S+)\s+(\S+)\s*\)", text)
    if not m:
        raise _invalid(text, "a rate expression is rate(value unit)", _RATE_EXAMPLE)
    raw_value, unit = m.group(1), m.group(2)
    if not raw_value.isdigit() or int(raw_value) < 1:
        raise _invalid(text, f"the value {raw_value!r} must be a positive whole number", _RATE_EXAMPLE)
    value = int(raw_value)
    base = unit[:-1] if unit.endswith("s") else unit
    if base not in _RATE_UNITS:
        raise _invalid(text, f"unknown unit {unit!r} (minute(s), hour(s) or day(s))", _RATE_EXAMPLE)
    plural = unit.endswith("s")
    if value == 1 and plural:
        raise _invalid(text, "the unit is singular for the value 1", f"'rate(1 {base})'")
    if value > 1 and not plural:
        raise _invalid(text, "the unit is plural for values above 1", f"'rate({value} {base}s)'")
    return Schedule(expression=text, kind="rate", period=value * _RATE_UNITS[base])


def _dow_number(token: str, text: str) -> int:
    """An EventBridge Day-of-week value (1-7 or SUN-SAT) as 1-7."""
    upper = token.upper()
    if upper in _DOW_NAMES:
        return _DOW_NAMES[upper]
    if upper.isdigit() and 1 <= int(upper) <= 7:
        return int(upper)
    raise _invalid(text, f"Day-of-week value {token!r} is not 1-7 or SUN-SAT (1 = SUN)", "'cron(0 18 ? * MON-FRI *)'")


def _translate_dow(field: str, text: str) -> str:
    """EventBridge Day-of-week (1-7 = SUN-SAT) to croniter's (0-6 = SUN-SAT)."""
    if field in ("*", "?"):
        return "*"
    if "#" in field and "," in field:
        raise _invalid(text, "'#' must be the only expression in Day-of-week", "'cron(0 10 ? * 3#2 *)'")
    out = []
    for item in field.split(","):
        if item.upper() == "L":  # last day of the week: Saturday
            out.append("6")
        elif m := re.fullmatch(r"(\w+?)L", item, re.IGNORECASE):
            out.append(f"L{_dow_number(m.group(1), text) - 1}")
        elif m := re.fullmatch(r"(\w+)#([1-5])", item):
            out.append(f"{_dow_number(m.group(1), text) - 1}#{m.group(2)}")
        elif m := re.fullmatch(r"(\w+)-(\w+)", item):
            out.append(f"{_dow_number(m.group(1), text) - 1}-{_dow_number(m.group(2), text) - 1}")
        elif re.fullmatch(r"\w+", item):
            out.append(str(_dow_number(item, text) - 1))
        else:
            raise _invalid(text, f"Day-of-week item {item!r} is not supported", "'cron(0 18 ? * MON-FRI *)'")
    return ",".join(out)


def _translate_dom(field: str, text: str) -> str:
    if field == "?":
        return "*"
    if "LW" in field.upper():
        raise _invalid(text, "'LW' in Day-of-month is not supported", "'cron(0 8 L * ? *)' (last day of the month)")
    return field


def _check_years(field: str, text: str) -> None:
    for number in re.findall(r"\d+", field.split("/")[0]):
        if not _YEAR_MIN <= int(number) <= _YEAR_MAX:
            raise _invalid(
                text,
                f"Year {number} is outside {_YEAR_MIN}-{_YEAR_MAX} (the supported range)",
                "'cron(0 12 * * ? 2026)'",
            )


def _parse_eventbridge_cron(text: str) -> Schedule:
    m = re.fullmatch(r"cron\((.*)\)", text)
    if not m:
        raise _invalid(text, "a cron expression is cron(fields)", _CRON_EXAMPLE)
    fields = m.group(1).split()
    if len(fields) != 6:
        hint = "; plain 5-field Unix cron is accepted without cron( )" if len(fields) == 5 else ""
        raise _invalid(
            text,
            f"EventBridge cron needs 6 fields (Minutes Hours Day-of-month Month Day-of-week Year), got {len(fields)}{hint}",
            _CRON_EXAMPLE,
        )
    for (name, allowed), value in zip(_FIELD_CHARS, fields, strict=True):
        if not allowed.match(value):
            raise _invalid(text, f"the {name} field {value!r} has characters EventBridge does not allow", _CRON_EXAMPLE)
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise _invalid(
            text,
            "exactly one of Day-of-month and Day-of-week must be '?'",
            f"{_CRON_EXAMPLE} or 'cron(0 18 ? * MON-FRI *)'",
        )
    if (dom != "?" and "?" in dom) or (dow != "?" and "?" in dow):
        raise _invalid(text, "'?' must be the whole Day-of-month or Day-of-week field", _CRON_EXAMPLE)
    if year != "*":
        _check_years(year, text)
    expr = " ".join([minute, hour, _translate_dom(dom, text), month, _translate_dow(dow, text), "0", year])
    _validate_croniter(expr, text, _CRON_EXAMPLE)
    return Schedule(expression=text, kind="cron", cron=expr)


def _parse_unix_cron(text: str) -> Schedule:
    expr = " ".join(text.split())
    _validate_croniter(expr, text, "'*/5 * * * *' (every 5 minutes)")
    return Schedule(expression=text, kind="unix-cron", cron=expr)


def _validate_croniter(expr: str, text: str, example: str) -> None:
    try:
        croniter(expr, 0.0)
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise _invalid(text, f"not a valid cron expression ({exc})", example)


# --- evaluation -------------------------------------------------------------------------------------------------


def _rate_tick(anchor: float, period: float, k: int) -> float:
    """The k-th rate tick; always computed the same way so equal k gives bit-identical floats."""
    return anchor + k * period


def _rate_k_at_or_before(anchor: float, period: float, at: float) -> int:
    """The largest k with tick(k) <= at (may be < 1, meaning no tick yet)."""
    k = math.floor((at - anchor) / period)
    while _rate_tick(anchor, period, k) > at:
        k -= 1
    while _rate_tick(anchor, period, k + 1) <= at:
        k += 1
    return k


def next_fire(schedule: Schedule, after: float, *, anchor: float = 0.0) -> float:
    """The first tick strictly after ``after``; ``math.inf`` when there is none (e.g. a past Year).

    ``anchor`` only matters for ``rate()`` schedules: ticks are ``anchor + k * period`` for k >= 1 (pass the rule's
    ``created_at``; the default 0.0 aligns ticks to the epoch).
    """
    if schedule.kind == "rate":
        assert schedule.period is not None
        k = max(1, _rate_k_at_or_before(anchor, schedule.period, after) + 1)
        return _rate_tick(anchor, schedule.period, k)
    assert schedule.cron is not None
    # Cron ticks fall on whole seconds: "strictly after" is "strictly after floor(after)" — and croniter must not
    # see the fraction (it rounds 11:59:59.9999998 to 12:00:00 and would skip the 12:00 tick)
    try:
        return float(
            croniter(schedule.cron, math.floor(after), max_years_between_matches=_SEARCH_YEARS).get_next(float)
        )
    except CroniterError:
        return math.inf


def latest_tick(schedule: Schedule, at: float, *, anchor: float = 0.0) -> float | None:
    """The last tick at or before ``at`` (None when there is none); ``anchor`` as for ``next_fire``."""
    if schedule.kind == "rate":
        assert schedule.period is not None
        k = _rate_k_at_or_before(anchor, schedule.period, at)
        return _rate_tick(anchor, schedule.period, k) if k >= 1 else None
    assert schedule.cron is not None
    # Cron ticks fall on whole seconds, so "<= at" is "< floor(at) + 1" and croniter's get_prev is strict.
    return _cron_prev(schedule.cron, math.floor(at) + 1.0)


def _cron_prev(cron: str, before: float) -> float | None:
    try:
        return float(croniter(cron, before, max_years_between_matches=_SEARCH_YEARS).get_prev(float))
    except CroniterError:
        return None


def due_fires(
    schedule: Schedule,
    last_fire: float | None,
    created_at: float,
    now: float,
    catch_up: bool,
    *,
    limit: int = CATCH_UP_LIMIT,
) -> list[float]:
    """The ticks to fire at ``now``, oldest first (see the module docstring for the exact rules).

    The caller fires them in order and persists the last one as ``last_fire``.
    """
    start = created_at if last_fire is None else max(last_fire, created_at)
    if now <= start:
        return []
    if schedule.kind == "rate":
        period = schedule.period
        assert period is not None
        k_max = _rate_k_at_or_before(created_at, period, now)
        k_min = max(1, _rate_k_at_or_before(created_at, period, start) + 1)
        if k_max < k_min:
            return []
        if not catch_up:
            return [_rate_tick(created_at, period, k_max)]
        return [_rate_tick(created_at, period, k) for k in range(max(k_min, k_max - limit + 1), k_max + 1)]
    latest = latest_tick(schedule, now)
    if latest is None or latest <= start:
        return []
    if not catch_up:
        return [latest]
    assert schedule.cron is not None
    fires = [latest]
    while len(fires) < limit:
        prev = _cron_prev(schedule.cron, fires[-1])
        if prev is None or prev <= start:
            break
        fires.append(prev)
    fires.reverse()
    return fires


def event_id(rule_arn: str, fire_time: float) -> str:
    """The deterministic id of the event for one tick of one rule (uuid5 of the rule ARN and the tick)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"squall:schedule:{rule_arn}@{fire_time:.3f}"))


def scheduled_event(rule_name: str, rule_arn: str, fire_time: float, region: str, account: str) -> dict[str, Any]:
    """EventBridge's "Scheduled Event" for the tick ``fire_time`` of a rule.

    ``time`` is the scheduled tick (not the delivery time) at second resolution; ``rule_name`` is implied by the ARN
    and is accepted so callers need not parse it.
    """
    return {
        "version": "0",
        "id": event_id(rule_arn, fire_time),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": iso_s(fire_time),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }
