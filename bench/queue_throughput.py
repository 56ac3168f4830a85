"""SQS event source mapping throughput: messages/s processed end to end by a trivial function.

For BatchSize 10 and 100: fill a queue with N messages, create the mapping, time until the queue is empty.
Baseline in the same run: a plain boto3 loop that reads (ReceiveMessage, 10 at a time) and deletes
(DeleteMessageBatch) the same number of messages through the SQS API, invoking nothing.

Prints JSON lines:
  esm_throughput_batch10_msgs   messages/s through the mapping, "ratio" = mapping / plain SQS loop
  esm_throughput_batch100_msgs  same with BatchSize 100 (MaximumBatchingWindowInSeconds 1)
  sqs_loop_msgs                 the plain receive + delete loop

    python bench/queue_throughput.py [--quick]
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quick
from _server import KEY_ID, SECRET, Server, deploy

__all__ = ["main"]

CODE = "def handler(event, context):\n    return None\n"


def sqs_client(server: Server) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sqs", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 0}, max_pool_connections=16),
    )  # fmt: skip


def make_queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return str(url), str(arn)


def fill(sqs: Any, url: str, n: int) -> None:
    def batch(start: int) -> None:
        entries = [{"Id": str(i), "MessageBody": f"m-{start + i}"} for i in range(min(10, n - start))]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(batch, range(0, n, 10)))


def remaining(sqs: Any, url: str) -> int:
    a = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def through_mapping(lam: Any, sqs: Any, batch_size: int, n: int) -> float:
    url, arn = make_queue(sqs, f"esm-{batch_size}")
    fill(sqs, url, n)
    window = 0 if batch_size <= 10 else 1
    t0 = time.perf_counter()
    m = lam.create_event_source_mapping(
        FunctionName="bench", EventSourceArn=arn, BatchSize=batch_size, MaximumBatchingWindowInSeconds=window
    )
    deadline = t0 + 300
    while remaining(sqs, url) > 0:
        if time.perf_counter() > deadline:
            raise RuntimeError("queue not drained in 300 s")
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    lam.delete_event_source_mapping(UUID=m["UUID"])
    return n / elapsed


def plain_loop(sqs: Any, n: int) -> float:
    url, _ = make_queue(sqs, "plain")
    fill(sqs, url, n)
    done = 0
    t0 = time.perf_counter()
    while done < n:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            continue
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
        assert not sqs.delete_message_batch(QueueUrl=url, Entries=entries).get("Failed")
        done += len(msgs)
    return n / (time.perf_counter() - t0)


def main() -> None:
    n = 1000 if quick() else 10_000
    server = Server()
    try:
        lam = server.lambda_client()
        sqs = sqs_client(server)
        deploy(lam, "bench", CODE)
        lam.invoke(FunctionName="bench", Payload=b"{}")  # warm the zygote
        baseline = plain_loop(sqs, n)
        rates = {b: through_mapping(lam, sqs, b, n) for b in (10, 100)}
        emit("sqs_loop_msgs", baseline, "msg/s", n=n)
        for b, rate in rates.items():
            emit(
                f"esm_throughput_batch{b}_msgs", rate, "msg/s",
                ratio=round(rate / baseline, 3), n=n, baseline={"sqs_loop_msgs_per_s": round(baseline, 1)},
            )  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    main()
