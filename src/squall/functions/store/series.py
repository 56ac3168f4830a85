"""Time series of invocation records for the dashboard: per-bucket counts, percentiles, cost inputs and concurrency.

Everything is aggregated inside SQLite, over the ``invocations_function_start`` / ``invocations_start`` indexes:

* counts and sums: one ``GROUP BY bucket`` pass;
* p50/p99 duration: nearest-rank percentiles per bucket from ``ROW_NUMBER()``/``COUNT()`` window functions
  (same definition as ``usage()``: the ``ceil(p * n)``-th smallest duration of the non-throttled records);
* concurrency: ``avg_concurrency`` is busy time / bucket length (sum of durations overlapping the bucket,
  attributed to the bucket an invocation started in); ``max_concurrency`` is exact: a sweep over start (+1) and
  end (-1) events with a running ``SUM() OVER`` window, maximum per bucket.

Throttled records count only as throttles (they ran nothing).  Buckets are ``[since + i * step, since + (i+1) *
step)``; buckets without records are present with zeros (``None`` for percentiles).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from squall.core.errors import InvalidParameterValue
from squall.functions.store.sqlite import SqliteBase

__all__ = ["MAX_BUCKETS", "FunctionSummary", "Series", "SeriesMixin"]

#: the most buckets one series may have
MAX_BUCKETS = 2000


@dataclass
class Series:
    """Columnar buckets (one list entry per bucket), ready for a chart library."""

    since: float
    until: float
    step: float
    t: list[float] = field(default_factory=list)
    invocations: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    throttles: list[int] = field(default_factory=list)
    cold_starts: list[int] = field(default_factory=list)
    p50_ms: list[float | None] = field(default_factory=list)
    p99_ms: list[float | None] = field(default_factory=list)
    billed_ms: list[int] = field(default_factory=list)
    #: sum of billed_ms * memory_mb / 1024 / 1000 per bucket
    gb_seconds: list[float] = field(default_factory=list)
    avg_concurrency: list[float] = field(default_factory=list)
    max_concurrency: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class FunctionSummary:
    """One function's totals over a window (the overview table)."""

    function: str
    invocations: int
    errors: int
    throttles: int
    cold_starts: int
    billed_ms: int
    gb_seconds: float
    p50_ms: float | None
    p99_ms: float | None
    last_start: float | None


def _bucket_count(since: float, until: float, step: float) -> int:
    if step <= 0:
        raise InvalidParameterValue(f"Invalid value for 'step': {step} must be positive.")
    if until <= since:
        raise InvalidParameterValue(f"Invalid time range: 'since' ({since}) must be before 'until' ({until}).")
    n = int(-(-(until - since) // step))
    if n > MAX_BUCKETS:
        raise InvalidParameterValue(
            f"Invalid value for 'step': {step} s gives {n} buckets over the window; at most {MAX_BUCKETS} are allowed."
        )
    return n


class SeriesMixin(SqliteBase):
    """Read-only aggregate queries over ``invocations`` (mixed into ``SqliteMetadataStore``)."""

    def series(self, function: str | None, since: float, until: float, step: float) -> Series:
        """Buckets of ``step`` seconds over ``since <= start < until`` (of one function, or of all)."""
        n = _bucket_count(since, until, step)
        where = "start >= ? AND start < ?"
        args: list[Any] = [since, until]
        if function is not None:
            where += " AND function = ?"
            args.append(function)
        key = "CAST((start - ?) / ? AS INTEGER)"
        with self._read() as conn:
            sums = conn.execute(
                f"SELECT {key} AS k, SUM(status != 'throttled'), SUM(status NOT IN ('ok', 'throttled')), "
                "SUM(status = 'throttled'), SUM(status != 'throttled' AND cold), "
                "SUM(CASE WHEN status != 'throttled' THEN billed_ms ELSE 0 END), "
                "SUM(CASE WHEN status != 'throttled' THEN billed_ms * memory_mb ELSE 0 END), "
                "SUM(CASE WHEN status != 'throttled' THEN duration_ms ELSE 0 END) "
                f"FROM invocations WHERE {where} GROUP BY k",
                (since, step, *args),
            ).fetchall()
            pcts = conn.execute(
                "WITH r AS (SELECT k, duration_ms, ROW_NUMBER() OVER (PARTITION BY k ORDER BY duration_ms) AS rn, "
                "COUNT(*) OVER (PARTITION BY k) AS n FROM "
                f"(SELECT {key} AS k, duration_ms FROM invocations WHERE {where} AND status != 'throttled')) "
                "SELECT k, MAX(CASE WHEN rn = (n + 1) / 2 THEN duration_ms END), "
                "MAX(CASE WHEN rn = (99 * n + 99) / 100 THEN duration_ms END) FROM r GROUP BY k",
                (since, step, *args),
            ).fetchall()
            # exact concurrency: +1 at each start, -1 at each end; a record that started before the window but
            # was still running counts too (look back one bucket or 15 minutes, whichever is longer: Lambda's
            # longest timeout)
            lookback = max(step, 900.0)
            peak_args: list[Any] = [since - lookback, until]
            peak_where = "start >= ? AND start < ? AND status != 'throttled'"
            if function is not None:
                peak_where += " AND function = ?"
                peak_args.append(function)
            peaks = conn.execute(
                "WITH e AS (SELECT start AS t, 1 AS d FROM invocations WHERE "
                f"{peak_where} UNION ALL SELECT start + duration_ms / 1000.0, -1 FROM invocations WHERE {peak_where}), "
                "c AS (SELECT t, d, SUM(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS running FROM e) "
                "SELECT CAST((t - ?) / ? AS INTEGER) AS k, MAX(running), SUM(d) FROM c WHERE t >= ? AND t < ? GROUP BY k",
                (*peak_args, *peak_args, since, step, since, until),
            ).fetchall()
            # the level when the window opens: records that started before it and had not ended yet
            before_args: list[Any] = [since - lookback, since, since]
            before_where = "start >= ? AND start < ? AND start + duration_ms / 1000.0 >= ? AND status != 'throttled'"
            if function is not None:
                before_where += " AND function = ?"
                before_args.append(function)
            before = conn.execute(f"SELECT COUNT(*) FROM invocations WHERE {before_where}", before_args).fetchone()
        s = Series(since=since, until=until, step=step)
        s.t = [since + i * step for i in range(n)]
        s.invocations, s.errors, s.throttles, s.cold_starts = [0] * n, [0] * n, [0] * n, [0] * n
        s.p50_ms, s.p99_ms = [None] * n, [None] * n
        s.billed_ms, s.gb_seconds, s.avg_concurrency = [0] * n, [0.0] * n, [0.0] * n
        for k, requests, errors, throttles, cold, billed, mb_ms, busy_ms in sums:
            if 0 <= k < n:
                s.invocations[k] = int(requests or 0)
                s.errors[k] = int(errors or 0)
                s.throttles[k] = int(throttles or 0)
                s.cold_starts[k] = int(cold or 0)
                s.billed_ms[k] = int(billed or 0)
                s.gb_seconds[k] = float(mb_ms or 0) / 1024 / 1000
                s.avg_concurrency[k] = float(busy_ms or 0) / 1000 / step
        for k, p50, p99 in pcts:
            if 0 <= k < n:
                s.p50_ms[k] = None if p50 is None else float(p50)
                s.p99_ms[k] = None if p99 is None else float(p99)
        # the level at a bucket's start is the level before the window plus every change in earlier buckets
        peak_by_bucket = {int(k): (int(peak), int(delta)) for k, peak, delta in peaks if 0 <= k < n}
        level = max(0, int(before[0] or 0))
        s.max_concurrency = []
        for k in range(n):
            peak, delta = peak_by_bucket.get(k, (level, 0))
            s.max_concurrency.append(max(level, peak))
            level += delta
        return s

    def summaries(self, since: float, until: float) -> list[FunctionSummary]:
        """Per-function totals (with nearest-rank p50/p99 duration) over ``since <= start < until``."""
        with self._read() as conn:
            sums = conn.execute(
                "SELECT function, SUM(status != 'throttled'), SUM(status NOT IN ('ok', 'throttled')), "
                "SUM(status = 'throttled'), SUM(status != 'throttled' AND cold), "
                "SUM(CASE WHEN status != 'throttled' THEN billed_ms ELSE 0 END), "
                "SUM(CASE WHEN status != 'throttled' THEN billed_ms * memory_mb ELSE 0 END), MAX(start) "
                "FROM invocations WHERE start >= ? AND start < ? GROUP BY function ORDER BY function",
                (since, until),
            ).fetchall()
            pcts = conn.execute(
                "WITH r AS (SELECT function, duration_ms, "
                "ROW_NUMBER() OVER (PARTITION BY function ORDER BY duration_ms) AS rn, "
                "COUNT(*) OVER (PARTITION BY function) AS n FROM invocations "
                "WHERE start >= ? AND start < ? AND status != 'throttled') "
                "SELECT function, MAX(CASE WHEN rn = (n + 1) / 2 THEN duration_ms END), "
                "MAX(CASE WHEN rn = (99 * n + 99) / 100 THEN duration_ms END) FROM r GROUP BY function",
                (since, until),
            ).fetchall()
        by_fn = {f: (p50, p99) for f, p50, p99 in pcts}
        out = []
        for function, requests, errors, throttles, cold, billed, mb_ms, last in sums:
            p50, p99 = by_fn.get(function, (None, None))
            out.append(
                FunctionSummary(
                    function=function,
                    invocations=int(requests or 0),
                    errors=int(errors or 0),
                    throttles=int(throttles or 0),
                    cold_starts=int(cold or 0),
                    billed_ms=int(billed or 0),
                    gb_seconds=float(mb_ms or 0) / 1024 / 1000,
                    p50_ms=None if p50 is None else float(p50),
                    p99_ms=None if p99 is None else float(p99),
                    last_start=None if last is None else float(last),
                )
            )
        return out

    def sparklines(self, since: float, until: float, step: float) -> dict[str, tuple[list[int], list[int]]]:
        """Per function: (invocations, errors) per bucket of ``step`` seconds -- small charts for the overview."""
        n = _bucket_count(since, until, step)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT function, CAST((start - ?) / ? AS INTEGER) AS k, SUM(status != 'throttled'), "
                "SUM(status NOT IN ('ok', 'throttled')) FROM invocations WHERE start >= ? AND start < ? "
                "GROUP BY function, k",
                (since, step, since, until),
            ).fetchall()
        out: dict[str, tuple[list[int], list[int]]] = {}
        for function, k, requests, errors in rows:
            inv, err = out.setdefault(function, ([0] * n, [0] * n))
            if 0 <= k < n:
                inv[k] = int(requests or 0)
                err[k] = int(errors or 0)
        return out

    def async_events(self, now: float, limit: int = 50) -> dict[str, Any]:
        """The async-invocation queue for the dashboard: depth per function, and the events that failed at least
        once and wait for a retry (newest failure first), with their last error."""
        with self._read() as conn:
            by_fn = conn.execute(
                "SELECT function, COUNT(*), SUM(leased_until IS NOT NULL AND leased_until > ?), SUM(attempt > 0), "
                "MIN(enqueued_at) FROM event_queue GROUP BY function ORDER BY function",
                (now,),
            ).fetchall()
            retrying = conn.execute(
                "SELECT id, function, qualifier, request_id, source, enqueued_at, attempt, next_attempt_at, last_error "
                "FROM event_queue WHERE attempt > 0 ORDER BY next_attempt_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return {
            "by_function": [
                {
                    "function": f,
                    "depth": int(d),
                    "in_flight": int(leased or 0),
                    "retrying": int(r or 0),
                    "oldest_age_s": max(0.0, now - float(oldest)),
                }
                for f, d, leased, r, oldest in by_fn
            ],
            "retrying": [
                {
                    "id": i,
                    "function": f,
                    "qualifier": q,
                    "request_id": rid,
                    "source": src,
                    "enqueued_at": enq,
                    "attempt": att,
                    "next_attempt_at": nxt,
                    "last_error": err,
                }
                for i, f, q, rid, src, enq, att, nxt, err in retrying
            ],
        }
