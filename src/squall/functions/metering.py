"""Metering and pricing: what the work Squall ran would have cost on AWS Lambda, and when a server is cheaper.

Default prices are AWS Lambda's public on-demand prices for x86 in us-east-1 (https://aws.amazon.com/lambda/pricing/):

* requests: $0.20 per 1M requests
* duration: $0.0000166667 per GB-second
* provisioned concurrency: $0.0000041667 per GB-second of provisioned time, plus $0.0000097222 per GB-second of
  duration for invocations that run on provisioned instances (requests still cost $0.20 per 1M)
* ephemeral storage above the free 512 MB: $0.0000000309 per GB-second of duration

The free tier is not modelled, and provisioned time is billed as given (AWS rounds it up to 5-minute blocks).
Billed duration is rounded up to the next 1 ms, as Lambda does (:func:`billed_ms`); a GB is 1024 MB.

The always-on comparison (:func:`break_even`) prices a server with the same memory at ``server_usd_per_gb_hour``,
default $0.0104 per GB-hour: EC2 on-demand general purpose in us-east-1, e.g. t3.medium ($0.0416/h for 4 GiB) or
m7g.large (~$0.0816/h for 8 GiB, ~$0.0102/GB-h).  It ignores CPU, EBS, idle headroom and operations time; override it
(or pass ``always_on_monthly_usd``) for your own hardware.  A month is 730 hours.

Money is ``float`` USD, rounded only for display (:func:`usd`).  Decimal would buy nothing: the unit prices are
themselves rounded (0.0000166667 is 1/60000 to 6 significant digits), so float's ~1e-16 relative error is ten orders
of magnitude below the precision of the inputs, and floats stay JSON- and Prometheus-friendly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from squall.core.errors import InvalidParameterValue
from squall.core.report import billed_ms

if TYPE_CHECKING:
    from squall.core.model import InvokeOutcome

__all__ = [
    "HOURS_PER_MONTH",
    "BreakEven",
    "CostLine",
    "Invocations",
    "PriceTable",
    "ProvisionedTime",
    "UsageRow",
    "billed_ms",
    "break_even",
    "cost",
    "gb_seconds",
    "total",
    "usd",
]

HOURS_PER_MONTH = 730.0
_MB_PER_GB = 1024.0


@dataclass(frozen=True)
class PriceTable:
    """Unit prices in USD (defaults: AWS Lambda x86, us-east-1, see the module docstring)."""

    request_usd_per_million: float = 0.20
    duration_usd_per_gb_s: float = 0.0000166667
    provisioned_usd_per_gb_s: float = 0.0000041667
    provisioned_duration_usd_per_gb_s: float = 0.0000097222
    ephemeral_usd_per_gb_s: float = 0.0000000309
    ephemeral_free_mb: int = 512
    #: always-on server price per GB of memory per hour, for :func:`break_even`
    server_usd_per_gb_hour: float = 0.0104

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceTable:
        """Build from a dict parsed from JSON or YAML; missing keys keep their defaults.

        Unknown keys and values that are not non-negative numbers raise ``InvalidParameterValue``.
        """
        if not isinstance(data, Mapping):
            raise InvalidParameterValue(f"price table must be a mapping, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidParameterValue(f"unknown price table keys {unknown}; known keys: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidParameterValue(f"price table {key!r} must be a number, got {value!r}")
            if value < 0:
                raise InvalidParameterValue(f"price table {key!r} must not be negative, got {value!r}")
            if key == "ephemeral_free_mb":
                if value != int(value):
                    raise InvalidParameterValue(f"price table {key!r} must be a whole number, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            values[key] = value
        return cls(**values)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def gb_seconds(billed_ms: float, memory_mb: float) -> float:
    """GB-seconds of ``billed_ms`` at ``memory_mb`` (1 GB = 1024 MB)."""
    return billed_ms / 1000.0 * memory_mb / _MB_PER_GB


@dataclass(frozen=True)
class Invocations:
    """One or more invocations of a function with the same configuration.

    ``billed_ms`` is the total over the ``requests`` (already rounded per invocation, see :func:`billed_ms`).
    """

    function: str
    memory_mb: int
    billed_ms: int
    requests: int = 1
    #: ran on a provisioned-concurrency instance (cheaper duration rate)
    on_provisioned: bool = False
    ephemeral_mb: int = 512

    @classmethod
    def from_outcome(
        cls, function: str, outcome: InvokeOutcome, on_provisioned: bool = False, ephemeral_mb: int = 512
    ) -> Invocations:
        """One invocation as the node reported it."""
        return cls(function, outcome.memory_mb, outcome.billed_ms, 1, on_provisioned, ephemeral_mb)


@dataclass(frozen=True)
class ProvisionedTime:
    """Provisioned concurrency kept configured: ``instance_s`` instance-seconds at ``memory_mb``."""

    function: str
    memory_mb: int
    instance_s: float


UsageRow = Invocations | ProvisionedTime


@dataclass(frozen=True)
class CostLine:
    """A function's usage and cost, USD.  ``gb_s`` is invocation duration (on-demand and provisioned)."""

    function: str
    requests: int = 0
    gb_s: float = 0.0
    provisioned_gb_s: float = 0.0
    request_cost: float = 0.0
    duration_cost: float = 0.0
    provisioned_cost: float = 0.0
    ephemeral_cost: float = 0.0

    @property
    def total(self) -> float:
        return self.request_cost + self.duration_cost + self.provisioned_cost + self.ephemeral_cost


def _line_of(row: UsageRow, prices: PriceTable) -> CostLine:
    if isinstance(row, ProvisionedTime):
        pgb_s = gb_seconds(row.instance_s * 1000.0, row.memory_mb)
        return CostLine(row.function, provisioned_gb_s=pgb_s, provisioned_cost=pgb_s * prices.provisioned_usd_per_gb_s)
    gb_s = gb_seconds(row.billed_ms, row.memory_mb)
    rate = prices.provisioned_duration_usd_per_gb_s if row.on_provisioned else prices.duration_usd_per_gb_s
    extra_mb = max(0, row.ephemeral_mb - prices.ephemeral_free_mb)
    return CostLine(
        row.function,
        requests=row.requests,
        gb_s=gb_s,
        request_cost=row.requests * prices.request_usd_per_million / 1_000_000,
        duration_cost=gb_s * rate,
        ephemeral_cost=gb_seconds(row.billed_ms, extra_mb) * prices.ephemeral_usd_per_gb_s,
    )


def _add(a: CostLine, b: CostLine) -> CostLine:
    return CostLine(
        a.function,
        requests=a.requests + b.requests,
        gb_s=a.gb_s + b.gb_s,
        provisioned_gb_s=a.provisioned_gb_s + b.provisioned_gb_s,
        request_cost=a.request_cost + b.request_cost,
        duration_cost=a.duration_cost + b.duration_cost,
        provisioned_cost=a.provisioned_cost + b.provisioned_cost,
        ephemeral_cost=a.ephemeral_cost + b.ephemeral_cost,
    )


def cost(rows: Iterable[UsageRow], prices: PriceTable | None = None) -> dict[str, CostLine]:
    """Cost per function, in order of first appearance."""
    prices = prices or PriceTable()
    out: dict[str, CostLine] = {}
    for row in rows:
        line = _line_of(row, prices)
        out[row.function] = _add(out[row.function], line) if row.function in out else line
    return out


def total(lines: Iterable[CostLine]) -> CostLine:
    """All lines summed into one named ``"*"``."""
    acc = CostLine("*")
    for line in lines:
        acc = _add(acc, line)
    return acc


@dataclass(frozen=True)
class BreakEven:
    """Lambda vs an always-on server of the same memory, per month, USD."""

    lambda_monthly_usd: float
    server_monthly_usd: float
    #: requests per month at which both cost the same (``inf`` when a request costs nothing)
    break_even_requests_per_month: float
    cheaper: Literal["lambda", "server", "equal"]


def break_even(
    memory_mb: int,
    avg_billed_ms: float,
    requests_per_month: float,
    always_on_monthly_usd: float | None = None,
    prices: PriceTable | None = None,
) -> BreakEven:
    """Compare on-demand Lambda pricing with a server that is always on.

    The server costs ``always_on_monthly_usd``, or by default ``memory_mb`` GB x ``prices.server_usd_per_gb_hour`` x
    730 hours.  A Lambda request costs the request price plus its duration; below the break-even rate Lambda is
    cheaper.
    """
    prices = prices or PriceTable()
    if always_on_monthly_usd is None:
        always_on_monthly_usd = memory_mb / _MB_PER_GB * prices.server_usd_per_gb_hour * HOURS_PER_MONTH
    per_request = (
        prices.request_usd_per_million / 1_000_000 + gb_seconds(avg_billed_ms, memory_mb) * prices.duration_usd_per_gb_s
    )
    lambda_monthly = per_request * requests_per_month
    even = always_on_monthly_usd / per_request if per_request > 0 else math.inf
    if math.isclose(lambda_monthly, always_on_monthly_usd, rel_tol=1e-9, abs_tol=1e-12):
        cheaper: Literal["lambda", "server", "equal"] = "equal"
    else:
        cheaper = "lambda" if lambda_monthly < always_on_monthly_usd else "server"
    return BreakEven(lambda_monthly, always_on_monthly_usd, even, cheaper)


def usd(amount: float) -> str:
    """For display: whole cents ("$1,234.57"), sub-cent amounts to 6 decimals ("$0.000012")."""
    if amount != 0 and abs(amount) < 0.01:
        return f"${amount:.6f}"
    return f"${amount:,.2f}"
