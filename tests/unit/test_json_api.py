"""The one JSON-API helper set (squall.aws.json_api): the same mistake gets the same Lambda error everywhere."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from squall.aws.json_api import json_object, lambda_endpoint, parse_json, read_json_object
from squall.core.errors import InvalidRequestContent, ResourceNotFound

PARSE = "Could not parse request body into json"


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"{not json", "Expecting property name enclosed in double quotes at line 1 column 2"),
        (b"\xff\xfe", "the body is not valid UTF-8"),
        (b"[" * 65 + b"]" * 65, "more than 64 levels deep"),
    ],
)
def test_parse_json_says_what_is_wrong(raw: bytes, detail: str) -> None:
    with pytest.raises(InvalidRequestContent) as info:
        parse_json(raw)
    assert str(info.value).startswith(PARSE)
    assert detail in str(info.value)


def test_json_object_wants_an_object_and_takes_an_empty_body_as_empty() -> None:
    assert json_object(b"  ") == {}
    assert json_object(b'{"a": 1}') == {"a": 1}
    with pytest.raises(InvalidRequestContent, match="expected a JSON object, got list"):
        json_object(b"[1]")


def _app(limit: int) -> Starlette:
    async def echo(request: Request) -> tuple[int, Any]:
        body = await read_json_object(request, limit, "Echo")
        if body.get("missing"):
            raise ResourceNotFound("no such thing")
        if body.get("crash"):
            raise RuntimeError("boom")
        return 201, body

    return Starlette(routes=[Route("/echo", lambda_endpoint("Echo", echo), methods=["POST"])])


def _post_all(bodies: list[bytes]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=_app(limit=64))
        async with httpx.AsyncClient(transport=transport, base_url="http://squall") as client:
            return [await client.post("/echo", content=body) for body in bodies]

    return asyncio.run(run())


def test_lambda_endpoint_answers_in_lambdas_rest_json_shape() -> None:
    ok, bad, big, missing, crash = _post_all(
        [b'{"a": 1}', b"{nope", b'{"a": "' + b"x" * 100 + b'"}', b'{"missing": true}', b'{"crash": true}']
    )
    assert (ok.status_code, ok.json()) == (201, {"a": 1})
    assert ok.headers["x-amzn-RequestId"]

    assert bad.status_code == 400
    assert bad.headers["x-amzn-ErrorType"].startswith("InvalidRequestContentException")
    assert json.loads(bad.content)["message"].startswith(PARSE)

    assert big.status_code == 413
    assert "smaller than 64 bytes for the Echo operation" in json.loads(big.content)["message"]

    assert missing.status_code == 404
    assert missing.headers["x-amzn-ErrorType"].startswith("ResourceNotFoundException")

    assert crash.status_code == 500
    assert json.loads(crash.content)["message"] == "Echo failed: internal error"
