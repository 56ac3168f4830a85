"""The Lambda control plane: functions, versions, aliases, concurrency, event invoke configs, tags and account
settings, validated the way Lambda validates them.  The HTTP routes are in ``squall.edge.lambda_api``."""

from squall.control.base import OnChange
from squall.control.errors import AccessDenied, ProvisionedConcurrencyConfigNotFound, RequestEntityTooLarge
from squall.control.names import LATEST, FunctionRef, parse_function_name
from squall.control.service import FunctionService
from squall.control.validation import SUPPORTED_RUNTIMES

__all__ = [
    "LATEST",
    "SUPPORTED_RUNTIMES",
    "AccessDenied",
    "FunctionRef",
    "FunctionService",
    "OnChange",
    "ProvisionedConcurrencyConfigNotFound",
    "RequestEntityTooLarge",
    "parse_function_name",
]
