"""Squall's own JSON API under ``/_squall/api/``: invocation records, logs and usage, for the CLI and the console.

Like every other path it sits behind SigV4 (clients sign with service name "lambda").  Errors use Lambda's error
shape (``x-amzn-ErrorType`` + ``{"Type", "Message", "message"}``), so a bad parameter is a 400
``InvalidParameterValueException`` and an unknown request id a 404 ``ResourceNotFoundException``.

* ``GET /_squall/api/invocations?function=&status=&since=&until=&limit=&cursor=``
  -> ``{"invocations": [record, ...], "next_cursor": str | null}`` (newest first)
* ``GET /_squall/api/invocations/{request_id}`` -> ``{"record": record, "logs": [line, ...]}``
* ``GET /_squall/api/logs?function=&since_id=&limit=&q=&since=&until=&request_id=``
  -> ``{"lines": [{"id", "ts", "request_id", "function", "text"}, ...], "last_id": int}`` (oldest first).
  With ``request_id``: that invocation's lines.  With ``q``: lines containing ``q``.  With ``since_id``: lines
  after it (follow mode: pass the returned ``last_id`` back).  Otherwise the most recent ``limit`` lines
  (within ``since``/``until`` if given).
* ``GET /_squall/api/usage?since=&until=`` -> per-function aggregates, cost lines and a break-even estimate,
  plus totals (default window: the last 24 hours).

Times (``since``, ``until``) are epoch seconds or ISO 8601 timestamps (naive ones are UTC).  ``since`` is
inclusive, ``until`` exclusive.

Provisioned-concurrency cost is an estimate: the provisioned concurrency configured *now* is assumed to have been
configured over the window (from its LastModified time if later), since the store keeps no history of it.  All
invocation duration is priced at the on-demand rate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.aws.json_api import json_response, lambda_error
from squall.core.errors import InvalidParameterValue, ResourceNotFound, SquallError
from squall.functions.metering import (
    HOURS_PER_MONTH,
    CostLine,
    Invocations,
    PriceTable,
    ProvisionedTime,
    break_even,
    cost,
    total,
)
from squall.functions.store.metadata import MetadataStore
from squall.functions.store.records import InvocationRecord, LogLine, UsageRow

__all__ = ["QueryParams", "parse_time", "squall_api_routes", "usage_report"]

API_PREFIX = "/_squall/api"
DEFAULT_USAGE_WINDOW_S = 24 * 3600.0
_SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0


# ------------------------------------------------------------------------------------------- parameters


def parse_time(name: str, raw: str) -> float:
    """Epoch seconds from ``raw`` (a number, or an ISO 8601 timestamp; naive timestamps are UTC)."""
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidParameterValue(
                f"Invalid value for '{name}': {raw!r}. Use epoch seconds (e.g. 1700000000) or an ISO 8601 "
                "timestamp (e.g. 2024-05-01T12:00:00Z)."
            )
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    if not math.isfinite(value) or value < 0:
        raise InvalidParameterValue(f"Invalid value for '{name}': {raw!r}. It must be non-negative epoch seconds.")
    return value


class QueryParams:
    """Typed access to a request's query parameters; every bad value raises ``InvalidParameterValue``."""

    def __init__(self, request: Request) -> None:
        self.q = request.query_params

    def text(self, name: str, max_len: int = 1024) -> str | None:
        value = self.q.get(name)
        if value is None or value == "":
            return None
        if len(value) > max_len:
            raise InvalidParameterValue(f"Invalid value for '{name}': it must be at most {max_len} characters long.")
        return value

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        return int(self._bounded(name, default, lo, hi, int, "an integer"))

    def number(self, name: str, default: float, lo: float, hi: float) -> float:
        return self._bounded(name, default, lo, hi, float, "a number")

    def _bounded(
        self, name: str, default: float, lo: float, hi: float, kind: Callable[[str], float], what: str
    ) -> float:
        raw = self.q.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise InvalidParameterValue(f"Invalid value for '{name}': {raw!r} is not {what}.")
        if not lo <= value <= hi:
            raise InvalidParameterValue(f"Invalid value for '{name}': {value} must be between {lo} and {hi}.")
        return value

    def time(self, name: str) -> float | None:
        raw = self.q.get(name)
        if raw is None or raw == "":
            return None
        return parse_time(name, raw)

    def window(self) -> tuple[float | None, float | None]:
        since, until = self.time("since"), self.time("until")
        if since is not None and until is not None and since > until:
            raise InvalidParameterValue(f"Invalid time range: 'since' ({since}) is after 'until' ({until}).")
        return since, until


# ------------------------------------------------------------------------------------------- shapes


def _record_dict(record: InvocationRecord) -> dict[str, Any]:
    return asdict(record)


def _line_dict(line: LogLine) -> dict[str, Any]:
    return {"id": line.id, "ts": line.ts, "request_id": line.request_id, "function": line.function, "text": line.text}


def _finite(value: float) -> float | None:
    """JSON has no infinity: an infinite break-even ("never") is null."""
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------- usage


def _provisioned_rows(store: MetadataStore, since: float, until: float) -> list[ProvisionedTime]:
    """Provisioned time over the window, assuming today's provisioned configs held since their LastModified."""
    out: list[ProvisionedTime] = []
    marker: str | None = None
    while True:
        page, marker = store.list_provisioned_concurrency(None, marker, 50)
        for qc in page:
            count = qc.config.get("AllocatedProvisionedConcurrentExecutions")
            if not isinstance(count, int) or count <= 0:
                count = qc.config.get("RequestedProvisionedConcurrentExecutions")
            if not isinstance(count, int) or count <= 0:
                continue
            start = since
            modified = qc.config.get("LastModified")
            if isinstance(modified, str) and modified:
                try:
                    start = max(since, parse_time("LastModified", modified))
                except InvalidParameterValue:
                    pass
            if start >= until:
                continue
            try:
                memory = int(store.get_function(qc.function, qc.qualifier).config.get("MemorySize", 128))
            except SquallError:
                continue
            out.append(ProvisionedTime(qc.function, memory, count * (until - start)))
        if not marker:
            return out


def _avg_memory_mb(row: UsageRow) -> int:
    if row.billed_ms <= 0:
        return 128
    return max(1, round(row.gb_seconds * 1024 * 1000 / row.billed_ms))


def _cost_dict(line: CostLine) -> dict[str, Any]:
    return {
        "request_cost": line.request_cost,
        "duration_cost": line.duration_cost,
        "provisioned_cost": line.provisioned_cost,
        "ephemeral_cost": line.ephemeral_cost,
        "total": line.total,
    }


def usage_report(
    store: MetadataStore, prices: PriceTable, since: float, until: float, *, now: float | None = None
) -> dict[str, Any]:
    """The body of ``GET /_squall/api/usage``: usage, cost and break-even per function, plus totals."""
    rows = store.usage(since, until)
    provisioned = _provisioned_rows(store, since, until)
    # Invocations(memory_mb=1, billed_ms=sum(billed_ms * memory_mb)) prices GB-seconds exactly even when the
    # function's memory size changed within the window.
    usage_rows: list[Invocations | ProvisionedTime] = [
        Invocations(r.function, 1, round(r.gb_seconds * 1024 * 1000), r.requests) for r in rows
    ]
    lines = cost([*usage_rows, *provisioned], prices)
    window_s = max(until - since, 1.0)
    functions: list[dict[str, Any]] = []
    for r in rows:
        line = lines.get(r.function, CostLine(r.function))
        memory = _avg_memory_mb(r)
        avg_billed = r.billed_ms / r.requests if r.requests else 0.0
        per_month = r.requests / window_s * _SECONDS_PER_MONTH
        be = break_even(memory, avg_billed, per_month, prices=prices)
        functions.append(
            {
                "function": r.function,
                "requests": r.requests,
                "errors": r.errors,
                "throttles": r.throttles,
                "cold_starts": r.cold_starts,
                "billed_ms": r.billed_ms,
                "gb_seconds": r.gb_seconds,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
                "memory_mb": memory,
                "avg_billed_ms": avg_billed,
                "cost": _cost_dict(line),
                "break_even": {
                    "memory_mb": memory,
                    "avg_billed_ms": avg_billed,
                    "requests_per_month": per_month,
                    "lambda_monthly_usd": be.lambda_monthly_usd,
                    "server_monthly_usd": be.server_monthly_usd,
                    "break_even_requests_per_month": _finite(be.break_even_requests_per_month),
                    "cheaper": be.cheaper,
                },
            }
        )
    seen = {r.function for r in rows}
    for name, line in lines.items():  # provisioned-only functions (no invocations in the window)
        if name not in seen:
            functions.append(
                {
                    "function": name,
                    "requests": 0,
                    "errors": 0,
                    "throttles": 0,
                    "cold_starts": 0,
                    "billed_ms": 0,
                    "gb_seconds": 0.0,
                    "p50_ms": 0.0,
                    "p99_ms": 0.0,
                    "memory_mb": None,
                    "avg_billed_ms": 0.0,
                    "cost": _cost_dict(line),
                    "break_even": None,
                }
            )
    functions.sort(key=lambda f: f["function"])
    all_cost = total(lines.values())
    totals = {
        "requests": sum(r.requests for r in rows),
        "errors": sum(r.errors for r in rows),
        "throttles": sum(r.throttles for r in rows),
        "cold_starts": sum(r.cold_starts for r in rows),
        "billed_ms": sum(r.billed_ms for r in rows),
        "gb_seconds": sum(r.gb_seconds for r in rows),
        "cost": _cost_dict(all_cost),
    }
    return {
        "since": since,
        "until": until,
        "generated_at": time.time() if now is None else now,
        "prices": prices.to_dict(),
        "functions": functions,
        "totals": totals,
    }


# ------------------------------------------------------------------------------------------- routes


def squall_api_routes(store: MetadataStore, prices: PriceTable) -> list[Route]:
    """Routes of the ``/_squall/api/`` JSON API (mount them behind the SigV4 middleware)."""

    async def list_invocations(request: Request) -> Response:
        try:
            p = QueryParams(request)
            since, until = p.window()
            function = p.text("function", 256)
            status = p.text("status", 64)
            limit = p.integer("limit", 50, 1, 1000)
            cursor = p.text("cursor", 128)
            records, next_cursor = await asyncio.to_thread(
                store.list_invocations, function, since, until, status, limit, cursor
            )
        except SquallError as e:
            return lambda_error(request, e)
        return json_response({"invocations": [_record_dict(r) for r in records], "next_cursor": next_cursor})

    async def get_invocation(request: Request) -> Response:
        request_id = request.path_params["request_id"]
        try:
            if len(request_id) > 256:
                raise InvalidParameterValue("Invalid request id: it must be at most 256 characters long.")
            record = await asyncio.to_thread(store.get_invocation, request_id)
            if record is None:
                raise ResourceNotFound(f"Invocation not found: {request_id}")
            logs = await asyncio.to_thread(store.get_logs, request_id)
        except SquallError as e:
            return lambda_error(request, e)
        return json_response({"record": _record_dict(record), "logs": [_line_dict(line) for line in logs]})

    async def logs(request: Request) -> Response:
        try:
            p = QueryParams(request)
            function = p.text("function", 256)
            request_id = p.text("request_id", 256)
            text = p.text("q", 1024)
            limit = p.integer("limit", 100, 1, 1000)
            since_id_given = bool(request.query_params.get("since_id"))
            since_id = p.integer("since_id", 0, 0, 2**63 - 1)
            since, until = p.window()
            lines: list[LogLine]
            if request_id is not None:
                lines = await asyncio.to_thread(store.get_logs, request_id)
                lines = [ln for ln in lines if ln.id > since_id and (function is None or ln.function == function)]
                if text is not None:
                    lines = [ln for ln in lines if text.lower() in ln.text.lower()]
                lines = lines[:limit]
            elif since_id_given and text is None:
                lines = await asyncio.to_thread(store.tail_logs, function, since_id, limit)
                lines = [ln for ln in lines if (since is None or ln.ts >= since) and (until is None or ln.ts < until)]
            else:
                # newest first from the store; only what is newer than since_id, then oldest first
                found = await asyncio.to_thread(store.search_logs, function, text or "", since, until, limit)
                lines = sorted((ln for ln in found if ln.id > since_id), key=lambda ln: ln.id)
        except SquallError as e:
            return lambda_error(request, e)
        last_id = max([since_id, *(ln.id for ln in lines)])
        return json_response({"lines": [_line_dict(ln) for ln in lines], "last_id": last_id})

    async def usage(request: Request) -> Response:
        try:
            p = QueryParams(request)
            since, until = p.window()
            now = time.time()
            until = now if until is None else until
            since = until - DEFAULT_USAGE_WINDOW_S if since is None else since
            if since > until:
                raise InvalidParameterValue(f"Invalid time range: 'since' ({since}) is after 'until' ({until}).")
            report = await asyncio.to_thread(usage_report, store, prices, since, until, now=now)
        except SquallError as e:
            return lambda_error(request, e)
        return json_response(report)

    return [
        Route(f"{API_PREFIX}/invocations", list_invocations, methods=["GET"]),
        Route(f"{API_PREFIX}/invocations/{{request_id}}", get_invocation, methods=["GET"]),
        Route(f"{API_PREFIX}/logs", logs, methods=["GET"]),
        Route(f"{API_PREFIX}/usage", usage, methods=["GET"]),
    ]
