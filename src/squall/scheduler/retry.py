"""Lambda's asynchronous-invocation retry policy, pure: every time is an input, the result is the next time.

Function errors: Lambda retries a failed async event ``max_retries`` times (0..2, default 2), waiting 1 minute before
the first retry and 2 minutes before the second (``base_delay_s * 2 ** (attempt - 1)``, ``base_delay_s`` = 60 by
default, a knob so tests and e2e runs can use short delays).  An event older than ``max_event_age_s`` (60..21600,
default 6 hours) is not retried.  ``None`` means give up: send the event to the on-failure destination (or DLQ).

Throttles (429) and platform errors (5xx) do not use up retries: the event goes back to the queue and is tried again
with exponential backoff from 1 second up to 5 minutes, until it is ``max_event_age_s`` old.

Times are seconds on one clock (the shell uses wall-clock seconds so queued events survive restarts).
"""

from __future__ import annotations

from squall.core.errors import InvalidParameterValue

__all__ = [
    "BASE_DELAY_S_DEFAULT",
    "MAX_EVENT_AGE_S_DEFAULT",
    "MAX_EVENT_AGE_S_MAX",
    "MAX_EVENT_AGE_S_MIN",
    "MAX_RETRIES_DEFAULT",
    "MAX_RETRIES_MAX",
    "THROTTLE_BASE_DELAY_S_DEFAULT",
    "THROTTLE_MAX_DELAY_S_DEFAULT",
    "next_attempt",
    "next_throttled_attempt",
    "validate_event_invoke_config",
]

MAX_RETRIES_DEFAULT = 2
MAX_RETRIES_MAX = 2
MAX_EVENT_AGE_S_DEFAULT = 21_600
MAX_EVENT_AGE_S_MIN = 60
MAX_EVENT_AGE_S_MAX = 21_600
#: wait before the first retry of a function error; the second waits twice as long
BASE_DELAY_S_DEFAULT = 60.0
#: first backoff after a throttle, doubled per throttle, capped at THROTTLE_MAX_DELAY_S_DEFAULT
THROTTLE_BASE_DELAY_S_DEFAULT = 1.0
THROTTLE_MAX_DELAY_S_DEFAULT = 300.0


def validate_event_invoke_config(max_retries: int, max_event_age_s: int) -> None:
    """Check PutFunctionEventInvokeConfig's ranges the way Lambda words its validation errors."""
    if not 0 <= max_retries <= MAX_RETRIES_MAX:
        bound = "less than or equal to 2" if max_retries > MAX_RETRIES_MAX else "greater than or equal to 0"
        raise InvalidParameterValue(
            f"1 validation error detected: Value '{max_retries}' at 'maximumRetryAttempts' failed to satisfy "
            f"constraint: Member must have value {bound}"
        )
    if not MAX_EVENT_AGE_S_MIN <= max_event_age_s <= MAX_EVENT_AGE_S_MAX:
        bound = (
            f"less than or equal to {MAX_EVENT_AGE_S_MAX}"
            if max_event_age_s > MAX_EVENT_AGE_S_MAX
            else f"greater than or equal to {MAX_EVENT_AGE_S_MIN}"
        )
        raise InvalidParameterValue(
            f"1 validation error detected: Value '{max_event_age_s}' at 'maximumEventAgeInSeconds' failed to "
            f"satisfy constraint: Member must have value {bound}"
        )


def next_attempt(
    attempt: int,
    enqueued_at: float,
    now: float,
    *,
    max_retries: int = MAX_RETRIES_DEFAULT,
    max_event_age_s: float = MAX_EVENT_AGE_S_DEFAULT,
    base_delay_s: float = BASE_DELAY_S_DEFAULT,
) -> float | None:
    """When to run an event again after its ``attempt``-th attempt (1 = the first) failed with a function error.

    Returns the time of the retry, or ``None`` to give up (retries used up, or the event would be older than
    ``max_event_age_s`` at the retry).  A retry due exactly at the age limit still runs.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if attempt > max_retries:
        return None
    at = now + base_delay_s * 2 ** (attempt - 1)
    if at - enqueued_at > max_event_age_s:
        return None
    return at


def next_throttled_attempt(
    throttles: int,
    enqueued_at: float,
    now: float,
    *,
    max_event_age_s: float = MAX_EVENT_AGE_S_DEFAULT,
    base_delay_s: float = THROTTLE_BASE_DELAY_S_DEFAULT,
    max_delay_s: float = THROTTLE_MAX_DELAY_S_DEFAULT,
) -> float | None:
    """When to try an event again after it was throttled (or hit a platform error) ``throttles`` times in a row.

    Backoff is ``base_delay_s * 2 ** (throttles - 1)`` capped at ``max_delay_s``; does not use up retries.  If the
    next try would come after the event is ``max_event_age_s`` old, it is tried once more at exactly that age; an
    event already that old gets ``None`` (give up: on-failure destination).
    """
    if throttles < 1:
        raise ValueError(f"throttles counts from 1, got {throttles}")
    deadline = enqueued_at + max_event_age_s
    if now >= deadline:
        return None
    delay = min(max_delay_s, base_delay_s * 2 ** min(throttles - 1, 62))
    return min(now + delay, deadline)
