"""End to end through ``squall up``: boto3's default (SigV2) presigned URLs fetched with urllib, and a browser-style
POST upload (``generate_presigned_post`` + httpx) firing the bucket's ``s3:ObjectCreated:Post`` notification."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e._platform import SquallProcess, create, eventually, signed_get

RECORDER = """
from urllib.parse import unquote_plus

def handler(event, context):
    for r in event["Records"]:
        print("EVENT", r["eventName"], unquote_plus(r["s3"]["object"]["key"]), r["s3"]["object"]["size"])
"""


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(tmp_path_factory.mktemp("presign") / "data").start()
    yield proc
    assert proc.stop() == 0


def logged(squall: SquallProcess) -> list[str]:
    status, body = signed_get(squall.url, "/_squall/api/logs?function=recorder&q=EVENT&limit=100")
    assert status == 200, body
    return [line["text"].split("EVENT ", 1)[1].splitlines()[0].strip() for line in body["lines"]]


def test_presigned_url_and_post_upload(squall: SquallProcess) -> None:
    lam = squall.client("lambda")
    s3: Any = squall.client("s3")  # no signature_version: presigned URLs and POSTs are SigV2, botocore's default
    create(lam, "recorder", RECORDER)
    arn = lam.get_function_configuration(FunctionName="recorder")["FunctionArn"]
    s3.create_bucket(Bucket="forms")
    s3.put_bucket_notification_configuration(
        Bucket="forms",
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:Post"]}]
        },
    )
    post = s3.generate_presigned_post(
        "forms", "in/${filename}", Conditions=[["content-length-range", 1, 1000]], ExpiresIn=300
    )
    r = httpx.post(post["url"], data=post["fields"], files={"file": ("note.txt", b"posted!", "text/plain")}, timeout=60)
    assert r.status_code == 204, r.text
    s3.put_object(Bucket="forms", Key="in/put.txt", Body=b"x")  # a PUT: not an ObjectCreated:Post
    assert eventually(lambda: logged(squall), timeout_s=60, what="the POST's notification") == [
        "ObjectCreated:Post in/note.txt 7"
    ]
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "forms", "Key": "in/note.txt"}, ExpiresIn=60)
    assert "Signature=" in url and "X-Amz-Signature" not in url
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == b"posted!" and resp.headers["Content-Type"] == "text/plain"
    r = httpx.post(post["url"], data=post["fields"], files={"file": ("big.txt", b"x" * 1001)}, timeout=60)
    assert r.status_code == 400 and b"<Code>EntityTooLarge</Code>" in r.content
