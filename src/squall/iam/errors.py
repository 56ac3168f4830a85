"""IAM's and STS's errors, the refusal of a denied call in each service's own shape, and the Query protocol's XML
error document (``<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>``)."""

from __future__ import annotations

from xml.sax.saxutils import escape

from squall.errors import SquallError

__all__ = [
    "IMPLEMENTED",
    "QUERY_NAMESPACES",
    "DeleteConflict",
    "EntityAlreadyExists",
    "IamError",
    "InvalidAction",
    "InvalidInput",
    "MalformedPolicyDocument",
    "NoSuchEntity",
    "NotAuthorized",
    "ValidationError",
    "render_query",
]

#: what Squall implements, for every "... is not implemented by Squall" message
IMPLEMENTED = "it implements Lambda, S3, SQS, IAM (roles and policies) and STS GetCallerIdentity"

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


class IamError(SquallError):
    code = "ServiceFailure"
    status = 500
    fault = "user"


class NoSuchEntity(IamError):
    code = "NoSuchEntity"
    status = 404


class EntityAlreadyExists(IamError):
    code = "EntityAlreadyExists"
    status = 409


class MalformedPolicyDocument(IamError):
    code = "MalformedPolicyDocument"
    status = 400


class DeleteConflict(IamError):
    code = "DeleteConflict"
    status = 409


class InvalidInput(IamError):
    code = "InvalidInput"
    status = 400


class ValidationError(IamError):
    code = "ValidationError"
    status = 400


class InvalidAction(IamError):
    code = "InvalidAction"
    status = 400


class NotAuthorized(SquallError):
    """A call the caller's policies do not allow: AccessDenied in the shape of the service it was made to."""

    code = "AccessDeniedException"
    status = 403
    fault = "user"
    sqs_query_code = "AccessDenied"

    def code_for(self, service: str) -> str:
        return "AccessDeniedException" if service in ("lambda", "sqs") else "AccessDenied"

    def status_for(self, service: str) -> int:
        return 403


def render_query(service: str, error: SquallError, request_id: str) -> tuple[int, dict[str, str], bytes]:
    """The Query protocol's error document (IAM, STS, and any Query service Squall refuses)."""
    code_for = getattr(error, "code_for", None)
    code = code_for(service) if callable(code_for) else error.code
    status_for = getattr(error, "status_for", None)
    status = status_for(service) if callable(status_for) else error.status
    if code in _QUERY_AUTH_CODES:
        code = _QUERY_AUTH_CODES[code]
    elif not isinstance(error, IamError | NotAuthorized) and status == 400 and code.endswith("Exception"):
        code = code[: -len("Exception")]  # generic platform errors: InvalidParameterValueException -> ..Value
    kind = "Receiver" if status >= 500 else "Sender"
    ns = QUERY_NAMESPACES.get(service)
    xmlns = f' xmlns="{ns}"' if ns else ""
    body = (
        f"<ErrorResponse{xmlns}><Error><Type>{kind}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(error.message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body.encode()
