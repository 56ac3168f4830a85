"""Lambda error codes the control plane raises that the platform-wide tree (``squall.core.errors``) does not name.

Each is a subclass of the generic error it refines, so callers that catch ``ResourceNotFound`` or
``InvalidParameterValue`` still catch them; the edge renders ``.code`` on the wire.
"""

from __future__ import annotations

from squall.core.errors import InvalidParameterValue, RequestEntityTooLarge, ResourceNotFound, SquallError

__all__ = [
    "AccessDenied",
    "ProvisionedConcurrencyConfigNotFound",
    "RequestEntityTooLarge",
    "UnsupportedFeature",
]


class ProvisionedConcurrencyConfigNotFound(ResourceNotFound):
    code = "ProvisionedConcurrencyConfigNotFoundException"
    status = 404


class AccessDenied(SquallError):
    """A function ARN names another account."""

    code = "AccessDeniedException"
    status = 403
    fault = "user"


class UnsupportedFeature(InvalidParameterValue):
    """A valid Lambda request that asks for something Squall does not do (container images, layers, VPCs...).
    On the wire it is an InvalidParameterValueException whose message says what to do instead."""
