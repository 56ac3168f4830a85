"""IAM, STS, Lambda's AddPermission/GetPolicy/RemovePermission and the refusal of what Squall does not implement,
through real boto3 clients against a real ``squall up``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._platform import LAMBDA_TRUST, SquallProcess, create
from tests.pg_helpers import backend

ACCOUNT = "000000000000"
READ = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
)


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(Path(tmp_path_factory.mktemp("iam")) / "data").start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def iam(squall: SquallProcess) -> Any:
    return squall.client("iam")


def error(info: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    e = info.value.response
    return e["Error"]["Code"], e["Error"]["Message"], e["ResponseMetadata"]["HTTPStatusCode"]


def test_roles(iam: Any) -> None:
    role = iam.create_role(
        RoleName="app", Path="/svc/", AssumeRolePolicyDocument=LAMBDA_TRUST, Description="d",
        Tags=[{"Key": "team", "Value": "x"}],
    )["Role"]  # fmt: skip
    assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/svc/app"
    assert role["RoleId"].startswith("AROA") and role["Path"] == "/svc/"
    assert role["AssumeRolePolicyDocument"] == json.loads(LAMBDA_TRUST)  # URL-encoded JSON, decoded by botocore
    got = iam.get_role(RoleName="app")["Role"]
    assert got["Tags"] == [{"Key": "team", "Value": "x"}] and got["Description"] == "d"
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException) as dup:
        iam.create_role(RoleName="APP", AssumeRolePolicyDocument=LAMBDA_TRUST)  # names are case-insensitive
    assert error(dup) == ("EntityAlreadyExists", "Role with name APP already exists.", 409)
    with pytest.raises(iam.exceptions.NoSuchEntityException) as missing:
        iam.get_role(RoleName="nope")
    assert error(missing) == ("NoSuchEntity", "The role with name nope cannot be found.", 404)
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.create_role(RoleName="bad", AssumeRolePolicyDocument="{not json")
    with pytest.raises(ClientError) as invalid:
        iam.create_role(RoleName="has space", AssumeRolePolicyDocument=LAMBDA_TRUST)
    assert error(invalid)[0] == "ValidationError"

    for i in range(3):
        iam.create_role(RoleName=f"page-{i}", AssumeRolePolicyDocument=LAMBDA_TRUST)
    first = iam.list_roles(MaxItems=2)
    assert first["IsTruncated"] is True and len(first["Roles"]) == 2
    names = [r["RoleName"] for r in iam.get_paginator("list_roles").paginate(PaginationConfig={"PageSize": 2})
             .build_full_result()["Roles"]]  # fmt: skip
    assert {"app", "page-0", "page-1", "page-2"} <= set(names)
    assert [r["RoleName"] for r in iam.list_roles(PathPrefix="/svc/")["Roles"]] == ["app"]


def test_inline_and_managed_policies(iam: Any) -> None:
    iam.create_role(RoleName="worker", AssumeRolePolicyDocument=LAMBDA_TRUST)
    iam.put_role_policy(RoleName="worker", PolicyName="read", PolicyDocument=READ)
    got = iam.get_role_policy(RoleName="worker", PolicyName="read")
    assert got["PolicyDocument"] == json.loads(READ) and got["RoleName"] == "worker"
    assert iam.list_role_policies(RoleName="worker")["PolicyNames"] == ["read"]
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException) as bad:
        iam.put_role_policy(RoleName="worker", PolicyName="p", PolicyDocument=json.dumps(
            {"Statement": [{"Effect": "Allow", "Action": "s3:*"}]}))  # fmt: skip
    assert "Resource" in error(bad)[1]
    with pytest.raises(iam.exceptions.NoSuchEntityException) as gone:
        iam.get_role_policy(RoleName="worker", PolicyName="nope")
    assert error(gone)[1] == "The role policy with name nope cannot be found."

    arn = iam.create_policy(PolicyName="queues", PolicyDocument=json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}))["Policy"]["Arn"]  # fmt: skip
    assert arn == f"arn:aws:iam::{ACCOUNT}:policy/queues"
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_policy(PolicyName="queues", PolicyDocument=READ)
    basic = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    iam.attach_role_policy(RoleName="worker", PolicyArn=arn)
    iam.attach_role_policy(RoleName="worker", PolicyArn=basic)  # AWS managed policies tutorials attach exist
    attached = iam.list_attached_role_policies(RoleName="worker")["AttachedPolicies"]
    assert {(a["PolicyName"], a["PolicyArn"]) for a in attached} == {
        ("queues", arn),
        ("AWSLambdaBasicExecutionRole", basic),
    }
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
    assert version["IsDefaultVersion"] is True and version["Document"]["Statement"][0]["Action"] == "sqs:*"
    local = [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]]
    assert local == ["queues"]
    assert "AmazonS3ReadOnlyAccess" in [p["PolicyName"] for p in iam.list_policies(Scope="AWS")["Policies"]]
    with pytest.raises(iam.exceptions.NoSuchEntityException) as nope:
        iam.attach_role_policy(RoleName="worker", PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/none")
    assert "does not exist or is not attachable" in error(nope)[1]

    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_policy(PolicyArn=arn)
    with pytest.raises(iam.exceptions.DeleteConflictException) as conflict:
        iam.delete_role(RoleName="worker")
    assert error(conflict)[1] == "Cannot delete entity, must delete policies first."
    iam.delete_role_policy(RoleName="worker", PolicyName="read")
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_role(RoleName="worker")
    iam.detach_role_policy(RoleName="worker", PolicyArn=arn)
    iam.detach_role_policy(RoleName="worker", PolicyArn=basic)
    iam.delete_policy(PolicyArn=arn)
    iam.delete_role(RoleName="worker")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName="worker")


def test_iam_survives_a_restart(tmp_path: Path) -> None:
    proc = SquallProcess(tmp_path / "data").start()
    try:
        proc.client("iam").create_role(RoleName="kept", AssumeRolePolicyDocument=LAMBDA_TRUST)
        proc.client("iam").put_role_policy(RoleName="kept", PolicyName="p", PolicyDocument=READ)
        assert proc.stop() == 0
        proc.start()
        assert proc.client("iam").list_role_policies(RoleName="kept")["PolicyNames"] == ["p"]
        if backend() == "sqlite":  # (on PostgreSQL the roles are in its database)
            assert oct((tmp_path / "data" / "iam.db").stat().st_mode & 0o777) == "0o600"
    finally:
        proc.stop()


def test_unimplemented_iam_and_sts_operations_say_so(squall: SquallProcess, iam: Any) -> None:
    with pytest.raises(ClientError) as info:
        iam.create_user(UserName="u")
    code, message, status = error(info)
    assert (code, status) == ("InvalidAction", 400)
    assert message.startswith("IAM operation CreateUser is not implemented by Squall") and "CreateRole" in message
    with pytest.raises(ClientError) as info:
        squall.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/app", RoleSessionName="session")
    assert error(info)[0] == "InvalidAction" and "AssumeRole is not implemented by Squall" in error(info)[1]


def test_sts_get_caller_identity_for_the_admin_key(squall: SquallProcess) -> None:
    who = squall.client("sts").get_caller_identity()
    assert (who["Account"], who["Arn"], who["UserId"]) == (ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT)


def test_bad_keys_get_the_query_protocols_codes(squall: SquallProcess) -> None:
    import boto3

    for service in ("sts", "iam"):
        client = boto3.client(service, endpoint_url=squall.url, region_name="us-east-1",
                              aws_access_key_id="AKSQUNKNOWNUNKNOWN00", aws_secret_access_key="x" * 40)  # fmt: skip
        with pytest.raises(ClientError) as info:
            client.get_caller_identity() if service == "sts" else client.list_roles()
        assert error(info)[0] == "InvalidClientTokenId" and error(info)[2] == 403


SERVICES = [
    # (service, call, expected code)
    ("dynamodb", lambda c: c.list_tables(), "UnknownOperationException"),  # JSON protocol
    ("secretsmanager", lambda c: c.get_secret_value(SecretId="s"), "UnknownOperationException"),
    ("ssm", lambda c: c.get_parameter(Name="p"), "UnknownOperationException"),
    ("logs", lambda c: c.describe_log_groups(), "UnknownOperationException"),
    ("events", lambda c: c.list_rules(), "UnknownOperationException"),
    ("kms", lambda c: c.list_keys(), "UnknownOperationException"),
    ("sns", lambda c: c.list_topics(), "InvalidAction"),  # Query protocol
    ("cloudformation", lambda c: c.list_stacks(), "InvalidAction"),
]


@pytest.mark.parametrize(("service", "call", "code"), SERVICES, ids=[s[0] for s in SERVICES])
def test_services_squall_does_not_implement_are_refused_in_their_own_shape(
    squall: SquallProcess, service: str, call: Any, code: str
) -> None:
    with pytest.raises(ClientError) as info:
        call(squall.client(service))
    got_code, message, status = error(info)
    assert (got_code, status) == (code, 400)
    assert f"({service}) is not implemented by Squall" in message
    assert "it implements Lambda, S3, SQS, IAM (roles and policies) and STS GetCallerIdentity" in message


def test_lambda_operations_squall_does_not_implement_say_so(squall: SquallProcess) -> None:
    lam = squall.client("lambda")
    with pytest.raises(ClientError) as info:
        lam.list_code_signing_configs()
    assert error(info)[0] == "UnknownOperationException"
    assert "is not implemented by Squall" in error(info)[1]


def test_add_get_remove_permission(squall: SquallProcess) -> None:
    lam = squall.client("lambda")
    create(lam, "perm-target", "def handler(e, c):\n    return 1\n")
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:perm-target"
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as none:
        lam.get_policy(FunctionName="perm-target")
    assert error(none)[1] == "The resource you requested does not exist."

    out = lam.add_permission(
        FunctionName="perm-target", StatementId="s3-invoke", Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::photos", SourceAccount=ACCOUNT,
    )  # fmt: skip
    statement = json.loads(out["Statement"])
    assert statement == {
        "Sid": "s3-invoke", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction", "Resource": arn,
        "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::photos"},
                      "StringEquals": {"AWS:SourceAccount": ACCOUNT}},
    }  # fmt: skip
    lam.add_permission(FunctionName="perm-target", StatementId="acct", Action="lambda:*", Principal=ACCOUNT)
    policy = lam.get_policy(FunctionName="perm-target")
    document = json.loads(policy["Policy"])
    assert document["Version"] == "2012-10-17" and [s["Sid"] for s in document["Statement"]] == ["s3-invoke", "acct"]
    assert document["Statement"][1]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}

    with pytest.raises(lam.exceptions.ResourceConflictException) as dup:
        lam.add_permission(FunctionName="perm-target", StatementId="acct", Action="lambda:*", Principal="*")
    assert "The statement id (acct) provided already exists" in error(dup)[1] and error(dup)[2] == 409
    with pytest.raises(lam.exceptions.PreconditionFailedException) as stale:
        lam.add_permission(FunctionName="perm-target", StatementId="x", Action="lambda:*", Principal="*",
                           RevisionId="stale")  # fmt: skip
    assert error(stale)[2] == 412
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.remove_permission(FunctionName="perm-target", StatementId="acct", RevisionId="stale")
    lam.add_permission(FunctionName="perm-target", StatementId="x", Action="lambda:*", Principal="*",
                       RevisionId=policy["RevisionId"])  # fmt: skip
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as unknown:
        lam.remove_permission(FunctionName="perm-target", StatementId="nope")
    assert error(unknown)[1] == "Statement nope is not found in resource policy."
    for sid in ("acct", "x", "s3-invoke"):
        lam.remove_permission(FunctionName="perm-target", StatementId=sid)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_policy(FunctionName="perm-target")

    # qualifiers have their own policy
    lam.publish_version(FunctionName="perm-target")
    lam.create_alias(FunctionName="perm-target", Name="live", FunctionVersion="1")
    lam.add_permission(FunctionName="perm-target", Qualifier="live", StatementId="a", Action="lambda:InvokeFunction",
                       Principal="*")  # fmt: skip
    live = json.loads(lam.get_policy(FunctionName="perm-target:live")["Policy"])
    assert live["Statement"][0]["Resource"] == f"{arn}:live"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_policy(FunctionName="perm-target")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.add_permission(FunctionName="perm-target", Qualifier="nope", StatementId="a", Action="lambda:*",
                           Principal="*")  # fmt: skip
    with pytest.raises(ClientError) as invalid:
        lam.add_permission(FunctionName="perm-target", StatementId="a", Action="s3:GetObject", Principal="*")
    assert error(invalid)[0] == "InvalidParameterValueException"

    # a deleted function's policies go with it
    lam.delete_function(FunctionName="perm-target")
    create(lam, "perm-target", "def handler(e, c):\n    return 1\n")
    lam.publish_version(FunctionName="perm-target")
    lam.create_alias(FunctionName="perm-target", Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_policy(FunctionName="perm-target", Qualifier="live")


def test_lambda_cli_v1_add_permission(squall: SquallProcess, tmp_path: Path) -> None:
    """The AWS CLI (v1, what pip install awscli gives) as tutorials use it."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.e2e._platform import KEY_ID, SECRET

    if shutil.which("aws") is None and not (Path(sys.executable).parent / "aws").exists():
        pytest.skip("the AWS CLI is not installed")
    aws = shutil.which("aws") or str(Path(sys.executable).parent / "aws")
    create(squall.client("lambda"), "cli-target", "def handler(e, c):\n    return 1\n")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "HOME": str(tmp_path)}  # fmt: skip
    out = subprocess.run(
        [aws, "--endpoint-url", squall.url, "lambda", "add-permission", "--function-name", "cli-target",
         "--statement-id", "s3", "--action", "lambda:InvokeFunction", "--principal", "s3.amazonaws.com",
         "--source-arn", "arn:aws:s3:::photos"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(json.loads(out.stdout)["Statement"])["Sid"] == "s3"
