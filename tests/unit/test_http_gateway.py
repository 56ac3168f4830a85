"""What API Gateway adds to HTTP events (x-forwarded-*, x-amzn-trace-id, domainName/domainPrefix), payload format
1.0 events and responses, one Content-Length, redirects under the function URL prefix; Powertools' event source
data classes as the oracle for both event shapes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, APIGatewayProxyEventV2

from squall.cli.project import ProjectError, parse_project
from squall.core.errors import InvalidParameterValue
from squall.triggers.function_urls.events import (
    INTERNAL_ERROR,
    build_event,
    build_event_v1,
    compile_route,
    map_payload_v1,
    map_response,
    map_response_v1,
    prefix_location,
    split_host,
    trace_header,
)

NOW = 1583348638.390  # 2020-03-04T19:03:58.390Z
COMMON: dict[str, Any] = {
    "source_ip": "192.0.2.1",
    "api_id": "squall",
    "request_id": "req-1",
    "now": NOW,
    "max_body": 6 * 1024 * 1024,
}
TRACE = "Root=1-5e5ffc9e-0123456789abcdef01234567"


# --- hosts, forwarded headers, trace ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", ("example.com", "")),
        ("example.com:8080", ("example.com", "8080")),
        ("127.0.0.1:9000", ("127.0.0.1", "9000")),
        ("[::1]:9000", ("[::1]", "9000")),
        ("[::1]", ("[::1]", "")),
        ("host:notaport", ("host:notaport", "")),
    ],
)
def test_split_host(host: str, expected: tuple[str, str]) -> None:
    assert split_host(host) == expected


@pytest.mark.parametrize(
    ("host", "scheme", "domain", "prefix", "port"),
    [
        ("abc.lambda-url.us-east-1.on.aws", "https", "abc.lambda-url.us-east-1.on.aws", "abc", "443"),
        ("localhost:9000", "http", "localhost", "localhost", "9000"),
        ("127.0.0.1:9000", "http", "127.0.0.1", "127", "9000"),
        ("api.example.com", "http", "api.example.com", "api", "80"),
    ],
)
def test_domain_name_prefix_and_forwarded_port(host: str, scheme: str, domain: str, prefix: str, port: str) -> None:
    for build in (build_event, build_event_v1):
        ev = build("GET", "/", b"", [(b"host", host.encode())], b"", domain_name=host, scheme=scheme, **COMMON)
        ctx = ev["requestContext"]
        assert (ctx["domainName"], ctx["domainPrefix"]) == (domain, prefix)
        assert ev["headers"]["host"] == host  # frameworks build absolute URLs from the Host as sent
        assert ev["headers"]["x-forwarded-proto"] == scheme
        assert ev["headers"]["x-forwarded-port"] == port


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (None, "192.0.2.1"),
        (b"203.0.113.9", "203.0.113.9, 192.0.2.1"),
        (b"203.0.113.9, 192.0.2.1", "203.0.113.9, 192.0.2.1"),  # a trusted proxy already named the client
    ],
)
def test_x_forwarded_for_appends_the_client(sent: bytes | None, expected: str) -> None:
    headers = [(b"x-forwarded-for", sent)] if sent is not None else []
    ev = build_event("GET", "/", b"", headers, b"", domain_name="h", **COMMON)
    assert ev["headers"]["x-forwarded-for"] == expected
    ev1 = build_event_v1("GET", "/", b"", headers, b"", domain_name="h", **COMMON)
    assert ev1["headers"]["x-forwarded-for"] == expected
    assert ev1["multiValueHeaders"]["x-forwarded-for"] == [expected]


def test_client_cannot_choose_the_forwarded_proto() -> None:
    ev = build_event(
        "GET", "/", b"", [(b"x-forwarded-proto", b"gopher")], b"", domain_name="h", scheme="http", **COMMON
    )
    assert ev["headers"]["x-forwarded-proto"] == "http"


NEW_ID = (0x5E5FFC9E << 96) | 0x0123456789ABCDEF01234567


@pytest.mark.parametrize(
    ("amzn", "traceparent", "expected"),
    [
        ("", "", "Root=1-5e5ffc9e-0123456789abcdef01234567"),
        (f"{TRACE};Parent=53995c3f42cd8ad8;Sampled=1", "", f"{TRACE};Parent=53995c3f42cd8ad8;Sampled=1"),
        ("garbage", "", "Root=1-5e5ffc9e-0123456789abcdef01234567"),
        (
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1",
        ),
    ],
)
def test_trace_header(amzn: str, traceparent: str, expected: str) -> None:
    assert trace_header(amzn, traceparent, NEW_ID) == expected


# --- responses: one Content-Length --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Content-Length", "content-length", "CONTENT-LENGTH", "Transfer-Encoding"])
def test_function_framing_headers_are_dropped(name: str) -> None:
    status, headers, body = map_response({"statusCode": 200, "headers": {name: "999", "X-A": "1"}, "body": "hi"})
    assert (status, body) == (200, b"hi")
    assert [n for n, _ in headers if n in ("content-length", "transfer-encoding")] == []
    assert ("x-a", "1") in headers
    _, headers1, _ = map_response_v1({"statusCode": 200, "multiValueHeaders": {name: ["5"]}, "body": "hi"})
    assert [n for n, _ in headers1 if n in ("content-length", "transfer-encoding")] == []


# --- redirects under the function URL prefix ---------------------------------------------------------------

P = "/lambda-url/abc123"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/items/", f"{P}/items/"),
        ("/items/?q=1", f"{P}/items/?q=1"),
        ("http://127.0.0.1:9000/items/", f"http://127.0.0.1:9000{P}/items/"),
        ("https://127.0.0.1:9000/docs", f"https://127.0.0.1:9000{P}/docs"),
        ("http://127.0.0.1:9000", f"http://127.0.0.1:9000{P}/"),
        (f"{P}/items/", f"{P}/items/"),  # already through the prefix
        (f"http://127.0.0.1:9000{P}/x", f"http://127.0.0.1:9000{P}/x"),
        ("https://example.com/elsewhere", "https://example.com/elsewhere"),  # another host
        ("//example.com/x", "//example.com/x"),  # scheme-relative: another host
        ("items/", "items/"),  # relative: resolves under the prefix by itself
        ("mailto:a@b.c", "mailto:a@b.c"),
    ],
)
def test_prefix_location(location: str, expected: str) -> None:
    out = prefix_location([("location", location), ("x-other", "/a")], P, "127.0.0.1:9000")
    assert out == [("location", expected), ("x-other", "/a")]


# --- payload format 1.0 --------------------------------------------------------------------------------------


def v1(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {**COMMON, "domain_name": "127.0.0.1:9000", "scheme": "http", "trace_id": TRACE}
    args.update(kw)
    return build_event_v1(
        args.pop("method", "POST"),
        args.pop("path", "/hello/w%C3%B6rld"),
        args.pop("query", b"a=1&a=2&b=x+y"),
        args.pop("headers", [(b"host", b"127.0.0.1:9000"), (b"user-agent", b"agent"), (b"x-m", b"1"), (b"x-m", b"2")]),
        args.pop("body", b'{"k": 1}'),
        **args,
    )


def test_v1_event_exact_shape() -> None:
    ev = v1(route_key="POST /hello/{name}", path_parameters={"name": "wörld"}, stage="$default")
    host = "127.0.0.1:9000"
    headers = {
        "host": host,
        "user-agent": "agent",
        "x-m": "1,2",
        "x-forwarded-for": "192.0.2.1",
        "x-forwarded-proto": "http",
        "x-forwarded-port": "9000",
        "x-amzn-trace-id": TRACE,
    }
    assert ev == {
        "version": "1.0",
        "resource": "/hello/{name}",
        "path": "/hello/wörld",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {**{k: [v] for k, v in headers.items()}, "x-m": ["1", "2"]},
        "queryStringParameters": {"a": "2", "b": "x y"},
        "multiValueQueryStringParameters": {"a": ["1", "2"], "b": ["x y"]},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "squall",
            "domainName": "127.0.0.1",
            "domainPrefix": "127",
            "extendedRequestId": "req-1",
            "httpMethod": "POST",
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": "192.0.2.1",
                "user": None,
                "userAgent": "agent",
                "userArn": None,
            },
            "path": "/hello/wörld",
            "protocol": "HTTP/1.1",
            "requestId": "req-1",
            "requestTime": "04/Mar/2020:19:03:58 +0000",
            "requestTimeEpoch": 1583348638390,
            "resourceId": "POST /hello/{name}",
            "resourcePath": "/hello/{name}",
            "stage": "$default",
        },
        "pathParameters": {"name": "wörld"},
        "stageVariables": None,
        "body": '{"k": 1}',
        "isBase64Encoded": False,
    }
    json.dumps(ev)


def test_v1_event_absent_values_are_null_and_binary_is_base64() -> None:
    ev = v1(method="GET", query=b"", body=b"")
    assert ev["queryStringParameters"] is None and ev["multiValueQueryStringParameters"] is None
    assert ev["pathParameters"] is None and ev["body"] is None and ev["isBase64Encoded"] is False
    assert ev["resource"] == "$default"
    png = v1(headers=[(b"content-type", b"image/png")], body=b"\x89PNG\x00")
    assert png["isBase64Encoded"] is True and base64.b64decode(png["body"]) == b"\x89PNG\x00"


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"statusCode": 200, "body": "ok"}, (200, [], b"ok")),
        (
            {"statusCode": 201, "headers": {"X-A": "1"}, "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}},
            (201, [("x-a", "1"), ("set-cookie", "a=1"), ("set-cookie", "b=2")], b""),
        ),
        (  # a name in both: multiValueHeaders wins
            {"statusCode": 200, "headers": {"x-a": "single"}, "multiValueHeaders": {"X-A": ["m1", "m2"]}},
            (200, [("x-a", "m1"), ("x-a", "m2")], b""),
        ),
        (
            {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True},
            (200, [], b"\x00\x01"),
        ),
        ({"statusCode": 200, "headers": {"n": 5, "b": True}}, (200, [("n", "5"), ("b", "true")], b"")),
    ],
)
def test_map_response_v1(result: dict[str, Any], expected: tuple[int, list[tuple[str, str]], bytes]) -> None:
    assert map_response_v1(result) == expected
    assert map_payload_v1(json.dumps(result).encode()) == expected


@pytest.mark.parametrize(
    "result",
    [
        "just a string",
        {"hello": "world"},  # format 1.0 needs statusCode
        [1, 2],
        {"statusCode": "200"},
        {"statusCode": 200, "multiValueHeaders": {"a": "not a list"}},
        {"statusCode": 200, "headers": {"a": "x\r\nInjected: 1"}},
        {"statusCode": 200, "body": "!!", "isBase64Encoded": True},
    ],
)
def test_v1_malformed_responses_are_502(result: Any) -> None:
    assert map_response_v1(result) == INTERNAL_ERROR
    assert map_payload_v1(b"not json") == INTERNAL_ERROR
    assert map_payload_v1(b'{"statusCode": 200}', function_error=True) == INTERNAL_ERROR


def test_route_payload_format_is_validated() -> None:
    assert compile_route("GET /x", "f", "1.0").payload_format == "1.0"
    assert compile_route("$default", "f").payload_format == "2.0"
    with pytest.raises(InvalidParameterValue, match=r"PayloadFormatVersion '3\.0'"):
        compile_route("GET /x", "f", "3.0")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('payload_format: "1.0"', {"method": "GET", "path": "/x", "payload_format": "1.0"}),
        ("payload_format: 1.0", {"method": "GET", "path": "/x", "payload_format": "1.0"}),
        ('payload_format: "2.0"', {"method": "GET", "path": "/x"}),
        ("", {"method": "GET", "path": "/x"}),
    ],
)
def test_project_http_payload_format(raw: str, expected: dict[str, Any]) -> None:
    extra = f", {raw}" if raw else ""
    text = f"functions:\n  f:\n    handler: app.handler\n    events:\n      - http: {{method: GET, path: /x{extra}}}\n"
    project = parse_project(yaml.safe_load(text), base_dir=Path("."), check_paths=False)
    assert project.functions["f"].events[0].config == expected


def test_project_http_payload_format_refused() -> None:
    text = 'functions:\n  f:\n    handler: app.handler\n    events:\n      - http: {path: /x, payload_format: "3"}\n'
    with pytest.raises(ProjectError, match=r"events\[0\]\.http\.payload_format: must be \"2.0\""):
        parse_project(yaml.safe_load(text), base_dir=Path("."), check_paths=False)


# --- Powertools' data classes as the oracle ------------------------------------------------------------------


def test_v2_event_read_by_powertools() -> None:
    ev = build_event(
        "POST",
        "/items/7",
        b"q=a+b&q=c",
        [
            (b"host", b"127.0.0.1:9000"),
            (b"user-agent", b"ua"),
            (b"cookie", b"s=1; t=2"),
            (b"content-type", b"text/plain"),
        ],
        b"hello",
        route_key="POST /items/{id}",
        path_parameters={"id": "7"},
        domain_name="127.0.0.1:9000",
        scheme="http",
        trace_id=TRACE,
        **COMMON,
    )
    pt = APIGatewayProxyEventV2(ev)
    assert pt.version == "2.0" and pt.route_key == "POST /items/{id}" and pt.raw_path == "/items/7"
    assert pt.raw_query_string == "q=a+b&q=c" and pt.query_string_parameters == {"q": "a b,c"}
    assert pt.cookies == ["s=1", "t=2"]
    assert pt.path_parameters == {"id": "7"}
    assert pt.body == "hello" and pt.decoded_body == "hello" and pt.is_base64_encoded is False
    assert pt.headers.get("X-Forwarded-Proto") == "http"
    assert pt.headers.get("x-amzn-trace-id") == TRACE
    rc = pt.request_context
    assert rc.http.method == "POST" and rc.http.path == "/items/7" and rc.http.source_ip == "192.0.2.1"
    assert rc.http.user_agent == "ua" and rc.http.protocol == "HTTP/1.1"
    assert rc.domain_name == "127.0.0.1" and rc.domain_prefix == "127"
    assert rc.request_id == "req-1" and rc.route_key == "POST /items/{id}" and rc.stage == "$default"
    assert rc.time_epoch == 1583348638390 and rc.account_id == "anonymous" and rc.api_id == "squall"
    assert pt.http_method == "POST" and pt.path == "/items/7"
    assert pt.resolved_query_string_parameters == {"q": ["a b", "c"]}


def test_v1_event_read_by_powertools() -> None:
    ev = v1(route_key="POST /hello/{name}", path_parameters={"name": "wörld"})
    pt = APIGatewayProxyEvent(ev)
    assert pt.version == "1.0" and pt.resource == "/hello/{name}" and pt.path == "/hello/wörld"
    assert pt.http_method == "POST"
    assert pt.headers["x-m"] == "1,2" and pt.multi_value_headers["x-m"] == ["1", "2"]
    assert pt.query_string_parameters == {"a": "2", "b": "x y"}
    assert pt.multi_value_query_string_parameters == {"a": ["1", "2"], "b": ["x y"]}
    assert pt.resolved_query_string_parameters == {"a": ["1", "2"], "b": ["x y"]}
    assert pt.path_parameters == {"name": "wörld"} and not pt.stage_variables
    assert pt.json_body == {"k": 1} and pt.is_base64_encoded is False
    assert pt.headers.get("X-Forwarded-Port") == "9000"
    rc = pt.request_context
    assert rc.resource_path == "/hello/{name}" and rc.http_method == "POST" and rc.stage == "$default"
    assert rc.identity.source_ip == "192.0.2.1" and rc.identity.user_agent == "agent"
    assert rc.domain_name == "127.0.0.1" and rc.request_id == "req-1" and rc.path == "/hello/wörld"
    assert rc.request_time_epoch == 1583348638390 and rc.protocol == "HTTP/1.1"
