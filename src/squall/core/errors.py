"""One exception tree for the platform.

Every error carries a stable ``code`` (the AWS exception name where one exists), an HTTP status, and says whose
fault it is (``fault``: "user" for bad requests, "function" for the function's own code, "platform" for ours) and how
to fix it.  The edge layer turns these into the exact wire shapes of Lambda, S3 and SQS.
"""

from __future__ import annotations

__all__ = [
    "InvalidParameterValue",
    "InvalidRequestContent",
    "NotRoot",
    "RequestEntityTooLarge",
    "RequestTooLarge",
    "ResourceConflict",
    "ResourceNotFound",
    "SandboxUnavailable",
    "ServiceError",
    "SquallError",
    "TooManyRequests",
]


class SquallError(Exception):
    """Base of every error Squall raises on purpose."""

    code: str = "ServiceException"
    status: int = 500
    fault: str = "platform"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServiceError(SquallError):
    code = "ServiceException"
    status = 500


class ResourceNotFound(SquallError):
    code = "ResourceNotFoundException"
    status = 404
    fault = "user"


class InvalidParameterValue(SquallError):
    code = "InvalidParameterValueException"
    status = 400
    fault = "user"


class InvalidRequestContent(SquallError):
    code = "InvalidRequestContentException"
    status = 400
    fault = "user"


class ResourceConflict(SquallError):
    code = "ResourceConflictException"
    status = 409
    fault = "user"


class RequestTooLarge(SquallError):
    code = "RequestTooLargeException"
    status = 413
    fault = "user"


class RequestEntityTooLarge(RequestTooLarge):
    """A Lambda API request body over the operation's limit (70167211 bytes for the control plane)."""

    code = "RequestEntityTooLargeException"
    status = 413


class TooManyRequests(SquallError):
    code = "TooManyRequestsException"
    status = 429
    fault = "user"

    def __init__(self, message: str, reason: str = "ReservedFunctionConcurrentInvocationLimitExceeded") -> None:
        super().__init__(message)
        self.reason = reason


class SandboxUnavailable(SquallError):
    """The node could not start a sandboxed instance (kernel refused, zygote died, ...)."""

    code = "ServiceException"
    status = 500


class NotRoot(SquallError):
    code = "ServiceException"
    status = 500
