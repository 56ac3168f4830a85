"""End to end: the SQS records an event source mapping delivers carry ``md5OfMessageAttributes`` (SQS's MD5 over the
message attributes, as SendMessage returns it; null without attributes), checked against boto3's own answer and read
through Powertools' ``SQSEvent`` data class as an oracle of the record shape (its pydantic model declares
``md5OfMessageAttributes: str | None``; the data class reads the other fields)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e._platform import SquallProcess, create, eventually, signed_get

RECORDER = """
import json
def handler(event, context):
    print("EVENT " + json.dumps(event, sort_keys=True))
    return {"n": len(event["Records"])}
"""


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(tmp_path_factory.mktemp("md5") / "data").start()
    yield proc
    assert proc.stop() == 0


def _events(squall: SquallProcess) -> list[dict[str, Any]]:
    status, out = signed_get(squall.url, "/_squall/api/logs?function=md5rec&q=EVENT&limit=1000")
    assert status == 200, out
    found = []
    for entry in out["lines"]:
        for line in entry["text"].splitlines():
            start = line.find("EVENT ")
            if start >= 0:
                found.append(json.loads(line[start + 6 :]))
    return found


def test_records_carry_md5_of_message_attributes(squall: SquallProcess) -> None:
    from aws_lambda_powertools.utilities.data_classes import SQSEvent

    lam, sqs = squall.client("lambda"), squall.client("sqs")
    create(lam, "md5rec", RECORDER)
    url = sqs.create_queue(QueueName="md5q")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {
        "color": {"DataType": "String", "StringValue": "blue"},
        "count": {"DataType": "Number", "StringValue": "42"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01binary"},
        "kind": {"DataType": "String.custom", "StringValue": "ünïcode"},
    }
    sent = sqs.send_message(QueueUrl=url, MessageBody="with", MessageAttributes=attributes)  # boto3 verifies the MD5
    plain = sqs.send_message(QueueUrl=url, MessageBody="without")
    assert "MD5OfMessageAttributes" not in plain
    lam.create_event_source_mapping(FunctionName="md5rec", EventSourceArn=arn, BatchSize=10)

    def records() -> dict[str, Any]:
        return {r["body"]: r for e in _events(squall) for r in e["Records"]}

    got = eventually(lambda: (r := records()) and len(r) == 2 and r, timeout_s=60, what="both records")
    assert got["with"]["md5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert "md5OfMessageAttributes" in got["without"] and got["without"]["md5OfMessageAttributes"] is None

    (event,) = [e for e in _events(squall) if any(r["body"] == "with" for r in e["Records"])][:1]
    by_body = {r.body: r for r in SQSEvent(event).records}
    record = by_body["with"]
    assert record["md5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]  # the data class has no property
    assert record.md5_of_body == sent["MD5OfMessageBody"]
    color, count, blob = (record.message_attributes[k] for k in ("color", "count", "blob"))
    assert color is not None and color.string_value == "blue"
    assert count is not None and count.data_type == "Number"
    assert blob is not None and blob.binary_value is not None
    assert record.event_source_arn == arn
