"""Execution roles end to end: functions on a real ``squall up`` call S3, SQS, Lambda and STS with boto3 and their own
scoped key, and get exactly what their role (and the target's resource policy) allows.  Triggers still deliver to a
function whose role allows nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._platform import SquallProcess, create, eventually, signed_get

ACCOUNT = "000000000000"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)

CALLER = """
import boto3
from botocore.config import Config

CFG = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0})

def run(fn):
    try:
        return {"ok": True, "value": fn()}
    except Exception as e:
        err = getattr(e, "response", {}).get("Error", {})
        status = getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        return {"ok": False, "code": err.get("Code", type(e).__name__), "message": err.get("Message", str(e)),
                "status": status}

def handler(event, context):
    op = event["op"]
    s3 = boto3.client("s3", config=CFG)
    if op == "get":
        return run(lambda: s3.get_object(Bucket=event["bucket"], Key=event["key"])["Body"].read().decode())
    if op == "put":
        return run(lambda: s3.put_object(Bucket=event["bucket"], Key=event["key"], Body=b"x")["ETag"])
    if op == "copy":
        return run(lambda: s3.copy_object(Bucket=event["bucket"], Key=event["key"],
                                          CopySource={"Bucket": event["src_bucket"], "Key": event["src_key"]})["CopyObjectResult"]["ETag"])
    if op == "list":
        return run(lambda: [o["Key"] for o in s3.list_objects_v2(Bucket=event["bucket"], Prefix=event.get("prefix", "")).get("Contents", [])])
    if op == "send":
        return run(lambda: boto3.client("sqs", config=CFG).send_message(QueueUrl=event["url"], MessageBody="hi")["MessageId"])
    if op == "invoke":
        return run(lambda: boto3.client("lambda", config=CFG).invoke(FunctionName=event["fn"], Payload=b"{}")["StatusCode"])
    if op == "post_form":  # a presigned POST (browser form upload) signed with this function's own key
        import urllib.error, urllib.request
        form = s3.generate_presigned_post(event["bucket"], event["key"])
        boundary = "squallboundary"
        parts = [f'--{boundary}\\r\\nContent-Disposition: form-data; name="{k}"\\r\\n\\r\\n{v}\\r\\n'.encode()
                 for k, v in form["fields"].items()]
        parts.append(f'--{boundary}\\r\\nContent-Disposition: form-data; name="file"; filename="f"\\r\\n\\r\\n'.encode()
                     + b"posted\\r\\n" + f"--{boundary}--\\r\\n".encode())
        req = urllib.request.Request(form["url"], data=b"".join(parts), method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return {"ok": True, "status": r.status}
        except urllib.error.HTTPError as e:
            return {"ok": False, "status": e.code, "body": e.read().decode()}
    if op == "whoami":
        return run(lambda: boto3.client("sts", config=CFG).get_caller_identity()["Arn"])
    if op == "list_functions":
        return run(lambda: len(boto3.client("lambda", config=CFG).list_functions()["Functions"]))
    if op == "create_role":
        return run(lambda: boto3.client("iam", config=CFG).create_role(RoleName="sneaky", AssumeRolePolicyDocument="{}"))
    raise ValueError(op)
"""

RECORDER = """
def handler(event, context):
    print("DELIVERED " + str(len(event.get("Records", []))))
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(Path(tmp_path_factory.mktemp("roles")) / "data").start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def world(squall: SquallProcess) -> dict[str, Any]:
    """Buckets photos (originals/a.txt) and other (k), queue jobs, function target, and function reader whose role
    allows only s3:GetObject on photos/originals/*."""
    iam, lam, s3, sqs = squall.client("iam"), squall.client("lambda"), squall.client("s3"), squall.client("sqs")
    for bucket, key in (("photos", "originals/a.txt"), ("other", "k")):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=f"{bucket}:{key}".encode())
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    iam.create_role(RoleName="reader-role", AssumeRolePolicyDocument=TRUST)
    iam.put_role_policy(
        RoleName="reader-role",
        PolicyName="read-originals",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos/originals/*"}
                ],
            }
        ),
    )
    create(lam, "reader", CALLER, Timeout=30, Role=f"arn:aws:iam::{ACCOUNT}:role/reader-role")
    create(lam, "target", "def handler(event, context):\n    return {'target': True}\n")
    return {"url": url}


def call(squall: SquallProcess, function: str, **event: Any) -> dict[str, Any]:
    out = squall.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode())
    result: dict[str, Any] = json.loads(out["Payload"].read())
    assert "errorMessage" not in result, result
    return result


def assert_denied(result: dict[str, Any], code: str, action: str, resource: str, role: str, fn: str) -> None:
    assert result["ok"] is False, result
    assert result["code"] == code, result
    assert result["status"] == 403, result
    message = result["message"]
    assert f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{fn} is not authorized to perform: {action}" in message
    assert f"on resource: {resource}" in message, message


def test_role_allows_reading_only_where_it_says(squall: SquallProcess, world: dict[str, Any]) -> None:
    ok = call(squall, "reader", op="get", bucket="photos", key="originals/a.txt")
    assert ok == {"ok": True, "value": "photos:originals/a.txt"}
    denied = call(squall, "reader", op="put", bucket="photos", key="thumbnails/a.txt")
    assert_denied(denied, "AccessDenied", "s3:PutObject", "arn:aws:s3:::photos/thumbnails/a.txt", "reader-role",
                  "reader")  # fmt: skip
    assert "because no identity-based policy allows the s3:PutObject action" in denied["message"]
    other = call(squall, "reader", op="get", bucket="other", key="k")
    assert_denied(other, "AccessDenied", "s3:GetObject", "arn:aws:s3:::other/k", "reader-role", "reader")
    # a copy needs PutObject on the target even when reading the source is allowed
    copy = call(squall, "reader", op="copy", bucket="photos", key="originals/b.txt", src_bucket="photos",
                src_key="originals/a.txt")  # fmt: skip
    assert_denied(copy, "AccessDenied", "s3:PutObject", "arn:aws:s3:::photos/originals/b.txt", "reader-role",
                  "reader")  # fmt: skip
    listing = call(squall, "reader", op="list", bucket="photos")
    assert_denied(listing, "AccessDenied", "s3:ListBucket", "arn:aws:s3:::photos", "reader-role", "reader")
    s3 = squall.client("s3")
    assert "Contents" not in s3.list_objects_v2(Bucket="photos", Prefix="thumbnails/")


def test_a_form_upload_signed_with_a_function_key_obeys_its_role(squall: SquallProcess, world: dict[str, Any]) -> None:
    denied = call(squall, "reader", op="post_form", bucket="photos", key="thumbnails/posted.txt")
    assert denied["ok"] is False and denied["status"] == 403, denied
    assert "AccessDenied" in denied["body"] and "s3:PutObject" in denied["body"], denied
    s3 = squall.client("s3")
    assert "Contents" not in s3.list_objects_v2(Bucket="photos", Prefix="thumbnails/posted")


def test_queue_and_invoke_need_a_grant(squall: SquallProcess, world: dict[str, Any]) -> None:
    queue_arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:jobs"
    denied = call(squall, "reader", op="send", url=world["url"])
    assert_denied(denied, "AccessDenied", "sqs:SendMessage", queue_arn, "reader-role", "reader")
    target_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:target"
    denied = call(squall, "reader", op="invoke", fn="target")
    assert_denied(denied, "AccessDeniedException", "lambda:InvokeFunction", target_arn, "reader-role", "reader")

    iam = squall.client("iam")
    iam.put_role_policy(
        RoleName="reader-role",
        PolicyName="send-jobs",
        PolicyDocument=json.dumps(
            {"Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arn}]}
        ),
    )
    try:
        assert call(squall, "reader", op="send", url=world["url"])["ok"] is True
    finally:
        iam.delete_role_policy(RoleName="reader-role", PolicyName="send-jobs")
    assert call(squall, "reader", op="send", url=world["url"])["ok"] is False

    # the target's resource-based policy may allow the caller's role on its own
    lam = squall.client("lambda")
    lam.add_permission(
        FunctionName="target", StatementId="reader", Action="lambda:InvokeFunction",
        Principal=f"arn:aws:iam::{ACCOUNT}:role/reader-role",
    )  # fmt: skip
    try:
        assert call(squall, "reader", op="invoke", fn="target") == {"ok": True, "value": 200}
    finally:
        lam.remove_permission(FunctionName="target", StatementId="reader")
    assert call(squall, "reader", op="invoke", fn="target")["ok"] is False
    # ... and so may the caller's role
    iam.put_role_policy(
        RoleName="reader-role",
        PolicyName="invoke-target",
        PolicyDocument=json.dumps(
            {"Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": f"{target_arn}*"}]}
        ),
    )
    try:
        assert call(squall, "reader", op="invoke", fn="target") == {"ok": True, "value": 200}
    finally:
        iam.delete_role_policy(RoleName="reader-role", PolicyName="invoke-target")


def test_identity_and_refusals(squall: SquallProcess, world: dict[str, Any]) -> None:
    who = call(squall, "reader", op="whoami")
    assert who == {"ok": True, "value": f"arn:aws:sts::{ACCOUNT}:assumed-role/reader-role/reader"}
    listing = call(squall, "reader", op="list_functions")
    assert listing["code"] == "AccessDeniedException"
    assert "may call S3, SQS, Lambda Invoke and STS GetCallerIdentity" in listing["message"]
    sneaky = call(squall, "reader", op="create_role")
    assert sneaky["code"] == "AccessDenied" and "iam:CreateRole" in sneaky["message"], sneaky
    assert squall.client("sts").get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"


def test_a_role_that_does_not_exist_grants_nothing(squall: SquallProcess, world: dict[str, Any]) -> None:
    lam = squall.client("lambda")
    create(lam, "orphan", CALLER, Timeout=30, Role=f"arn:aws:iam::{ACCOUNT}:role/never-created")
    denied = call(squall, "orphan", op="get", bucket="photos", key="originals/a.txt")
    assert_denied(denied, "AccessDenied", "s3:GetObject", "arn:aws:s3:::photos/originals/a.txt", "never-created",
                  "orphan")  # fmt: skip
    assert "does not exist" in denied["message"]
    # UpdateFunctionConfiguration's Role takes effect on the next call
    lam.update_function_configuration(FunctionName="orphan", Role=f"arn:aws:iam::{ACCOUNT}:role/reader-role")
    lam.get_waiter("function_updated_v2").wait(FunctionName="orphan")
    assert call(squall, "orphan", op="get", bucket="photos", key="originals/a.txt")["ok"] is True


def test_a_permission_on_an_alias_covers_that_alias_only(squall: SquallProcess, world: dict[str, Any]) -> None:
    lam = squall.client("lambda")
    version = lam.publish_version(FunctionName="target")["Version"]
    lam.create_alias(FunctionName="target", Name="live", FunctionVersion=version)
    lam.add_permission(
        FunctionName="target", Qualifier="live", StatementId="reader-live", Action="lambda:InvokeFunction",
        Principal=f"arn:aws:iam::{ACCOUNT}:role/reader-role",
    )  # fmt: skip
    assert call(squall, "reader", op="invoke", fn="target:live") == {"ok": True, "value": 200}
    denied = call(squall, "reader", op="invoke", fn="target")
    assert denied["code"] == "AccessDeniedException", denied
    assert "is not authorized to perform: lambda:InvokeFunction" in denied["message"]


def test_triggers_deliver_to_a_function_whose_role_allows_nothing(squall: SquallProcess, world: dict[str, Any]) -> None:
    iam, lam, s3, sqs = squall.client("iam"), squall.client("lambda"), squall.client("s3"), squall.client("sqs")
    iam.create_role(RoleName="nothing", AssumeRolePolicyDocument=TRUST)
    fn = create(lam, "sink", RECORDER, Role=f"arn:aws:iam::{ACCOUNT}:role/nothing")
    s3.create_bucket(Bucket="uploads")
    s3.put_bucket_notification_configuration(
        Bucket="uploads",
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": fn["FunctionArn"], "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    url = sqs.create_queue(QueueName="sink-jobs")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="sink", BatchSize=1)
    s3.put_object(Bucket="uploads", Key="x", Body=b"1")
    sqs.send_message(QueueUrl=url, MessageBody="m")

    def triggers() -> set[str]:
        _, out = signed_get(squall.url, "/_squall/api/invocations?function=sink&limit=50")
        return {i["trigger"] for i in out["invocations"] if i["status"] == "ok"}

    eventually(lambda: {"s3", "sqs"} <= triggers(), timeout_s=60, what="an S3 and an SQS delivery to sink")
