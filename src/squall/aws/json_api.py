"""The one helper set for Lambda-style JSON APIs (rest-json): read a body, parse it, answer, render errors.

Every JSON API Squall serves (the Lambda control plane, resource policies, event source mappings, function URL
configuration, schedules and the dashboard's API) reads its request body and renders its errors here, so the
same mistake gets the same answer everywhere:

* a body that is not UTF-8, not JSON, nested deeper than ``jsonlimits.MAX_API_DEPTH`` or (where an object is
  expected) not an object is ``InvalidRequestContentException`` with "Could not parse request body into json: ..."
  and what was wrong, as Lambda says it;
* a body bigger than the operation allows is ``RequestEntityTooLargeException`` (413);
* a ``SquallError`` becomes Lambda's rest-json error (``squall.aws.errors.render_lambda``), anything else a logged
  ``ServiceException`` naming the operation; every answer carries ``x-amzn-RequestId``, the request's id when the
  edge gave it one.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from squall.aws.errors import render_lambda
from squall.core import jsonlimits
from squall.core.errors import InvalidRequestContent, RequestEntityTooLarge, ServiceError, SquallError

__all__ = [
    "LAMBDA_MAX_BODY_BYTES",
    "Endpoint",
    "Operation",
    "error_response",
    "json_object",
    "json_response",
    "lambda_endpoint",
    "lambda_error",
    "parse_json",
    "read_body",
    "read_json_object",
    "request_id",
]

log = logging.getLogger(__name__)

#: what a JSON operation returns: (HTTP status, payload); None is an empty body, bytes a zip, anything else JSON
Operation = Callable[[Request], Awaitable[tuple[int, Any]]]
Endpoint = Callable[[Request], Awaitable[Response]]

_PARSE = "Could not parse request body into json"

#: Lambda refuses control-plane request bodies larger than this (a 50 MB zip, base64-encoded, plus JSON)
LAMBDA_MAX_BODY_BYTES = 70_167_211


def request_id(scope: Mapping[str, Any]) -> str:
    """The request's id: the one the edge assigned (``scope["squall.request_id"]``) or a new one."""
    return str(scope.get("squall.request_id") or uuid.uuid4())


def error_response(rid: str, error: SquallError) -> Response:
    """``error`` as Lambda's rest-json error response for the request ``rid``."""
    status, headers, body = render_lambda(error, rid)
    return Response(body, status, headers=headers)


def lambda_error(request: Request, error: SquallError) -> Response:
    """``error`` as Lambda's rest-json error response to ``request``."""
    return error_response(request_id(request.scope), error)


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``data`` as an ``application/json`` response (NaN and infinities are refused: JSON has none)."""
    return Response(json.dumps(data, allow_nan=False), status, headers=headers, media_type="application/json")


def parse_json(raw: bytes | str) -> Any:
    """Any JSON document from a request body, depth-limited; ``InvalidRequestContent`` saying what is wrong."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise InvalidRequestContent(f"{_PARSE}: the body is not valid UTF-8")
    try:
        return jsonlimits.loads(text)
    except jsonlimits.JsonTooDeep as exc:
        raise InvalidRequestContent(f"{_PARSE}: {exc}")
    except json.JSONDecodeError as exc:
        raise InvalidRequestContent(f"{_PARSE}: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except ValueError as exc:  # e.g. lone surrogates
        raise InvalidRequestContent(f"{_PARSE}: {exc}")


def json_object(raw: bytes | str) -> dict[str, Any]:
    """The JSON object of a request body ({} for an empty body)."""
    if not raw.strip():
        return {}
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise InvalidRequestContent(f"{_PARSE}: expected a JSON object, got {type(value).__name__}")
    return value


async def read_body(request: Request, max_bytes: int, operation: str) -> bytes:
    """The whole body, refused with ``RequestEntityTooLarge`` past ``max_bytes`` (before reading it, when the
    client declared its length).  A body the edge already read (``scope["squall.body"]``) is used as is."""
    too_large = RequestEntityTooLarge(f"Request must be smaller than {max_bytes} bytes for the {operation} operation")
    raw = request.scope.get("squall.body")
    if raw is not None:
        if len(raw) > max_bytes:
            raise too_large
        return bytes(raw)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, max_bytes: int, operation: str) -> dict[str, Any]:
    """``json_object(await read_body(...))``: the request's JSON object, {} when the body is empty."""
    return json_object(await read_body(request, max_bytes, operation))


def lambda_endpoint(operation: str, handler: Operation) -> Endpoint:
    """A Starlette endpoint running ``handler`` and answering the way Lambda's rest-json APIs do."""

    async def endpoint(request: Request) -> Response:
        rid = request_id(request.scope)
        try:
            status, payload = await handler(request)
        except SquallError as exc:
            return error_response(rid, exc)
        except Exception:
            log.exception("%s failed", operation)
            return error_response(rid, ServiceError(f"{operation} failed: internal error"))
        headers = {"x-amzn-RequestId": rid}
        if payload is None:
            return Response(b"", status, headers=headers)
        if isinstance(payload, bytes):
            return Response(payload, status, headers=headers, media_type="application/zip")
        return Response(json.dumps(payload).encode(), status, headers=headers, media_type="application/json")

    endpoint.__name__ = operation
    return endpoint
