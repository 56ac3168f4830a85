"""The edge's side of execution roles: turn a request signed with a function's key into ``Check``\\ s, exactly as
the S3, SQS and Invoke endpoints will read it (their own request parsers are reused, so what is authorized is what
runs), and ask the ``Authorizer``.  A request whose target cannot be read is answered with the parser's error
(nothing runs) or refused.

Also: the refusal of everything a function's key may not call at all (Lambda management, dashboard and Squall APIs,
IAM), and the answer to requests signed for AWS services Squall does not implement.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from starlette.datastructures import QueryParams
from starlette.types import Scope

from squall.core import jsonlimits
from squall.core.errors import SquallError
from squall.iam.actions import invoke_check, s3_checks, sqs_checks
from squall.iam.authorizer import Authorizer
from squall.iam.errors import IMPLEMENTED, NotAuthorized
from squall.s3 import xml as s3_xml
from squall.s3.api import _request as s3_request  # the S3 app's own request decoding
from squall.s3.http import parse_copy_source, payload

__all__ = [
    "SERVICE_NAMES",
    "Gate",
    "lambda_not_implemented_route",
    "not_implemented_service",
    "render_unknown_service",
]


_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>.+)/invocations$")

#: signing names -> what users call the service
SERVICE_NAMES: Mapping[str, str] = {
    "dynamodb": "DynamoDB",
    "ssm": "Systems Manager (SSM Parameter Store)",
    "secretsmanager": "Secrets Manager",
    "logs": "CloudWatch Logs",
    "monitoring": "CloudWatch",
    "events": "EventBridge",
    "scheduler": "EventBridge Scheduler",
    "kms": "KMS",
    "sns": "SNS",
    "ses": "SES",
    "email": "SES",
    "states": "Step Functions",
    "kinesis": "Kinesis",
    "firehose": "Kinesis Data Firehose",
    "apigateway": "API Gateway",
    "execute-api": "API Gateway",
    "cloudformation": "CloudFormation",
    "ec2": "EC2",
    "ecr": "ECR",
    "rds": "RDS",
    "xray": "X-Ray",
    "cognito-idp": "Cognito User Pools",
    "appconfig": "AppConfig",
    "s3control": "S3 Control",
}


class Gate:
    """Per-request checks for calls signed with a function's key."""

    def __init__(self, authorizer: Authorizer, region: str, account_id: str) -> None:
        self.authorizer = authorizer
        self.region = region
        self.account = account_id

    def s3(self, function: str, scope: Scope) -> SquallError | None:
        body = scope.get("squall.body") or b""
        try:
            request = s3_request(scope, body, scope.get("squall.request_id", ""))
            copy_source = None
            if request.key and request.method == "PUT" and "x-amz-copy-source" in request.headers:
                copy_source = parse_copy_source(request.headers["x-amz-copy-source"])
            delete_keys: list[str] = []
            if request.method == "POST" and not request.key and "delete" in request.query:
                delete_keys, _ = s3_xml.parse_delete(payload(request))
        except SquallError as e:
            return e  # the S3 app would refuse it the same way: nothing runs
        checks = s3_checks(
            request.method, request.bucket, request.key, request.query, request.headers,
            copy_source=copy_source, delete_keys=delete_keys,
        )  # fmt: skip
        return self.authorizer.check(function, checks)

    def sqs(self, function: str, scope: Scope) -> SquallError | None:
        target = ""
        for key, value in scope.get("headers", ()):
            if key.lower() == b"x-amz-target":
                target = value.decode("latin-1")
                break
        if not target.startswith("AmazonSQS."):
            return NotAuthorized(
                f"Function {function}'s credentials may call SQS only through its JSON protocol (X-Amz-Target: "
                "AmazonSQS.<Operation>), as boto3 does; this request names no operation"
            )
        body = scope.get("squall.body") or b""
        try:
            params = jsonlimits.loads(body) if body.strip() else {}
        except (ValueError, RecursionError):
            params = None
        if not isinstance(params, dict):
            return NotAuthorized(
                f"Function {function}'s SQS request body is not a JSON object; it cannot be authorized"
            )
        path = str(scope.get("path", "/"))
        path_queue = path if len([p for p in path.split("/") if p]) == 2 else None
        checks = sqs_checks(target[len("AmazonSQS.") :], params, path_queue, self.region, self.account)
        return self.authorizer.check(function, checks)

    def invoke(self, function: str, scope: Scope) -> SquallError | None:
        from squall.functions.control.names import parse_function_name

        m = _INVOKE_PATH.match(scope["path"])
        raw = m.group("function") if m else ""
        qualifier = QueryParams(scope.get("query_string", b"")).get("Qualifier") if scope.get("query_string") else None
        try:
            ref = parse_function_name(unquote(raw), qualifier, region=self.region, account_id=self.account)
        except SquallError as e:
            return e  # the Invoke endpoint refuses it the same way
        check = invoke_check(self.region, self.account, ref.name, ref.qualifier)
        return self.authorizer.check_invoke(function, check, ref.name, ref.qualifier)

    @staticmethod
    def management(function: str, scope: Scope) -> NotAuthorized:
        """The refusal of anything else a function's key asks for."""
        auth = scope.get("squall.auth")
        service = getattr(auth, "service", "lambda")
        what = "IAM" if service == "iam" else f"{scope.get('method', '')} {scope.get('path', '')}"
        return NotAuthorized(
            f"Function {function}'s credentials may call S3, SQS, Lambda Invoke and STS GetCallerIdentity, as its "
            f"execution role allows; they may not call {what} (managing functions, IAM, the dashboard and Squall's "
            "own APIs needs the admin key, which squall up prints)"
        )


def not_implemented_service(service: str) -> str:
    name = SERVICE_NAMES.get(service)
    label = f"{name} ({service})" if name else f"The AWS service '{service}'"
    return f"{label} is not implemented by Squall; {IMPLEMENTED}."


def render_unknown_service(
    service: str, headers: Mapping[str, str], query_string: bytes, message: str, request_id: str
) -> tuple[int, dict[str, str], bytes]:
    """The refusal in the protocol the client speaks: JSON services (X-Amz-Target) get
    ``{"__type": "...#UnknownOperationException"}``, Query services (``Action=``) an XML ``ErrorResponse`` with
    ``InvalidAction``, REST services an ``x-amzn-ErrorType`` JSON (or XML when they send XML)."""
    from xml.sax.saxutils import escape

    content_type = headers.get("content-type", "")
    if headers.get("x-amz-target"):
        body = json.dumps({"__type": "com.amazon.coral.service#UnknownOperationException", "message": message})
        ctype = content_type if content_type.startswith("application/x-amz-json") else "application/x-amz-json-1.1"
        return 400, {"Content-Type": ctype, "x-amzn-ErrorType": "UnknownOperationException"}, body.encode()
    if "x-www-form-urlencoded" in content_type or b"Action=" in query_string:
        xml = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>{escape(message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return 400, {"Content-Type": "text/xml"}, xml.encode()
    if "xml" in content_type:
        xml = f"<Error><Code>NotImplemented</Code><Message>{escape(message)}</Message><RequestId>{request_id}</RequestId></Error>"
        return 501, {"Content-Type": "application/xml"}, xml.encode()
    body = json.dumps({"message": message, "Message": message})
    return 404, {"Content-Type": "application/json", "x-amzn-ErrorType": "UnknownOperationException"}, body.encode()


_API_PATH = re.compile(r"^/\d{4}-\d{2}-\d{2}/")


class _UnknownLambdaOperation(SquallError):
    code = "UnknownOperationException"
    status = 404
    fault = "user"


def lambda_not_implemented_route() -> Any:
    """A catch-all route (mount it last): a Lambda API path no route serves gets Lambda's error shape saying it is
    not implemented (code signing, layer permissions, ...), anything else a plain 404."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from squall.aws.errors import render_lambda

    async def endpoint(request: Request) -> Response:
        path = request.url.path
        if not _API_PATH.match(path):
            return PlainTextResponse("Not Found", 404)
        err = _UnknownLambdaOperation(
            f"The Lambda operation {request.method} {path} is not implemented by Squall; {IMPLEMENTED}."
        )
        status, headers, body = render_lambda(err, request.scope.get("squall.request_id", ""))
        return Response(body, status, headers=headers)

    return Route("/{rest:path}", endpoint, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
