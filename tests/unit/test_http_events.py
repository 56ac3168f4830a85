"""HTTP <-> Lambda format 2.0 mapping, CORS and route matching: exact shapes, pure functions."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from squall.core.errors import InvalidParameterValue, RequestTooLarge
from squall.triggers.function_urls.events import (
    INTERNAL_ERROR,
    build_event,
    compile_route,
    cors_headers,
    is_preflight,
    map_payload,
    map_response,
    match_route,
    parse_query,
    with_cors,
)

NOW = 1583348638.390  # 2020-03-04T19:03:58.390Z
DOMAIN = "abcdefg.lambda-url.us-east-1.on.aws"
#: the headers API Gateway adds to every event (no trace id given to ``event``)
GATEWAY = {"x-forwarded-for": "192.0.2.1", "x-forwarded-proto": "https", "x-forwarded-port": "443"}


def event(
    method: str = "GET",
    path: str = "/my/path",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    **kw: Any,
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "source_ip": "192.0.2.1",
        "domain_name": DOMAIN,
        "api_id": "abcdefg",
        "request_id": "req-1",
        "now": NOW,
        "max_body": 6 * 1024 * 1024,
    }
    args.update(kw)
    return build_event(method, path, query, headers or [], body, **args)


# --- request events -----------------------------------------------------------------------------------------


def test_function_url_event_exact_shape() -> None:
    ev = event(
        "POST",
        "/my/path",
        b"parameter1=value1&parameter1=value2&parameter2=value",
        [
            (b"Host", DOMAIN.encode()),
            (b"User-Agent", b"agent"),
            (b"Header1", b"value1"),
            (b"Header2", b"value1"),
            (b"header2", b"value2"),
            (b"Cookie", b"cookie1=a; cookie2=b"),
            (b"Content-Type", b"text/plain"),
        ],
        b"Hello from client!",
        trace_id="Root=1-5e5ffc9e-0123456789abcdef01234567",
    )
    assert ev == {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/my/path",
        "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
        "cookies": ["cookie1=a", "cookie2=b"],
        "headers": {
            "host": DOMAIN,
            "user-agent": "agent",
            "header1": "value1",
            "header2": "value1,value2",
            "content-type": "text/plain",
            "x-forwarded-for": "192.0.2.1",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            "x-amzn-trace-id": "Root=1-5e5ffc9e-0123456789abcdef01234567",
        },
        "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefg",
            "domainName": DOMAIN,
            "domainPrefix": "abcdefg",
            "http": {
                "method": "POST",
                "path": "/my/path",
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "agent",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "04/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390,
        },
        "body": "Hello from client!",
        "isBase64Encoded": False,
    }
    json.dumps(ev)  # serialisable as is


def test_get_without_query_body_cookies_or_params_omits_those_keys() -> None:
    ev = event(headers=[(b"accept", b"*/*")])
    assert ev["rawQueryString"] == ""
    for key in ("queryStringParameters", "cookies", "body", "pathParameters"):
        assert key not in ev
    assert ev["isBase64Encoded"] is False
    assert ev["requestContext"]["http"]["userAgent"] == ""


def test_route_event_has_route_key_and_path_parameters() -> None:
    ev = event(
        path="/hello/w%C3%B6rld",
        route_key="GET /hello/{name}",
        path_parameters={"name": "wörld"},
        stage="prod",
        domain_name="api1.execute-api.us-east-1.amazonaws.com",
        api_id="api1",
        account_id="123456789012",
    )
    assert ev["routeKey"] == ev["requestContext"]["routeKey"] == "GET /hello/{name}"
    assert ev["pathParameters"] == {"name": "wörld"}
    assert ev["rawPath"] == "/hello/w%C3%B6rld"
    ctx = ev["requestContext"]
    assert (ctx["stage"], ctx["apiId"], ctx["domainPrefix"], ctx["accountId"]) == (
        "prod",
        "api1",
        "api1",
        "123456789012",
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"a=1", {"a": "1"}),
        (b"a=1&a=2&b=3", {"a": "1,2", "b": "3"}),
        (b"q=hello%20world&x=%E2%9C%93", {"q": "hello world", "x": "✓"}),
        (b"q=a+b&plus=%2B", {"q": "a b", "plus": "+"}),
        (b"flag&empty=&k%20ey=v", {"flag": "", "empty": "", "k ey": "v"}),
        (b"a=1&&b=2&", {"a": "1", "b": "2"}),
        (b"redirect=https%3A%2F%2Fx.example%2F%3Fa%3D1%26b%3D2", {"redirect": "https://x.example/?a=1&b=2"}),
    ],
)
def test_query_strings_raw_kept_and_parameters_decoded(raw: bytes, expected: dict[str, str]) -> None:
    ev = event(query=raw)
    assert ev["rawQueryString"] == raw.decode()
    assert ev["queryStringParameters"] == expected
    assert parse_query(raw.decode()) == expected


def test_cookie_headers_are_extracted_and_removed() -> None:
    ev = event(headers=[(b"cookie", b"a=1; b=2"), (b"x", b"y"), (b"Cookie", b"c=3;d=4;")])
    assert ev["cookies"] == ["a=1", "b=2", "c=3", "d=4"]
    assert ev["headers"] == {"x": "y", **GATEWAY}


@pytest.mark.parametrize(
    ("content_type", "body", "b64"),
    [
        (b"application/json", b'{"a": 1}', False),
        (b"application/json; charset=utf-8", '{"a": "\u00e9"}'.encode(), False),
        (b"text/html", b"<p>hi</p>", False),
        (b"application/vnd.api+json", b"{}", False),
        (b"application/xml", b"<a/>", False),
        (None, b"plain words", False),
        (b"application/octet-stream", b"plain words", True),
        (b"image/png", b"\x89PNG\r\n\x1a\n\x00", True),
        (b"application/x-www-form-urlencoded", b"a=1&b=2", True),
        (b"multipart/form-data; boundary=x", b"--x--", True),
        (b"text/plain", b"\xff\xfe not utf-8", True),
        (None, b"\xff\xfe\x00", True),
    ],
)
def test_body_text_or_base64(content_type: bytes | None, body: bytes, b64: bool) -> None:
    headers = [(b"content-type", content_type)] if content_type is not None else []
    ev = event("POST", headers=headers, body=body)
    assert ev["isBase64Encoded"] is b64
    if b64:
        assert base64.b64decode(ev["body"]) == body
    else:
        assert ev["body"] == body.decode()


def test_body_over_the_limit_is_rejected() -> None:
    event("POST", body=b"x" * 10, max_body=10)
    with pytest.raises(RequestTooLarge):
        event("POST", body=b"x" * 11, max_body=10)


def test_non_utf8_header_value_falls_back_to_latin1() -> None:
    ev = event(headers=[(b"x-name", "Jos\u00e9".encode("latin-1")), (b"x-utf", "Jos\u00e9".encode())])
    assert ev["headers"] == {"x-name": "José", "x-utf": "José", **GATEWAY}


# --- responses ----------------------------------------------------------------------------------------------

JSON_CT = ("content-type", "application/json")


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        # no statusCode: 200, application/json, the value as the body
        ({"message": "hi"}, (200, [JSON_CT], b'{"message": "hi"}')),
        ({"body": "x", "headers": {"a": "b"}}, (200, [JSON_CT], b'{"body": "x", "headers": {"a": "b"}}')),
        ([1, 2], (200, [JSON_CT], b"[1, 2]")),
        (42, (200, [JSON_CT], b"42")),
        (None, (200, [JSON_CT], b"null")),
        (True, (200, [JSON_CT], b"true")),
        ("Hello from Lambda!", (200, [JSON_CT], b"Hello from Lambda!")),
        # structured
        ({"statusCode": 204}, (204, [JSON_CT], b"")),
        (
            {"statusCode": 201, "headers": {"Content-Type": "text/plain", "X-N": 5}, "body": "made"},
            (201, [("content-type", "text/plain"), ("x-n", "5")], b"made"),
        ),
        (
            {
                "statusCode": 200,
                "cookies": ["a=1; Secure", "b=2"],
                "body": "ok",
                "headers": {"content-type": "text/plain"},
            },
            (200, [("content-type", "text/plain"), ("set-cookie", "a=1; Secure"), ("set-cookie", "b=2")], b"ok"),
        ),
        (
            {
                "statusCode": 200,
                "isBase64Encoded": True,
                "body": base64.b64encode(b"\x00\xff").decode(),
                "headers": {"content-type": "application/octet-stream"},
            },
            (200, [("content-type", "application/octet-stream")], b"\x00\xff"),
        ),
        (
            {"statusCode": 200, "multiValueHeaders": {"x": ["1", "2"]}, "body": "v1 field ignored"},
            (200, [JSON_CT], b"v1 field ignored"),
        ),
        ({"statusCode": 404, "body": "caf\u00e9"}, (404, [JSON_CT], "café".encode())),
        ({"statusCode": 200, "headers": {"x-flag": True}}, (200, [("x-flag", "true"), JSON_CT], b"")),
    ],
)
def test_map_response(result: Any, expected: tuple[int, list[tuple[str, str]], bytes]) -> None:
    assert map_response(result) == expected


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "200", "body": "x"},
        {"statusCode": 200.0},
        {"statusCode": True},
        {"statusCode": 99},
        {"statusCode": 600},
        {"statusCode": None},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": ["a", "b"]},
        {"statusCode": 200, "headers": {"x": ["a", "b"]}},
        {"statusCode": 200, "headers": {"x": "a\r\nInjected: 1"}},
        {"statusCode": 200, "cookies": "a=1"},
        {"statusCode": 200, "cookies": [1]},
        {"statusCode": 200, "isBase64Encoded": True, "body": "not base64!!"},
        {"statusCode": 200, "isBase64Encoded": "yes", "body": ""},
    ],
)
def test_malformed_responses_are_502(result: Any) -> None:
    assert map_response(result) == INTERNAL_ERROR
    assert INTERNAL_ERROR[0] == 502
    assert json.loads(INTERNAL_ERROR[2]) == {"message": "Internal Server Error"}


def test_function_error_is_502() -> None:
    assert map_response({"statusCode": 200}, function_error=True) == INTERNAL_ERROR
    assert map_payload(b'{"errorMessage": "boom", "errorType": "Exception"}', function_error=True) == INTERNAL_ERROR


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"a":1,"b":[1,2]}', (200, [JSON_CT], b'{"a":1,"b":[1,2]}')),  # passed through unchanged
        (b'"hello"', (200, [JSON_CT], b"hello")),
        (b"null", (200, [JSON_CT], b"null")),
        (b'{"statusCode": 418, "body": "teapot"}', (418, [JSON_CT], b"teapot")),
        (b"not json", INTERNAL_ERROR),
        (b"", INTERNAL_ERROR),
    ],
)
def test_map_payload(payload: bytes, expected: tuple[int, list[tuple[str, str]], bytes]) -> None:
    assert map_payload(payload) == expected


# --- CORS ---------------------------------------------------------------------------------------------------

CORS = {
    "AllowOrigins": ["https://app.example"],
    "AllowMethods": ["GET", "post"],
    "AllowHeaders": ["X-Custom", "Content-Type"],
    "ExposeHeaders": ["X-Request-Id"],
    "MaxAge": 300,
    "AllowCredentials": True,
}
PREFLIGHT = [
    (b"origin", b"https://app.example"),
    (b"access-control-request-method", b"POST"),
    (b"access-control-request-headers", b"x-custom"),
]


def test_is_preflight() -> None:
    assert is_preflight("OPTIONS", PREFLIGHT)
    assert is_preflight("options", {"Origin": "https://a", "Access-Control-Request-Method": "GET"})
    assert not is_preflight("OPTIONS", [(b"origin", b"https://app.example")])
    assert not is_preflight("GET", PREFLIGHT)


def test_cors_preflight_headers() -> None:
    assert cors_headers(CORS, PREFLIGHT, preflight=True) == [
        ("access-control-allow-origin", "https://app.example"),
        ("vary", "Origin"),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "GET,POST"),
        ("access-control-allow-headers", "x-custom,content-type"),
        ("access-control-max-age", "300"),
    ]


def test_cors_simple_request_headers() -> None:
    assert cors_headers(CORS, {"Origin": "https://APP.example"}) == [
        ("access-control-allow-origin", "https://APP.example"),
        ("vary", "Origin"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "x-request-id"),
    ]


def test_cors_wildcards() -> None:
    config = {"AllowOrigins": ["*"], "AllowMethods": ["*"], "AllowHeaders": ["*"]}
    assert cors_headers(config, PREFLIGHT, preflight=True) == [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "*"),
        ("access-control-allow-headers", "*"),
    ]
    # with credentials '*' is not a wildcard for browsers: echo the request instead
    assert cors_headers({**config, "AllowCredentials": True}, PREFLIGHT, preflight=True) == [
        ("access-control-allow-origin", "https://app.example"),
        ("vary", "Origin"),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "POST"),
        ("access-control-allow-headers", "x-custom"),
    ]


@pytest.mark.parametrize(
    ("config", "headers"),
    [
        (None, PREFLIGHT),
        ({}, PREFLIGHT),
        (CORS, [(b"x", b"y")]),  # no Origin: not a CORS request
        (CORS, [(b"origin", b"https://evil.example")]),  # origin not allowed
    ],
)
def test_cors_adds_nothing(config: dict[str, Any] | None, headers: list[tuple[bytes, bytes]]) -> None:
    assert cors_headers(config, headers) == []


def test_with_cors_replaces_function_cors_headers() -> None:
    fn = [("content-type", "text/plain"), ("Access-Control-Allow-Origin", "*")]
    cors = [("access-control-allow-origin", "https://app.example")]
    assert with_cors(fn, cors) == [
        ("content-type", "text/plain"),
        ("access-control-allow-origin", "https://app.example"),
    ]
    assert with_cors(fn, []) == fn


# --- routes -------------------------------------------------------------------------------------------------

ROUTES = [
    compile_route(key, target=key)
    for key in [
        "$default",
        "ANY /{proxy+}",
        "GET /pets/{proxy+}",
        "GET /pets/dog/{id}",
        "GET /pets/dog/1",
        "ANY /pets/dog/{id}",
        "POST /pets/{kind}/{id}",
        "GET /hello/{name}",
        "GET /",
        "GET /pets/{kind}/toys/{proxy+}",
    ]
]


@pytest.mark.parametrize(
    ("method", "path", "key", "params"),
    [
        ("GET", "/pets/dog/1", "GET /pets/dog/1", {}),  # full match beats variables
        ("GET", "/pets/dog/2", "GET /pets/dog/{id}", {"id": "2"}),  # explicit method beats ANY
        ("DELETE", "/pets/dog/2", "ANY /pets/dog/{id}", {"id": "2"}),
        ("POST", "/pets/dog/2", "ANY /pets/dog/{id}", {"id": "2"}),  # path specificity before method
        ("POST", "/pets/cat/2", "POST /pets/{kind}/{id}", {"kind": "cat", "id": "2"}),
        ("GET", "/pets/cat/1", "GET /pets/{proxy+}", {"proxy": "cat/1"}),  # non-greedy beats greedy; greedy next
        ("GET", "/pets/cat/toys/a/b", "GET /pets/{kind}/toys/{proxy+}", {"kind": "cat", "proxy": "a/b"}),
        ("POST", "/pets/cat/1/x", "ANY /{proxy+}", {"proxy": "pets/cat/1/x"}),
        ("GET", "/hello/w%C3%B6rld", "GET /hello/{name}", {"name": "wörld"}),
        ("GET", "/", "GET /", {}),
        ("POST", "/", "$default", {}),  # {proxy+} needs at least one segment
        ("GET", "/pets", "ANY /{proxy+}", {"proxy": "pets"}),  # /pets/{proxy+} needs a child
        ("GET", "/hello/", "ANY /{proxy+}", {"proxy": "hello/"}),  # an empty {name} never matches
    ],
)
def test_route_precedence(method: str, path: str, key: str, params: dict[str, str]) -> None:
    found = match_route(ROUTES, method, path)
    assert found is not None
    route, values = found
    assert (route.key, values) == (key, params)
    assert route.target == key


def test_post_literal_route_beats_variable_route_of_other_method() -> None:
    routes = [compile_route("POST /pets/{kind}/{id}"), compile_route("ANY /pets/dog/{id}")]
    found = match_route(routes, "POST", "/pets/dog/2")
    assert found is not None
    assert found[0].key == "ANY /pets/dog/{id}"  # the literal 'dog' is more specific, whatever the method


def test_no_match_without_default() -> None:
    routes = [compile_route("GET /hello/{name}")]
    assert match_route(routes, "POST", "/hello/x") is None
    assert match_route(routes, "HEAD", "/hello/x") is None
    assert match_route(routes, "GET", "/hello/x/y") is None
    assert match_route(routes, "GET", "/hello") is None


@pytest.mark.parametrize(
    "key",
    [
        "GET",
        "FETCH /x",
        "get /x",
        "GET x",
        "GET /a//b",
        "GET /{proxy+}/x",
        "GET /file.{ext}",
        "GET /{a}/{a}",
        "GET /{}",
    ],
)
def test_invalid_route_keys(key: str) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        compile_route(key)
    assert "GET /hello/{name}" in exc.value.message
