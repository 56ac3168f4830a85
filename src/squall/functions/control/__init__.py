"""The Lambda control plane: functions, versions, aliases, concurrency, event invoke configs, tags and account
settings, validated the way Lambda validates them.  The HTTP routes are in ``squall.functions.api``."""

from squall.functions.control.base import OnChange
from squall.functions.control.errors import AccessDenied, ProvisionedConcurrencyConfigNotFound, RequestEntityTooLarge
from squall.functions.control.names import LATEST, FunctionRef, parse_function_name
from squall.functions.control.service import FunctionService
from squall.functions.control.validation import SUPPORTED_RUNTIMES

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
