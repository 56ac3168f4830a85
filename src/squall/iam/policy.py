"""IAM policy documents: parsed, validated, and evaluated the way AWS evaluates them. Pure: no I/O, no state.

Parsing (``parse_policy``) checks what IAM's ``MalformedPolicyDocument`` checks that matters here: a JSON object
with ``Statement`` (one object or a list), each with ``Effect`` (Allow | Deny), exactly one of ``Action`` /
``NotAction``, and for identity policies exactly one of ``Resource`` / ``NotResource`` and no ``Principal``; for
resource-based policies (``resource_policy=True``) a ``Principal`` (or ``NotPrincipal``) is required.

Evaluation (``evaluate``) of one request — an action (``s3:GetObject``), a resource ARN and a request context —
against a set of policies:

* a statement applies when its action, resource (and, for resource policies, principal) match and every one of its
  conditions holds;
* any applicable ``Deny`` wins (``"deny"``); else any applicable ``Allow`` allows (``"allow"``); else the default
  is an implicit deny (``"implicit"``);
* actions match case-insensitively, resources case-sensitively, both with the wildcards ``*`` (any run of
  characters, ``:`` and ``/`` included) and ``?`` (one character), as IAM does.

Conditions: the operators ``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``,
``StringNotEqualsIgnoreCase``, ``StringLike``, ``StringNotLike``, ``ArnEquals``, ``ArnLike``, ``ArnNotEquals``,
``ArnNotLike``, ``Bool`` and ``Null``, each also with the ``...IfExists`` suffix and the ``ForAnyValue:`` /
``ForAllValues:`` set qualifiers for multi-valued keys.  Keys are matched case-insensitively.  A key absent from the
request context makes a positive operator false and a negated one (``...Not...``) true, as in IAM; ``IfExists``
makes any operator true for an absent key.  Any other operator (numeric, date, IP address, binary ...) is
*unsupported*: in an ``Allow`` statement it never matches (the statement grants nothing), in a ``Deny`` statement
it always matches (the deny applies) — an unsupported condition can only ever take permissions away.

Policy variables (``${aws:username}`` ...) are not substituted: in an Allow they match only their literal text
(so, in practice, nothing); in a Deny a pattern containing one matches everything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from squall.core import jsonlimits

__all__ = [
    "Condition",
    "Decision",
    "Policy",
    "PolicyError",
    "Statement",
    "action_matches",
    "evaluate",
    "parse_policy",
    "parse_statement",
    "resource_matches",
]

Decision = Literal["allow", "deny", "implicit"]
Effect = Literal["Allow", "Deny"]
#: the request context: condition key (lower case) -> value(s)
Context = Mapping[str, "str | Sequence[str]"]

_VERSIONS = ("2012-10-17", "2008-10-17")
_ACTION_RE = re.compile(r"^(\*|[A-Za-z0-9_\-]+:[A-Za-z0-9_*?\-]*)$")
_STATEMENT_KEYS = frozenset(
    {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "NotPrincipal", "Condition"}
)
_SUPPORTED_OPERATORS = frozenset(
    {
        "stringequals",
        "stringnotequals",
        "stringequalsignorecase",
        "stringnotequalsignorecase",
        "stringlike",
        "stringnotlike",
        "arnequals",
        "arnlike",
        "arnnotequals",
        "arnnotlike",
        "bool",
        "null",
    }
)


class PolicyError(ValueError):
    """A policy document IAM would refuse (``MalformedPolicyDocument``); the message says what to fix."""


@dataclass(frozen=True)
class Condition:
    """One ``{operator: {key: values}}`` entry, split per key."""

    operator: str  # as written, e.g. "ForAnyValue:StringLike"
    key: str  # lower case
    values: tuple[str, ...]


@dataclass(frozen=True)
class Statement:
    effect: Effect
    actions: tuple[str, ...]
    not_action: bool = False
    resources: tuple[str, ...] = ()
    not_resource: bool = False
    #: (kind, value) pairs: ("AWS", arn-or-account), ("Service", "s3.amazonaws.com"), ("*", "*"), ...
    principals: tuple[tuple[str, str], ...] = ()
    not_principal: bool = False
    conditions: tuple[Condition, ...] = ()
    sid: str = ""


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...] = field(default_factory=tuple)
    #: where the policy came from (e.g. "inline policy 'x' of role r"), for messages
    name: str = ""


# --------------------------------------------------------------------------------------------------- parsing


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PolicyError(f"{where} must be a string or a non-empty list of strings, got {json.dumps(value)[:80]}")


def _condition_values(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for v in items:
        if isinstance(v, bool):
            out.append("true" if v else "false")
        elif isinstance(v, str | int | float):
            out.append(str(v))
        else:
            raise PolicyError(f"{where}: condition values must be strings, numbers or booleans")
    if not out:
        raise PolicyError(f"{where}: a condition needs at least one value")
    return tuple(out)


def _principals(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value == "*":
        return (("*", "*"),)
    if not isinstance(value, Mapping) or not value:
        raise PolicyError(f'{where} must be "*" or an object such as {{"AWS": "arn:aws:iam::123456789012:root"}}')
    out: list[tuple[str, str]] = []
    for kind, ids in value.items():
        if kind not in ("AWS", "Service", "Federated", "CanonicalUser"):
            raise PolicyError(f"{where}: unknown principal type {kind!r} (use AWS, Service, Federated)")
        out.extend((kind, v) for v in _strings(ids, f"{where}.{kind}"))
    return tuple(out)


def parse_statement(raw: Any, *, resource_policy: bool = False, where: str = "Statement") -> Statement:
    """One statement object, validated."""
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be an object")
    unknown = sorted(set(raw) - _STATEMENT_KEYS)
    if unknown:
        raise PolicyError(
            f"{where} has unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_STATEMENT_KEYS))}"
        )
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f'{where}.Effect must be "Allow" or "Deny", got {json.dumps(effect)}')
    if ("Action" in raw) == ("NotAction" in raw):
        raise PolicyError(f"{where} must have exactly one of Action and NotAction")
    not_action = "NotAction" in raw
    actions = _strings(
        raw["NotAction" if not_action else "Action"], f"{where}.{'NotAction' if not_action else 'Action'}"
    )
    for a in actions:
        if not _ACTION_RE.match(a):
            raise PolicyError(f"{where}: action {a!r} must be 'service:Action' (wildcards * and ? allowed) or '*'")
    has_resource = "Resource" in raw or "NotResource" in raw
    if "Resource" in raw and "NotResource" in raw:
        raise PolicyError(f"{where} must not have both Resource and NotResource")
    if not has_resource and not resource_policy:
        raise PolicyError(f'{where} must have a Resource or NotResource (e.g. "Resource": "arn:aws:s3:::bucket/*")')
    not_resource = "NotResource" in raw
    resources = (
        _strings(raw["NotResource" if not_resource else "Resource"], f"{where}.Resource") if has_resource else ("*",)
    )
    has_principal = "Principal" in raw or "NotPrincipal" in raw
    if has_principal and not resource_policy:
        raise PolicyError("Policy document should not specify a principal.")
    if resource_policy and not has_principal:
        raise PolicyError(f"{where} of a resource-based policy needs a Principal")
    not_principal = "NotPrincipal" in raw
    principals = (
        _principals(raw["NotPrincipal" if not_principal else "Principal"], f"{where}.Principal")
        if has_principal
        else ()
    )
    conditions: list[Condition] = []
    cond = raw.get("Condition")
    if cond is not None:
        if not isinstance(cond, Mapping):
            raise PolicyError(f"{where}.Condition must be an object of {{operator: {{key: value}}}}")
        for op, block in cond.items():
            if not isinstance(block, Mapping) or not block:
                raise PolicyError(f"{where}.Condition.{op} must be an object of {{key: value}}")
            for key, values in block.items():
                conditions.append(
                    Condition(str(op), str(key).lower(), _condition_values(values, f"{where}.Condition.{op}"))
                )
    sid = raw.get("Sid", "")
    if not isinstance(sid, str):
        raise PolicyError(f"{where}.Sid must be a string")
    return Statement(
        effect=effect,
        actions=actions,
        not_action=not_action,
        resources=resources,
        not_resource=not_resource,
        principals=principals,
        not_principal=not_principal,
        conditions=tuple(conditions),
        sid=sid,
    )


def parse_policy(document: str | Mapping[str, Any], *, resource_policy: bool = False, name: str = "") -> Policy:
    """A policy document (JSON text or an already-parsed object), validated; raises PolicyError."""
    if isinstance(document, str):
        try:
            data = jsonlimits.loads(document)
        except (ValueError, RecursionError):
            raise PolicyError("Syntax errors in policy: the document is not valid JSON.")
    else:
        data = document
    if not isinstance(data, Mapping):
        raise PolicyError("The policy document must be a JSON object with a Statement.")
    unknown = sorted(set(data) - {"Version", "Id", "Statement"})
    if unknown:
        raise PolicyError(f"The policy has unknown field(s) {', '.join(unknown)}; allowed: Version, Id, Statement")
    version = data.get("Version")
    if version is not None and version not in _VERSIONS:
        raise PolicyError(f"The policy must contain a valid version string: {' or '.join(_VERSIONS)}")
    raw = data.get("Statement")
    if raw is None:
        raise PolicyError("The policy has no Statement.")
    items = raw if isinstance(raw, list) else [raw]
    statements = tuple(
        parse_statement(s, resource_policy=resource_policy, where=f"Statement[{i}]") for i, s in enumerate(items)
    )
    return Policy(statements, name)


# --------------------------------------------------------------------------------------------------- matching


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool, variables_match_all: bool) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "$" and pattern.startswith("${", i) and "}" in pattern[i:]:
            end = pattern.index("}", i)
            parts.append(".*" if variables_match_all else re.escape(pattern[i : end + 1]))
            i = end + 1
            continue
        parts.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def action_matches(pattern: str, action: str) -> bool:
    """IAM action matching: case-insensitive, ``*`` and ``?`` wildcards."""
    return _glob(pattern, True, False).fullmatch(action) is not None


def resource_matches(pattern: str, resource: str, *, deny: bool = False) -> bool:
    """IAM resource matching: case-sensitive, ``*`` and ``?`` wildcards (crossing ``:`` and ``/``)."""
    return _glob(pattern, False, deny).fullmatch(resource) is not None


def _context_values(context: Context, key: str) -> tuple[str, ...] | None:
    value = context.get(key)
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def _compare(base: str, pattern: str, value: str) -> bool:
    if base in ("stringequals", "arnequals"):
        return value == pattern
    if base == "stringequalsignorecase":
        return value.lower() == pattern.lower()
    if base in ("stringlike", "arnlike"):
        return _glob(pattern, False, False).fullmatch(value) is not None
    if base == "bool":
        return value.lower() == pattern.lower()
    return False  # pragma: no cover - callers pass supported bases only


def _condition_holds(cond: Condition, context: Context, effect: Effect) -> bool:
    op = cond.operator
    qualifier = ""
    if ":" in op:
        qualifier, op = op.split(":", 1)
        qualifier = qualifier.lower()
        if qualifier not in ("foranyvalue", "forallvalues"):
            return effect == "Deny"
    base = op.lower()
    if_exists = base.endswith("ifexists")
    if if_exists:
        base = base[: -len("ifexists")]
    if base not in _SUPPORTED_OPERATORS:
        return effect == "Deny"  # unsupported: never grants, never lifts a deny
    values = _context_values(context, cond.key)
    if base == "null":
        want_absent = cond.values[0].lower() == "true"
        return (values is None) == want_absent
    if values is None:
        if if_exists:
            return True
        return qualifier == "forallvalues" or "not" in base
    negated = "not" in base
    positive = base.replace("not", "") if negated else base

    def one(v: str) -> bool:
        return any(_compare(positive, p, v) for p in cond.values)

    if qualifier:
        each = [(not one(v)) if negated else one(v) for v in values]
        return all(each) if qualifier == "forallvalues" else any(each)
    matched = any(one(v) for v in values)
    return not matched if negated else matched


def _principal_matches(stmt: Statement, principals: Iterable[tuple[str, str]]) -> bool:
    caller = set(principals)
    hit = any(
        kind == "*" or (kind, value) in caller or (kind == "AWS" and value == "*") for kind, value in stmt.principals
    )
    return not hit if stmt.not_principal else hit


def _statement_applies(
    stmt: Statement, action: str, resource: str, context: Context, principals: Iterable[tuple[str, str]] | None
) -> bool:
    deny = stmt.effect == "Deny"
    hit = any(action_matches(p, action) for p in stmt.actions)
    if hit == stmt.not_action:
        return False
    hit = any(resource_matches(p, resource, deny=deny) for p in stmt.resources)
    if hit == stmt.not_resource:
        return False
    if principals is not None and stmt.principals and not _principal_matches(stmt, principals):
        return False
    return all(_condition_holds(c, context, stmt.effect) for c in stmt.conditions)


def evaluate(
    policies: Iterable[Policy],
    action: str,
    resource: str,
    context: Context | None = None,
    *,
    principals: Iterable[tuple[str, str]] | None = None,
) -> Decision:
    """The decision of ``policies`` for one action on one resource.  ``context`` keys are lower case.  For
    resource-based policies pass the caller as ``principals`` ((kind, value) pairs, e.g. ("AWS", role ARN)); a
    statement then applies only when one of its principals names one of them."""
    ctx = context or {}
    who = tuple(principals) if principals is not None else None
    allowed = False
    for policy in policies:
        for stmt in policy.statements:
            if stmt.effect == "Allow" and allowed:
                continue
            if _statement_applies(stmt, action, resource, ctx, who):
                if stmt.effect == "Deny":
                    return "deny"
                allowed = True
    return "allow" if allowed else "implicit"
