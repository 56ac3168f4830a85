"""Lambda's resource-based policies: AddPermission, GetPolicy, RemovePermission (rest-json, as botocore calls them).

``POST /2015-03-31/functions/{FunctionName}/policy`` (201, ``{"Statement": "<json>"}``), ``GET .../policy``
(``{"Policy": "<json>", "RevisionId": ...}``) and ``DELETE .../policy/{StatementId}`` (204), each with an optional
``Qualifier`` (a version or alias: its own policy; none or ``$LATEST``: the function's).  Statements are stored
the way Lambda writes them::

    {"Sid": "s3", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
     "Action": "lambda:InvokeFunction", "Resource": "arn:aws:lambda:...:function:f",
     "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::photos"}}}

The policy's RevisionId is its own (it changes with every AddPermission/RemovePermission; ``RevisionId`` in a
request must match it, else PreconditionFailedException).  A function's policies are forgotten with the function
(or the version/alias they belong to).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.routing import Route

from squall.aws.json_api import LAMBDA_MAX_BODY_BYTES, lambda_endpoint, read_json_object
from squall.core.arn import function_arn
from squall.core.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound, SquallError
from squall.functions.control.names import parse_function_name, validation_error
from squall.iam.authorizer import statements_json
from squall.iam.store import IamStore

__all__ = ["FunctionPermissions", "PreconditionFailed", "permission_routes"]

_SID = re.compile(r"^[a-zA-Z0-9-_]+$")
_REMOVE_SID = re.compile(r"^[a-zA-Z0-9-_.]+$")
_ACTION = re.compile(r"^(lambda:[*]|lambda:[a-zA-Z]+|[*])$")
_ACCOUNT = re.compile(r"^\d{12}$")
_ARN = re.compile(r"^arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)$")


class PreconditionFailed(SquallError):
    code = "PreconditionFailedException"
    status = 412
    fault = "user"


class FunctionPermissions:
    """``function_exists(name, qualifier)`` raises ResourceNotFound (Lambda's message) when it names nothing."""

    def __init__(
        self, store: IamStore, function_exists: Callable[[str, str | None], None], *, region: str, account_id: str
    ) -> None:
        self.store = store
        self.function_exists = function_exists
        self.region = region
        self.account = account_id
        self._lock = asyncio.Lock()

    def _target(self, function_name: str, qualifier: str | None) -> tuple[str, str, str]:
        """(name, policy key, resource ARN)."""
        ref = parse_function_name(function_name, qualifier, region=self.region, account_id=self.account)
        self.function_exists(ref.name, ref.qualifier)
        key = "" if ref.qualifier in (None, "$LATEST") else str(ref.qualifier)
        return ref.name, key, function_arn(self.region, self.account, ref.name, key or None)

    @staticmethod
    def _principal(value: str) -> Any:
        if value == "*":
            return "*"
        if _ACCOUNT.match(value):
            return {"AWS": f"arn:aws:iam::{value}:root"}
        if value.endswith(".amazonaws.com") or value.endswith(".amazonaws.com.cn"):
            return {"Service": value}
        if value.startswith("arn:"):
            return {"AWS": value}
        raise InvalidParameterValue(
            "The provided principal was invalid. Please check the principal and try again: use an AWS account id, "
            "an IAM role or user ARN, a service principal such as s3.amazonaws.com, or *."
        )

    def _statement(self, body: dict[str, Any], resource: str) -> dict[str, Any]:
        problems = []
        for key in ("StatementId", "Action", "Principal"):
            if not isinstance(body.get(key), str) or (body.get(key) == "" and key != "Action"):
                problems.append(f"Value null at '{key[0].lower() + key[1:]}' failed to satisfy constraint: Member "
                                "must not be null")  # fmt: skip
        if problems:
            raise validation_error(*problems)
        sid, action = body["StatementId"], body["Action"]
        if len(sid) > 100 or not _SID.match(sid):
            raise validation_error(f"Value '{sid}' at 'statementId' failed to satisfy constraint: Member must "
                                   "satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")  # fmt: skip
        if not _ACTION.match(action):
            raise validation_error(f"Value '{action}' at 'action' failed to satisfy constraint: Member must satisfy "
                                   "regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])")  # fmt: skip
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": self._principal(body["Principal"]),
            "Action": action,
            "Resource": resource,
        }
        condition: dict[str, dict[str, str]] = {}
        source_arn = body.get("SourceArn")
        if source_arn is not None:
            if not isinstance(source_arn, str) or not _ARN.match(source_arn):
                raise validation_error(f"Value '{source_arn}' at 'sourceArn' failed to satisfy constraint: Member "
                                       "must satisfy regular expression pattern: arn:(aws[a-zA-Z0-9-]*):...")  # fmt: skip
            condition.setdefault("ArnLike", {})["AWS:SourceArn"] = source_arn
        for key, operator, cond_key in (
            ("SourceAccount", "StringEquals", "AWS:SourceAccount"),
            ("PrincipalOrgID", "StringEquals", "aws:PrincipalOrgID"),
            ("EventSourceToken", "StringEquals", "lambda:EventSourceToken"),
            ("FunctionUrlAuthType", "StringEquals", "lambda:FunctionUrlAuthType"),
        ):
            value = body.get(key)
            if value is not None:
                if not isinstance(value, str):
                    raise InvalidParameterValue(f"{key} must be a string")
                condition.setdefault(operator, {})[cond_key] = value
        if condition:
            statement["Condition"] = condition
        return statement

    async def add_permission(self, function_name: str, qualifier: str | None, body: dict[str, Any]) -> dict[str, Any]:
        name, key, resource = await asyncio.to_thread(self._target, function_name, qualifier)
        statement = self._statement(body, resource)
        async with self._lock:
            current = await asyncio.to_thread(self.store.get_function_policy, name, key)
            statements = list(current.statements) if current else []
            revision = body.get("RevisionId")
            if revision is not None and revision != (current.revision_id if current else None):
                raise PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to "
                    "retrieve the latest Revision Id"
                )
            if any(s.get("Sid") == statement["Sid"] for s in statements):
                raise ResourceConflict(
                    f"The statement id ({statement['Sid']}) provided already exists. Please provide a new statement "
                    "id, or remove the existing statement."
                )
            statements.append(statement)
            if len(statements_json(statements)) > 20480:
                raise PolicyLengthExceeded("The final policy size (20480 bytes) is bigger than the limit.")
            await asyncio.to_thread(self.store.put_function_policy, name, key, statements)
        return {"Statement": json.dumps(statement)}

    async def get_policy(self, function_name: str, qualifier: str | None) -> dict[str, Any]:
        name, key, _ = await asyncio.to_thread(self._target, function_name, qualifier)
        current = await asyncio.to_thread(self.store.get_function_policy, name, key)
        if current is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return {"Policy": statements_json(current.statements), "RevisionId": current.revision_id}

    async def remove_permission(
        self, function_name: str, statement_id: str, qualifier: str | None, revision_id: str | None
    ) -> None:
        if not statement_id or len(statement_id) > 100 or not _REMOVE_SID.match(statement_id):
            raise validation_error(f"Value '{statement_id}' at 'statementId' failed to satisfy constraint: Member "
                                   "must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)")  # fmt: skip
        name, key, _ = await asyncio.to_thread(self._target, function_name, qualifier)
        async with self._lock:
            current = await asyncio.to_thread(self.store.get_function_policy, name, key)
            if current is None:
                raise ResourceNotFound("No policy is associated with the given resource.")
            if revision_id is not None and revision_id != current.revision_id:
                raise PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to "
                    "retrieve the latest Revision Id"
                )
            remaining = [s for s in current.statements if s.get("Sid") != statement_id]
            if len(remaining) == len(current.statements):
                raise ResourceNotFound(f"Statement {statement_id} is not found in resource policy.")
            await asyncio.to_thread(self.store.put_function_policy, name, key, remaining)


class PolicyLengthExceeded(InvalidParameterValue):
    code = "PolicyLengthExceededException"
    status = 400


def _qualifier(request: Request) -> str | None:
    return request.query_params.get("Qualifier") or None


def permission_routes(perms: FunctionPermissions) -> list[Route]:
    base = "/2015-03-31/functions/{FunctionName:str}/policy"

    async def add(r: Request) -> tuple[int, Any]:
        fn = unquote(r.path_params["FunctionName"])
        return 201, await perms.add_permission(
            fn, _qualifier(r), await read_json_object(r, LAMBDA_MAX_BODY_BYTES, "AddPermission")
        )

    async def get(r: Request) -> tuple[int, Any]:
        return 200, await perms.get_policy(unquote(r.path_params["FunctionName"]), _qualifier(r))

    async def remove(r: Request) -> tuple[int, Any]:
        await perms.remove_permission(
            unquote(r.path_params["FunctionName"]),
            unquote(r.path_params["StatementId"]),
            _qualifier(r),
            r.query_params.get("RevisionId") or None,
        )
        return 204, None

    return [
        Route(base, lambda_endpoint("AddPermission", add), methods=["POST"]),
        Route(base, lambda_endpoint("GetPolicy", get), methods=["GET"]),
        Route(base + "/{StatementId:str}", lambda_endpoint("RemovePermission", remove), methods=["DELETE"]),
    ]
