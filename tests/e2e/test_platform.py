"""End to end against a real ``squall up``: the Lambda API with boto3, the scheduler, async delivery, recovery."""

from __future__ import annotations

import base64
import json
import signal
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._platform import KEY_ID, SquallProcess, create, eventually, execution_role, signed_get

ECHO = """
import os, time
COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    print("echo", event)
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"event": event, "count": COUNT, "version": context.function_version,
            "init": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"), "endpoint": os.environ.get("AWS_ENDPOINT_URL")}
"""


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(
        tmp_path_factory.mktemp("platform") / "data",
        SQUALL_ASYNC_RETRY_BASE_S="0.2",
        SQUALL_THROTTLE_WAIT_S="0.3",
    ).start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def lam(squall: SquallProcess) -> Any:
    return squall.client("lambda")


def invoke(lam: Any, name: str, event: Any, **kw: Any) -> tuple[dict[str, Any], Any]:
    r = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **kw)
    body = r["Payload"].read()
    return r, (json.loads(body) if body else None)


def test_sync_invoke_with_log_tail_and_errors(lam: Any, squall: SquallProcess) -> None:
    create(lam, "echo", ECHO)
    r, out = invoke(lam, "echo", {"a": 1}, LogType="Tail")
    assert r["StatusCode"] == 200 and "FunctionError" not in r
    assert out["event"] == {"a": 1} and out["version"] == "$LATEST" and out["init"] == "on-demand"
    # network "nat" (the default): the server as seen from the function's namespace, on the node's gateway address
    assert out["endpoint"].startswith("http://") and out["endpoint"].endswith(f":{squall.port}")
    tail = base64.b64decode(r["LogResult"]).decode()
    assert "echo {'a': 1}" in tail and "START RequestId:" in tail and "REPORT RequestId:" in tail
    assert r["ExecutedVersion"] == "$LATEST"
    r, out = invoke(lam, "echo", {"fail": True})
    assert r["FunctionError"] == "Unhandled"
    assert out["errorType"] == "RuntimeError" and out["errorMessage"] == "asked to fail"
    r = lam.invoke(FunctionName="echo", InvocationType="DryRun")
    assert r["StatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="nope", Payload=b"{}")
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke(FunctionName="echo", Payload=b"{not json")


def test_payload_limits(lam: Any) -> None:
    big = b'"' + b"x" * (6 * 1024 * 1024) + b'"'
    with pytest.raises(lam.exceptions.RequestTooLargeException):
        lam.invoke(FunctionName="echo", Payload=big)
    mid = b'"' + b"x" * (1024 * 1024 + 10) + b'"'
    with pytest.raises(lam.exceptions.RequestTooLargeException):
        lam.invoke(FunctionName="echo", Payload=mid, InvocationType="Event")


def test_warm_reuse_and_records(lam: Any, squall: SquallProcess) -> None:
    create(lam, "counter", ECHO)
    counts = [invoke(lam, "counter", {})[1]["count"] for _ in range(5)]
    assert counts == [1, 2, 3, 4, 5]  # one warm instance reused (module state survives)

    def records() -> Any:
        status, body = signed_get(squall.url, "/_squall/api/invocations?function=counter&limit=50")
        return body["invocations"] if status == 200 and len(body["invocations"]) >= 5 else None

    recs = eventually(records, what="5 invocation records")
    assert sum(1 for r in recs if r["cold"]) == 1
    assert all(r["billed_ms"] >= 1 and r["memory_mb"] == 128 for r in recs)


def test_versions_and_weighted_alias(lam: Any) -> None:
    create(lam, "versioned", ECHO)
    v1 = lam.publish_version(FunctionName="versioned")["Version"]
    lam.update_function_configuration(FunctionName="versioned", Environment={"Variables": {"FLAVOUR": "two"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName="versioned")
    v2 = lam.publish_version(FunctionName="versioned")["Version"]
    assert (v1, v2) == ("1", "2")
    lam.create_alias(
        FunctionName="versioned", Name="live", FunctionVersion=v1, RoutingConfig={"AdditionalVersionWeights": {v2: 0.5}}
    )
    seen = {invoke(lam, "versioned", {}, Qualifier="live")[0]["ExecutedVersion"] for _ in range(40)}
    assert seen == {"1", "2"}
    r, out = invoke(lam, "versioned", {}, Qualifier="1")
    assert r["ExecutedVersion"] == "1" and out["version"] == "1"


def test_reserved_concurrency_throttles(lam: Any) -> None:
    create(lam, "narrow", ECHO)
    lam.put_function_concurrency(FunctionName="narrow", ReservedConcurrentExecutions=1)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _try_invoke(lam, "narrow", {"sleep": 1.0}), range(4)))
    codes = sorted(results)
    assert codes.count("ok") >= 1
    assert "TooManyRequestsException" in codes
    lam.delete_function_concurrency(FunctionName="narrow")
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: _try_invoke(lam, "narrow", {"sleep": 0.2}), range(3)))
    assert results == ["ok", "ok", "ok"]


def _try_invoke(lam: Any, name: str, event: Any) -> str:
    try:
        r, _ = invoke(lam, name, event)
        return "ok" if "FunctionError" not in r else "error"
    except ClientError as e:
        return str(e.response["Error"]["Code"])


def test_provisioned_concurrency(lam: Any) -> None:
    create(lam, "prov", ECHO)
    v = lam.publish_version(FunctionName="prov")["Version"]
    lam.create_alias(FunctionName="prov", Name="live", FunctionVersion=v)
    lam.put_provisioned_concurrency_config(FunctionName="prov", Qualifier="live", ProvisionedConcurrentExecutions=2)

    def ready() -> Any:
        cfg = lam.get_provisioned_concurrency_config(FunctionName="prov", Qualifier="live")
        return cfg if cfg["Status"] == "READY" else None

    cfg = eventually(ready, what="provisioned concurrency READY")
    assert cfg["AllocatedProvisionedConcurrentExecutions"] == 2
    r, out = invoke(lam, "prov", {}, Qualifier="live", LogType="Tail")
    assert out["init"] == "provisioned-concurrency"
    report = base64.b64decode(r["LogResult"]).decode().splitlines()[-1]
    assert report.startswith("REPORT") and "Init Duration" not in report  # initialised ahead: not a cold start


DESTINATION = """
import json, os
def handler(event, context):
    with open("/tmp/seen", "a") as f:
        f.write(json.dumps(event) + "\\n")
    print("DESTINATION-GOT", json.dumps(event))
    return {"ok": True}
"""


def test_async_retries_then_on_failure_destination(lam: Any, squall: SquallProcess) -> None:
    create(lam, "flaky", ECHO)
    create(lam, "dlq", DESTINATION)
    dlq_arn = lam.get_function_configuration(FunctionName="dlq")["FunctionArn"]
    lam.put_function_event_invoke_config(
        FunctionName="flaky", MaximumRetryAttempts=2, DestinationConfig={"OnFailure": {"Destination": dlq_arn}}
    )
    r = lam.invoke(FunctionName="flaky", InvocationType="Event", Payload=json.dumps({"fail": True, "id": 7}).encode())
    assert r["StatusCode"] == 202

    def destination_record() -> Any:
        status, body = signed_get(squall.url, "/_squall/api/logs?function=dlq&q=DESTINATION-GOT&limit=5")
        return body["lines"] if status == 200 and body["lines"] else None

    lines = eventually(destination_record, timeout_s=30, what="invocation record at the destination")
    text = lines[0]["text"]
    record = json.loads(text[text.index("DESTINATION-GOT") + len("DESTINATION-GOT ") :].splitlines()[0])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"] == {"fail": True, "id": 7}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "RuntimeError"

    def attempts() -> Any:
        status, body = signed_get(squall.url, "/_squall/api/invocations?function=flaky&limit=50")
        return body["invocations"] if status == 200 and len(body["invocations"]) >= 3 else None

    assert len(eventually(attempts, what="3 attempts recorded")) == 3


def test_unsigned_and_badly_signed_requests_get_aws_errors(squall: SquallProcess) -> None:
    req = urllib.request.Request(squall.url + "/2015-03-31/functions/", method="GET")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("unsigned request accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 403
        assert e.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationToken")
        assert "Traceback" not in e.read().decode()
    status, body = signed_get(squall.url, "/2015-03-31/functions/", KEY_ID, "wrong" * 8)
    assert status == 403
    assert body["Type"] == "User"


def test_concurrent_invokes_scale_out(lam: Any) -> None:
    create(lam, "wide", ECHO)
    barrier = threading.Barrier(8)

    def one(_: int) -> str:
        barrier.wait()
        return _try_invoke(lam, "wide", {"sleep": 0.5})

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == ["ok"] * 8


def test_restart_recovers_state(tmp_path: Path) -> None:
    proc = SquallProcess(tmp_path / "data").start()
    lam = proc.client()
    create(lam, "keep", ECHO)
    assert proc.stop(signal.SIGTERM) == 0
    proc.start()
    try:
        _, out = invoke(lam, "keep", {"again": True})
        assert out["event"] == {"again": True}
    finally:
        assert proc.stop() == 0


INSIDE = """
import boto3
def handler(event, context):
    out = {}
    try:
        boto3.client("lambda").list_functions()
        out["lambda"] = "allowed"
    except Exception as e:
        out["lambda"] = getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="from-inside")
    s3.put_object(Bucket="from-inside", Key="k", Body=b"written by a function")
    out["s3"] = s3.get_object(Bucket="from-inside", Key="k")["Body"].read().decode()
    return out
"""


def test_functions_call_squall_with_their_own_scoped_key(squall: SquallProcess, lam: Any) -> None:
    role = execution_role(
        squall, "inside-role", {"Effect": "Allow", "Action": "s3:*", "Resource": ["arn:aws:s3:::from-inside*"]}
    )
    create(lam, "inside", INSIDE, Timeout=30, Role=role)
    _, out = invoke(lam, "inside", {})
    assert out == {"lambda": "AccessDeniedException", "s3": "written by a function"}
