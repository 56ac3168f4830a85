"""Bad input against a real ``squall up`` gets the AWS-shaped 4xx (never a 500): deeply nested JSON everywhere JSON
is parsed, bodies left out of the signature outside S3, handler and bucket names AWS refuses, handler paths that
cannot be imported."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.e2e._platform import KEY_ID, SECRET, SquallProcess, zip_of

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(tmp_path_factory.mktemp("input") / "data").start()
    yield proc
    assert proc.stop() == 0


def signed(
    squall: SquallProcess,
    service: str,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    send_body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A request signed by botocore's own signer (``send_body``: a different body sent after signing)."""
    req = AWSRequest(method=method, url=squall.url + path, data=body, headers=dict(headers or {}))
    SigV4Auth(Credentials(KEY_ID, SECRET), service, "us-east-1").add_auth(req)
    raw = urllib.request.Request(
        squall.url + path, data=body if send_body is None else send_body, method=method, headers=dict(req.headers)
    )
    try:
        with urllib.request.urlopen(raw, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def error_type(headers: dict[str, str], body: bytes) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    doc = json.loads(body)
    return str(lowered.get("x-amzn-errortype") or doc.get("__type") or doc.get("code"))


def test_deep_json_in_create_function_is_400(squall: SquallProcess) -> None:
    body = b'{"FunctionName": "deep", "Environment": ' + DEEP + b"}"
    status, headers, out = signed(squall, "lambda", "POST", "/2015-03-31/functions", body)
    assert status == 400, out[:300]
    assert "InvalidRequestContentException" in error_type(headers, out)
    assert b"more than 64 levels deep" in out


def test_deep_json_in_update_configuration_is_400(squall: SquallProcess) -> None:
    status, headers, out = signed(squall, "lambda", "PUT", "/2015-03-31/functions/x/configuration", DEEP)
    assert status == 400, out[:300]
    assert "InvalidRequestContentException" in error_type(headers, out)


def test_deep_invoke_payload_is_400_with_boto3(squall: SquallProcess) -> None:
    lam = squall.client("lambda")
    with pytest.raises(ClientError) as ei:
        lam.invoke(FunctionName="anything", Payload=DEEP)
    err = ei.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err["Error"]["Code"] == "InvalidRequestContentException"
    assert "more than 512 levels deep" in err["Error"]["Message"]


def test_deep_client_context_is_400(squall: SquallProcess) -> None:
    lam = squall.client("lambda")
    context = base64.b64encode(b"[" * 1300 + b"]" * 1300).decode()
    with pytest.raises(ClientError) as ei:
        lam.invoke(FunctionName="anything", Payload=b"{}", ClientContext=context)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_deep_json_in_sqs_is_400(squall: SquallProcess) -> None:
    headers = {"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": "application/x-amz-json-1.0"}
    status, _, out = signed(squall, "sqs", "POST", "/", DEEP, headers)
    assert status == 400, out[:300]
    assert b"more than 64 levels deep" in out


def test_deep_redrive_policy_is_refused(squall: SquallProcess) -> None:
    sqs = squall.client("sqs")
    with pytest.raises(ClientError) as ei:
        sqs.create_queue(QueueName="deep", Attributes={"RedrivePolicy": (b"[" * 5000 + b"]" * 5000).decode()})
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_lambda_and_sqs_refuse_unsigned_payload(squall: SquallProcess) -> None:
    """A correctly signed request whose body was left out of the signature, then swapped: refused outside S3."""
    unsigned = {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    status, headers, out = signed(
        squall, "lambda", "POST", "/2015-03-31/functions/anything/invocations", b"{}", unsigned, b'{"evil": 1}'
    )
    assert status == 403, out[:300]
    assert "InvalidSignatureException" in error_type(headers, out)
    assert b"accepted by S3 only" in out
    sqs_headers = {**unsigned, "X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": "application/x-amz-json-1.0"}
    status, headers, out = signed(squall, "sqs", "POST", "/", b"{}", sqs_headers, b'{"QueueNamePrefix": "x"}')
    assert status == 403, out[:300]
    # S3 keeps accepting it (its SDKs send UNSIGNED-PAYLOAD over HTTPS by default)
    s3 = squall.client("s3")
    s3.create_bucket(Bucket="unsigned-ok")
    status, _, out = signed(squall, "s3", "PUT", "/unsigned-ok/k", b"body", unsigned)
    assert status == 200, out[:300]
    assert s3.get_object(Bucket="unsigned-ok", Key="k")["Body"].read() == b"body"


@pytest.mark.parametrize("name", ["xn--abc", "sthree-x", "bucket-s3alias", "bucket--ol-s3", "my..bucket"])
def test_bucket_names_s3_refuses(squall: SquallProcess, name: str) -> None:
    s3 = squall.client("s3")
    with pytest.raises(ClientError) as ei:
        s3.create_bucket(Bucket=name)
    assert ei.value.response["Error"]["Code"] == "InvalidBucketName"


def test_key_longer_than_1024_utf8_bytes_is_refused(squall: SquallProcess) -> None:
    s3 = squall.client("s3")
    s3.create_bucket(Bucket="keys")
    s3.put_object(Bucket="keys", Key="é" * 512, Body=b"x")
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket="keys", Key="é" * 513, Body=b"x")
    assert ei.value.response["Error"]["Code"] == "KeyTooLongError"


def create(lam: Any, name: str, code: str, handler: str) -> None:
    lam.create_function(
        FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::000000000000:role/x", Handler=handler,
        Code={"ZipFile": zip_of({"app.py": code})},
    )  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName=name)


def test_handler_with_trailing_newline_is_refused(squall: SquallProcess) -> None:
    lam = squall.client("lambda")
    with pytest.raises(ClientError) as ei:
        create(lam, "nl", "def handler(e, c):\n    return 1\n", "app.handler\n")
    err = ei.value.response["Error"]
    assert err["Code"] in ("InvalidParameterValueException", "ValidationException")
    assert "[^\\s]+" in err["Message"]


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        ("..handler", "Runtime.ImportModuleError"),
        ("a/../../b.handler", "Runtime.ImportModuleError"),
        ("/app.handler", "Runtime.ImportModuleError"),
        ("app.missing", "Runtime.HandlerNotFound"),
    ],
)
def test_bad_handler_paths_fail_at_invoke_as_on_lambda(squall: SquallProcess, handler: str, error: str) -> None:
    lam = squall.client("lambda")
    name = "h" + str(abs(hash(handler)) % 10**8)
    create(lam, name, "def handler(e, c):\n    return 1\n", handler)
    r = lam.invoke(FunctionName=name, Payload=b"{}")
    assert r.get("FunctionError") == "Unhandled"
    doc: dict[str, Any] = json.loads(r["Payload"].read())
    assert doc["errorType"] == error, doc
