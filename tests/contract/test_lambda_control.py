"""The Lambda control plane against a real boto3 client (and the AWS CLI) over HTTP: every operation, paging,
waiters, paginators and Lambda's errors."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.aws_cli import AWS_CLI, aws_env, needs_aws_cli
from tests.contract._lambda_harness import ACCOUNT, REGION, ROLE, LambdaServer, make_zip

ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaServer]:
    srv = LambdaServer(tmp_path_factory.mktemp("lambda-api")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: LambdaServer) -> Any:
    return server.client()


def create(client: Any, name: str, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip()},
    }
    params.update(extra)
    return dict(client.create_function(**params))


def error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    err = excinfo.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


# -- functions --


def test_create_and_get_function(client: Any, server: LambdaServer) -> None:
    package = make_zip({"app.py": "def handler(event, context):\n    return 1\n"})
    out = create(
        client,
        "fn-basic",
        Code={"ZipFile": package},
        Environment={"Variables": {"GREETING": "hi"}},
        MemorySize=256,
        Timeout=30,
        Description="a test",
        EphemeralStorage={"Size": 1024},
        Tags={"team": "core"},
    )
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert out["FunctionArn"] == f"{ARN}:fn-basic"
    assert out["CodeSha256"] == base64.b64encode(hashlib.sha256(package).digest()).decode()
    assert out["CodeSize"] == len(package)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", out["LastModified"])
    assert (out["State"], out["LastUpdateStatus"], out["PackageType"]) == ("Active", "Successful", "Zip")
    assert out["Version"] == "$LATEST" and out["Architectures"] == ["x86_64"]
    assert out["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert out["TracingConfig"] == {"Mode": "PassThrough"}
    assert out["EphemeralStorage"] == {"Size": 1024}
    assert out["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    assert out["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/fn-basic"}
    assert (out["MemorySize"], out["Timeout"], out["Description"]) == (256, 30, "a test")

    got = client.get_function(FunctionName="fn-basic")
    assert got["Configuration"]["RevisionId"] == out["RevisionId"]
    assert got["Tags"] == {"team": "core"}
    assert got["Code"]["RepositoryType"] == "S3"
    with urllib.request.urlopen(got["Code"]["Location"]) as resp:
        assert resp.read() == package
    assert client.get_function_configuration(FunctionName="fn-basic")["CodeSha256"] == out["CodeSha256"]
    client.get_waiter("function_active_v2").wait(FunctionName="fn-basic")
    client.get_waiter("function_active").wait(FunctionName="fn-basic")
    client.get_waiter("function_exists").wait(FunctionName="fn-basic")
    assert ("fn-basic", "$LATEST") in server.changes


def test_function_name_forms(client: Any) -> None:
    create(client, "fn-names")
    for name in ("fn-names", f"{ARN}:fn-names", f"{ACCOUNT}:function:fn-names", "fn-names:$LATEST"):
        assert client.get_function_configuration(FunctionName=name)["FunctionName"] == "fn-names"
    qualified = client.get_function_configuration(FunctionName="fn-names", Qualifier="$LATEST")
    assert qualified["FunctionArn"] == f"{ARN}:fn-names:$LATEST"
    with pytest.raises(ClientError) as exc:
        client.get_function(FunctionName="arn:aws:lambda:eu-west-1:123456789012:function:fn-names")
    assert error(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        client.get_function(FunctionName="fn-names:1", Qualifier="2")
    assert error(exc)[1] == "The derived qualifier from the function name does not match the specified qualifier."
    with pytest.raises(ClientError) as exc:
        create(client, "x" * 65)
    assert error(exc)[0] == "InvalidParameterValueException"
    assert "Member must have length less than or equal to 64" in error(exc)[1]


def test_conflict_and_not_found(client: Any) -> None:
    create(client, "fn-twice")
    with pytest.raises(client.exceptions.ResourceConflictException) as exc:
        create(client, "fn-twice")
    assert error(exc) == ("ResourceConflictException", "Function already exist: fn-twice", 409)
    with pytest.raises(client.exceptions.ResourceNotFoundException) as exc:
        client.get_function(FunctionName="fn-missing")
    assert error(exc) == ("ResourceNotFoundException", f"Function not found: {ARN}:fn-missing", 404)
    with pytest.raises(client.exceptions.ResourceNotFoundException) as exc:
        client.get_function_configuration(FunctionName="fn-twice", Qualifier="7")
    assert error(exc)[1] == f"Function not found: {ARN}:fn-twice:7"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"MemorySize": 64}, "Value '64' at 'memorySize' failed to satisfy constraint"),
        ({"MemorySize": 20480}, "Member must have value less than or equal to 10240"),
        ({"Timeout": 901}, "'timeout' failed to satisfy constraint: Member must have value less than or equal to 900"),
        ({"EphemeralStorage": {"Size": 100}}, "at 'ephemeralStorage.size'"),
        ({"Runtime": "nodejs20.x"}, "Runtime nodejs20.x is not supported by Squall"),
        ({"Runtime": "python3.7"}, "The runtime parameter of python3.7 is no longer supported"),
        (
            {"Runtime": "python3.13"},
            "python3.13 is not available on this Squall server: its interpreter is not "
            "installed. Available runtimes: python3.11.",
        ),
        ({"Runtime": "cobol"}, "Value cobol at 'runtime' failed to satisfy constraint"),
        ({"Handler": None}, "Runtime and Handler are mandatory parameters"),
        ({"Role": "not-a-role"}, "at 'role' failed to satisfy constraint"),
        (
            {"Environment": {"Variables": {"AWS_REGION": "x", "OK": "1", "AWS_LAMBDA_FUNCTION_NAME": "y"}}},
            "Lambda was unable to configure your environment variables because the environment variables you have "
            "provided contains reserved keys that are currently not supported for modification. Reserved keys used "
            "in this request: AWS_REGION, AWS_LAMBDA_FUNCTION_NAME",
        ),
        ({"Environment": {"Variables": {"BIG": "x" * 5000}}}, "exceeded the 4KB limit"),
        ({"PackageType": "Image", "Code": {"ImageUri": "repo/img:1"}}, "PackageType Image is not supported"),
        (
            {"Code": {"S3Bucket": "bucket", "S3Key": "key.zip"}},
            "S3 code locations are not supported yet: upload the ZipFile",
        ),
        ({"Code": {"ZipFile": b"this is not a zip"}}, "Could not unzip uploaded file"),
        ({"Code": {"ZipFile": make_zip(raw_names={"../escape.py": "x = 1"})}}, "'..'"),
        ({"Code": {"ZipFile": make_zip(raw_names={"/etc/evil.py": "x = 1"})}}, "absolute path"),
        ({"VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}}, "VpcConfig"),
        ({"Layers": [f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:l:1"]}, "layer:l:1 does not exist"),
        ({"Tags": {"squall:network": "bridge"}}, "squall:network"),
        ({"Architectures": ["arm64"]}, "Architecture arm64 is not available"),
    ],
)
def test_invalid_parameters(client: Any, extra: dict[str, Any], message: str) -> None:
    params = {k: v for k, v in extra.items() if v is not None}
    name = "fn-invalid"
    if "Handler" in extra and extra["Handler"] is None:
        with pytest.raises(ClientError) as exc:
            client.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Code={"ZipFile": make_zip()})
    else:
        with pytest.raises(ClientError) as exc:
            create(client, name, **params)
    code, text, status = error(exc)
    assert (code, status) == ("InvalidParameterValueException", 400), text
    assert message in text
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName=name)


def test_update_configuration_merges_and_checks_revision(client: Any, server: LambdaServer) -> None:
    first = create(client, "fn-update", Environment={"Variables": {"AA": "1"}}, MemorySize=512)
    server.changes.clear()
    out = client.update_function_configuration(FunctionName="fn-update", Timeout=10, Description="new")
    assert (out["Timeout"], out["Description"], out["MemorySize"]) == (10, "new", 512)
    assert out["Environment"] == {"Variables": {"AA": "1"}}
    assert out["RevisionId"] != first["RevisionId"]
    assert server.changes == [("fn-update", "$LATEST")]
    client.get_waiter("function_updated_v2").wait(FunctionName="fn-update")
    client.get_waiter("function_updated").wait(FunctionName="fn-update")
    with pytest.raises(ClientError) as exc:
        client.update_function_configuration(FunctionName="fn-update", MemorySize=256, RevisionId=first["RevisionId"])
    assert error(exc)[:1] == ("PreconditionFailedException",) and error(exc)[2] == 412
    out = client.update_function_configuration(
        FunctionName="fn-update",
        RevisionId=out["RevisionId"],
        Environment={"Variables": {"BB": "2"}},
        SnapStart={"ApplyOn": "PublishedVersions"},
        EphemeralStorage={"Size": 2048},
        Handler="app.other",
    )
    assert out["Environment"] == {"Variables": {"BB": "2"}}
    assert out["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    assert (out["EphemeralStorage"]["Size"], out["Handler"]) == (2048, "app.other")
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.update_function_configuration(FunctionName="fn-update", MemorySize=64)
    version = client.publish_version(FunctionName="fn-update")
    assert version["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    assert server.store.get_function("fn-update", version["Version"]).squall["snapshot"] is True
    assert server.store.get_function("fn-update").squall["snapshot"] is False


def test_update_code_publish_and_versions(client: Any, server: LambdaServer) -> None:
    create(client, "fn-code")
    package = make_zip({"app.py": "def handler(event, context):\n    return 2\n"})
    sha = base64.b64encode(hashlib.sha256(package).digest()).decode()
    out = client.update_function_code(FunctionName="fn-code", ZipFile=package, Publish=True)
    assert (out["Version"], out["CodeSha256"], out["FunctionArn"]) == ("1", sha, f"{ARN}:fn-code:1")
    client.get_waiter("published_version_active").wait(FunctionName="fn-code", Qualifier="1")
    # nothing changed since version 1: Lambda returns version 1 again
    assert client.publish_version(FunctionName="fn-code")["Version"] == "1"
    client.update_function_code(FunctionName="fn-code", ZipFile=make_zip({"app.py": "x = 3\n"}))
    with pytest.raises(client.exceptions.InvalidParameterValueException) as exc:
        client.publish_version(FunctionName="fn-code", CodeSha256=sha)
    assert "is different from current CodeSHA256 in $LATEST" in error(exc)[1]
    with pytest.raises(ClientError) as exc:
        client.publish_version(FunctionName="fn-code", RevisionId="stale")
    assert error(exc)[0] == "PreconditionFailedException"
    latest = client.get_function_configuration(FunctionName="fn-code")
    v2 = client.publish_version(
        FunctionName="fn-code", CodeSha256=latest["CodeSha256"], RevisionId=latest["RevisionId"], Description="v2"
    )
    assert v2["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (v2["Version"], v2["Description"]) == ("2", "v2")
    assert ("fn-code", "2") in server.changes
    pages = list(
        client.get_paginator("list_versions_by_function").paginate(
            FunctionName="fn-code", PaginationConfig={"PageSize": 2}
        )
    )
    assert len(pages) == 2
    assert [v["Version"] for p in pages for v in p["Versions"]] == ["$LATEST", "1", "2"]
    assert pages[0]["Versions"][0]["FunctionArn"] == f"{ARN}:fn-code:$LATEST"
    raw = client.list_versions_by_function(FunctionName="fn-code", MaxItems=2)
    assert [v["Version"] for v in raw["Versions"]] == ["$LATEST", "1"] and raw["NextMarker"]
    assert client.get_function(FunctionName="fn-code", Qualifier="1")["Configuration"]["CodeSha256"] == sha
    dry = client.update_function_code(FunctionName="fn-code", ZipFile=make_zip({"app.py": "y = 4\n"}), DryRun=True)
    assert dry["CodeSha256"] != client.get_function_configuration(FunctionName="fn-code")["CodeSha256"]
    # delete one version, then the function (every qualifier is reported to on_change)
    client.delete_function(FunctionName="fn-code", Qualifier="1")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName="fn-code:1")
    with pytest.raises(client.exceptions.InvalidParameterValueException) as exc:
        client.delete_function(FunctionName="fn-code", Qualifier="$LATEST")
    assert error(exc)[1] == "$LATEST version cannot be deleted without deleting the function."
    server.changes.clear()
    assert client.delete_function(FunctionName="fn-code")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert sorted(server.changes) == [("fn-code", "$LATEST"), ("fn-code", "2")]
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName="fn-code")


def test_list_functions_pagination(client: Any) -> None:
    names = [f"page-{i}" for i in range(7)]
    for name in names:
        create(client, name)
    client.publish_version(FunctionName="page-3")
    seen: list[str] = []
    marker: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"MaxItems": 3} | ({"Marker": marker} if marker else {})
        page = client.list_functions(**kwargs)
        assert len(page["Functions"]) <= 3
        seen += [f["FunctionName"] for f in page["Functions"]]
        pages += 1
        marker = page.get("NextMarker")
        if not marker:
            break
    assert [n for n in seen if n.startswith("page-")] == names
    assert len(seen) == len(set(seen)) and pages >= 3
    assert "State" not in page["Functions"][0]
    paged = [
        f["FunctionName"]
        for p in client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 3})
        for f in p["Functions"]
    ]
    assert paged == seen
    every = [
        f["FunctionArn"]
        for p in client.get_paginator("list_functions").paginate(
            FunctionVersion="ALL", PaginationConfig={"PageSize": 2}
        )
        for f in p["Functions"]
    ]
    assert f"{ARN}:page-3:$LATEST" in every and f"{ARN}:page-3:1" in every
    assert len(every) == len(set(every))
    assert len([arn for arn in every if arn.endswith(":$LATEST")]) == len(seen)


# -- aliases --


def test_aliases(client: Any, server: LambdaServer) -> None:
    create(client, "fn-alias")
    v1 = client.publish_version(FunctionName="fn-alias")["Version"]
    client.update_function_configuration(FunctionName="fn-alias", Timeout=5)
    v2 = client.publish_version(FunctionName="fn-alias")["Version"]
    alias = client.create_alias(
        FunctionName="fn-alias",
        Name="live",
        FunctionVersion=v1,
        RoutingConfig={"AdditionalVersionWeights": {v2: 0.25}},
    )
    assert alias["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert alias["AliasArn"] == f"{ARN}:fn-alias:live"
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {v2: 0.25}}
    assert ("fn-alias", "live") in server.changes
    got = client.get_function_configuration(FunctionName="fn-alias", Qualifier="live")
    assert (got["Version"], got["FunctionArn"]) == (v1, f"{ARN}:fn-alias:live")
    with pytest.raises(client.exceptions.ResourceConflictException) as exc:
        client.create_alias(FunctionName="fn-alias", Name="live", FunctionVersion=v1)
    assert error(exc)[1] == f"Alias already exists: {ARN}:fn-alias:live"
    bad = [
        ({"AdditionalVersionWeights": {v1: 0.1, v2: 0.1}}, "cannot be greater than 1"),
        ({"AdditionalVersionWeights": {v2: 1.5}}, "routingConfig.additionalVersionWeights"),
        ({"AdditionalVersionWeights": {v1: 0.5}}, "is already included in routing configuration"),
        ({"AdditionalVersionWeights": {"9": 0.5}}, "Function not found"),
    ]
    for routing, message in bad:
        with pytest.raises(ClientError) as exc:
            client.create_alias(FunctionName="fn-alias", Name="other", FunctionVersion=v1, RoutingConfig=routing)
        assert message in error(exc)[1]
    with pytest.raises(client.exceptions.ResourceNotFoundException) as exc:
        client.create_alias(FunctionName="fn-alias", Name="other", FunctionVersion="42")
    assert error(exc)[1] == f"Function not found: {ARN}:fn-alias:42"
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.create_alias(FunctionName="fn-alias", Name="123", FunctionVersion=v1)
    client.create_alias(FunctionName="fn-alias", Name="dev", FunctionVersion="$LATEST", Description="d")
    updated = client.update_alias(FunctionName="fn-alias", Name="live", FunctionVersion=v2, RoutingConfig={})
    assert updated["FunctionVersion"] == v2 and "RoutingConfig" not in updated
    with pytest.raises(ClientError) as exc:
        client.update_alias(FunctionName="fn-alias", Name="live", Description="x", RevisionId=alias["RevisionId"])
    assert error(exc)[0] == "PreconditionFailedException"
    assert client.get_alias(FunctionName="fn-alias", Name="dev")["Description"] == "d"
    names = [a["Name"] for a in client.list_aliases(FunctionName="fn-alias")["Aliases"]]
    assert names == ["dev", "live"]
    assert [a["Name"] for a in client.list_aliases(FunctionName="fn-alias", FunctionVersion=v2)["Aliases"]] == ["live"]
    paged = [a["Name"] for p in client.get_paginator("list_aliases").paginate(FunctionName="fn-alias", MaxItems=1)
             for a in p["Aliases"]]  # fmt: skip
    assert paged == ["dev", "live"]
    with pytest.raises(client.exceptions.ResourceConflictException):
        client.delete_function(FunctionName="fn-alias", Qualifier=v2)
    assert client.delete_alias(FunctionName="fn-alias", Name="dev")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException) as exc:
        client.get_alias(FunctionName="fn-alias", Name="dev")
    assert error(exc)[1] == f"Cannot find alias arn: {ARN}:fn-alias:dev"


# -- concurrency --


def test_reserved_concurrency_and_account_settings(client: Any) -> None:
    create(client, "fn-reserved")
    before = client.get_account_settings()
    assert before["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert before["AccountLimit"]["CodeSizeZipped"] == 52428800
    assert before["AccountLimit"]["CodeSizeUnzipped"] == 262144000
    assert before["AccountUsage"]["FunctionCount"] >= 1 and before["AccountUsage"]["TotalCodeSize"] > 0
    assert client.get_function_concurrency(FunctionName="fn-reserved").get("ReservedConcurrentExecutions") is None
    out = client.put_function_concurrency(FunctionName="fn-reserved", ReservedConcurrentExecutions=100)
    assert out["ReservedConcurrentExecutions"] == 100 and out["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert client.get_function_concurrency(FunctionName="fn-reserved")["ReservedConcurrentExecutions"] == 100
    assert client.get_function(FunctionName="fn-reserved")["Concurrency"] == {"ReservedConcurrentExecutions": 100}
    after = client.get_account_settings()["AccountLimit"]
    assert after["UnreservedConcurrentExecutions"] == before["AccountLimit"]["UnreservedConcurrentExecutions"] - 100
    with pytest.raises(client.exceptions.InvalidParameterValueException) as exc:
        client.put_function_concurrency(FunctionName="fn-reserved", ReservedConcurrentExecutions=950)
    assert error(exc)[1] == (
        "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
        "below its minimum value of [100]."
    )
    resp = client.delete_function_concurrency(FunctionName="fn-reserved")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "Concurrency" not in client.get_function(FunctionName="fn-reserved")


def test_provisioned_concurrency(client: Any, server: LambdaServer) -> None:
    create(client, "fn-pc")
    version = client.publish_version(FunctionName="fn-pc")["Version"]
    client.create_alias(FunctionName="fn-pc", Name="prod", FunctionVersion=version)
    with pytest.raises(client.exceptions.InvalidParameterValueException) as exc:
        client.put_provisioned_concurrency_config(
            FunctionName="fn-pc", Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        )
    assert error(exc)[1] == "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
    server.changes.clear()
    out = client.put_provisioned_concurrency_config(
        FunctionName="fn-pc", Qualifier="prod", ProvisionedConcurrentExecutions=2
    )
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert (out["Status"], out["RequestedProvisionedConcurrentExecutions"]) == ("IN_PROGRESS", 2)
    assert out["AllocatedProvisionedConcurrentExecutions"] == 0
    assert server.changes == [("fn-pc", "prod")]
    with pytest.raises(client.exceptions.ResourceConflictException):
        client.put_provisioned_concurrency_config(
            FunctionName="fn-pc", Qualifier=version, ProvisionedConcurrentExecutions=1
        )
    got = client.get_provisioned_concurrency_config(FunctionName="fn-pc", Qualifier="prod")
    assert got["RequestedProvisionedConcurrentExecutions"] == 2
    listed = client.list_provisioned_concurrency_configs(FunctionName="fn-pc")["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"] for c in listed] == [f"{ARN}:fn-pc:prod"]
    server.store.update_provisioned_concurrency("fn-pc", "prod", {"Status": "READY"})
    assert client.get_provisioned_concurrency_config(FunctionName="fn-pc", Qualifier="prod")["Status"] == "READY"
    with pytest.raises(client.exceptions.InvalidParameterValueException) as exc:
        client.get_provisioned_concurrency_config(FunctionName="fn-pc", Qualifier="$LATEST")
    assert error(exc)[1] == "The function resource provided must be an alias or a published version."
    resp = client.delete_provisioned_concurrency_config(FunctionName="fn-pc", Qualifier="prod")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(client.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        client.get_provisioned_concurrency_config(FunctionName="fn-pc", Qualifier="prod")
    with pytest.raises(client.exceptions.ResourceNotFoundException) as exc:
        client.put_provisioned_concurrency_config(
            FunctionName="fn-pc", Qualifier="nosuch", ProvisionedConcurrentExecutions=1
        )
    assert error(exc)[1] == f"Cannot find alias arn: {ARN}:fn-pc:nosuch"


# -- event invoke configs --


def test_event_invoke_configs(client: Any) -> None:
    create(client, "fn-async")
    create(client, "fn-target")
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures"
    out = client.put_function_event_invoke_config(
        FunctionName="fn-async",
        MaximumRetryAttempts=1,
        MaximumEventAgeInSeconds=600,
        DestinationConfig={"OnFailure": {"Destination": queue}, "OnSuccess": {"Destination": f"{ARN}:fn-target"}},
    )
    assert out["FunctionArn"] == f"{ARN}:fn-async:$LATEST"
    assert (out["MaximumRetryAttempts"], out["MaximumEventAgeInSeconds"]) == (1, 600)
    assert out["DestinationConfig"]["OnFailure"] == {"Destination": queue}
    assert out["LastModified"].year >= 2024
    updated = client.update_function_event_invoke_config(FunctionName="fn-async", MaximumRetryAttempts=0)
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (0, 600)
    assert client.get_function_event_invoke_config(FunctionName="fn-async")["MaximumRetryAttempts"] == 0
    listed = client.list_function_event_invoke_configs(FunctionName="fn-async")["FunctionEventInvokeConfigs"]
    assert len(listed) == 1
    bad: list[tuple[dict[str, Any], str]] = [
        ({"MaximumRetryAttempts": 3}, "maximumRetryAttempts"),
        ({"MaximumEventAgeInSeconds": 30}, "maximumEventAgeInSeconds"),
        ({"DestinationConfig": {"OnFailure": {"Destination": f"{ARN}:fn-async"}}}, "destination for itself"),
        ({"DestinationConfig": {"OnFailure": {"Destination": f"{ARN}:fn-nope"}}}, "is invalid"),
        ({"DestinationConfig": {"OnFailure": {"Destination": f"arn:aws:sns:{REGION}:{ACCOUNT}:t"}}}, "is invalid"),
        ({}, "You must specify at least one of error handling or destination setting."),
    ]
    for params, message in bad:
        with pytest.raises(client.exceptions.InvalidParameterValueException) as exc:
            client.put_function_event_invoke_config(FunctionName="fn-async", **params)
        assert message in error(exc)[1]
    with pytest.raises(client.exceptions.ResourceNotFoundException) as exc:
        client.put_function_event_invoke_config(FunctionName="fn-async", Qualifier="9", MaximumRetryAttempts=1)
    assert error(exc)[1] == "The function doesn't exist."
    resp = client.delete_function_event_invoke_config(FunctionName="fn-async")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException) as exc:
        client.get_function_event_invoke_config(FunctionName="fn-async")
    assert error(exc)[1] == f"The function {ARN}:fn-async:$LATEST doesn't have an EventInvokeConfig"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.update_function_event_invoke_config(FunctionName="fn-async", MaximumRetryAttempts=1)


# -- tags --


def test_tags_carry_squall_extras(client: Any, server: LambdaServer) -> None:
    created = create(client, "fn-tags", Tags={"squall:network": "none", "owner": "me"})
    arn = created["FunctionArn"]
    stored = server.store.get_function("fn-tags")
    assert (stored.squall["network"], stored.squall["snapshot"]) == ("none", False)
    server.changes.clear()
    client.tag_resource(Resource=arn, Tags={"squall:network": "host", "squall:snapshot": "true"})
    assert server.changes == [("fn-tags", "$LATEST")]
    stored = server.store.get_function("fn-tags")
    assert (stored.squall["network"], stored.squall["snapshot"]) == ("host", True)
    tags = client.list_tags(Resource=arn)["Tags"]
    assert tags == {"squall:network": "host", "squall:snapshot": "true", "owner": "me"}
    client.untag_resource(Resource=arn, TagKeys=["squall:snapshot", "owner"])
    assert client.list_tags(Resource=arn)["Tags"] == {"squall:network": "host"}
    assert server.store.get_function("fn-tags").squall["snapshot"] is False
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.tag_resource(Resource=arn, Tags={"squall:network": "bogus"})
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.tag_resource(Resource=f"{arn}:1", Tags={"a": "b"})
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_tags(Resource=f"{ARN}:fn-nosuch")


# -- wire --


def _raw(server: LambdaServer, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.headers, json.loads(data) if data else None


def test_malformed_and_oversized_bodies(server: LambdaServer) -> None:
    status, headers, body = _raw(server, "POST", "/2015-03-31/functions", b'{"FunctionName": ', {})
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    assert body["Message"].startswith("Could not parse request body into json")
    status, headers, body = _raw(server, "POST", "/2015-03-31/functions", b"[1, 2]", {})
    assert status == 400 and "expected a JSON object" in body["message"]
    status, headers, _ = _raw(
        server, "PUT", "/2015-03-31/functions/x/code", b"{}", {"Content-Length": str(80 * 1024 * 1024)}
    )
    assert status == 413 and headers["x-amzn-ErrorType"] == "RequestEntityTooLargeException"
    status, _, _ = _raw(server, "GET", "/_squall/code/" + "0" * 64, b"", {})
    assert status == 404
    # percent-encoded ARN in the path
    status, _, body = _raw(
        server, "GET", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Anope", b"", {}
    )
    assert status == 404 and body["Message"] == f"Function not found: {ARN}:nope"


@needs_aws_cli
def test_aws_cli(server: LambdaServer, tmp_path: Path) -> None:
    package = tmp_path / "fn.zip"
    package.write_bytes(make_zip())
    env = aws_env("testing", "testing", REGION, tmp_path)
    aws = [str(AWS_CLI), "--endpoint-url", server.url, "--output", "json", "lambda"]
    created = subprocess.run(
        [*aws, "create-function", "--function-name", "fn-cli", "--runtime", "python3.11", "--handler", "app.handler",
         "--role", ROLE, "--zip-file", f"fileb://{package}"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["FunctionName"] == "fn-cli"
    got = subprocess.run(
        [*aws, "get-function-configuration", "--function-name", f"{ARN}:fn-cli"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["Runtime"] == "python3.11"
    missing = subprocess.run(
        [*aws, "get-function", "--function-name", "fn-cli-missing"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr


def test_update_to_a_runtime_whose_interpreter_is_missing_is_refused(client: Any) -> None:
    create(client, "fn-runtime-update")
    with pytest.raises(ClientError) as exc:
        client.update_function_configuration(FunctionName="fn-runtime-update", Runtime="python3.12")
    code, text, status = error(exc)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "Available runtimes: python3.11" in text
    assert client.get_function_configuration(FunctionName="fn-runtime-update")["Runtime"] == "python3.11"
