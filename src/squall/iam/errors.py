"""IAM's and STS's errors and the refusal of a denied call in each service's own shape.  The Query protocol's XML
error document is rendered by ``squall.aws.errors.render_query`` (re-exported here)."""

from __future__ import annotations

from squall.aws.errors import QUERY_NAMESPACES, render_query
from squall.core.errors import SquallError

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


class IamError(SquallError):
    #: modeled IAM codes: the Query error document carries them as they are
    query_code_as_is = True
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
    query_code_as_is = True

    def code_for(self, service: str) -> str:
        return "AccessDeniedException" if service in ("lambda", "sqs") else "AccessDenied"

    def status_for(self, service: str) -> int:
        return 403
