"""Function names, ARNs and qualifiers, parsed the way Lambda parses them.

``FunctionName`` may be a bare name (``my-fn``), a name with a qualifier (``my-fn:prod``), a partial ARN
(``123456789012:function:my-fn``) or a full ARN (``arn:aws:lambda:us-east-1:123456789012:function:my-fn:3``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from squall.core.errors import InvalidParameterValue, ResourceNotFound
from squall.functions.control.errors import AccessDenied

__all__ = [
    "LATEST",
    "FunctionRef",
    "is_alias_name",
    "is_version",
    "parse_function_name",
    "parse_resource_arn",
    "validation_error",
]

LATEST = "$LATEST"

_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?"
    r"([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
_NAME_RE = re.compile(
    r"^(?P<arn>arn:(aws[a-zA-Z-]*)?:lambda:)?"
    r"((?P<region>[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}):)?"
    r"((?P<account>\d{12}):)?"
    r"(function:)?"
    r"(?P<name>[a-zA-Z0-9-_]+)"
    r"(:(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?$"
)
_QUALIFIER_RE = re.compile(r"^[a-zA-Z0-9$_-]+$")
_ALIAS_RE = re.compile(r"^(?!^[0-9]+$)[a-zA-Z0-9-_]+$")
_TAGGABLE = (
    r"arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
    r"(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?)"
)
_TAGGABLE_RE = re.compile(
    r"^arn:(aws[a-zA-Z-]*):lambda:(?P<region>[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}):(?P<account>\d{12}):"
    r"function:(?P<name>[a-zA-Z0-9-_]+)(:(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?$"
)
MAX_NAME = 64
MAX_ARN = 140


def validation_error(*problems: str) -> InvalidParameterValue:
    """Lambda's "N validation error(s) detected: ..." message."""
    plural = "s" if len(problems) > 1 else ""
    return InvalidParameterValue(f"{len(problems)} validation error{plural} detected: {'; '.join(problems)}")


def is_version(qualifier: str) -> bool:
    return qualifier.isascii() and qualifier.isdigit()


def is_alias_name(name: str) -> bool:
    return len(name) <= 128 and bool(_ALIAS_RE.match(name))


@dataclass(frozen=True)
class FunctionRef:
    """A parsed FunctionName: the bare name and the qualifier (from the ARN or the Qualifier parameter)."""

    name: str
    qualifier: str | None = None


def parse_function_name(
    value: str, qualifier: str | None = None, *, region: str, account_id: str, create: bool = False
) -> FunctionRef:
    """Split a FunctionName (name, partial ARN or full ARN, optionally with ``:qualifier``) and merge it with
    the separate ``Qualifier`` parameter.  ``create``: CreateFunction's stricter rules (no qualifier)."""
    if not isinstance(value, str) or not value:
        raise validation_error("Value null at 'functionName' failed to satisfy constraint: Member must not be null")
    problems = []
    match = _NAME_RE.match(value)
    if match is not None and len(match["name"]) > MAX_NAME:
        problems.append(
            f"Value '{value}' at 'functionName' failed to satisfy constraint: Member must have length less than or "
            f"equal to {MAX_NAME}"
        )
    elif len(value) > MAX_ARN:
        problems.append(
            f"Value '{value}' at 'functionName' failed to satisfy constraint: Member must have length less than or "
            f"equal to {MAX_ARN}"
        )
    if match is None or (create and match["qualifier"] is not None):
        problems.append(
            f"Value '{value}' at 'functionName' failed to satisfy constraint: Member must satisfy regular "
            f"expression pattern: {_NAME_PATTERN}"
        )
    if qualifier is not None and qualifier != "":
        if len(qualifier) > 128:
            problems.append(
                f"Value '{qualifier}' at 'qualifier' failed to satisfy constraint: Member must have length less "
                "than or equal to 128"
            )
        if not _QUALIFIER_RE.match(qualifier):
            problems.append(
                f"Value '{qualifier}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular "
                "expression pattern: (|[a-zA-Z0-9$_-]+)"
            )
    if problems:
        raise validation_error(*problems)
    assert match is not None
    if match["region"] and match["region"] != region:
        raise ResourceNotFound(f"Functions from '{match['region']}' are not reachable in this region ('{region}')")
    if match["account"] and match["account"] != account_id:
        raise AccessDenied(
            f"User is not authorized to access functions of account {match['account']}: this Squall serves "
            f"account {account_id}"
        )
    arn_qualifier = match["qualifier"]
    if qualifier and arn_qualifier and qualifier != arn_qualifier:
        raise InvalidParameterValue(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return FunctionRef(match["name"], qualifier or arn_qualifier or None)


def parse_resource_arn(value: str, *, region: str, account_id: str) -> FunctionRef:
    """The Resource of TagResource/UntagResource/ListTags: a full function ARN."""
    match = _TAGGABLE_RE.match(value or "")
    if match is None:
        raise validation_error(
            f"Value '{value}' at 'resource' failed to satisfy constraint: Member must satisfy regular expression "
            f"pattern: {_TAGGABLE}"
        )
    if match["region"] != region:
        raise ResourceNotFound(f"Functions from '{match['region']}' are not reachable in this region ('{region}')")
    if match["account"] != account_id:
        raise AccessDenied(
            f"User is not authorized to access functions of account {match['account']}: this Squall serves "
            f"account {account_id}"
        )
    return FunctionRef(match["name"], match["qualifier"])
