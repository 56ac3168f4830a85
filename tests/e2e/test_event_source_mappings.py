"""End to end: SQS event source mappings against a real ``squall up``, with boto3's lambda and sqs clients."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._platform import SquallProcess, create, eventually, signed_get

RECORDER = """
import json
def handler(event, context):
    for r in event["Records"]:
        print("GOT " + json.dumps(r, sort_keys=True))
    return {"n": len(event["Records"])}
"""

PARTIAL = """
def handler(event, context):
    fails = []
    for r in event["Records"]:
        print("PF " + r["body"] + " n=" + str(len(event["Records"])))
        if r["body"] == "bad":
            fails.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": fails}
"""

FAILING = """
def handler(event, context):
    for r in event["Records"]:
        print("FAILING " + r["body"])
    raise RuntimeError("always fails")
"""


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(tmp_path_factory.mktemp("esm") / "data").start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def lam(squall: SquallProcess) -> Any:
    return squall.client("lambda")


@pytest.fixture(scope="module")
def sqs(squall: SquallProcess) -> Any:
    return squall.client("sqs")


def queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def send(sqs: Any, url: str, bodies: list[str]) -> None:
    for i in range(0, len(bodies), 10):
        entries = [{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i : i + 10])]
        out = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not out.get("Failed")


def depth(sqs: Any, url: str) -> tuple[int, int]:
    a = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def log_lines(squall: SquallProcess, function: str, q: str) -> list[str]:
    status, out = signed_get(squall.url, f"/_squall/api/logs?function={function}&q={q}&limit=1000")
    assert status == 200, out
    return [line for ln in out["lines"] for line in ln["text"].splitlines() if q in line]


def test_batches_are_delivered_once_and_deleted(squall: SquallProcess, lam: Any, sqs: Any) -> None:
    create(lam, "recorder", RECORDER)
    url, arn = queue(sqs, "orders")
    bodies = [f"order-{i}" for i in range(20)]
    send(sqs, url, bodies)
    m = lam.create_event_source_mapping(FunctionName="recorder", EventSourceArn=arn, BatchSize=5)
    assert m["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert m["State"] == "Creating" and m["BatchSize"] == 5 and m["EventSourceArn"] == arn
    assert m["FunctionArn"].endswith(":function:recorder")

    def records() -> list[dict[str, Any]]:
        out = []
        for text in log_lines(squall, "recorder", "GOT"):
            start = text.find("GOT ")
            if start >= 0:
                out.append(json.loads(text[start + 4 :].strip()))
        return out

    got = eventually(lambda: (r := records()) and len(r) >= 20 and r, timeout_s=30, what="20 records")
    assert sorted(r["body"] for r in got) == sorted(bodies)  # each exactly once
    assert Counter(r["messageId"] for r in got).most_common(1)[0][1] == 1
    eventually(lambda: depth(sqs, url) == (0, 0), what="queue empty")
    r = got[0]
    assert r["eventSource"] == "aws:sqs" and r["eventSourceARN"] == arn and r["awsRegion"] == "us-east-1"
    assert {"messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody"} <= set(r)
    assert r["attributes"]["ApproximateReceiveCount"] == "1" and "SentTimestamp" in r["attributes"]
    assert len(r["md5OfBody"]) == 32
    got_mapping = lam.get_event_source_mapping(UUID=m["UUID"])
    assert got_mapping["State"] == "Enabled" and got_mapping["LastProcessingResult"] == "OK"
    lam.delete_event_source_mapping(UUID=m["UUID"])


def test_report_batch_item_failures_returns_only_the_failed_message(squall: SquallProcess, lam: Any, sqs: Any) -> None:
    create(lam, "partial", PARTIAL)
    url, arn = queue(sqs, "partial-q", VisibilityTimeout="1")
    send(sqs, url, ["good-0", "good-1", "bad", "good-2", "good-3"])
    m = lam.create_event_source_mapping(
        FunctionName="partial", EventSourceArn=arn, BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"]
    )
    assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    def bodies() -> Counter[str]:
        return Counter(t.split("PF ", 1)[1].split()[0] for t in log_lines(squall, "partial", "PF"))

    seen = eventually(lambda: (c := bodies())["bad"] >= 3 and c, timeout_s=30, what="bad retried")
    assert all(seen[f"good-{i}"] == 1 for i in range(4)), seen
    lam.delete_event_source_mapping(UUID=m["UUID"])
    assert depth(sqs, url)[0] + depth(sqs, url)[1] == 1


def test_failing_function_moves_messages_to_the_dead_letter_queue(squall: SquallProcess, lam: Any, sqs: Any) -> None:
    create(lam, "failing", FAILING)
    dlq_url, dlq_arn = queue(sqs, "failing-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    url, arn = queue(sqs, "failing-q", VisibilityTimeout="1", RedrivePolicy=policy)
    send(sqs, url, ["a", "b", "c"])
    m = lam.create_event_source_mapping(FunctionName="failing", EventSourceArn=arn, BatchSize=10)
    eventually(lambda: depth(sqs, dlq_url)[0] == 3, timeout_s=40, what="3 messages in the DLQ")
    eventually(lambda: depth(sqs, url) == (0, 0), what="source queue empty")
    lines = log_lines(squall, "failing", "FAILING")
    assert Counter(t.split("FAILING ", 1)[1].strip() for t in lines) == {"a": 2, "b": 2, "c": 2}
    lam.delete_event_source_mapping(UUID=m["UUID"])


def test_mapping_api_shapes_and_errors(squall: SquallProcess, lam: Any, sqs: Any) -> None:
    create(lam, "api-fn", RECORDER)
    _, arn = queue(sqs, "api-q")
    _, arn2 = queue(sqs, "api-q2")
    m = lam.create_event_source_mapping(
        FunctionName="api-fn", EventSourceArn=arn, BatchSize=100, MaximumBatchingWindowInSeconds=2,
        ScalingConfig={"MaximumConcurrency": 3},
    )  # fmt: skip
    assert m["BatchSize"] == 100 and m["MaximumBatchingWindowInSeconds"] == 2
    assert m["ScalingConfig"] == {"MaximumConcurrency": 3}
    assert m["EventSourceMappingArn"].endswith(":event-source-mapping:" + m["UUID"])
    assert m["StateTransitionReason"] == "USER_INITIATED" and m["LastModified"].year >= 2024
    m2 = lam.create_event_source_mapping(FunctionName="api-fn", EventSourceArn=arn2, Enabled=False)
    assert lam.get_event_source_mapping(UUID=m2["UUID"])["State"] == "Disabled"
    assert m2["BatchSize"] == 10 and m2["MaximumBatchingWindowInSeconds"] == 0

    listed = lam.list_event_source_mappings(FunctionName="api-fn")["EventSourceMappings"]
    assert [x["UUID"] for x in listed] == [m["UUID"], m2["UUID"]]
    by_arn = lam.list_event_source_mappings(EventSourceArn=arn2)["EventSourceMappings"]
    assert [x["UUID"] for x in by_arn] == [m2["UUID"]]
    page = lam.list_event_source_mappings(FunctionName="api-fn", MaxItems=1)
    assert len(page["EventSourceMappings"]) == 1 and page["NextMarker"]
    rest = lam.list_event_source_mappings(FunctionName="api-fn", Marker=page["NextMarker"])
    assert [x["UUID"] for x in rest["EventSourceMappings"]] == [m2["UUID"]] and "NextMarker" not in rest

    up = lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False, BatchSize=5)
    assert up["ResponseMetadata"]["HTTPStatusCode"] == 202 and up["State"] == "Updating"
    got = lam.get_event_source_mapping(UUID=m["UUID"])
    assert got["State"] == "Disabled" and got["BatchSize"] == 5 and got["MaximumBatchingWindowInSeconds"] == 2

    def code(call: Any, **kw: Any) -> str:
        with pytest.raises(ClientError) as e:
            call(**kw)
        return str(e.value.response["Error"]["Code"])

    create_ = lam.create_event_source_mapping
    assert code(create_, FunctionName="api-fn", EventSourceArn=arn, BatchSize=5) == "ResourceConflictException"
    assert code(create_, FunctionName="nope", EventSourceArn=arn) == "ResourceNotFoundException"
    missing = arn.rsplit(":", 1)[0] + ":no-such-queue"
    assert code(create_, FunctionName="api-fn", EventSourceArn=missing) == "InvalidParameterValueException"
    _, arn3 = queue(sqs, "api-q3")
    assert code(create_, FunctionName="api-fn", EventSourceArn=arn3, BatchSize=11) == "InvalidParameterValueException"
    raw = squall.client("lambda", parameter_validation=False).create_event_source_mapping
    assert code(raw, FunctionName="api-fn", EventSourceArn=arn3, BatchSize=10_001) == "InvalidParameterValueException"
    bad_scaling = {"MaximumConcurrency": 1}
    assert code(raw, FunctionName="api-fn", EventSourceArn=arn3, ScalingConfig=bad_scaling) == (
        "InvalidParameterValueException"
    )
    assert code(lam.get_event_source_mapping, UUID="00000000-0000-0000-0000-000000000000") == (
        "ResourceNotFoundException"
    )

    d = lam.delete_event_source_mapping(UUID=m["UUID"])
    assert d["State"] == "Deleting" and d["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert code(lam.get_event_source_mapping, UUID=m["UUID"]) == "ResourceNotFoundException"

    lam.delete_function(FunctionName="api-fn")  # deleting the function deletes its mappings
    eventually(lambda: not lam.list_event_source_mappings(EventSourceArn=arn2)["EventSourceMappings"])


def test_mappings_survive_a_restart(tmp_path: Path) -> None:
    proc = SquallProcess(tmp_path / "data").start()
    try:
        lam, sqs = proc.client("lambda"), proc.client("sqs")
        create(lam, "recorder", RECORDER)
        url, arn = queue(sqs, "restart-q")
        lam.create_event_source_mapping(FunctionName="recorder", EventSourceArn=arn)
        assert proc.stop() == 0
        proc.start()
        send(sqs, url, ["after-restart"])
        eventually(lambda: log_lines(proc, "recorder", "after-restart"), timeout_s=30, what="delivery after restart")
        eventually(lambda: depth(sqs, url) == (0, 0), what="queue empty")
    finally:
        proc.stop()
