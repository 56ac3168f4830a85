"""Storage events in a real two-node cluster (two ``squall up`` processes, one PostgreSQL, one nats-server): an
upload whose node is killed (SIGKILL) right after the PUT returned, its event not yet in JetStream, is delivered by
the other node (from the event outbox, once the dead node's claim on it expired).

Node A reaches NATS through a TCP relay the test can freeze (it then drops every byte both ways, the connection
staying open, as a node whose network to NATS hangs): A's publishes can never be acknowledged.  Before the outbox,
A published the event after the commit from inside the PUT (nothing else held it), so killing A then lost it."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from squall.cluster.natsd import NatsCluster
from tests.cluster.relay import NatsRelay
from tests.e2e._platform import SquallProcess, create, eventually, signed_get

pytestmark = pytest.mark.timeout(600)

RECORDER = """
from urllib.parse import unquote_plus
def handler(event, context):
    for r in event["Records"]:
        print("KEY", unquote_plus(r["s3"]["object"]["key"]))
    return len(event["Records"])
"""


@pytest.fixture
def relay(nats1: NatsCluster) -> Iterator[NatsRelay]:
    r = NatsRelay(int(nats1.url.rsplit(":", 1)[1]))
    yield r
    r.close()


def _keys_seen(node: SquallProcess) -> list[str]:
    status, body = signed_get(node.url, "/_squall/api/logs?function=recorder&q=KEY&limit=1000")
    assert status == 200, body
    return [line["text"].split("KEY ", 1)[1].splitlines()[0] for line in body["lines"]]


def test_an_upload_whose_node_dies_after_the_commit_is_delivered_by_another(
    nats1: NatsCluster, relay: NatsRelay, pg_url: str, tmp_path: Path
) -> None:
    env = {"SQUALL_DATABASE_URL": pg_url, "SQUALL_OUTBOX_LEASE_S": "3", "SQUALL_NATS_ACK_WAIT_S": "2"}
    b = SquallProcess(tmp_path / "b" / "data", None, (), SQUALL_NATS_URL=nats1.url, SQUALL_NODE_ID="b", **env).start()
    a = SquallProcess(tmp_path / "a" / "data", None, (), SQUALL_NATS_URL=relay.url, SQUALL_NODE_ID="a", **env).start()
    try:
        lam = b.client()
        create(lam, "recorder", RECORDER)
        arn = lam.get_function_configuration(FunctionName="recorder")["FunctionArn"]
        s3_b = b.client("s3", s3={"addressing_style": "path"})
        sqs = b.client("sqs")
        queue = sqs.create_queue(QueueName="uploads")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3_b.create_bucket(Bucket="inbox")
        s3_b.put_bucket_notification_configuration(
            Bucket="inbox",
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}],
                "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}],
            },
        )
        s3_a = a.client("s3", s3={"addressing_style": "path"})
        s3_a.put_object(Bucket="inbox", Key="before", Body=b"1")  # the healthy path, through node A
        eventually(lambda: "before" in _keys_seen(b), timeout_s=120, what="the event of an upload through node A")

        relay.freeze()  # A's NATS connection hangs: nothing A publishes from now on reaches JetStream
        outcome: dict[str, Any] = {}

        def put() -> None:
            try:
                outcome["etag"] = s3_a.put_object(Bucket="inbox", Key="after", Body=b"2")["ETag"]
            except Exception as e:  # before the outbox: the publish after the commit timed out
                outcome["error"] = e

        putter = threading.Thread(target=put, daemon=True)
        putter.start()
        # the PUT returned (before the outbox: it failed once the publish timed out, 10 s after the commit)
        putter.join(60)
        assert _exists(s3_b, "after")  # committed: seen through B
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL  # A dies, its event never published by A
        relay.close()  # and whatever A had sent into the hung connection is gone with it

        keys = eventually(lambda: "after" in (k := _keys_seen(b)) and k, timeout_s=120, what="the orphaned event")
        assert keys.count("after") == 1 and keys.count("before") == 1, keys
        # and the upload succeeded although A could not reach NATS: its event was safe with the object
        assert "etag" in outcome, outcome
        # the queue target got both events as messages too (written in the object's transaction as well)
        got: list[str] = []

        def both_messages() -> bool:
            for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                got.append(json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"])
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            return sorted(got) == ["after", "before"]

        eventually(both_messages, timeout_s=60, what=f"both SQS messages (got {got})")
    finally:
        for node in (a, b):
            if node.proc is not None and node.proc.poll() is None:
                node.stop()


def _exists(s3: Any, key: str) -> bool:
    try:
        s3.head_object(Bucket="inbox", Key=key)
        return True
    except Exception:
        return False
