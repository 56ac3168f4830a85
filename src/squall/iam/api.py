"""IAM's and STS's Query protocol (what botocore's ``iam`` and ``sts`` clients speak) as one raw ASGI app.

Requests are ``POST`` with a form body (or ``GET`` with a query string) carrying ``Action=...&Version=...``;
responses are ``<{Action}Response><{Action}Result>...</{Action}Result><ResponseMetadata/>`` XML in the service's
namespace, policy documents URL-encoded as IAM sends them (botocore decodes them into dicts).

IAM: CreateRole, GetRole, DeleteRole, ListRoles, UpdateAssumeRolePolicy, PutRolePolicy, GetRolePolicy,
DeleteRolePolicy, ListRolePolicies, CreatePolicy, GetPolicy, DeletePolicy, ListPolicies, GetPolicyVersion,
AttachRolePolicy, DetachRolePolicy, ListAttachedRolePolicies — admin key only.  STS: GetCallerIdentity, for any key.
Everything else answers InvalidAction "... is not implemented by Squall".
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

import anyio.to_thread
from starlette.types import Receive, Scope, Send

from squall.core.errors import ServiceError, SquallError
from squall.core.timefmt import iso_s
from squall.iam.errors import (
    IMPLEMENTED,
    QUERY_NAMESPACES,
    DeleteConflict,
    EntityAlreadyExists,
    InvalidAction,
    InvalidInput,
    MalformedPolicyDocument,
    NoSuchEntity,
    NotAuthorized,
    ValidationError,
    render_query,
)
from squall.iam.managed import AWS_MANAGED, aws_managed_arn, aws_managed_document
from squall.iam.policy import PolicyError, parse_policy
from squall.iam.store import IamStore, ManagedPolicy, Role, new_id

__all__ = ["IAM_OPERATIONS", "IamApi", "Identity", "parse_role_arn"]


_NAME = re.compile(r"^[\w+=,.@-]+$")
_PATH = re.compile(r"^(/|/[\x21-\x7e]+/)$")
_POLICY_PATH = re.compile(r"^((/[A-Za-z0-9.,+@=_-]+)*)/$")
_DOC_CHARS = re.compile(r"^[\x09\x0a\x0d\x20-\xff]+$")
_POLICY_ARN = re.compile(r"^arn:aws:iam::(?P<account>\d{12}|aws):policy(?P<path>/(?:[^/]+/)*)(?P<name>[^/]+)$")
_ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::(?P<account>\d{12}):role(?P<path>/(?:.+/)?)(?P<name>[^/]+)$")

IAM_OPERATIONS = (
    "CreateRole", "GetRole", "DeleteRole", "ListRoles", "UpdateAssumeRolePolicy", "PutRolePolicy", "GetRolePolicy",
    "DeleteRolePolicy", "ListRolePolicies", "CreatePolicy", "GetPolicy", "DeletePolicy", "ListPolicies",
    "GetPolicyVersion", "AttachRolePolicy", "DetachRolePolicy", "ListAttachedRolePolicies",
)  # fmt: skip


class Identity:
    """Who is calling, as STS GetCallerIdentity reports it."""

    def __init__(self, arn: str, user_id: str, account: str, admin: bool) -> None:
        self.arn, self.user_id, self.account, self.admin = arn, user_id, account, admin


def _x(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def _members(name: str, items: list[str]) -> str:
    return f"<{name}>" + "".join(f"<member>{i}</member>" for i in items) + f"</{name}>"


def _tags(tags: list[dict[str, str]]) -> str:
    if not tags:
        return ""
    return _members("Tags", [_x("Key", t["Key"]) + _x("Value", t["Value"]) for t in tags])


def _validate_name(value: str, field: str, max_len: int) -> str:
    if not 1 <= len(value) <= max_len or not _NAME.match(value):
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must "
            f"satisfy regular expression pattern: [\\w+=,.@-]+ and have length between 1 and {max_len}"
        )
    return value


def _document(value: str, *, trust: bool = False) -> str:
    if not value or len(value) > 131072 or not _DOC_CHARS.match(value):
        raise MalformedPolicyDocument("The policy document must be 1-131072 characters of printable text.")
    try:
        parse_policy(value, resource_policy=trust)
    except PolicyError as e:
        raise MalformedPolicyDocument(str(e))
    return value


class IamApi:
    """The ASGI app.  ``identity(scope)`` says who signed the request."""

    def __init__(self, store: IamStore, account_id: str, identity: Callable[[Scope], Identity]) -> None:
        self.store = store
        self.account = account_id
        self.identity = identity

    # -- ASGI --------------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = "sts" if getattr(scope.get("squall.auth"), "service", "") == "sts" else "iam"
        request_id = scope.get("squall.request_id") or str(uuid.uuid4())
        try:
            body = scope.get("squall.body")
            if body is None:
                body = b""
            params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            if scope["method"] == "POST" and body:
                params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            action = params.get("Action", "")
            who = self.identity(scope)
            result: str | None
            if service == "sts":
                result = self._sts(action, who)
            else:
                result = await anyio.to_thread.run_sync(self._iam, action, params, who)
            ns = QUERY_NAMESPACES[service]
            payload = (
                f'<{action}Response xmlns="{ns}">'
                + (f"<{action}Result>{result}</{action}Result>" if result is not None else "")
                + f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
            ).encode()
            status, headers = 200, {"Content-Type": "text/xml"}
        except SquallError as e:
            status, headers, payload = render_query(service, e, request_id)
        except Exception:  # a bug of ours, in the service's shape
            import logging

            logging.getLogger(__name__).exception("%s request failed", service)
            status, headers, payload = render_query(service, ServiceError("Internal error"), request_id)
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items() if k.lower() != "x-amzn-requestid"]
        raw += [(b"x-amzn-requestid", request_id.encode()), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})

    # -- STS ---------------------------------------------------------------------------------------------------

    def _sts(self, action: str, who: Identity) -> str:
        if action != "GetCallerIdentity":
            raise InvalidAction(f"STS operation {action or '(none)'} is not implemented by Squall; {IMPLEMENTED}.")
        return _x("UserId", who.user_id) + _x("Account", who.account) + _x("Arn", who.arn)

    # -- IAM ---------------------------------------------------------------------------------------------------

    def _iam(self, action: str, p: dict[str, str], who: Identity) -> str | None:
        handler = getattr(self, f"_op_{action}", None) if action in IAM_OPERATIONS else None
        if handler is None:
            raise InvalidAction(
                f"IAM operation {action or '(none)'} is not implemented by Squall; of IAM it implements roles and "
                f"policies ({', '.join(IAM_OPERATIONS)}); overall {IMPLEMENTED}."
            )
        if not who.admin:
            raise NotAuthorized(
                f"User: {who.arn} is not authorized to perform: iam:{action} because IAM is managed with the admin "
                "key only (squall up prints it); a function's credentials never manage IAM"
            )
        result: str | None = handler(p)
        return result

    @staticmethod
    def _req(p: Mapping[str, str], key: str) -> str:
        value = p.get(key)
        if value is None or value == "":
            raise ValidationError(
                f"1 validation error detected: Value null at '{key[0].lower() + key[1:]}' failed to satisfy "
                "constraint: Member must not be null"
            )
        return value

    @staticmethod
    def _tags_in(p: Mapping[str, str]) -> list[dict[str, str]]:
        tags = []
        i = 1
        while f"Tags.member.{i}.Key" in p:
            tags.append({"Key": p[f"Tags.member.{i}.Key"], "Value": p.get(f"Tags.member.{i}.Value", "")})
            i += 1
        return tags

    @staticmethod
    def _page(items: list[Any], key: Callable[[Any], str], p: Mapping[str, str]) -> tuple[list[Any], str]:
        marker = p.get("Marker")
        try:
            max_items = int(p.get("MaxItems") or 100)
        except ValueError:
            raise ValidationError("MaxItems must be an integer between 1 and 1000")
        if not 1 <= max_items <= 1000:
            raise ValidationError("MaxItems must be an integer between 1 and 1000")
        items = sorted(items, key=key)
        if marker:
            items = [i for i in items if key(i) > marker]
        page = items[:max_items]
        tail = ""
        if len(items) > max_items:
            tail = _x("IsTruncated", True) + _x("Marker", key(page[-1]))
        else:
            tail = _x("IsTruncated", False)
        return page, tail

    # roles

    def role_arn(self, role: Role) -> str:
        return f"arn:aws:iam::{self.account}:role{role.path}{role.name}"

    def _role_xml(self, role: Role, tag: str = "Role") -> str:
        return (
            f"<{tag}>"
            + _x("Path", role.path)
            + _x("RoleName", role.name)
            + _x("RoleId", role.role_id)
            + _x("Arn", self.role_arn(role))
            + _x("CreateDate", iso_s(role.created_at))
            + _x("AssumeRolePolicyDocument", quote(role.assume_role_policy))
            + (_x("Description", role.description) if role.description else "")
            + _x("MaxSessionDuration", role.max_session)
            + _tags(role.tags)
            + "<RoleLastUsed/>"
            + f"</{tag}>"
        )

    def _role(self, name: str) -> Role:
        role = self.store.get_role(name)
        if role is None:
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
        return role

    def _op_CreateRole(self, p: Mapping[str, str]) -> str:
        name = _validate_name(self._req(p, "RoleName"), "roleName", 64)
        path = p.get("Path") or "/"
        if not _PATH.match(path) or len(path) > 512:
            raise ValidationError(f"The specified value for path is invalid: {path!r} (use / or /a/path/).")
        document = _document(self._req(p, "AssumeRolePolicyDocument"), trust=True)
        description = p.get("Description", "")
        if len(description) > 1000:
            raise ValidationError("Description must be at most 1000 characters.")
        try:
            max_session = int(p.get("MaxSessionDuration") or 3600)
        except ValueError:
            raise ValidationError("MaxSessionDuration must be an integer between 3600 and 43200.")
        if not 3600 <= max_session <= 43200:
            raise ValidationError("MaxSessionDuration must be an integer between 3600 and 43200.")
        role = Role(name, path, new_id("AROA"), document, description, max_session, self._tags_in(p), time.time())
        if not self.store.create_role(role):
            raise EntityAlreadyExists(f"Role with name {name} already exists.")
        return self._role_xml(role)

    def _op_GetRole(self, p: Mapping[str, str]) -> str:
        return self._role_xml(self._role(self._req(p, "RoleName")))

    def _op_UpdateAssumeRolePolicy(self, p: Mapping[str, str]) -> None:
        role = self._role(self._req(p, "RoleName"))
        self.store.update_assume_role_policy(role.name, _document(self._req(p, "PolicyDocument"), trust=True))

    def _op_DeleteRole(self, p: Mapping[str, str]) -> None:
        role = self._role(self._req(p, "RoleName"))
        inline, attached = self.store.role_dependents(role.name)
        if inline:
            raise DeleteConflict("Cannot delete entity, must delete policies first.")
        if attached:
            raise DeleteConflict("Cannot delete entity, must detach all policies first.")
        self.store.delete_role(role.name)

    def _op_ListRoles(self, p: Mapping[str, str]) -> str:
        prefix = p.get("PathPrefix") or "/"
        roles = [r for r in self.store.list_roles() if r.path.startswith(prefix)]
        page, tail = self._page(roles, lambda r: r.name, p)
        return _members("Roles", [self._role_xml(r, "x")[3:-4] for r in page]) + tail

    # inline policies

    def _op_PutRolePolicy(self, p: Mapping[str, str]) -> None:
        role = self._role(self._req(p, "RoleName"))
        name = _validate_name(self._req(p, "PolicyName"), "policyName", 128)
        self.store.put_role_policy(role.name, name, _document(self._req(p, "PolicyDocument")))

    def _op_GetRolePolicy(self, p: Mapping[str, str]) -> str:
        role = self._role(self._req(p, "RoleName"))
        name = self._req(p, "PolicyName")
        document = self.store.get_role_policy(role.name, name)
        if document is None:
            raise NoSuchEntity(f"The role policy with name {name} cannot be found.")
        return _x("RoleName", role.name) + _x("PolicyName", name) + _x("PolicyDocument", quote(document))

    def _op_DeleteRolePolicy(self, p: Mapping[str, str]) -> None:
        role = self._role(self._req(p, "RoleName"))
        name = self._req(p, "PolicyName")
        if not self.store.delete_role_policy(role.name, name):
            raise NoSuchEntity(f"The role policy with name {name} cannot be found.")

    def _op_ListRolePolicies(self, p: Mapping[str, str]) -> str:
        role = self._role(self._req(p, "RoleName"))
        names = [n for n, _ in self.store.list_role_policies(role.name)]
        page, tail = self._page(names, lambda n: n, p)
        return _members("PolicyNames", [escape(n) for n in page]) + tail

    # managed policies

    def policy_arn(self, policy: ManagedPolicy) -> str:
        return f"arn:aws:iam::{self.account}:policy{policy.path}{policy.name}"

    def _policy_xml(self, policy: ManagedPolicy, aws: bool = False, tag: str = "Policy") -> str:
        arn = aws_managed_arn(policy.name) if aws else self.policy_arn(policy)
        return (
            f"<{tag}>"
            + _x("PolicyName", policy.name)
            + _x("PolicyId", policy.policy_id)
            + _x("Arn", arn)
            + _x("Path", policy.path)
            + _x("DefaultVersionId", "v1")
            + _x("AttachmentCount", self.store.attachment_count(arn))
            + _x("PermissionsBoundaryUsageCount", 0)
            + _x("IsAttachable", True)
            + (_x("Description", policy.description) if policy.description else "")
            + _x("CreateDate", iso_s(policy.created_at))
            + _x("UpdateDate", iso_s(policy.updated_at))
            + _tags(policy.tags)
            + f"</{tag}>"
        )

    @staticmethod
    def _aws_policy(name: str) -> ManagedPolicy:
        import json

        path, _ = AWS_MANAGED[name]
        doc = json.dumps(aws_managed_document(name))
        return ManagedPolicy(name, path, "ANPA" + name.upper()[:17].ljust(17, "X"), doc, "AWS managed policy")

    def resolve_policy(self, arn: str) -> tuple[ManagedPolicy, bool] | None:
        """(policy, is AWS managed) for a policy ARN, or None."""
        m = _POLICY_ARN.match(arn)
        if m is None:
            raise InvalidInput(f"ARN {arn} is not valid.")
        if m["account"] == "aws":
            name = m["name"]
            if name in AWS_MANAGED and AWS_MANAGED[name][0] == m["path"]:
                return self._aws_policy(name), True
            return None
        if m["account"] != self.account:
            return None
        policy = self.store.get_policy(m["name"])
        if policy is None or policy.path != m["path"] or policy.name != m["name"]:
            return None
        return policy, False

    def _policy(self, arn: str) -> tuple[ManagedPolicy, bool]:
        found = self.resolve_policy(arn)
        if found is None:
            raise NoSuchEntity(f"Policy {arn} does not exist or is not attachable.")
        return found

    def _op_CreatePolicy(self, p: Mapping[str, str]) -> str:
        name = _validate_name(self._req(p, "PolicyName"), "policyName", 128)
        path = p.get("Path") or "/"
        if not _POLICY_PATH.match(path):
            raise ValidationError(f"The specified value for path is invalid: {path!r} (use / or /a/path/).")
        document = _document(self._req(p, "PolicyDocument"))
        now = time.time()
        policy = ManagedPolicy(
            name, path, new_id("ANPA"), document, p.get("Description", ""), self._tags_in(p), now, now
        )
        if not self.store.create_policy(policy):
            raise EntityAlreadyExists(f"A policy called {name} already exists. Duplicate names are not allowed.")
        return self._policy_xml(policy)

    def _op_GetPolicy(self, p: Mapping[str, str]) -> str:
        policy, aws = self._policy(self._req(p, "PolicyArn"))
        return self._policy_xml(policy, aws)

    def _op_GetPolicyVersion(self, p: Mapping[str, str]) -> str:
        arn = self._req(p, "PolicyArn")
        policy, _ = self._policy(arn)
        version = self._req(p, "VersionId")
        if version != "v1":
            raise NoSuchEntity(f"Policy {arn} version {version} does not exist or is not attachable.")
        return (
            "<PolicyVersion>"
            + _x("Document", quote(policy.document))
            + _x("VersionId", "v1")
            + _x("IsDefaultVersion", True)
            + _x("CreateDate", iso_s(policy.created_at))
            + "</PolicyVersion>"
        )

    def _op_DeletePolicy(self, p: Mapping[str, str]) -> None:
        arn = self._req(p, "PolicyArn")
        policy, aws = self._policy(arn)
        if aws:
            raise InvalidInput(f"Policy {arn} is an AWS managed policy; it cannot be deleted.")
        if self.store.attachment_count(arn):
            raise DeleteConflict("Cannot delete a policy attached to entities.")
        self.store.delete_policy(policy.name)

    def _op_ListPolicies(self, p: Mapping[str, str]) -> str:
        scope = p.get("Scope") or "All"
        if scope not in ("All", "AWS", "Local"):
            raise ValidationError(f"Value '{scope}' at 'scope' failed to satisfy constraint: Member must satisfy "
                                  "enum value set: [All, AWS, Local]")  # fmt: skip
        prefix = p.get("PathPrefix") or "/"
        entries: list[tuple[ManagedPolicy, bool]] = []
        if scope in ("All", "AWS"):
            entries += [(self._aws_policy(n), True) for n in sorted(AWS_MANAGED)]
        if scope in ("All", "Local"):
            entries += [(pol, False) for pol in self.store.list_policies()]
        entries = [e for e in entries if e[0].path.startswith(prefix)]
        if p.get("OnlyAttached", "").lower() == "true":
            entries = [
                e for e in entries if self.store.attachment_count(aws_managed_arn(e[0].name) if e[1] else
                                                                  self.policy_arn(e[0]))
            ]  # fmt: skip
        page, tail = self._page(entries, lambda e: e[0].name, p)
        return _members("Policies", [self._policy_xml(pol, aws, "x")[3:-4] for pol, aws in page]) + tail

    def _op_AttachRolePolicy(self, p: Mapping[str, str]) -> None:
        role = self._role(self._req(p, "RoleName"))
        arn = self._req(p, "PolicyArn")
        self._policy(arn)
        self.store.attach(role.name, arn)

    def _op_DetachRolePolicy(self, p: Mapping[str, str]) -> None:
        role = self._role(self._req(p, "RoleName"))
        arn = self._req(p, "PolicyArn")
        if not self.store.detach(role.name, arn):
            raise NoSuchEntity(f"Policy {arn} was not found.")

    def _op_ListAttachedRolePolicies(self, p: Mapping[str, str]) -> str:
        role = self._role(self._req(p, "RoleName"))
        prefix = p.get("PathPrefix") or "/"
        found = [(arn, self.resolve_policy(arn)) for arn in self.store.attached(role.name)]
        rows = [(arn, f[0]) for arn, f in found if f is not None and f[0].path.startswith(prefix)]
        page, tail = self._page(rows, lambda r: r[1].name, p)
        items = [_x("PolicyName", pol.name) + _x("PolicyArn", arn) for arn, pol in page]
        return _members("AttachedPolicies", items) + tail


def parse_role_arn(arn: str) -> tuple[str, str, str] | None:
    """(account, path, name) of a role ARN, or None."""
    m = _ROLE_ARN.match(arn)
    return (m["account"], m["path"], m["name"]) if m else None
