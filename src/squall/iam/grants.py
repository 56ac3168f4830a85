"""The short form of a function's permissions in ``squall.yaml`` (``policies:``), expanded to IAM statements. Pure.

Each item of ``policies:`` is either a full IAM statement (``{Effect: Allow, Action: [...], Resource: [...]}``,
``Condition`` allowed) or a grant:

==============================================  ============================================================
grant                                           IAM statement(s)
==============================================  ============================================================
``{s3: photos/originals/*, actions: [read]}``   ``s3:GetObject`` on ``arn:aws:s3:::photos/originals/*``
``{s3: photos, actions: [read, write]}``        a bare bucket means every key: ``arn:aws:s3:::photos/*``
``{s3: photos/in/*, actions: [list]}``          ``s3:ListBucket`` on ``arn:aws:s3:::photos`` with
                                                ``StringLike s3:prefix in/*`` (no condition for ``*``)
``{sqs: jobs, actions: [send]}``                ``sqs:SendMessage`` (+ GetQueueUrl, GetQueueAttributes) on
                                                ``arn:aws:sqs:*:*:jobs``
``{invoke: resize}``                            ``lambda:InvokeFunction`` on ``arn:aws:lambda:*:*:function:resize``
                                                and every version/alias of it (``...:resize:*``)
==============================================  ============================================================

Action words (``GRANT_ACTIONS``): s3 ``read`` / ``write`` / ``delete`` / ``list`` / ``all``; sqs ``send`` /
``receive`` / ``purge`` / ``all``.  Names may contain the IAM wildcards ``*`` and ``?``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from squall.iam.policy import PolicyError, parse_statement

__all__ = ["GRANT_ACTIONS", "GrantError", "expand_policies", "expand_policy_item"]

GRANT_ACTIONS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "s3": {
        "read": ("s3:GetObject",),
        "write": ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"),
        "delete": ("s3:DeleteObject",),
        "list": ("s3:ListBucket",),
        "all": ("s3:*",),
    },
    "sqs": {
        "send": ("sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"),
        "receive": (
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueUrl",
            "sqs:GetQueueAttributes",
        ),
        "purge": ("sqs:PurgeQueue",),
        "all": ("sqs:*",),
    },
}


class GrantError(ValueError):
    """A ``policies:`` item that cannot be used; ``key`` is the sub-key at fault ("" for the item)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _words(kind: str, raw: Any) -> list[str]:
    allowed = GRANT_ACTIONS[kind]
    if raw is None:
        raise GrantError("actions", f"missing; list what the function may do, from: {', '.join(allowed)}")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(w, str) for w in items):
        raise GrantError("actions", f"must be a list of words from: {', '.join(allowed)}")
    for w in items:
        if w not in allowed:
            raise GrantError("actions", f"unknown {kind} action {w!r}; allowed: {', '.join(allowed)}")
    return items


def _name(kind: str, raw: Any, example: str) -> str:
    if not isinstance(raw, str) or not raw or any(c.isspace() for c in raw):
        raise GrantError(kind, f"must be a name without spaces (e.g. {example})")
    return raw


def _s3(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    target = _name("s3", item["s3"], "photos/originals/*")
    bucket, _, pattern = target.partition("/")
    if not bucket:
        raise GrantError("s3", "must start with a bucket name, e.g. photos or photos/originals/*")
    pattern = pattern or "*"
    object_actions: list[str] = []
    statements: list[dict[str, Any]] = []
    for word in _words("s3", item.get("actions")):
        if word == "list":
            stmt: dict[str, Any] = {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": f"arn:aws:s3:::{bucket}",
            }
            if pattern != "*":
                stmt["Condition"] = {"StringLike": {"s3:prefix": pattern}}
            statements.append(stmt)
        elif word == "all":
            object_actions.append("s3:*")
            statements.append({"Effect": "Allow", "Action": ["s3:*"], "Resource": f"arn:aws:s3:::{bucket}"})
        else:
            object_actions.extend(a for a in GRANT_ACTIONS["s3"][word] if a not in object_actions)
    if object_actions:
        statements.insert(
            0, {"Effect": "Allow", "Action": object_actions, "Resource": f"arn:aws:s3:::{bucket}/{pattern}"}
        )
    return statements


def _sqs(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    queue = _name("sqs", item["sqs"], "jobs")
    actions: list[str] = []
    for word in _words("sqs", item.get("actions")):
        actions.extend(a for a in GRANT_ACTIONS["sqs"][word] if a not in actions)
    return [{"Effect": "Allow", "Action": actions, "Resource": f"arn:aws:sqs:*:*:{queue}"}]


def _invoke(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    fn = _name("invoke", item["invoke"], "resize")
    if ":" in fn:
        raise GrantError("invoke", "must be a function name (it covers every version and alias of it)")
    arn = f"arn:aws:lambda:*:*:function:{fn}"
    return [{"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [arn, f"{arn}:*"]}]


_GRANTS = {"s3": (_s3, ("s3", "actions")), "sqs": (_sqs, ("sqs", "actions")), "invoke": (_invoke, ("invoke",))}


def expand_policy_item(item: Any) -> list[dict[str, Any]]:
    """One ``policies:`` item -> IAM statements (plain dicts, ready for a policy document)."""
    if not isinstance(item, Mapping):
        raise GrantError(
            "",
            "must be an IAM statement ({Effect, Action, Resource}) or a grant such as "
            "{s3: photos/originals/*, actions: [read]}, {sqs: jobs, actions: [send]}, {invoke: fn}",
        )
    if "Effect" in item:
        try:
            parse_statement(item)
        except PolicyError as e:
            raise GrantError("", str(e))
        return [dict(item)]
    kinds = [k for k in _GRANTS if k in item]
    if len(kinds) != 1:
        raise GrantError(
            "",
            "a grant names exactly one of s3, sqs, invoke (e.g. {s3: photos/*, actions: [read]}); a full IAM "
            "statement has Effect, Action and Resource",
        )
    expand, allowed = _GRANTS[kinds[0]]
    unknown = sorted(str(k) for k in item if k not in allowed)
    if unknown:
        raise GrantError(unknown[0], f"unknown key in a {kinds[0]} grant; allowed keys: {', '.join(allowed)}")
    return expand(item)


def expand_policies(items: Any) -> list[dict[str, Any]]:
    """A whole ``policies:`` list -> IAM statements.  GrantError.key is ``[i]`` or ``[i].<key>``."""
    if not isinstance(items, list):
        raise GrantError("", "must be a list of IAM statements or grants such as {s3: photos/*, actions: [read]}")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            out.extend(expand_policy_item(item))
        except GrantError as e:
            raise GrantError(f"[{i}]" + (f".{e.key}" if e.key else ""), e.message)
    return out
