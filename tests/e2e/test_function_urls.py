"""End to end: function URL configs through boto3, requests to the URLs and to declared HTTP routes."""

from __future__ import annotations

import base64
import http.client
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e._platform import KEY_ID, SECRET, SquallProcess, create

ECHO = """
def handler(event, context):
    return event
"""

STRUCTURED = """
def handler(event, context):
    return {"statusCode": 201, "headers": {"X-Custom": "yes", "Content-Type": "text/plain"},
            "cookies": ["a=1; Path=/", "b=2"], "body": "created " + event["rawPath"]}
"""

PLAIN = """
def handler(event, context):
    return {"hello": "world"}
"""

RAISING = """
def handler(event, context):
    raise ValueError("boom")
"""


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(tmp_path_factory.mktemp("urls") / "data").start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def lam(squall: SquallProcess) -> Any:
    client = squall.client("lambda")
    for name, code in (("echo", ECHO), ("structured", STRUCTURED), ("plain", PLAIN), ("raising", RAISING)):
        create(client, name, code)
    return client


def request(
    base: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One HTTP request with http.client (repeated headers allowed)."""
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers or []:
            conn.putheader(name, value)
        if body or method in ("POST", "PUT"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def signed_request(
    base: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """A request signed with SigV4 for service 'lambda' (botocore's signer)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method=method, url=base + path, data=body, headers=headers or {})
    SigV4Auth(Credentials(KEY_ID, SECRET), "lambda", "us-east-1").add_auth(req)
    return request(base, method, path, body, list(req.headers.items()))


def url_path(function_url: str) -> str:
    return urlsplit(function_url).path


def make_url(lam: Any, name: str, **kw: Any) -> str:
    kw.setdefault("AuthType", "NONE")
    out = lam.create_function_url_config(FunctionName=name, **kw)
    return str(out["FunctionUrl"])


def test_url_config_crud(lam: Any, squall: SquallProcess) -> None:
    out = lam.create_function_url_config(FunctionName="plain", AuthType="NONE")
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert re.fullmatch(re.escape(squall.url) + r"/lambda-url/[a-z0-9]{32}/", out["FunctionUrl"])
    assert out["FunctionArn"].endswith(":function:plain") and out["AuthType"] == "NONE"
    assert out["InvokeMode"] == "BUFFERED" and out["CreationTime"]
    got = lam.get_function_url_config(FunctionName="plain")
    assert got["FunctionUrl"] == out["FunctionUrl"] and got["LastModifiedTime"]
    cors = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET"], "MaxAge": 60}
    upd = lam.update_function_url_config(FunctionName="plain", Cors=cors, AuthType="AWS_IAM")
    assert upd["Cors"]["AllowOrigins"] == ["https://example.com"] and upd["AuthType"] == "AWS_IAM"
    assert upd["FunctionUrl"] == out["FunctionUrl"]
    listed = lam.list_function_url_configs(FunctionName="plain")["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [out["FunctionUrl"]]
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_function_url_config(FunctionName="plain", AuthType="NONE")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_function_url_config(FunctionName="nope", AuthType="NONE")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName="echo")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_function_url_config(FunctionName="plain", Cors={"MaxAge": 999999})
    r = lam.delete_function_url_config(FunctionName="plain")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName="plain")
    status, _, _ = request(squall.url, "GET", url_path(out["FunctionUrl"]))
    assert status == 403


def test_get_event_shape(lam: Any, squall: SquallProcess) -> None:
    path = url_path(make_url(lam, "echo"))
    status, headers, body = request(
        squall.url,
        "GET",
        path + "some/path?a=1&a=2&b=x%20y",
        headers=[("Cookie", "c1=v1; c2=v2"), ("X-Dup", "one"), ("X-Dup", "two"), ("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01")],
    )  # fmt: skip
    assert status == 200 and headers["content-type"] == "application/json" and headers["x-amzn-requestid"]
    event = json.loads(body)
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path" and event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-dup"] == "one,two" and "cookie" not in event["headers"]
    assert event["requestContext"]["http"]["method"] == "GET"
    assert event["requestContext"]["domainName"] == "127.0.0.1"  # API Gateway's domainName carries no port
    assert event["requestContext"]["domainPrefix"] == "127"
    assert event["headers"]["host"] == f"127.0.0.1:{squall.port}"
    assert event["requestContext"]["accountId"] == "anonymous"
    assert event["requestContext"]["requestId"] == headers["x-amzn-requestid"]
    assert event["isBase64Encoded"] is False and "body" not in event


def test_post_json_and_binary(lam: Any, squall: SquallProcess) -> None:
    path = url_path(lam.get_function_url_config(FunctionName="echo")["FunctionUrl"])
    status, _, body = request(squall.url, "POST", path, b'{"x": 1}', [("Content-Type", "application/json")])
    event = json.loads(body)
    assert status == 200 and event["body"] == '{"x": 1}' and event["isBase64Encoded"] is False
    assert event["rawPath"] == "/"
    blob = bytes(range(256))
    status, _, body = request(squall.url, "POST", path, blob, [("Content-Type", "application/octet-stream")])
    event = json.loads(body)
    assert status == 200 and event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == blob


def test_response_mapping(lam: Any, squall: SquallProcess) -> None:
    status, headers, body = request(squall.url, "GET", url_path(make_url(lam, "structured")) + "x")
    assert status == 201 and body == b"created /x"
    assert headers["x-custom"] == "yes" and headers["content-type"] == "text/plain"
    assert headers.get_all("set-cookie") == ["a=1; Path=/", "b=2"]
    status, headers, body = request(squall.url, "GET", url_path(make_url(lam, "plain")))
    assert status == 200 and headers["content-type"] == "application/json" and json.loads(body) == {"hello": "world"}
    status, _, body = request(squall.url, "GET", url_path(make_url(lam, "raising")))
    assert status == 502 and json.loads(body) == {"message": "Internal Server Error"}


def test_cors_preflight(lam: Any, squall: SquallProcess) -> None:
    cors = {"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"], "AllowHeaders": ["x-a"]}
    lam.update_function_url_config(FunctionName="plain", Cors={**cors, "MaxAge": 300, "ExposeHeaders": ["x-b"]})
    path = url_path(lam.get_function_url_config(FunctionName="plain")["FunctionUrl"])
    pre = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")]
    status, headers, body = request(squall.url, "OPTIONS", path, headers=pre)
    assert status == 200 and body == b""
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert headers["access-control-allow-methods"] == "GET,POST" and headers["access-control-max-age"] == "300"
    status, headers, _ = request(squall.url, "GET", path, headers=[("Origin", "https://app.example")])
    assert status == 200 and headers["access-control-expose-headers"] == "x-b"
    status, headers, _ = request(squall.url, "GET", path, headers=[("Origin", "https://evil.example")])
    assert status == 200 and "access-control-allow-origin" not in headers


def test_iam_auth(lam: Any, squall: SquallProcess) -> None:
    lam.update_function_url_config(FunctionName="echo", AuthType="AWS_IAM")
    path = url_path(lam.get_function_url_config(FunctionName="echo")["FunctionUrl"])
    status, _, body = request(squall.url, "GET", path + "p")
    assert status == 403 and json.loads(body) == {"Message": "Forbidden"}
    status, _, body = signed_request(squall.url, "GET", path + "p")
    assert status == 200, body
    event = json.loads(body)
    assert event["rawPath"] == "/p" and event["requestContext"]["authorizer"]["iam"]["accessKey"] == KEY_ID
    lam.update_function_url_config(FunctionName="echo", AuthType="NONE")


def test_body_limit(lam: Any, squall: SquallProcess) -> None:
    path = url_path(lam.get_function_url_config(FunctionName="echo")["FunctionUrl"])
    big = b"x" * (6 * 1024 * 1024 + 1)
    status, _, body = request(squall.url, "POST", path, big, [("Content-Type", "text/plain")])
    assert status == 413 and json.loads(body) == {"Message": "Request must be smaller than 6291456 bytes"}


def test_routes(lam: Any, squall: SquallProcess) -> None:
    routes = {"routes": ["GET /hello/{name}", "ANY /api/{proxy+}"]}
    status, _, body = signed_request(squall.url, "PUT", "/_squall/api/routes/echo", json.dumps(routes).encode())
    assert status == 200, body
    status, _, body = signed_request(squall.url, "GET", "/_squall/api/routes")
    assert (
        status == 200
        and {"routeKey": "GET /hello/{name}", "function": "echo", "payloadFormatVersion": "2.0"}
        in json.loads(body)["routes"]
    )
    status, _, body = request(squall.url, "GET", "/hello/bob?x=1")
    assert status == 200, body
    event = json.loads(body)
    assert event["pathParameters"] == {"name": "bob"} and event["routeKey"] == "GET /hello/{name}"
    assert event["rawPath"] == "/hello/bob" and event["queryStringParameters"] == {"x": "1"}
    status, _, body = request(squall.url, "DELETE", "/api/a/b%20c")
    assert status == 200 and json.loads(body)["pathParameters"] == {"proxy": "a/b c"}
    # the same route on another function conflicts; a bad route key is refused
    clash = json.dumps({"routes": ["GET /hello/{who}"]}).encode()
    status, headers, _ = signed_request(squall.url, "PUT", "/_squall/api/routes/plain", clash)
    assert status == 409 and headers["x-amzn-errortype"] == "ResourceConflictException"
    bad = json.dumps({"routes": ["FETCH /x"]}).encode()
    status, _, _ = signed_request(squall.url, "PUT", "/_squall/api/routes/plain", bad)
    assert status == 400
    # Squall's own public pages (the dashboard's login) and /metrics cannot be taken over by a route
    for reserved in ("GET /ui/login", "GET /metrics"):
        taken = json.dumps({"routes": [reserved]}).encode()
        status, _, body = signed_request(squall.url, "PUT", "/_squall/api/routes/plain", taken)
        assert status == 400 and b"reserved" in body
    # unknown paths (and methods a route does not declare) still need a signature
    status, _, _ = request(squall.url, "GET", "/nowhere")
    assert status == 403
    status, _, _ = request(squall.url, "POST", "/hello/bob")
    assert status == 403


def test_deleting_function_drops_url_and_routes(lam: Any, squall: SquallProcess) -> None:
    create(lam, "short-lived", ECHO)
    path = url_path(make_url(lam, "short-lived"))
    routes = json.dumps({"routes": ["GET /short"]}).encode()
    assert signed_request(squall.url, "PUT", "/_squall/api/routes/short-lived", routes)[0] == 200
    assert request(squall.url, "GET", path)[0] == 200
    assert request(squall.url, "GET", "/short")[0] == 200
    lam.delete_function(FunctionName="short-lived")
    assert request(squall.url, "GET", path)[0] == 403
    assert request(squall.url, "GET", "/short")[0] == 403
