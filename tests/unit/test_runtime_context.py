"""squall.sandbox.runtime.context: the ``context`` object, attribute for attribute as awslambdaric builds it."""

from __future__ import annotations

import time

import pytest

from squall.sandbox.runtime.context import Client, ClientContext, CognitoIdentity, LambdaContext

ENV = {
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]abc",
    "AWS_LAMBDA_FUNCTION_NAME": "fn",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
}


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def now_ms() -> int:
    return int(time.time() * 1000)


def test_fields_from_environment(lambda_env: None) -> None:
    ctx = LambdaContext("rid-1", now_ms() + 5000, "arn:aws:lambda:us-east-1:0:function:fn:prod")
    assert ctx.aws_request_id == "rid-1"
    assert ctx.function_name == "fn"
    assert ctx.function_version == "$LATEST"
    assert ctx.memory_limit_in_mb == "256"  # a string, as on Lambda
    assert isinstance(ctx.memory_limit_in_mb, str)
    assert ctx.log_group_name == "/aws/lambda/fn"
    assert ctx.log_stream_name == "2024/01/01/[$LATEST]abc"
    assert ctx.invoked_function_arn == "arn:aws:lambda:us-east-1:0:function:fn:prod"
    assert ctx.client_context is None
    assert isinstance(ctx.identity, CognitoIdentity)
    assert ctx.identity.cognito_identity_id is None
    assert ctx.identity.cognito_identity_pool_id is None
    assert "rid-1" in repr(ctx)


def test_remaining_time(lambda_env: None) -> None:
    start = now_ms()
    ctx = LambdaContext("r", start + 3000, "")
    r1 = ctx.get_remaining_time_in_millis()
    assert isinstance(r1, int)
    assert 0 < r1 <= 3000
    r2 = ctx.get_remaining_time_in_millis()
    assert r2 <= r1


@pytest.mark.parametrize("delta", [-1, -100_000, 0])
def test_remaining_time_never_negative(lambda_env: None, delta: int) -> None:
    assert LambdaContext("r", now_ms() + delta, "").get_remaining_time_in_millis() == 0


def test_client_context(lambda_env: None) -> None:
    cc = {
        "client": {
            "installation_id": "inst", "app_title": "title", "app_version_name": "1.0", "app_version_code": "10",
            "app_package_name": "com.example",
        },
        "custom": {"k": "v"},
        "env": {"platform": "android"},
    }  # fmt: skip
    ctx = LambdaContext("r", now_ms() + 1000, "", client_context=cc)
    assert isinstance(ctx.client_context, ClientContext)
    assert isinstance(ctx.client_context.client, Client)
    c = ctx.client_context.client
    assert (c.installation_id, c.app_title, c.app_version_name, c.app_version_code, c.app_package_name) == (
        "inst", "title", "1.0", "10", "com.example",
    )  # fmt: skip
    assert ctx.client_context.custom == {"k": "v"}
    assert ctx.client_context.env == {"platform": "android"}


def test_client_context_without_client(lambda_env: None) -> None:
    ctx = LambdaContext("r", now_ms(), "", client_context={"custom": {"a": 1}})
    assert ctx.client_context is not None
    assert ctx.client_context.client is None
    assert ctx.client_context.custom == {"a": 1}
    assert ctx.client_context.env is None


def test_identity(lambda_env: None) -> None:
    ctx = LambdaContext("r", now_ms(), "", identity={"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool"})
    assert ctx.identity.cognito_identity_id == "id-1"
    assert ctx.identity.cognito_identity_pool_id == "pool"


def test_slots_reject_unknown_attributes() -> None:
    with pytest.raises(AttributeError):
        CognitoIdentity().other = 1  # type: ignore[attr-defined]


def test_log_writes_to_stdout(lambda_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    LambdaContext("r", now_ms(), "").log("hello from context.log")
    assert "hello from context.log" in capsys.readouterr().out
