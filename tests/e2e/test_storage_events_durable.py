"""An upload the client saw succeed always produces its storage event, even if the server is SIGKILLed right after."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from tests.e2e._platform import SquallProcess, create, eventually, signed_get

RECORDER = """
from urllib.parse import unquote_plus
def handler(event, context):
    for r in event["Records"]:
        print("KEY", unquote_plus(r["s3"]["object"]["key"]))
    return len(event["Records"])
"""


def test_upload_events_survive_a_kill_right_after_the_put(tmp_path: Path) -> None:
    proc = SquallProcess(tmp_path / "data").start()
    lam = proc.client()
    s3 = proc.client("s3", s3={"addressing_style": "path"})
    create(lam, "recorder", RECORDER)
    arn = lam.get_function_configuration(FunctionName="recorder")["FunctionArn"]
    s3.create_bucket(Bucket="inbox")
    s3.put_bucket_notification_configuration(
        Bucket="inbox",
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    keys = [f"upload {i}.txt" for i in range(30)]
    for key in keys:
        s3.put_object(Bucket="inbox", Key=key, Body=key.encode())
    proc.stop(signal.SIGKILL)  # right after the last PUT returned: some events are still queued

    proc.start()
    try:

        def seen() -> Any:
            status, body = signed_get(proc.url, "/_squall/api/logs?function=recorder&q=KEY&limit=1000")
            assert status == 200, body
            got = {line.split("KEY ", 1)[1].splitlines()[0] for ln in body["lines"] for line in [ln["text"]]}
            return got >= set(keys) or None

        eventually(seen, timeout_s=60, interval_s=0.5, what="an event for every accepted upload")
    finally:
        assert proc.stop() == 0


SLOW_RECORDER = """
import time
from urllib.parse import unquote_plus
def handler(event, context):
    for r in event["Records"]:
        print("KEY", unquote_plus(r["s3"]["object"]["key"]))
    time.sleep(0.15)
"""


def test_storage_events_are_delivered_oldest_first_when_they_back_up(tmp_path: Path) -> None:
    """With 2 deliveries in flight and 1 instance, later uploads must queue behind earlier ones (events handed
    straight to the dispatcher must not overtake events waiting in the durable queue)."""
    proc = SquallProcess(tmp_path / "data", SQUALL_ASYNC_MAX_IN_FLIGHT="2").start()
    try:
        lam = proc.client()
        s3 = proc.client("s3", s3={"addressing_style": "path"})
        create(lam, "slow", SLOW_RECORDER)
        lam.put_function_concurrency(FunctionName="slow", ReservedConcurrentExecutions=1)
        arn = lam.get_function_configuration(FunctionName="slow")["FunctionArn"]
        s3.create_bucket(Bucket="fifo")
        s3.put_bucket_notification_configuration(
            Bucket="fifo",
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        keys = [f"k{i:02d}" for i in range(16)]
        for key in keys[:8]:
            s3.put_object(Bucket="fifo", Key=key, Body=b"x")

        def order() -> list[str]:
            status, body = signed_get(proc.url, "/_squall/api/logs?function=slow&q=KEY&limit=1000")
            assert status == 200, body
            return [ln["text"].split("KEY ", 1)[1].split()[0] for ln in body["lines"]]

        eventually(lambda: len(order()) >= 2, timeout_s=30, what="the first deliveries")
        for key in keys[8:]:  # slots free up while these arrive: they must still wait for k02..k07
            s3.put_object(Bucket="fifo", Key=key, Body=b"x")

        def all_of_them() -> list[str] | None:
            got = order()
            return got if len(got) >= len(keys) else None

        assert eventually(all_of_them, timeout_s=60, what="all events") == keys
    finally:
        assert proc.stop() == 0
