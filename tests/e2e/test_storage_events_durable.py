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
