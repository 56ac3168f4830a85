"""Metering and pricing against hand-computed numbers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from squall.core.errors import InvalidParameterValue
from squall.core.model import InvokeOutcome
from squall.functions.metering import (
    CostLine,
    Invocations,
    PriceTable,
    ProvisionedTime,
    billed_ms,
    break_even,
    cost,
    gb_seconds,
    total,
    usd,
)


@pytest.mark.parametrize(
    ("duration_ms", "want"),
    [(0.0, 1), (0.2, 1), (1.0, 1), (1.0001, 2), (99.4, 100), (100.0, 100), (2999.01, 3000)],
)
def test_billed_ms_rounds_up_to_1ms(duration_ms: float, want: int) -> None:
    assert billed_ms(duration_ms) == want


@pytest.mark.parametrize(
    ("ms", "mb", "want"),
    [(1000, 1024, 1.0), (100, 512, 0.05), (1, 128, 0.000125), (3000, 10240, 30.0)],
)
def test_gb_seconds(ms: int, mb: int, want: float) -> None:
    assert gb_seconds(ms, mb) == pytest.approx(want)


def test_one_million_100ms_at_512mb() -> None:
    # 1,000,000 x 0.1 s x 0.5 GB = 50,000 GB-s; x $0.0000166667 = $0.833335; + $0.20 requests
    lines = cost([Invocations("f", 512, billed_ms=100 * 1_000_000, requests=1_000_000)])
    line = lines["f"]
    assert line.requests == 1_000_000
    assert line.gb_s == pytest.approx(50_000)
    assert line.duration_cost == pytest.approx(0.833335)
    assert line.request_cost == pytest.approx(0.20)
    assert line.provisioned_cost == 0.0
    assert line.total == pytest.approx(1.033335)
    assert usd(line.duration_cost) == "$0.83"
    assert usd(line.total) == "$1.03"


def test_provisioned_concurrency() -> None:
    # 2 instances x 1 hour x 1 GB = 7,200 GB-s x $0.0000041667 = $0.03000024
    # 1,000 invocations x 200 ms x 1 GB = 200 GB-s x $0.0000097222 = $0.00194444; requests 1000 x $0.2/1M = $0.0002
    lines = cost(
        [
            ProvisionedTime("f", 1024, instance_s=2 * 3600),
            Invocations("f", 1024, billed_ms=200 * 1000, requests=1000, on_provisioned=True),
        ]
    )
    line = lines["f"]
    assert line.provisioned_gb_s == pytest.approx(7200)
    assert line.provisioned_cost == pytest.approx(0.03000024)
    assert line.gb_s == pytest.approx(200)
    assert line.duration_cost == pytest.approx(0.00194444)
    assert line.request_cost == pytest.approx(0.0002)
    assert line.total == pytest.approx(0.03000024 + 0.00194444 + 0.0002)


def test_ephemeral_storage_over_512mb() -> None:
    # 10,240 MB /tmp: 9,728 MB = 9.5 GB over the free 512 MB; 1000 x 1 s = 9,500 GB-s x $0.0000000309 = $0.00029355
    line = cost([Invocations("f", 128, billed_ms=1000 * 1000, requests=1000, ephemeral_mb=10_240)])["f"]
    assert line.ephemeral_cost == pytest.approx(0.00029355)
    assert cost([Invocations("f", 128, 1000, ephemeral_mb=512)])["f"].ephemeral_cost == 0.0


def test_cost_groups_by_function_in_first_seen_order() -> None:
    rows = [
        Invocations("b", 128, 10),
        Invocations("a", 1024, 1000),
        Invocations("b", 128, 30, requests=2),
    ]
    lines = cost(rows)
    assert list(lines) == ["b", "a"]
    assert lines["b"].requests == 3
    assert lines["b"].gb_s == pytest.approx(40 / 1000 * 128 / 1024)
    assert lines["a"].duration_cost == pytest.approx(0.0000166667)
    everything = total(lines.values())
    assert everything.function == "*"
    assert everything.requests == 4
    assert everything.total == pytest.approx(lines["a"].total + lines["b"].total)
    assert total([]) == CostLine("*")


def test_from_outcome() -> None:
    outcome = InvokeOutcome("r1", b"{}", None, 12.3, 13, None, 40, 256, "", cold=False)
    assert Invocations.from_outcome("f", outcome) == Invocations("f", 256, 13, 1, False, 512)


def test_custom_prices() -> None:
    prices = PriceTable.from_dict({"request_usd_per_million": 1, "duration_usd_per_gb_s": 0.001})
    line = cost([Invocations("f", 1024, 2000, requests=1_000_000)], prices)["f"]
    assert line.request_cost == pytest.approx(1.0)
    assert line.duration_cost == pytest.approx(0.002)


def test_price_table_defaults_round_trip() -> None:
    d = PriceTable().to_dict()
    assert d["request_usd_per_million"] == 0.20
    assert d["duration_usd_per_gb_s"] == 0.0000166667
    assert d["provisioned_usd_per_gb_s"] == 0.0000041667
    assert d["provisioned_duration_usd_per_gb_s"] == 0.0000097222
    assert d["ephemeral_usd_per_gb_s"] == 0.0000000309
    assert PriceTable.from_dict(d) == PriceTable()
    assert PriceTable.from_dict({}) == PriceTable()
    assert PriceTable.from_dict({"ephemeral_free_mb": 1024.0}).ephemeral_free_mb == 1024


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"request_usd": 1}, "unknown price table keys"),
        ({"duration_usd_per_gb_s": "cheap"}, "must be a number"),
        ({"duration_usd_per_gb_s": True}, "must be a number"),
        ({"duration_usd_per_gb_s": None}, "must be a number"),
        ({"duration_usd_per_gb_s": math.nan}, "must be a number"),
        ({"duration_usd_per_gb_s": -1}, "must not be negative"),
        ({"ephemeral_free_mb": 1.5}, "whole number"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_price_table_validation(data: Any, match: str) -> None:
    with pytest.raises(InvalidParameterValue, match=match):
        PriceTable.from_dict(data)


# server at 512 MB: 0.5 GB x $0.0104/GB-h x 730 h = $3.796/month
# Lambda per request at 100 ms, 512 MB: $0.0000002 + 0.05 GB-s x $0.0000166667 = $0.000001033335
SERVER_512 = 3.796
PER_REQUEST = 0.000001033335


@pytest.mark.parametrize(
    ("requests", "cheaper"),
    [(0, "lambda"), (1_000_000, "lambda"), (3_000_000, "lambda"), (4_000_000, "server"), (10_000_000, "server")],
)
def test_break_even_default_server(requests: int, cheaper: str) -> None:
    be = break_even(512, 100, requests)
    assert be.server_monthly_usd == pytest.approx(SERVER_512)
    assert be.lambda_monthly_usd == pytest.approx(PER_REQUEST * requests)
    assert be.break_even_requests_per_month == pytest.approx(SERVER_512 / PER_REQUEST)  # ~3.67M/month
    assert 3_673_000 < be.break_even_requests_per_month < 3_674_000
    assert be.cheaper == cheaper


def test_break_even_given_server_price() -> None:
    # 1 GB, 1 s per request: $0.0000002 + $0.0000166667 = $0.0000168667/request; $20 server -> ~1.186M requests
    be = break_even(1024, 1000, 2_000_000, always_on_monthly_usd=20.0)
    assert be.server_monthly_usd == 20.0
    assert be.break_even_requests_per_month == pytest.approx(20.0 / 0.0000168667)
    assert be.cheaper == "server"


def test_break_even_equal_and_free() -> None:
    assert break_even(1024, 1000, 1_000_000, always_on_monthly_usd=16.8667).cheaper == "equal"
    free = PriceTable(request_usd_per_million=0.0, duration_usd_per_gb_s=0.0)
    be = break_even(512, 100, 10**9, prices=free)
    assert be.break_even_requests_per_month == math.inf
    assert be.cheaper == "lambda"


@pytest.mark.parametrize(
    ("amount", "text"), [(0.0, "$0.00"), (0.833335, "$0.83"), (1234.567, "$1,234.57"), (0.0000123, "$0.000012")]
)
def test_usd(amount: float, text: str) -> None:
    assert usd(amount) == text
