"""Deciding a function's own calls: its execution role's policies (inline and attached), and for Invoke also the
target's resource-based policy.

``decide`` is pure (policies in, verdict out); ``Authorizer`` finds the caller's role and the policies in the stores
and caches parsed policies until the IAM store changes (``IamStore.generation``).

A function whose ``Role`` names no role of this account (or a role whose trust policy does not let
``lambda.amazonaws.com`` assume it) runs with no permissions at all: every call it makes is denied, the message
says why, and the server logs a warning when the function is created or updated.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from squall.core import arn as arns
from squall.iam.actions import Check
from squall.iam.api import IamApi, parse_role_arn
from squall.iam.errors import NotAuthorized
from squall.iam.policy import Policy, PolicyError, evaluate, parse_policy
from squall.iam.store import IamStore, Role

__all__ = ["Authorizer", "Caller", "decide"]

log = logging.getLogger("squall.iam")

LAMBDA_SERVICE = "lambda.amazonaws.com"


@dataclass(frozen=True)
class Caller:
    """A function acting with its execution role."""

    function: str
    function_arn: str
    account: str
    role_arn: str
    #: ``arn:aws:sts::<account>:assumed-role/<role>/<function>``
    session_arn: str
    role_id: str = ""
    #: the role's policies (empty when it has none or cannot be used)
    policies: tuple[Policy, ...] = ()
    #: why the role grants nothing ("" when it is usable)
    problem: str = ""
    region: str = "us-east-1"
    context: dict[str, str] = field(default_factory=dict)

    @property
    def specific_principals(self) -> tuple[tuple[str, str], ...]:
        """Principals a resource policy may name to grant this caller on its own."""
        return (("AWS", self.role_arn), ("AWS", self.session_arn), ("AWS", self.function_arn))

    @property
    def all_principals(self) -> tuple[tuple[str, str], ...]:
        """...plus the account (which, in a resource policy, only delegates to identity policies)."""
        return (*self.specific_principals, ("AWS", self.account), ("AWS", f"arn:aws:iam::{self.account}:root"))


def _message(caller: Caller, check: Check, reason: str) -> str:
    text = (
        f"User: {caller.session_arn} is not authorized to perform: {check.action} on resource: {check.resource} "
        f"{reason}"
    )
    return f"{text} ({caller.problem})" if caller.problem else text


def decide(caller: Caller, checks: Sequence[Check], resource_policies: Iterable[Policy] = ()) -> str | None:
    """None when every check is allowed, else the AccessDenied message of the first denied one.  A check is
    allowed when no policy explicitly denies it and the caller's identity policies or (same account) a
    resource-based policy naming the caller's role, session or function allows it."""
    resource = tuple(resource_policies)
    for check in checks:
        context = {**caller.context, **check.context}
        identity = evaluate(caller.policies, check.action, check.resource, context)
        if identity == "deny":
            return _message(caller, check, "with an explicit deny in an identity-based policy")
        if resource:
            if evaluate(resource, check.action, check.resource, context, principals=caller.all_principals) == "deny":
                return _message(caller, check, "with an explicit deny in a resource-based policy")
            if identity == "allow":
                continue
            by_resource = evaluate(
                resource, check.action, check.resource, context, principals=caller.specific_principals
            )
            if by_resource == "allow":
                continue
            return _message(
                caller, check, f"because no identity-based or resource-based policy allows the {check.action} action"
            )
        if identity != "allow":
            return _message(caller, check, f"because no identity-based policy allows the {check.action} action")
    return None


class Authorizer:
    """``function_config(name)`` returns the function's ``$LATEST`` configuration (Lambda's shape) or None."""

    def __init__(
        self,
        store: IamStore,
        api: IamApi,
        function_config: Callable[[str], dict[str, Any] | None],
        *,
        region: str,
        account_id: str,
    ) -> None:
        self.store = store
        self.api = api
        self.function_config = function_config
        self.region = region
        self.account = account_id
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, Role | None, tuple[Policy, ...], str]] = {}

    # -- the caller --

    def caller(self, function: str) -> Caller:
        config = self.function_config(function)
        function_arn = arns.function_arn(self.region, self.account, function)
        role_arn = str((config or {}).get("Role") or "")
        parsed = parse_role_arn(role_arn)
        role_name = parsed[2] if parsed else "unknown"
        session = f"arn:aws:sts::{self.account}:assumed-role/{role_name}/{function}"
        if config is None:
            return Caller(function, function_arn, self.account, role_arn, session, problem=f"function {function} no "
                          "longer exists", region=self.region)  # fmt: skip
        role, policies, problem = self._role(role_arn)
        context = {
            "aws:principalarn": role_arn,
            "aws:principalaccount": self.account,
            "aws:requestedregion": self.region,
            "aws:userid": f"{role.role_id if role else 'AROAUNKNOWN'}:{function}",
            "lambda:functionarn": function_arn,
        }
        return Caller(
            function, function_arn, self.account, role_arn, session, role.role_id if role else "", policies, problem,
            self.region, context,
        )  # fmt: skip

    def _role(self, role_arn: str) -> tuple[Role | None, tuple[Policy, ...], str]:
        generation = self.store.generation
        with self._lock:
            hit = self._cache.get(role_arn)
            if hit is not None and hit[0] == generation:
                return hit[1], hit[2], hit[3]
        role, policies, problem = self._load(role_arn)
        with self._lock:
            self._cache[role_arn] = (generation, role, policies, problem)
        return role, policies, problem

    def _load(self, role_arn: str) -> tuple[Role | None, tuple[Policy, ...], str]:
        hint = "create it with the iam API (aws iam create-role) or declare policies: in squall.yaml"
        parsed = parse_role_arn(role_arn)
        if parsed is None:
            return None, (), f"the function's role {role_arn!r} is not a role ARN; {hint}"
        account, path, name = parsed
        role = self.store.get_role(name) if account == self.account else None
        if role is None or role.path != path or role.name != name:
            return None, (), f"the function's role {role_arn} does not exist; {hint}"
        try:
            trust = parse_policy(role.assume_role_policy, resource_policy=True)
        except PolicyError:
            trust = Policy()
        if evaluate([trust], "sts:AssumeRole", role_arn, principals=[("Service", LAMBDA_SERVICE)]) != "allow":
            return (
                role,
                (),
                (
                    f"the function's role {role_arn} cannot be assumed by Lambda: its trust policy does not allow "
                    f"{LAMBDA_SERVICE} to sts:AssumeRole"
                ),
            )
        policies: list[Policy] = []
        for policy_name, document in self.store.list_role_policies(role.name):
            try:
                policies.append(parse_policy(document, name=f"inline policy {policy_name}"))
            except PolicyError:
                log.warning("role %s: inline policy %s no longer parses; ignored", role.name, policy_name)
        for arn in self.store.attached(role.name):
            found = self.api.resolve_policy(arn)
            if found is None:
                continue
            try:
                policies.append(parse_policy(found[0].document, name=arn))
            except PolicyError:
                log.warning("role %s: attached policy %s no longer parses; ignored", role.name, arn)
        return role, tuple(policies), ""

    # -- decisions --

    def check(self, function: str, checks: Sequence[Check]) -> NotAuthorized | None:
        message = decide(self.caller(function), checks)
        return NotAuthorized(message) if message else None

    def check_invoke(self, function: str, check: Check, target: str, qualifier: str | None) -> NotAuthorized | None:
        key = "" if qualifier in (None, "$LATEST") else str(qualifier)
        stored = self.store.get_function_policy(target, key)
        resource: list[Policy] = []
        if stored is not None:
            try:
                resource.append(parse_policy({"Statement": stored.statements}, resource_policy=True))
            except PolicyError:
                log.warning("function %s: resource policy no longer parses; ignored", target)
        if key == "" and check.resource.endswith(":$LATEST"):
            check = Check(check.action, check.resource.removesuffix(":$LATEST"), check.context)
        message = decide(self.caller(function), [check], resource)
        return NotAuthorized(message) if message else None

    # -- housekeeping --

    def function_changed(self, name: str, exists: bool, qualifier_exists: Callable[[str], bool]) -> None:
        """After a control-plane change: forget the policies of a deleted function or qualifier, and warn about
        a role that grants nothing."""
        qualifiers = self.store.qualifiers_with_policies(name)
        if not exists:
            if qualifiers:
                self.store.delete_function_policies(name)
            return
        stale = [q for q in qualifiers if q and not qualifier_exists(q)]
        if stale:
            self.store.delete_function_policies(name, [q for q in qualifiers if q not in stale])
        caller = self.caller(name)
        if caller.problem:
            log.warning("function %s has no permissions for its own AWS calls: %s", name, caller.problem)


def statements_json(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Id": "default", "Statement": statements})
