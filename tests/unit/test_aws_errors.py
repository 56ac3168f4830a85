"""Error responses must be parsed by botocore into the codes and exception classes boto3 users catch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.parsers
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.config import Config
from botocore.exceptions import ClientError

from squall.aws.errors import Response, render, render_lambda, render_s3, render_sqs
from squall.aws.sigv4 import (
    MissingAuthentication,
    PresignedUrlExpired,
    SignatureMismatch,
    UnrecognizedAccessKey,
)
from squall.core.errors import (
    InvalidParameterValue,
    ResourceNotFound,
    ServiceError,
    SquallError,
    TooManyRequests,
)

REQUEST_ID = "5f1c2d3e-0000-4000-8000-000000000001"


class QueueDoesNotExist(SquallError):
    code = "QueueDoesNotExist"
    status = 400
    fault = "user"


class NoSuchKey(SquallError):
    code = "NoSuchKey"
    status = 404
    fault = "user"


def _parse(protocol: str, service: str, operation: str, response: Response) -> dict[str, Any]:
    status, headers, body = response
    model = botocore.session.get_session().get_service_model(service)
    parser = botocore.parsers.create_parser(protocol)
    parsed: dict[str, Any] = parser.parse(
        {"status_code": status, "headers": HeadersDict(headers), "body": body},
        model.operation_model(operation).output_shape,
    )
    return parsed


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _client_raising(service: str, response: Response) -> Any:
    """A real boto3 client whose every request gets ``response`` back."""
    client = boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url="http://localhost:8080",
        aws_access_key_id="AKSQEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 0}, s3={"addressing_style": "path"}),
    )
    status, headers, body = response

    def reply(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, headers, _Raw(body))

    client.meta.events.register("before-send", reply)
    return client


# ------------------------------------------------------------------------------------------------ Lambda


def test_lambda_not_found_parsed_by_botocore() -> None:
    response = render_lambda(ResourceNotFound("Function not found: arn:aws:lambda:x:1:function:f"), REQUEST_ID)
    status, headers, body = response
    assert status == 404
    assert headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["Type"] == "User"
    parsed = _parse("rest-json", "lambda", "Invoke", response)
    assert parsed["Error"]["Code"] == "ResourceNotFoundException"
    assert parsed["Error"]["Message"] == "Function not found: arn:aws:lambda:x:1:function:f"
    assert parsed["ResponseMetadata"]["RequestId"] == REQUEST_ID


def test_lambda_modeled_exception_class() -> None:
    client = _client_raising("lambda", render_lambda(ResourceNotFound("Function not found: f"), REQUEST_ID))
    with pytest.raises(client.exceptions.ResourceNotFoundException) as info:
        client.invoke(FunctionName="f")
    assert info.value.response["Error"]["Message"] == "Function not found: f"


def test_lambda_too_many_requests_has_reason() -> None:
    error = TooManyRequests("Rate Exceeded.", reason="ConcurrentInvocationLimitExceeded")
    response = render_lambda(error, REQUEST_ID)
    assert response[0] == 429
    assert json.loads(response[2])["Reason"] == "ConcurrentInvocationLimitExceeded"
    client = _client_raising("lambda", response)
    with pytest.raises(client.exceptions.TooManyRequestsException) as info:
        client.invoke(FunctionName="f")
    assert info.value.response["Reason"] == "ConcurrentInvocationLimitExceeded"


def test_lambda_service_error_type() -> None:
    status, _, body = render_lambda(ServiceError("boom"), REQUEST_ID)
    assert status == 500
    assert json.loads(body)["Type"] == "Service"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MissingAuthentication("Missing Authentication Token"), "MissingAuthenticationTokenException"),
        (UnrecognizedAccessKey("bad key", service="lambda"), "UnrecognizedClientException"),
        (SignatureMismatch("bad sig", service="lambda"), "InvalidSignatureException"),
    ],
)
def test_lambda_auth_errors(error: SquallError, code: str) -> None:
    response = render_lambda(error, REQUEST_ID)
    assert response[0] == 403
    client = _client_raising("lambda", response)
    with pytest.raises(ClientError) as info:
        client.list_functions()
    assert info.value.response["Error"]["Code"] == code


# ------------------------------------------------------------------------------------------------ S3


def test_s3_error_document() -> None:
    response = render_s3(NoSuchKey("The specified key does not exist."), REQUEST_ID, "/bucket/a&b")
    status, headers, body = response
    assert status == 404
    assert headers["Content-Type"] == "application/xml"
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert b"<Resource>/bucket/a&amp;b</Resource>" in body
    parsed = _parse("rest-xml", "s3", "GetObject", response)
    assert parsed["Error"]["Code"] == "NoSuchKey"
    assert parsed["Error"]["Message"] == "The specified key does not exist."
    assert parsed["ResponseMetadata"]["RequestId"] == REQUEST_ID
    client = _client_raising("s3", response)
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket="bucket", Key="a&b")


def test_s3_signature_error_with_details() -> None:
    error = SignatureMismatch(
        "The request signature we calculated does not match the signature you provided.",
        service="s3",
        details={"StringToSign": "AWS4-HMAC-SHA256\n<x>", "SignatureProvided": "ab"},
    )
    response = render_s3(error, REQUEST_ID)
    assert response[0] == 403
    parsed = _parse("rest-xml", "s3", "GetObject", response)
    assert parsed["Error"]["Code"] == "SignatureDoesNotMatch"
    assert parsed["Error"]["StringToSign"] == "AWS4-HMAC-SHA256\n<x>"


def test_s3_expired_presign_and_missing_auth_are_access_denied() -> None:
    for error in (PresignedUrlExpired("Request has expired", service="s3"), MissingAuthentication("no auth")):
        parsed = _parse("rest-xml", "s3", "GetObject", render_s3(error, REQUEST_ID))
        assert parsed["Error"]["Code"] == "AccessDenied"


def test_s3_unknown_key() -> None:
    parsed = _parse("rest-xml", "s3", "ListBuckets", render_s3(UnrecognizedAccessKey("?"), REQUEST_ID))
    assert parsed["Error"]["Code"] == "InvalidAccessKeyId"


def test_s3_head_has_no_body() -> None:
    response = render_s3(NoSuchKey("The specified key does not exist."), REQUEST_ID, head=True)
    assert response[0] == 404
    assert response[2] == b""
    client = _client_raising("s3", response)
    with pytest.raises(ClientError) as info:
        client.head_object(Bucket="b", Key="k")
    assert info.value.response["Error"]["Code"] == "404"


def test_s3_generic_platform_errors_are_translated() -> None:
    status, _, body = render_s3(InvalidParameterValue("bad"), REQUEST_ID)
    assert status == 400
    assert b"<Code>InvalidArgument</Code>" in body
    status, _, body = render_s3(ServiceError("boom"), REQUEST_ID)
    assert status == 500
    assert b"<Code>InternalError</Code>" in body


# ------------------------------------------------------------------------------------------------ SQS


def test_sqs_protocol_is_json() -> None:
    model = botocore.session.get_session().get_service_model("sqs")
    assert model.protocol == "json"


def test_sqs_queue_does_not_exist() -> None:
    response = render_sqs(QueueDoesNotExist("The specified queue does not exist."), REQUEST_ID)
    status, headers, body = response
    assert status == 400
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    assert headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    assert json.loads(body)["__type"] == "com.amazonaws.sqs#QueueDoesNotExist"
    parsed = _parse("json", "sqs", "GetQueueUrl", response)
    assert parsed["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert parsed["Error"]["QueryErrorCode"] == "QueueDoesNotExist"
    assert parsed["Error"]["Message"] == "The specified queue does not exist."
    client = _client_raising("sqs", response)
    with pytest.raises(client.exceptions.QueueDoesNotExist) as info:
        client.get_queue_url(QueueName="missing")
    assert info.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"


@pytest.mark.parametrize(
    ("error", "code", "query_code"),
    [
        (UnrecognizedAccessKey("bad key", service="sqs"), "UnrecognizedClientException", "InvalidClientTokenId"),
        (SignatureMismatch("bad sig", service="sqs"), "InvalidSignatureException", "SignatureDoesNotMatch"),
        (MissingAuthentication("none"), "MissingAuthenticationTokenException", "MissingAuthenticationToken"),
    ],
)
def test_sqs_auth_errors(error: SquallError, code: str, query_code: str) -> None:
    response = render_sqs(error, REQUEST_ID)
    assert response[0] == 403
    assert json.loads(response[2])["__type"] == f"com.amazon.coral.service#{code}"
    client = _client_raising("sqs", response)
    with pytest.raises(ClientError) as info:
        client.list_queues()
    assert info.value.response["Error"]["Code"] == query_code


def test_sqs_service_error_is_receiver_fault() -> None:
    status, headers, _ = render_sqs(ServiceError("boom"), REQUEST_ID)
    assert status == 500
    assert headers["x-amzn-query-error"] == "InternalError;Receiver"


def test_render_dispatch() -> None:
    assert render("s3", ServiceError("x"), REQUEST_ID)[1]["Content-Type"] == "application/xml"
    assert render("sqs", ServiceError("x"), REQUEST_ID)[1]["Content-Type"] == "application/x-amz-json-1.0"
    assert render("lambda", ServiceError("x"), REQUEST_ID)[1]["Content-Type"] == "application/json"
