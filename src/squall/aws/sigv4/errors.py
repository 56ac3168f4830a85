"""The SigV4 failures: one class per AWS error, whose wire code and status depend on the service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from squall.core.errors import SquallError

__all__ = [
    "InvalidPayloadHash",
    "MalformedAuthorization",
    "MalformedChunkedBody",
    "MalformedPresignedUrl",
    "MissingAuthentication",
    "PayloadHashMismatch",
    "PresignedUrlExpired",
    "RequestTimeSkewed",
    "SigV4Error",
    "SignatureMismatch",
    "UnrecognizedAccessKey",
]

# --------------------------------------------------------------------------------------------------- errors


class SigV4Error(SquallError):
    """A request failed SigV4 authentication.  The AWS code differs per service: use ``code_for(service)``.

    ``codes`` maps a service name ("lambda", "s3", "sqs") to the AWS error code, with "*" as the fallback;
    ``statuses`` does the same for the HTTP status.  ``sqs_query_code`` is the legacy query-protocol code SQS
    sends in ``x-amzn-query-error`` (what botocore reports as ``Error.Code``).  ``details`` are extra fields S3
    puts in its XML error (``StringToSign``, ``CanonicalRequest``, ``ServerTime``, ...).
    """

    status = 403
    fault = "user"
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "AccessDenied"}
    statuses: ClassVar[Mapping[str, int]] = {}
    sqs_query_code: ClassVar[str] = "SignatureDoesNotMatch"

    def __init__(self, message: str, *, service: str | None = None, details: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.details: dict[str, str] = dict(details or {})
        self.code = self.code_for(service)
        self.status = self.status_for(service)

    def code_for(self, service: str | None = None) -> str:
        """The AWS error code for ``service`` (defaults to the service named in the request, if known)."""
        svc = service if service is not None else self.service
        return self.codes.get(svc or "*", self.codes["*"])

    def status_for(self, service: str | None = None) -> int:
        svc = service if service is not None else self.service
        return self.statuses.get(svc or "*", self.statuses.get("*", type(self).status))


class MissingAuthentication(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "MissingAuthenticationTokenException", "s3": "AccessDenied"}
    sqs_query_code = "MissingAuthenticationToken"


class MalformedAuthorization(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "IncompleteSignatureException", "s3": "AuthorizationHeaderMalformed"}
    statuses: ClassVar[Mapping[str, int]] = {"s3": 400}
    sqs_query_code = "IncompleteSignature"


class MalformedPresignedUrl(MalformedAuthorization):
    codes: ClassVar[Mapping[str, str]] = {
        "*": "IncompleteSignatureException",
        "s3": "AuthorizationQueryParametersError",
    }


class UnrecognizedAccessKey(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "UnrecognizedClientException", "s3": "InvalidAccessKeyId"}
    sqs_query_code = "InvalidClientTokenId"


class SignatureMismatch(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "SignatureDoesNotMatch"}


class RequestTimeSkewed(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "RequestTimeTooSkewed"}


class PresignedUrlExpired(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "AccessDenied"}


class PayloadHashMismatch(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "XAmzContentSHA256Mismatch"}
    statuses: ClassVar[Mapping[str, int]] = {"s3": 400}


class InvalidPayloadHash(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "InvalidArgument"}
    statuses: ClassVar[Mapping[str, int]] = {"s3": 400}


class MalformedChunkedBody(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidRequestContentException", "s3": "IncompleteBody"}
    statuses: ClassVar[Mapping[str, int]] = {"*": 400}
    sqs_query_code = "InvalidParameterValue"
