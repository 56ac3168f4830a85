"""The execution role ``squall deploy`` (and the demo, and the benches) make for a function from its ``policies:``:
``squall-<function>-role``, trusted by ``lambda.amazonaws.com``, with one inline policy ``squall-policies`` holding
the statements (none: the role exists and allows nothing)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from squall.iam.store import IamStore, Role, new_id

__all__ = ["INLINE_POLICY", "LAMBDA_TRUST", "ensure_role", "ensure_role_in_store", "role_name_for"]

INLINE_POLICY = "squall-policies"
LAMBDA_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def role_name_for(function: str) -> str:
    """``squall-<function>-role``, shortened to IAM's 64 characters when needed."""
    name = f"squall-{function}-role"
    return name if len(name) <= 64 else f"squall-{function[:52]}-role"


def _document(statements: Sequence[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def ensure_role(iam: Any, function: str, statements: Sequence[dict[str, Any]]) -> tuple[str, bool]:
    """With a boto3 ``iam`` client: create or update the function's role; returns (role ARN, changed)."""
    name = role_name_for(function)
    changed = False
    try:
        arn: str = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=LAMBDA_TRUST, Description=f"squall deploy: {function}"
        )["Role"]["Arn"]
        changed = True
    try:
        current = iam.get_role_policy(RoleName=name, PolicyName=INLINE_POLICY)["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        current = None
    if statements:
        wanted = json.loads(_document(statements))
        if current != wanted:
            iam.put_role_policy(RoleName=name, PolicyName=INLINE_POLICY, PolicyDocument=_document(statements))
            changed = True
    elif current is not None:
        iam.delete_role_policy(RoleName=name, PolicyName=INLINE_POLICY)
        changed = True
    return arn, changed


def ensure_role_in_store(store: IamStore, account: str, function: str, statements: Sequence[dict[str, Any]]) -> str:
    """The same, straight into the IAM store (in-process callers such as ``squall up --demo``)."""
    name = role_name_for(function)
    store.create_role(Role(name, "/", new_id("AROA"), LAMBDA_TRUST, f"squall: {function}", created_at=time.time()))
    if statements:
        store.put_role_policy(name, INLINE_POLICY, _document(statements))
    else:
        store.delete_role_policy(name, INLINE_POLICY)
    return f"arn:aws:iam::{account}:role/{name}"
