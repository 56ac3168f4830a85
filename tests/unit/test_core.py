"""squall.core: ARNs, timestamp formats and the REPORT line, each in one place."""

from __future__ import annotations

import calendar

import pytest

from squall.core.arn import (
    Arn,
    function_arn,
    function_of_arn,
    parse_arn,
    queue_arn,
    queue_of_arn,
    resource_name,
)
from squall.core.report import billed_ms, end_line, report_line, start_line
from squall.core.timefmt import amz_date, http_date, iso_ms, iso_s, iso_us, lambda_time

T = calendar.timegm((2026, 12, 3, 9, 30, 0)) + 0.1239996


def test_arns_round_trip() -> None:
    arn = function_arn("us-east-1", "000000000000", "resize", "prod")
    assert arn == "arn:aws:lambda:us-east-1:000000000000:function:resize:prod"
    assert parse_arn(arn) == Arn("aws", "lambda", "us-east-1", "000000000000", "function:resize:prod")
    assert str(parse_arn(arn)) == arn
    assert function_of_arn(arn) == ("resize", "prod")
    assert function_of_arn(function_arn("us-east-1", "000000000000", "resize")) == ("resize", None)
    q = queue_arn("us-east-1", "000000000000", "jobs")
    assert queue_of_arn(q) == ("us-east-1", "000000000000", "jobs")
    assert resource_name(q) == "jobs"


@pytest.mark.parametrize(
    "text",
    [
        "resize",
        "arn:aws:lambda:us-east-1:000000000000:layer:tools:3",
        "arn:aws:lambda:us-east-1:000000000000:function:a:b:c",
        "arn:aws:sqs:us-east-1:000000000000:jobs",
    ],
)
def test_function_of_arn_refuses_what_is_not_a_function_arn(text: str) -> None:
    assert function_of_arn(text) is None


@pytest.mark.parametrize(
    "text", ["jobs", "arn:aws:sqs:us-east-1:000000000000:", "arn:aws:sqs:us-east-1:0:a:b", "arn:aws:sns:r:a:t"]
)
def test_queue_of_arn_refuses_what_is_not_a_queue_arn(text: str) -> None:
    assert queue_of_arn(text) is None


def test_every_timestamp_format_truncates_the_same_instant() -> None:
    assert iso_ms(T) == "2026-12-03T09:30:00.123Z"
    assert iso_s(T) == "2026-12-03T09:30:00Z"
    assert iso_us(T) == "2026-12-03T09:30:00.123999Z"
    assert lambda_time(T) == "2026-12-03T09:30:00.123+0000"
    assert amz_date(T) == "20261203T093000Z"
    assert http_date(T) == "Thu, 03 Dec 2026 09:30:00 GMT"
    # never rounded into the next second
    assert iso_ms(calendar.timegm((2026, 12, 3, 9, 30, 0)) + 0.9996) == "2026-12-03T09:30:00.999Z"


@pytest.mark.parametrize(("duration", "billed"), [(0.0, 1), (0.2, 1), (1.0, 1), (1.0005, 2), (99.999, 100)])
def test_billed_ms_rounds_up_to_the_next_millisecond(duration: float, billed: int) -> None:
    assert billed_ms(duration) == billed


def test_report_lines_read_like_lambdas() -> None:
    assert start_line("r1", "$LATEST") == "START RequestId: r1 Version: $LATEST\n"
    assert end_line("r1") == "END RequestId: r1\n"
    assert report_line("r1", 12.345, 128, 40) == (
        "REPORT RequestId: r1\tDuration: 12.35 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 40 MB\t"
    )
    assert report_line("r1", 2.0, 128, 40, init_ms=150.5, status="error", error_type="Runtime.ExitError").endswith(
        "Init Duration: 150.50 ms\tStatus: error\tError Type: Runtime.ExitError\t"
    )
