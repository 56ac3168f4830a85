"""Render a ``SquallError`` as the exact error response each AWS protocol uses, so botocore raises the error
users expect (``client.exceptions.ResourceNotFoundException``, ``client.exceptions.QueueDoesNotExist``, ...).

Every renderer takes ``(error, request_id, resource="")`` and returns a plain ``(status, headers, body)`` tuple;
no web framework is involved.

* Lambda (rest-json): ``x-amzn-ErrorType: <Code>`` and ``{"Type": "User"|"Service", "Message": .., "message": ..}``.
* S3 (rest-xml): ``<Error><Code/><Message/><Resource/><RequestId/></Error>``; HEAD responses have no body.
* SQS (json 1.0, query-compatible): ``{"__type": "com.amazonaws.sqs#<Code>", "message": ..}`` plus
  ``x-amzn-query-error: <legacy code>;Sender``, which botocore reports as ``Error.Code`` while it raises the
  modeled exception class named by ``__type``.

An error that knows its code per service (``SigV4Error.code_for(service)``) is asked for it; otherwise generic
platform codes are translated where the service has its own name for them, and other codes pass through.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from squall.core.errors import SquallError, TooManyRequests

__all__ = [
    "QUERY_NAMESPACES",
    "S3_PLATFORM_CODES",
    "SQS_PLATFORM_CODES",
    "SQS_QUERY_CODES",
    "AwsClientError",
    "Response",
    "error_code",
    "error_status",
    "render",
    "render_lambda",
    "render_query",
    "render_s3",
    "render_sqs",
]

#: XML namespaces of the Query-protocol services Squall serves
QUERY_NAMESPACES = {
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}


#: the signature errors' names in the Query protocols (IAM and STS say InvalidClientTokenId for an unknown key)
_QUERY_AUTH_CODES = {
    "UnrecognizedClientException": "InvalidClientTokenId",
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "IncompleteSignatureException": "IncompleteSignature",
    "MissingAuthenticationTokenException": "MissingAuthenticationToken",
}


Response = tuple[int, dict[str, str], bytes]

# Generic platform codes -> (S3 code, status).  S3-specific errors (NoSuchKey, NoSuchBucket, ...) should be raised
# with their own code by the S3 layer; ResourceNotFoundException is deliberately not guessed.
S3_PLATFORM_CODES: Mapping[str, tuple[str, int]] = {
    "ServiceException": ("InternalError", 500),
    "InvalidParameterValueException": ("InvalidArgument", 400),
    "InvalidRequestContentException": ("InvalidRequest", 400),
    "RequestTooLargeException": ("EntityTooLarge", 400),
    "TooManyRequestsException": ("SlowDown", 503),
    "ResourceConflictException": ("OperationAborted", 409),
}

# Generic platform codes -> SQS JSON code (the __type name).
SQS_PLATFORM_CODES: Mapping[str, str] = {
    "ServiceException": "InternalFailure",
    "InvalidParameterValueException": "InvalidParameterValue",
    "InvalidRequestContentException": "InvalidParameterValue",
    "TooManyRequestsException": "RequestThrottled",
    "RequestTooLargeException": "BatchRequestTooLong",
}

# SQS JSON code -> the legacy query-protocol code sent in x-amzn-query-error (what boto3 shows as Error.Code).
SQS_QUERY_CODES: Mapping[str, str] = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "QueueDeletedRecently": "AWS.SimpleQueueService.QueueDeletedRecently",
    "PurgeQueueInProgress": "AWS.SimpleQueueService.PurgeQueueInProgress",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "ReceiptHandleIsInvalid": "ReceiptHandleIsInvalid",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
    "InvalidAttributeName": "InvalidAttributeName",
    "InvalidAttributeValue": "InvalidAttributeValue",
    "InvalidIdFormat": "InvalidIdFormat",
    "InvalidMessageContents": "InvalidMessageContents",
    "InvalidAddress": "InvalidAddress",
    "InvalidSecurity": "InvalidSecurity",
    "OverLimit": "OverLimit",
    "RequestThrottled": "RequestThrottled",
    "ResourceNotFoundException": "ResourceNotFoundException",
    "KmsAccessDenied": "KMS.AccessDeniedException",
    "KmsDisabled": "KMS.DisabledException",
    "KmsInvalidKeyUsage": "KMS.InvalidKeyUsageException",
    "KmsInvalidState": "KMS.InvalidStateException",
    "KmsNotFound": "KMS.NotFoundException",
    "KmsOptInRequired": "KMS.OptInRequired",
    "KmsThrottled": "KMS.ThrottlingException",
    "InvalidParameterValue": "InvalidParameterValue",
    "InternalFailure": "InternalError",
}

# Codes modeled in botocore's SQS service model live in the com.amazonaws.sqs namespace; authentication and
# other framework errors come from com.amazon.coral.service, as they do from AWS.
_SQS_NAMESPACE = "com.amazonaws.sqs#"
_CORAL_NAMESPACE = "com.amazon.coral.service#"
_SQS_MODELED = frozenset(SQS_QUERY_CODES) - {"InvalidParameterValue", "InternalFailure"}


class AwsClientError(SquallError):
    """The base of a service's own client errors (S3's ``S3Error``, SQS's ``SqsError``): a wire ``code``, a
    ``status`` (400 unless the subclass says otherwise) and ``details``, extra fields of the error document (S3
    puts them in its XML error as elements such as ``<Key>``; SQS sends none)."""

    code = "InvalidRequest"
    status = 400
    fault = "user"

    def __init__(self, message: str, details: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.details: dict[str, str] = dict(details or {})


def _per_service(error: SquallError, name: str, service: str) -> Any:
    method = getattr(error, name, None)
    return method(service) if callable(method) else None


def error_code(error: SquallError, service: str) -> str:
    """The AWS code ``error`` carries on the wire of ``service`` ("lambda", "s3" or "sqs")."""
    own = _per_service(error, "code_for", service)
    if isinstance(own, str):
        return own
    if service == "s3" and error.code in S3_PLATFORM_CODES:
        return S3_PLATFORM_CODES[error.code][0]
    if service == "sqs":
        return SQS_PLATFORM_CODES.get(error.code, error.code)
    return error.code


def error_status(error: SquallError, service: str) -> int:
    """The HTTP status of ``error`` for ``service``."""
    own = _per_service(error, "status_for", service)
    if isinstance(own, int):
        return own
    if service == "s3" and error.code in S3_PLATFORM_CODES:
        return S3_PLATFORM_CODES[error.code][1]
    return error.status


def _error_type(status: int) -> str:
    return "Service" if status >= 500 else "User"


def render_lambda(error: SquallError, request_id: str, resource: str = "") -> Response:
    """Lambda's rest-json error: botocore takes the code from ``x-amzn-ErrorType`` and the message from the
    body.  ``resource`` is unused (Lambda names the resource in the message)."""
    code = error_code(error, "lambda")
    status = error_status(error, "lambda")
    body: dict[str, Any] = {"Type": _error_type(status), "Message": error.message, "message": error.message}
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": code,
        "x-amzn-RequestId": request_id,
    }
    if isinstance(error, TooManyRequests):
        body["Reason"] = error.reason
        retry_after = getattr(error, "retry_after_s", None)
        if retry_after is not None:
            body["retryAfterSeconds"] = str(retry_after)
            headers["Retry-After"] = str(retry_after)
    return status, headers, json.dumps(body).encode()


def _xml_element(name: str, text: str) -> str:
    return f"<{name}>{escape(text)}</{name}>"


def render_s3(error: SquallError, request_id: str, resource: str = "", *, head: bool = False) -> Response:
    """S3's XML error document.  HEAD responses carry no body (botocore then reports the status as the code,
    e.g. '404', exactly as it does against AWS)."""
    code = error_code(error, "s3")
    status = error_status(error, "s3")
    headers = {"Content-Type": "application/xml", "x-amz-request-id": request_id, "x-amz-id-2": request_id}
    if head:
        return status, headers, b""
    parts = [_xml_element("Code", code), _xml_element("Message", error.message)]
    details: Mapping[str, str] = getattr(error, "details", None) or {}
    parts.extend(_xml_element(name, str(value)) for name, value in details.items())
    if resource:
        parts.append(_xml_element("Resource", resource))
    parts.append(_xml_element("RequestId", request_id))
    document = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"
    return status, headers, document.encode("utf-8")


def _sqs_query_code(error: SquallError, code: str) -> str:
    legacy = getattr(error, "sqs_query_code", None)
    if isinstance(legacy, str) and legacy:
        return legacy
    return SQS_QUERY_CODES.get(code, code)


def render_sqs(error: SquallError, request_id: str, resource: str = "") -> Response:
    """SQS's JSON 1.0 error with the query-compatibility header, so both ``except
    client.exceptions.QueueDoesNotExist`` and ``e.response['Error']['Code'] ==
    'AWS.SimpleQueueService.NonExistentQueue'`` work as against AWS.  ``resource`` is unused."""
    code = error_code(error, "sqs")
    status = error_status(error, "sqs")
    namespace = _SQS_NAMESPACE if code in _SQS_MODELED else _CORAL_NAMESPACE
    fault = "Receiver" if status >= 500 else "Sender"
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "x-amzn-RequestId": request_id,
        "x-amzn-query-error": f"{_sqs_query_code(error, code)};{fault}",
    }
    body = {"__type": namespace + code, "message": error.message}
    return status, headers, json.dumps(body).encode()


def render_query(service: str, error: SquallError, request_id: str) -> tuple[int, dict[str, str], bytes]:
    """The Query protocol's error document (IAM, STS, and any Query service Squall refuses).  Errors whose class sets
    ``query_code_as_is`` (IAM's modeled ones) keep their code; generic 400s drop the ``Exception`` suffix."""
    code_for = getattr(error, "code_for", None)
    code = code_for(service) if callable(code_for) else error.code
    status_for = getattr(error, "status_for", None)
    status = status_for(service) if callable(status_for) else error.status
    if code in _QUERY_AUTH_CODES:
        code = _QUERY_AUTH_CODES[code]
    elif not getattr(error, "query_code_as_is", False) and status == 400 and code.endswith("Exception"):
        code = code[: -len("Exception")]  # generic platform errors: InvalidParameterValueException -> ..Value
    kind = "Receiver" if status >= 500 else "Sender"
    ns = QUERY_NAMESPACES.get(service)
    xmlns = f' xmlns="{ns}"' if ns else ""
    body = (
        f"<ErrorResponse{xmlns}><Error><Type>{kind}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(error.message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body.encode()


def render(service: str, error: SquallError, request_id: str, resource: str = "", *, head: bool = False) -> Response:
    """Dispatch on the service name ("s3", "sqs", "iam" and "sts" (Query XML), anything else like Lambda)."""
    if service in ("iam", "sts"):
        return render_query(service, error, request_id)
    if service == "s3":
        return render_s3(error, request_id, resource, head=head)
    if service == "sqs":
        return render_sqs(error, request_id, resource)
    return render_lambda(error, request_id, resource)
