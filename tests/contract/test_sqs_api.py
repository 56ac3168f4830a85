"""The SQS API against real clients: boto3 (JSON protocol) and the AWS CLI, through a real uvicorn server on
127.0.0.1 with SigV4 verification in front of ``squall.sqs.api``."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import uvicorn
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from squall.aws.auth import SigV4Middleware
from squall.sqs.api import sqs_app
from squall.sqs.store.queues import QueueStore
from tests.aws_cli import AWS_CLI, aws_env, needs_aws_cli
from tests.pg_helpers import store_target

REGION = "us-east-1"
ACCOUNT = "123456789012"
KEY = "AKIDSQSTEST"
SECRET = "sqs-test-secret"


class SqsServer:
    def __init__(self, root: Path) -> None:
        self.store = QueueStore(store_target(root / "queues.db", "sqs"), region=REGION, account_id=ACCOUNT)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        app = sqs_app(self.store, public_url=self.url, region=REGION, account_id=ACCOUNT)
        secured = SigV4Middleware(app, lookup_secret=lambda k: SECRET if k == KEY else None)
        self.server = uvicorn.Server(uvicorn.Config(secured, log_level="warning", lifespan="off", access_log=False))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> SqsServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the SQS server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        self.store.close()

    def client(self, secret: str = SECRET, **config: Any) -> Any:
        return boto3.client(
            "sqs",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=KEY,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 0}, read_timeout=40, **config),
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqsServer]:
    s = SqsServer(tmp_path_factory.mktemp("sqs")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def sqs(server: SqsServer) -> Any:
    return server.client()


_counter = iter(range(1_000_000))


@pytest.fixture
def queue(sqs: Any) -> str:
    """A fresh queue's URL."""
    return str(sqs.create_queue(QueueName=f"q{next(_counter)}-{os.getpid()}")["QueueUrl"])


def aws_md5_of_attributes(attrs: dict[str, dict[str, Any]]) -> str:
    """The published SQS algorithm, written out independently of the server's implementation."""
    out = b""
    for name in sorted(attrs):
        value = attrs[name]
        out += struct.pack(">I", len(name.encode())) + name.encode()
        out += struct.pack(">I", len(value["DataType"].encode())) + value["DataType"].encode()
        if "BinaryValue" in value:
            data = value["BinaryValue"]
            out += b"\x02" + struct.pack(">I", len(data)) + data
        else:
            data = value["StringValue"].encode()
            out += b"\x01" + struct.pack(">I", len(data)) + data
    return hashlib.md5(out).hexdigest()


def error_of(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


# --------------------------------------------------------------------------------------------- queues


def test_queue_lifecycle(server: SqsServer, sqs: Any) -> None:
    url = sqs.create_queue(QueueName="life-1", Attributes={"VisibilityTimeout": "12"}, tags={"a": "b"})["QueueUrl"]
    assert url == f"{server.url}/{ACCOUNT}/life-1"
    assert sqs.create_queue(QueueName="life-1", Attributes={"VisibilityTimeout": "12"})["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists) as exc:
        sqs.create_queue(QueueName="life-1", Attributes={"VisibilityTimeout": "13"})
    assert error_of(exc) == "QueueAlreadyExists"
    sqs.create_queue(QueueName="life-2")
    assert sqs.get_queue_url(QueueName="life-1")["QueueUrl"] == url
    assert sqs.list_queues(QueueNamePrefix="life-")["QueueUrls"] == [url, f"{server.url}/{ACCOUNT}/life-2"]
    page = sqs.list_queues(QueueNamePrefix="life-", MaxResults=1)
    assert page["QueueUrls"] == [url]
    rest = sqs.list_queues(QueueNamePrefix="life-", MaxResults=1, NextToken=page["NextToken"])
    assert rest["QueueUrls"] == [f"{server.url}/{ACCOUNT}/life-2"]
    assert "NextToken" not in rest
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix="nothing-here")
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"a": "b"}
    sqs.tag_queue(QueueUrl=url, Tags={"c": "d"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["a"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"c": "d"}
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as exc:
        sqs.get_queue_url(QueueName="life-1")
    assert error_of(exc) == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")


def test_attributes_round_trip(sqs: Any, queue: str) -> None:
    sqs.set_queue_attributes(
        QueueUrl=queue,
        Attributes={"DelaySeconds": "3", "MaximumMessageSize": "2048", "MessageRetentionPeriod": "120"},
    )
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["DelaySeconds"] == "3"
    assert attrs["MaximumMessageSize"] == "2048"
    assert attrs["MessageRetentionPeriod"] == "120"
    assert attrs["VisibilityTimeout"] == "30"
    assert attrs["QueueArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue.rsplit('/', 1)[1]}"
    assert attrs["ApproximateNumberOfMessages"] == "0"
    some = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn", "DelaySeconds"])["Attributes"]
    assert set(some) == {"QueueArn", "DelaySeconds"}
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["NoSuchAttribute"])
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "-1"})
    with pytest.raises(sqs.exceptions.UnsupportedOperation, match="FIFO"):
        sqs.create_queue(QueueName="nope.fifo", Attributes={"FifoQueue": "true"})


# --------------------------------------------------------------------------------------------- messages


def test_send_receive_delete_with_attributes(sqs: Any, queue: str) -> None:
    attrs: dict[str, dict[str, Any]] = {
        "City": {"DataType": "String", "StringValue": "Any City"},
        "Population": {"DataType": "Number", "StringValue": "1250800"},
        "Blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01hello\xff"},
        "Custom": {"DataType": "String.custom", "StringValue": "ü"},
    }
    sent = sqs.send_message(QueueUrl=queue, MessageBody="hello ✓", MessageAttributes=attrs)
    assert sent["MD5OfMessageBody"] == hashlib.md5("hello ✓".encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"] == aws_md5_of_attributes(attrs)
    got = sqs.receive_message(
        QueueUrl=queue, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"], WaitTimeSeconds=1
    )
    (msg,) = got["Messages"]
    assert msg["MessageId"] == sent["MessageId"]
    assert msg["Body"] == "hello ✓"
    assert msg["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert msg["MessageAttributes"] == attrs
    assert msg["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert msg["Attributes"]["SenderId"] == KEY
    assert msg["Attributes"]["ApproximateReceiveCount"] == "1"
    assert abs(int(msg["Attributes"]["SentTimestamp"]) / 1000 - time.time()) < 60
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=msg["ReceiptHandle"])
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=msg["ReceiptHandle"])  # gone already: AWS accepts it
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    counts = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert counts["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_receive_selects_attributes(sqs: Any, queue: str) -> None:
    attrs = {
        "a.one": {"DataType": "String", "StringValue": "1"},
        "a.two": {"DataType": "String", "StringValue": "2"},
        "b": {"DataType": "String", "StringValue": "3"},
    }
    sqs.send_message(QueueUrl=queue, MessageBody="x", MessageAttributes=attrs)
    (msg,) = sqs.receive_message(
        QueueUrl=queue, MessageAttributeNames=["a.*"], AttributeNames=["SentTimestamp"], VisibilityTimeout=0
    )["Messages"]
    assert set(msg["MessageAttributes"]) == {"a.one", "a.two"}
    assert msg["MD5OfMessageAttributes"] == aws_md5_of_attributes({k: attrs[k] for k in ("a.one", "a.two")})
    assert set(msg["Attributes"]) == {"SentTimestamp"}
    (bare,) = sqs.receive_message(QueueUrl=queue)["Messages"]
    assert "MessageAttributes" not in bare
    assert "Attributes" not in bare


def test_batches_with_failures(sqs: Any, queue: str) -> None:
    result = sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "ok1", "MessageBody": "one"},
            {"Id": "bad", "MessageBody": "nul \x00 char"},
            {"Id": "ok2", "MessageBody": "two", "MessageAttributes": {"k": {"DataType": "Number", "StringValue": "1"}}},
            {"Id": "late", "MessageBody": "delayed", "DelaySeconds": 900},
        ],
    )
    assert sorted(e["Id"] for e in result["Successful"]) == ["late", "ok1", "ok2"]
    (failure,) = result["Failed"]
    assert failure["Id"] == "bad"
    assert failure["SenderFault"] is True
    assert failure["Code"] == "InvalidMessageContents"
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in messages) == ["one", "two"]
    deleted = sqs.delete_message_batch(
        QueueUrl=queue,
        Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        + [{"Id": "junk", "ReceiptHandle": "not-a-handle"}],
    )
    assert sorted(e["Id"] for e in deleted["Successful"]) == ["d0", "d1"]
    assert [(f["Id"], f["Code"]) for f in deleted["Failed"]] == [("junk", "ReceiptHandleIsInvalid")]
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"
    assert attrs["ApproximateNumberOfMessages"] == "0"

    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "x", "MessageBody": "a"}] * 2)
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": f"e{i}", "MessageBody": "a"} for i in range(11)])
    with pytest.raises(sqs.exceptions.InvalidBatchEntryId):
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "bad id!", "MessageBody": "a"}])
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.delete_message_batch(QueueUrl=queue, Entries=[])
    with pytest.raises(sqs.exceptions.BatchRequestTooLong):
        sqs.send_message_batch(
            QueueUrl=queue, Entries=[{"Id": f"e{i}", "MessageBody": "x" * 200_000} for i in range(2)]
        )


def test_visibility_timeout(sqs: Any, queue: str) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody="v")
    (first,) = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=1)["Messages"]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    # reappears after ~1 s: a long poll wakes when the in-flight message becomes visible again
    start = time.monotonic()
    (second,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=20, AttributeNames=["All"])["Messages"]
    assert time.monotonic() - start < 15  # woke when the message came back, long before the 20 s wait ran out
    assert second["MessageId"] == first["MessageId"]
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    assert error_of(exc) == "InvalidParameterValue"
    batch = sqs.change_message_visibility_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "cur", "ReceiptHandle": second["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "old", "ReceiptHandle": first["ReceiptHandle"], "VisibilityTimeout": 0},
        ],
    )
    assert [e["Id"] for e in batch["Successful"]] == ["cur"]
    assert [f["Id"] for f in batch["Failed"]] == ["old"]
    with pytest.raises(sqs.exceptions.MessageNotInflight):
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=5)
    (third,) = sqs.receive_message(QueueUrl=queue)["Messages"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=third["ReceiptHandle"])


def test_long_poll_returns_when_a_message_arrives(server: SqsServer, sqs: Any, queue: str) -> None:
    sender = server.client()
    timer = threading.Timer(0.5, lambda: sender.send_message(QueueUrl=queue, MessageBody="wake up"))
    start = time.monotonic()
    timer.start()
    try:
        got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)
    finally:
        timer.join()
    elapsed = time.monotonic() - start
    assert [m["Body"] for m in got["Messages"]] == ["wake up"]
    assert 0.4 < elapsed < 5


def test_long_poll_times_out_empty(sqs: Any, queue: str) -> None:
    start = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
    assert 0.9 < time.monotonic() - start < 5


def test_queue_default_wait_time(sqs: Any, queue: str) -> None:
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"ReceiveMessageWaitTimeSeconds": "1"})
    start = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    assert time.monotonic() - start > 0.9


def test_dead_letter_redrive(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName="redrive-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    src = sqs.create_queue(QueueName="redrive-src", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]
    sent = sqs.send_message(QueueUrl=src, MessageBody="poison")
    for _ in range(2):
        (msg,) = sqs.receive_message(QueueUrl=src, VisibilityTimeout=0)["Messages"]
        assert msg["MessageId"] == sent["MessageId"]
    assert "Messages" not in sqs.receive_message(QueueUrl=src)  # moved to the DLQ by this receive
    (dead,) = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
    assert dead["MessageId"] == sent["MessageId"]
    assert dead["Body"] == "poison"
    assert dead["Attributes"]["DeadLetterQueueSourceArn"].endswith(":redrive-src")
    stored = json.loads(
        sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    )
    assert stored == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        sqs.set_queue_attributes(
            QueueUrl=src,
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn + "x", "maxReceiveCount": 2})},
        )
    assert error_of(exc) == "InvalidParameterValue"


def test_purge(sqs: Any, queue: str) -> None:
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(5)])
    sqs.purge_queue(QueueUrl=queue)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress):
        sqs.purge_queue(QueueUrl=queue)


def test_validation_errors(server: SqsServer, queue: str) -> None:
    loose = server.client(parameter_validation=False)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        loose.receive_message(QueueUrl=queue, MaxNumberOfMessages=11)
    assert error_of(exc) == "InvalidParameterValue"
    assert "MaxNumberOfMessages" in str(exc.value)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        loose.receive_message(QueueUrl=queue, WaitTimeSeconds=21)
    assert error_of(exc) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        loose.send_message(QueueUrl=queue, MessageBody="")
    assert error_of(exc) == "MissingParameter"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        loose.send_message(QueueUrl=queue, MessageBody="x" * 262_145)
    assert error_of(exc) == "InvalidParameterValue"
    with pytest.raises(loose.exceptions.ReceiptHandleIsInvalid):
        loose.change_message_visibility(QueueUrl=queue, ReceiptHandle="garbage", VisibilityTimeout=1)
    with pytest.raises(loose.exceptions.QueueDoesNotExist):
        loose.receive_message(QueueUrl=f"{server.url}/{ACCOUNT}/no-such-queue")


def test_bad_signature_is_refused(server: SqsServer) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        server.client(secret="wrong").list_queues()
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)


def test_request_to_the_queue_url_path(server: SqsServer, sqs: Any, queue: str) -> None:
    """Some SDKs POST to the queue URL itself; the queue then comes from the path."""
    body = json.dumps({"MessageBody": "via path"}).encode()
    request = AWSRequest(
        method="POST",
        url=queue,
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.SendMessage"},
    )
    SigV4Auth(Credentials(KEY, SECRET), "sqs", REGION).add_auth(request)
    prepared = request.prepare()
    raw = urllib.request.Request(prepared.url, data=body, headers=dict(prepared.headers), method="POST")
    with urllib.request.urlopen(raw, timeout=10) as response:
        sent = json.loads(response.read())
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"via path").hexdigest()
    (msg,) = sqs.receive_message(QueueUrl=queue)["Messages"]
    assert msg["MessageId"] == sent["MessageId"]


@needs_aws_cli
def test_aws_cli(server: SqsServer, queue: str, tmp_path: Path) -> None:
    env = aws_env(KEY, SECRET, REGION, tmp_path)
    given = {"n": {"DataType": "Number", "StringValue": "7"}, "s": {"DataType": "String", "StringValue": "x y"}}
    attrs = json.dumps(given)
    out = subprocess.run(
        [str(AWS_CLI), "sqs", "send-message", "--endpoint-url", server.url, "--queue-url", queue,
         "--message-body", "from the cli", "--message-attributes", attrs, "--output", "json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout)
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"from the cli").hexdigest()
    assert sent["MD5OfMessageAttributes"] == aws_md5_of_attributes(given)
