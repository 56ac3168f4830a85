"""Tests of the SQS-compatible queue store (squall.sqs.store.queues) with a fake clock, and of its MD5s and waiter."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from squall.core.clock import FakeClock
from squall.core.errors import InvalidParameterValue
from squall.sqs.errors import (
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidMessageContents,
    MessageNotInflight,
    PurgeQueueInProgress,
    QueueDoesNotExist,
    QueueNameExists,
    ReceiptHandleIsInvalid,
    UnsupportedOperation,
)
from squall.sqs.store.md5 import md5_of_attributes, md5_of_body
from squall.sqs.store.queues import QueueStore
from squall.sqs.store.records import SendEntry, lambda_record
from squall.sqs.store.wait import QueueWaiter

ARN = "arn:aws:sqs:us-east-1:000000000000"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "queues" / "queues.db"


@pytest.fixture
def store(db: Path, clock: FakeClock) -> Iterator[QueueStore]:
    s = QueueStore(db, clock=clock)
    yield s
    s.close()


def redrive(target: str, count: int) -> str:
    return json.dumps({"deadLetterTargetArn": f"{ARN}:{target}", "maxReceiveCount": count})


# --------------------------------------------------------------------------------------------- checksums


def test_md5_matches_aws_reference_values() -> None:
    # values published by AWS (CLI examples) and observed from SQS
    assert md5_of_body("Information about the largest city in Any Region.") == "51b0a3256d59467f973009b739163aa0"
    attrs = {"timestamp": {"DataType": "Number", "StringValue": "1493147359900"}}
    assert md5_of_attributes(attrs) == "235c5c510d26fb653d073faed50ae77c"
    assert md5_of_attributes({}) is None


def test_md5_of_attributes_is_order_independent_and_typed() -> None:
    a = {"b": {"DataType": "String", "StringValue": "x"}, "a": {"DataType": "Binary", "BinaryValue": b"x"}}
    b = dict(reversed(list(a.items())))
    assert md5_of_attributes(a) == md5_of_attributes(b)
    as_string = {"a": {"DataType": "Binary", "StringValue": "x"}}
    assert md5_of_attributes(as_string) != md5_of_attributes({"a": a["a"]})


# --------------------------------------------------------------------------------------------- queues


def test_create_is_idempotent_and_detects_conflicts(store: QueueStore) -> None:
    q = store.create_queue("q1", {"VisibilityTimeout": "10"}, {"team": "a"})
    assert q.arn == f"{ARN}:q1"
    assert store.create_queue("q1", {"VisibilityTimeout": "10"}).attributes["VisibilityTimeout"] == "10"
    assert store.create_queue("q1").name == "q1"
    with pytest.raises(QueueNameExists, match="VisibilityTimeout"):
        store.create_queue("q1", {"VisibilityTimeout": "11"})
    assert store.tags("q1") == {"team": "a"}


@pytest.mark.parametrize(
    ("name", "attrs", "error"),
    [
        ("bad name", {}, InvalidParameterValue),
        ("x" * 81, {}, InvalidParameterValue),
        ("q.fifo", {}, UnsupportedOperation),
        ("q", {"FifoQueue": "true"}, UnsupportedOperation),
        ("q", {"VisibilityTimeout": "43201"}, InvalidAttributeValue),
        ("q", {"MessageRetentionPeriod": "59"}, InvalidAttributeValue),
        ("q", {"DelaySeconds": "abc"}, InvalidAttributeValue),
        ("q", {"Bogus": "1"}, InvalidAttributeName),
        ("q", {"RedrivePolicy": redrive("missing", 3)}, InvalidParameterValue),
        ("q", {"RedrivePolicy": '{"deadLetterTargetArn": "x", "maxReceiveCount": 0}'}, InvalidParameterValue),
    ],
)
def test_create_validates(store: QueueStore, name: str, attrs: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        store.create_queue(name, attrs)


def test_list_get_set_delete(store: QueueStore, clock: FakeClock) -> None:
    for name in ("b-1", "a-1", "a-2"):
        store.create_queue(name)
    assert store.list_queues() == ["a-1", "a-2", "b-1"]
    assert store.list_queues("a-") == ["a-1", "a-2"]
    clock.advance(5)
    store.set_attributes("a-1", {"DelaySeconds": "7", "ReceiveMessageWaitTimeSeconds": "3"})
    attrs = store.get_attributes("a-1")
    assert attrs["DelaySeconds"] == "7"
    assert int(attrs["LastModifiedTimestamp"]) == int(attrs["CreatedTimestamp"]) + 5
    assert store.get_attributes("a-1", ["QueueArn", "RedrivePolicy"]) == {"QueueArn": f"{ARN}:a-1"}
    with pytest.raises(InvalidAttributeName):
        store.get_attributes("a-1", ["Nope"])
    store.delete_queue("a-1")
    with pytest.raises(QueueDoesNotExist):
        store.get_queue("a-1")
    with pytest.raises(QueueDoesNotExist):
        store.send("a-1", "x")


# --------------------------------------------------------------------------------------------- messages


def test_send_receive_delete_round_trip(store: QueueStore, clock: FakeClock) -> None:
    store.create_queue("q")
    attrs = {"n": {"DataType": "Number", "StringValue": "42"}, "b": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}}
    sent = store.send("q", SendEntry("hello", message_attributes=attrs, sender_id="AKID"))
    assert sent.md5_of_body == md5_of_body("hello")
    assert sent.md5_of_message_attributes == md5_of_attributes(attrs)
    clock.advance(2)
    (msg,) = store.receive("q", 10)
    assert (msg.message_id, msg.body, msg.message_attributes) == (sent.message_id, "hello", attrs)
    assert msg.attributes["SenderId"] == "AKID"
    assert msg.attributes["ApproximateReceiveCount"] == "1"
    assert int(msg.attributes["ApproximateFirstReceiveTimestamp"]) - int(msg.attributes["SentTimestamp"]) == 2000
    assert store.receive("q") == []
    assert store.delete_message("q", msg.receipt_handle) is True
    assert store.delete_message("q", msg.receipt_handle) is False  # already gone: succeeds silently
    clock.advance(60)
    assert store.receive("q") == []


def test_receive_prefers_oldest_and_limits(store: QueueStore, clock: FakeClock) -> None:
    store.create_queue("q")
    for i in range(15):
        store.send("q", f"m{i}")
        clock.advance(0.001)
    first = store.receive("q", 10)
    assert [m.body for m in first] == [f"m{i}" for i in range(10)]
    assert [m.body for m in store.receive("q", 10)] == [f"m{i}" for i in range(10, 15)]
    with pytest.raises(InvalidParameterValue):
        store.receive("q", 11)


def test_visibility_timeout_and_stale_handles(store: QueueStore, clock: FakeClock) -> None:
    store.create_queue("q", {"VisibilityTimeout": "5"})
    store.send("q", "x")
    (first,) = store.receive("q")
    clock.advance(4.9)
    assert store.receive("q") == []
    clock.advance(0.2)
    (second,) = store.receive("q", visibility_timeout=10)
    assert second.receipt_handle != first.receipt_handle
    assert second.receive_count == 2
    assert store.delete_message("q", first.receipt_handle) is False  # stale: accepted, nothing deleted
    with pytest.raises(InvalidParameterValue, match="not available for visibility timeout change"):
        store.change_visibility("q", first.receipt_handle, 0)
    store.change_visibility("q", second.receipt_handle, 0)
    with pytest.raises(MessageNotInflight):
        store.change_visibility("q", second.receipt_handle, 5)
    (third,) = store.receive("q")
    assert store.delete_message("q", third.receipt_handle) is True


def test_invalid_receipt_handles(store: QueueStore) -> None:
    store.create_queue("q")
    store.create_queue("other")
    store.send("other", "x")
    (msg,) = store.receive("other")
    for handle in ("garbage!", "", msg.receipt_handle):
        with pytest.raises(ReceiptHandleIsInvalid):
            store.delete_message("q", handle)


def test_delay_and_counts(store: QueueStore, clock: FakeClock) -> None:
    store.create_queue("q", {"DelaySeconds": "10"})
    store.send("q", "queue-delay")
    store.send("q", SendEntry("no-delay", delay_seconds=0))
    store.receive("q", 1, visibility_timeout=30)
    counts = store.get_attributes(
        "q",
        ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"],
    )
    assert counts == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "1",
        "ApproximateNumberOfMessagesDelayed": "1",
    }
    assert store.next_visible_at("q") == pytest.approx(clock.now() + 10)
    clock.advance(10)
    assert [m.body for m in store.receive("q")] == ["queue-delay"]


def test_send_validation(store: QueueStore) -> None:
    store.create_queue("q", {"MaximumMessageSize": "1024"})
    with pytest.raises(InvalidParameterValue, match="shorter than 1024"):
        store.send("q", "x" * 1025)
    with pytest.raises(InvalidMessageContents):
        store.send("q", "bad \x00 char")
    with pytest.raises(InvalidParameterValue):
        store.send("q", SendEntry("x", delay_seconds=901))
    with pytest.raises(InvalidParameterValue):
        store.send("q", SendEntry("x", message_attributes={"AWS.x": {"DataType": "String", "StringValue": "v"}}))
    with pytest.raises(InvalidParameterValue):
        store.send("q", SendEntry("x", message_attributes={"n": {"DataType": "Number", "StringValue": "abc"}}))
    results = store.send_batch("q", [SendEntry("ok"), SendEntry("y" * 2000)])
    assert not isinstance(results[0], Exception)
    assert isinstance(results[1], InvalidParameterValue)
    assert len(store.receive("q", 10)) == 1


def test_retention_expiry(store: QueueStore, clock: FakeClock) -> None:
    store.create_queue("q", {"MessageRetentionPeriod": "60"})
    store.send("q", "old")
    clock.advance(30)
    store.send("q", "new")
    clock.advance(30)
    assert [m.body for m in store.receive("q", 10)] == ["new"]
    clock.advance(30)
    assert store.sweep() == 1
    assert store.get_attributes("q", ["ApproximateNumberOfMessagesNotVisible"]) == {
        "ApproximateNumberOfMessagesNotVisible": "0"
    }


def test_redrive_to_dead_letter_queue_at_receive(store: QueueStore, clock: FakeClock) -> None:
    store.create_queue("dlq")
    store.create_queue("src", {"VisibilityTimeout": "1", "RedrivePolicy": redrive("dlq", 2)})
    assert store.dead_letter_sources("dlq") == ["src"]
    sent = store.send("src", SendEntry("poison", message_attributes={"k": {"DataType": "String", "StringValue": "v"}}))
    for expected in (1, 2):
        (msg,) = store.receive("src")
        assert msg.receive_count == expected
        clock.advance(1)
    assert store.get_attributes("dlq", ["ApproximateNumberOfMessages"]) == {"ApproximateNumberOfMessages": "0"}
    assert store.receive("src") == []  # the third receive moves it instead of delivering it
    (dead,) = store.receive("dlq")
    assert dead.message_id == sent.message_id
    assert dead.body == "poison"
    assert dead.message_attributes == {"k": {"DataType": "String", "StringValue": "v"}}
    assert dead.attributes["DeadLetterQueueSourceArn"] == f"{ARN}:src"
    assert dead.receive_count == 1


def test_purge_once_per_minute(store: QueueStore, clock: FakeClock) -> None:
    store.create_queue("q")
    store.send("q", "a")
    store.purge("q")
    assert store.receive("q") == []
    with pytest.raises(PurgeQueueInProgress):
        store.purge("q")
    clock.advance(60)
    store.purge("q")


def test_durable_across_reopen(db: Path, clock: FakeClock) -> None:
    s1 = QueueStore(db, clock=clock)
    s1.create_queue("q", {"VisibilityTimeout": "7"})
    sent = s1.send("q", "persisted")
    (msg,) = s1.receive("q")
    s1.close()
    s2 = QueueStore(db, clock=clock)
    try:
        assert s2.get_queue("q").attributes["VisibilityTimeout"] == "7"
        assert s2.receive("q") == []  # still in flight
        clock.advance(7)
        (again,) = s2.receive("q")
        assert (again.message_id, again.receive_count) == (sent.message_id, 2)
        assert s2.delete_message("q", msg.receipt_handle) is False
    finally:
        s2.close()


def test_send_to_queue_arn(store: QueueStore) -> None:
    store.create_queue("dest")
    store.send_to_queue_arn(f"{ARN}:dest", '{"ok": true}')
    (msg,) = store.receive_batch("dest", 10)
    assert msg.body == '{"ok": true}'
    for arn in (f"{ARN}:nope", "arn:aws:sqs:eu-west-1:000000000000:dest", "not-an-arn"):
        with pytest.raises(QueueDoesNotExist):
            store.send_to_queue_arn(arn, "x")
    record = lambda_record(msg, f"{ARN}:dest", "us-east-1")
    assert record["eventSource"] == "aws:sqs"
    assert record["receiptHandle"] == msg.receipt_handle


def test_concurrent_senders(store: QueueStore) -> None:
    store.create_queue("q")

    def worker(n: int) -> None:
        for i in range(20):
            store.send("q", f"{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_attributes("q", ["ApproximateNumberOfMessages"]) == {"ApproximateNumberOfMessages": "80"}


# --------------------------------------------------------------------------------------------- long polling


def test_waiter_wakes_on_send_from_another_thread(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.db")
    store.create_queue("q")
    waiter = QueueWaiter(store)

    async def scenario() -> tuple[float, list[str]]:
        timer = threading.Timer(0.2, store.send, args=("q", "wake"))
        start = time.monotonic()
        timer.start()
        try:
            messages = await waiter.receive("q", 1, None, wait_seconds=10)
        finally:
            timer.join()
        return time.monotonic() - start, [m.body for m in messages]

    try:
        elapsed, bodies = asyncio.run(scenario())
        assert bodies == ["wake"]
        assert elapsed < 5
        # nothing arrives: returns empty after the wait time
        start = time.monotonic()
        assert asyncio.run(waiter.receive("q", 1, None, wait_seconds=0.3)) == []
        assert 0.25 < time.monotonic() - start < 3
    finally:
        waiter.close()
        store.close()
