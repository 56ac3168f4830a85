"""End to end, through a real ``squall up``: one Content-Length on the wire, the headers API Gateway adds, FastAPI +
Mangum (vendored into the zip with Squall's own packaging) redirecting through the function URL prefix, and a
Chalice-style REST (payload format 1.0) handler on a declared route."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.e2e._platform import SquallProcess, create
from tests.e2e.test_function_urls import make_url, request, signed_request, url_path

from squall.cli.packaging import BuildError, build_package

ECHO_TRACE = """
import os

def handler(event, context):
    return {"event": event, "trace": os.environ.get("_X_AMZN_TRACE_ID", "")}
"""

OWN_LENGTH = """
def handler(event, context):
    return {"statusCode": 200, "headers": {"Content-Length": "5", "content-type": "text/plain"}, "body": "hello"}
"""

CHALICE_STYLE = """
import json

def handler(event, context):
    # what Chalice's REST API handler reads: payload format 1.0
    method, path = event["httpMethod"], event["path"]
    body = {
        "method": method, "path": path, "resource": event["resource"], "params": event["pathParameters"],
        "query": event["multiValueQueryStringParameters"], "ip": event["requestContext"]["identity"]["sourceIp"],
        "resourcePath": event["requestContext"]["resourcePath"], "stage": event["requestContext"]["stage"],
        "agent": event["headers"].get("user-agent"),
    }
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Handler": "v1"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
"""

FASTAPI_APP = """
from fastapi import FastAPI, Request
from mangum import Mangum

app = FastAPI()


@app.get("/items/")
def items():
    return {"items": [1, 2]}


@app.get("/whoami")
def whoami(request: Request):
    return {"url": str(request.url), "client": request.client.host if request.client else None}


handler = Mangum(app, lifespan="off")
"""


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(tmp_path_factory.mktemp("http") / "data").start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def lam(squall: SquallProcess) -> Any:
    client = squall.client("lambda")
    for name, code in (("echo-trace", ECHO_TRACE), ("own-length", OWN_LENGTH), ("chalice", CHALICE_STYLE)):
        create(client, name, code)
    return client


def raw_get(port: int, path: str) -> tuple[bytes, list[tuple[str, str]], bytes]:
    """A GET on a plain socket: the status line, every header line as sent, and the body (the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = [(n.strip().lower().decode(), v.strip().decode()) for n, _, v in (line.partition(b":") for line in lines)]
    return status, headers, body


def host_request(port: int, host: str, path: str) -> tuple[int, Any, bytes]:
    """A GET to 127.0.0.1 naming another Host (a function URL's own host name, as on AWS)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def test_one_content_length_on_the_wire(lam: Any, squall: SquallProcess) -> None:
    path = url_path(make_url(lam, "own-length"))
    status, headers, body = raw_get(squall.port, path)
    assert status == b"HTTP/1.1 200 OK"
    assert [v for n, v in headers if n == "content-length"] == ["5"]
    assert "transfer-encoding" not in dict(headers) and body == b"hello"
    # Node's HTTP parser refuses a response with two Content-Length headers (HPE_UNEXPECTED_CONTENT_LENGTH)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the raw-socket check above stands alone")
    script = (
        "require('http').get(process.argv[1], r => { let b = ''; r.on('data', c => b += c);"
        " r.on('end', () => console.log(r.statusCode, b)); }).on('error', e => { console.log('ERR', e.code); });"
    )
    out = subprocess.run(
        [node, "-e", script, f"http://127.0.0.1:{squall.port}{path}"], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "200 hello", out.stdout + out.stderr


def test_gateway_headers_and_trace_id(lam: Any, squall: SquallProcess) -> None:
    path = url_path(make_url(lam, "echo-trace"))
    status, _, body = request(squall.url, "GET", path + "x", headers=[("X-Forwarded-For", "203.0.113.7")])
    assert status == 200, body
    out = json.loads(body)
    headers = out["event"]["headers"]
    assert headers["x-forwarded-proto"] == "http" and headers["x-forwarded-port"] == str(squall.port)
    # loopback is a trusted proxy (uvicorn's default FORWARDED_ALLOW_IPS): the client it names is the source
    assert headers["x-forwarded-for"] == "203.0.113.7"
    assert out["event"]["requestContext"]["http"]["sourceIp"] == "203.0.113.7"
    root = headers["x-amzn-trace-id"].split(";")[0]
    assert root.startswith("Root=1-") and len(root) == len("Root=1-") + 8 + 1 + 24
    assert out["trace"].split(";")[0] == root  # the function's _X_AMZN_TRACE_ID continues the same trace
    ctx = out["event"]["requestContext"]
    assert ctx["domainName"] == "127.0.0.1" and ctx["domainPrefix"] == "127"
    # AWS's own form of a function URL host: the id is the domainPrefix and the function gets the whole path
    url_id = path.split("/")[2]
    host = f"{url_id}.lambda-url.us-east-1.localhost:{squall.port}"
    status, _, body = host_request(squall.port, host, "/a/b?x=1")
    assert status == 200, body
    event = json.loads(body)["event"]
    assert event["rawPath"] == "/a/b" and event["rawQueryString"] == "x=1"
    assert event["requestContext"]["domainName"] == f"{url_id}.lambda-url.us-east-1.localhost"
    assert event["requestContext"]["domainPrefix"] == url_id and event["requestContext"]["apiId"] == url_id
    status, _, _ = host_request(squall.port, f"{'0' * 32}.lambda-url.us-east-1.localhost", "/")
    assert status == 403  # no such URL: not served, and unsigned
    # a caller's trace id is passed on
    caller = "Root=1-5e5ffc9e-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=0"
    status, _, body = request(squall.url, "GET", path, headers=[("X-Amzn-Trace-Id", caller)])
    out = json.loads(body)
    assert out["event"]["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert out["event"]["headers"]["x-amzn-trace-id"] == caller
    assert out["trace"].startswith("Root=1-5e5ffc9e-0123456789abcdef01234567;")


def test_chalice_style_v1_route(lam: Any, squall: SquallProcess) -> None:
    routes = {"routes": [{"routeKey": "GET /legacy/{id}", "payloadFormatVersion": "1.0"}, "POST /modern"]}
    status, _, body = signed_request(squall.url, "PUT", "/_squall/api/routes/chalice", json.dumps(routes).encode())
    assert status == 200, body
    status, _, body = signed_request(squall.url, "GET", "/_squall/api/routes")
    listed = json.loads(body)["routes"]
    assert {"routeKey": "GET /legacy/{id}", "function": "chalice", "payloadFormatVersion": "1.0"} in listed
    status, headers, body = request(
        squall.url, "GET", "/legacy/a%20b?tag=x&tag=y", headers=[("User-Agent", "chalice-test")]
    )
    assert status == 201, body
    assert headers["x-handler"] == "v1" and headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert headers.get_all("content-length") == [str(len(body))]
    assert json.loads(body) == {
        "method": "GET",
        "path": "/legacy/a b",
        "resource": "/legacy/{id}",
        "params": {"id": "a b"},
        "query": {"tag": ["x", "y"]},
        "ip": "127.0.0.1",
        "resourcePath": "/legacy/{id}",
        "stage": "$default",
        "agent": "chalice-test",
    }
    # the same handler on a 2.0 route fails as it would on AWS (KeyError: httpMethod -> 502)
    status, _, body = request(squall.url, "POST", "/modern", b"{}")
    assert status == 502 and json.loads(body) == {"message": "Internal Server Error"}
    bad = json.dumps({"routes": [{"routeKey": "GET /x", "payloadFormatVersion": "3.0"}]}).encode()
    status, _, body = signed_request(squall.url, "PUT", "/_squall/api/routes/chalice", bad)
    assert status == 400 and b"payloadFormatVersion" in body


def _fastapi_zip(tmp_path: Path) -> bytes:
    code = tmp_path / "fastapi-code"
    code.mkdir()
    (code / "app.py").write_text(FASTAPI_APP)
    (code / "requirements.txt").write_text("fastapi\nmangum\n")
    cache = Path(os.environ.get("SQUALL_TEST_DEPS_CACHE", Path(tempfile.gettempdir()) / "squall-test-deps"))
    try:
        data, _ = build_package(code, code / "requirements.txt", cache)
    except BuildError as e:  # no package index reachable: say so instead of passing
        pytest.skip(f"FastAPI and Mangum could not be installed with pip: {e.message[:300]}")
    return data


def test_fastapi_mangum_through_the_function_url(lam: Any, squall: SquallProcess, tmp_path: Path) -> None:
    lam.create_function(
        FunctionName="fastapi", Runtime="python3.11", Role="arn:aws:iam::000000000000:role/x",
        Handler="app.handler", Code={"ZipFile": _fastapi_zip(tmp_path)}, MemorySize=512, Timeout=30,
    )  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="fastapi")
    function_url = make_url(lam, "fastapi")
    prefix = url_path(function_url).rstrip("/")
    # Starlette's redirect_slashes: /items -> /items/, through the function URL's prefix
    status, headers, body = request(squall.url, "GET", prefix + "/items")
    assert status == 307, body
    location = headers["location"]
    assert location == f"http://127.0.0.1:{squall.port}{prefix}/items/"
    u = urlsplit(location)
    status, headers, body = request(f"{u.scheme}://{u.netloc}", "GET", u.path)
    assert status == 200 and json.loads(body) == {"items": [1, 2]}
    # FastAPI sets its own content-length: still one on the wire
    raw_status, raw_headers, raw_body = raw_get(squall.port, prefix + "/items/")
    assert raw_status == b"HTTP/1.1 200 OK"
    assert [v for n, v in raw_headers if n == "content-length"] == [str(len(raw_body))]
    # the app sees the scheme, host and client the gateway headers describe
    status, _, body = request(squall.url, "GET", prefix + "/whoami?x=1")
    assert status == 200 and json.loads(body) == {
        "url": f"http://127.0.0.1:{squall.port}/whoami?x=1",
        "client": "127.0.0.1",
    }
    # the interactive docs page loads
    status, headers, body = request(squall.url, "GET", prefix + "/docs")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"swagger-ui" in body
    status, _, body = request(squall.url, "GET", prefix + "/openapi.json")
    assert status == 200 and "/items/" in json.loads(body)["paths"]
    # on the function URL's own host name (as on AWS) there is no prefix: redirects, /docs and the spec it loads work
    host = f"{prefix.rsplit('/', 1)[1]}.lambda-url.us-east-1.localhost:{squall.port}"
    status, headers, _ = host_request(squall.port, host, "/items")
    assert status == 307 and headers["location"] == f"http://{host}/items/"
    status, _, body = host_request(squall.port, host, "/docs")
    assert status == 200 and b"url: '/openapi.json'" in body
    status, _, body = host_request(squall.port, host, "/openapi.json")
    assert status == 200 and "/items/" in json.loads(body)["paths"]


def test_squall_yaml_payload_format_deploys(squall: SquallProcess, tmp_path: Path) -> None:
    code = tmp_path / "legacy"
    code.mkdir()
    (code / "app.py").write_text(CHALICE_STYLE)
    (tmp_path / "squall.yaml").write_text(
        "functions:\n"
        "  yaml-legacy:\n"
        "    handler: app.handler\n"
        "    code: ./legacy\n"
        "    events:\n"
        '      - http: {method: GET, path: "/yaml-legacy/{id}", payload_format: "1.0"}\n'
    )
    env = {**squall.env, "SQUALL_ENDPOINT": squall.url}
    for var in ("AWS_ENDPOINT_URL", "SQUALL_PORT"):
        env.pop(var, None)
    result = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "deploy", str(tmp_path / "squall.yaml")],
        env=env, capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    status, _, body = request(squall.url, "GET", "/yaml-legacy/7")
    assert status == 201, body
    assert json.loads(body)["resource"] == "/yaml-legacy/{id}" and json.loads(body)["params"] == {"id": "7"}
