"""Function URLs and HTTP routes on the main port, as a plugin (``install(store, functions, invoker, ...)``).

* Lambda API (signed): Create/Get/Update/Delete/ListFunctionUrlConfigs at ``/2021-10-31/functions/{name}/url(s)``,
  shapes per botocore's Lambda model.  ``FunctionUrl`` is ``{public_url}/lambda-url/{url_id}/``.
* Squall API (signed): ``PUT /_squall/api/routes/{function}`` with ``{"routes": ["GET /hello/{name}", ...]}``
  replaces the function's routes (an entry may be ``{"routeKey": "GET /x", "payloadFormatVersion": "1.0"}`` for
  the REST API v1 event); ``GET /_squall/api/routes`` lists them all.
* Serving: unsigned requests to ``/lambda-url/{url_id}/...``, to a Host ``{url_id}.lambda-url.<anything>`` (AWS's
  own form: the function gets the whole path, no prefix) and to declared routes are answered by ``public_app``
  (the function gets an API Gateway v2 / function URL event, or a route's format 1.0 event, see
  ``squall.triggers.function_urls.events``).  A redirect from a function URL's function to a path on the same
  host gets the ``/lambda-url/{url_id}`` prefix (``prefix_location``).  An ``AWS_IAM``
  URL answers 403 unsigned; signed requests reach the same handler through a signed route.
* Everything lives in ``{data_dir}/function_urls.db``; an in-memory copy keeps ``accepts`` cheap.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.routing import Route as StarletteRoute

from squall.aws.json_api import LAMBDA_MAX_BODY_BYTES, error_response, read_json_object, request_id
from squall.core.arn import function_of_arn
from squall.core.errors import (
    InvalidParameterValue,
    RequestTooLarge,
    ResourceConflict,
    ResourceNotFound,
    ServiceError,
    SquallError,
    TooManyRequests,
)
from squall.core.ids import request_id as new_request_id
from squall.core.timefmt import iso_us
from squall.functions.invoker import Invoker
from squall.functions.store.metadata import SqliteMetadataStore
from squall.telemetry.tracing import Tracer
from squall.triggers.function_urls.events import (
    PAYLOAD_FORMATS,
    Route,
    build_event,
    build_event_v1,
    compile_route,
    cors_headers,
    is_preflight,
    map_payload,
    map_payload_v1,
    match_route,
    prefix_location,
    trace_header,
    with_cors,
)
from squall.triggers.function_urls.store import FunctionUrlStore, UrlConfig
from squall.triggers.plugin import Plugin

__all__ = ["MAX_BODY_BYTES", "URL_PREFIX", "FunctionUrls", "install"]

log = logging.getLogger(__name__)

#: function URLs and HTTP APIs refuse request bodies larger than Lambda's synchronous payload limit
MAX_BODY_BYTES = 6 * 1024 * 1024
URL_PREFIX = "/lambda-url/"
_URL_ID_CHARS = string.ascii_lowercase + string.digits
_QUALIFIER = re.compile(r"^[0-9a-zA-Z_-]{1,128}$")
_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "*"})
_CORS_KEYS = frozenset({"AllowCredentials", "AllowHeaders", "AllowMethods", "AllowOrigins", "ExposeHeaders", "MaxAge"})
#: a Host naming a function URL the way AWS does: ``<32-character url id>.lambda-url.<region>.<domain>``
_URL_HOST = re.compile(r"([a-z0-9]{32})\.lambda-url\.", re.IGNORECASE)
_RESERVED_PREFIXES = ("/_squall/", "/lambda-url/", "/2015-03-31/", "/2021-10-31/", "/ui", "/metrics")

RawResponse = tuple[int, list[tuple[str, str]], bytes]


def _message(status: int, text: str) -> RawResponse:
    return status, [("content-type", "application/json")], json.dumps({"Message": text}).encode()


def _is_signed(scope: Any) -> bool:
    for name, _ in scope.get("headers", ()):
        if name == b"authorization":
            return True
    query = scope.get("query_string", b"").lower()
    return b"x-amz-signature=" in query or (b"awsaccesskeyid=" in query and b"signature=" in query)


def _split_function(raw: str) -> tuple[str, str | None]:
    """A function name, full ARN or partial ARN -> (name, qualifier from the ARN or None)."""
    name = unquote(raw)
    if name.startswith("arn:"):
        ref = function_of_arn(name)
        return ref if ref is not None else (name, None)
    parts = name.split(":")
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2], parts[3] if len(parts) > 3 else None
    return name, None


def _route_shape(route: Route) -> str:
    """Route keys that match the same requests ("GET /a/{x}" and "GET /a/{y}") share a shape."""
    if route.is_default:
        return "$default"
    segs = "/".join("{}" if s is None else s for s in route.segments)
    greedy = "/{+}" if route.greedy is not None else ""
    return f"{route.method} /{segs}{greedy}"


def _validate_cors(cors: Any) -> dict[str, Any] | None:
    if cors is None:
        return None
    if not isinstance(cors, dict):
        raise InvalidParameterValue("Cors must be an object with AllowOrigins, AllowMethods, AllowHeaders, ...")
    unknown = set(cors) - _CORS_KEYS
    if unknown:
        raise InvalidParameterValue(f"Cors has unknown fields {sorted(unknown)}; allowed: {sorted(_CORS_KEYS)}")
    if "AllowCredentials" in cors and not isinstance(cors["AllowCredentials"], bool):
        raise InvalidParameterValue("Cors.AllowCredentials must be true or false")
    for key, limit, width in (
        ("AllowHeaders", 100, 1024),
        ("ExposeHeaders", 100, 1024),
        ("AllowOrigins", 100, 253),
        ("AllowMethods", 6, 6),
    ):
        values = cors.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) > limit:
            raise InvalidParameterValue(f"Cors.{key} must be a list of at most {limit} strings")
        for v in values:
            if not isinstance(v, str) or len(v) > width or (key == "AllowOrigins" and not v):
                raise InvalidParameterValue(f"Cors.{key} has an invalid value {v!r}")
            if key == "AllowMethods" and v.upper() not in _HTTP_METHODS:
                raise InvalidParameterValue(
                    f"Cors.AllowMethods has an invalid method {v!r}; use one of {sorted(_HTTP_METHODS)}"
                )
    if "MaxAge" in cors:
        age = cors["MaxAge"]
        if isinstance(age, bool) or not isinstance(age, int) or not 0 <= age <= 86400:
            raise InvalidParameterValue("Cors.MaxAge must be an integer between 0 and 86400")
    return dict(cors)


def _auth_type(value: Any) -> str:
    if value not in ("NONE", "AWS_IAM"):
        raise InvalidParameterValue(
            f"1 validation error detected: Value '{value}' at 'authType' failed to satisfy constraint: Member must "
            "satisfy enum value set: [AWS_IAM, NONE]"
        )
    return str(value)


def _invoke_mode(value: Any) -> str:
    if value is None or value == "BUFFERED":
        return "BUFFERED"
    if value == "RESPONSE_STREAM":
        raise InvalidParameterValue("InvokeMode RESPONSE_STREAM is not supported by Squall; use BUFFERED")
    raise InvalidParameterValue(
        f"1 validation error detected: Value '{value}' at 'invokeMode' failed to satisfy constraint: Member must "
        "satisfy enum value set: [BUFFERED, RESPONSE_STREAM]"
    )


def _route_entry(entry: Any) -> tuple[str, str]:
    """(route key, payload format version) of one entry of a PUT routes body."""
    if isinstance(entry, str):
        return entry, "2.0"
    if (
        isinstance(entry, dict)
        and isinstance(entry.get("routeKey"), str)
        and set(entry)
        <= {
            "routeKey",
            "payloadFormatVersion",
        }
    ):
        version = entry.get("payloadFormatVersion", "2.0")
        if version not in PAYLOAD_FORMATS:
            raise InvalidParameterValue(
                f"payloadFormatVersion {version!r} of route {entry['routeKey']!r} is not valid; use '2.0' or '1.0'"
            )
        return entry["routeKey"], str(version)
    raise InvalidParameterValue(
        'Each route must be a route key ("GET /hello/{name}") or {"routeKey": "GET /x", "payloadFormatVersion": '
        f'"1.0"}}, got {json.dumps(entry)[:100]}'
    )


class _Asgi:
    """A raw ASGI endpoint for a Starlette Route (any method)."""

    def __init__(self, app: Callable[[Any, Any, Any], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class FunctionUrls:
    """The plugin's state: the store, the in-memory index, the API handlers and the public handler."""

    def __init__(
        self, store: FunctionUrlStore, functions: SqliteMetadataStore, invoker: Invoker, *, public_url: str,
        account_id: str,
    ) -> None:  # fmt: skip
        self.store = store
        self.functions = functions
        self.invoker = invoker
        self.account_id = account_id
        self.public_url = public_url.rstrip("/")
        self._urls: dict[str, UrlConfig] = {}
        self._routes: list[Route] = []
        self.refresh()

    # -- index ---------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload the in-memory copy of URL ids and compiled routes from the store."""
        self._urls = {c.url_id: c for c in self.store.list_configs()}
        routes = []
        for key, function, payload_format in self.store.route_formats():
            try:
                routes.append(compile_route(key, function, payload_format))
            except InvalidParameterValue:
                log.warning("ignoring stored route %r of %s", key, function)
        self._routes = routes

    def url_of_host(self, scope: Any) -> UrlConfig | None:
        """The function URL a request's Host names (``<url id>.lambda-url.<anything>``, AWS's own form), if any."""
        for name, value in scope.get("headers", ()):
            if name == b"host":
                m = _URL_HOST.match(value.decode("latin-1"))
                return self._urls.get(m.group(1).lower()) if m else None
        return None

    def accepts(self, scope: Any) -> bool:
        if scope["type"] != "http" or _is_signed(scope):
            return False
        path: str = scope["path"]
        if path.startswith(URL_PREFIX) or (self._urls and self.url_of_host(scope) is not None):
            return True
        if not self._routes:
            return False
        raw = scope.get("raw_path")
        found = match_route(self._routes, scope["method"], raw.decode("latin-1") if raw else path)
        if found is None:
            return False
        scope["squall.route_match"] = found
        return True

    # -- control plane: URL configs --------------------------------------------------------------------------
    def _target(self, request: Request) -> tuple[str, str]:
        name, arn_qualifier = _split_function(request.path_params["FunctionName"])
        qualifier = request.query_params.get("Qualifier") or arn_qualifier or ""
        if qualifier and (not _QUALIFIER.match(qualifier) or qualifier.isdigit()):
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{qualifier}' at 'qualifier' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)"
            )
        self.functions.get_function(name, qualifier or None)  # ResourceNotFound for unknown functions/aliases
        return name, qualifier

    def _shape(self, cfg: UrlConfig, *, modified: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "FunctionUrl": f"{self.public_url}{URL_PREFIX}{cfg.url_id}/",
            "FunctionArn": self.functions.arn(cfg.function, cfg.qualifier or None),
            "AuthType": cfg.auth_type,
        }
        if cfg.cors is not None:
            out["Cors"] = cfg.cors
        out["CreationTime"] = cfg.created
        if modified:
            out["LastModifiedTime"] = cfg.modified
        out["InvokeMode"] = cfg.invoke_mode
        return out

    def _existing(self, name: str, qualifier: str) -> UrlConfig:
        cfg = self.store.get(name, qualifier)
        if cfg is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return cfg

    async def create_url(self, request: Request) -> Response:
        name, qualifier = self._target(request)
        body = await read_json_object(request, LAMBDA_MAX_BODY_BYTES, "CreateFunctionUrlConfig")
        now = iso_us(time.time())
        cfg = UrlConfig(
            url_id="".join(secrets.choice(_URL_ID_CHARS) for _ in range(32)),
            function=name,
            qualifier=qualifier,
            auth_type=_auth_type(body.get("AuthType")),
            cors=_validate_cors(body.get("Cors")),
            invoke_mode=_invoke_mode(body.get("InvokeMode")),
            created=now,
            modified=now,
        )
        if not self.store.insert(cfg):
            arn = self.functions.arn(name, qualifier or None)
            raise ResourceConflict(
                f"Failed to create function url config for [functionArn = {arn}]. Error message:  "
                "FunctionUrlConfig exists for this Lambda function"
            )
        self.refresh()
        return JSONResponse(self._shape(cfg, modified=False), status_code=201)

    async def get_url(self, request: Request) -> Response:
        name, qualifier = self._target(request)
        return JSONResponse(self._shape(self._existing(name, qualifier)))

    async def update_url(self, request: Request) -> Response:
        name, qualifier = self._target(request)
        body = await read_json_object(request, LAMBDA_MAX_BODY_BYTES, "UpdateFunctionUrlConfig")
        cfg = self._existing(name, qualifier)
        updated = UrlConfig(
            url_id=cfg.url_id,
            function=name,
            qualifier=qualifier,
            auth_type=_auth_type(body["AuthType"]) if "AuthType" in body else cfg.auth_type,
            cors=_validate_cors(body["Cors"]) if "Cors" in body else cfg.cors,
            invoke_mode=_invoke_mode(body["InvokeMode"]) if "InvokeMode" in body else cfg.invoke_mode,
            created=cfg.created,
            modified=iso_us(time.time()),
        )
        self.store.update(updated)
        self.refresh()
        return JSONResponse(self._shape(updated))

    async def delete_url(self, request: Request) -> Response:
        name, qualifier = self._target(request)
        if not self.store.delete(name, qualifier):
            raise ResourceNotFound("The resource you requested does not exist.")
        self.refresh()
        return Response(status_code=204)

    async def list_urls(self, request: Request) -> Response:
        name, _ = _split_function(request.path_params["FunctionName"])
        self.functions.get_function(name, None)
        raw_max = request.query_params.get("MaxItems") or "50"
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= 50:
            raise InvalidParameterValue("MaxItems must be an integer between 1 and 50")
        configs = self.store.list_configs(name)
        marker = request.query_params.get("Marker")
        start = 0
        if marker:
            start = next((i for i, c in enumerate(configs) if c.url_id == marker), len(configs))
        page = configs[start : start + int(raw_max)]
        out: dict[str, Any] = {"FunctionUrlConfigs": [self._shape(c) for c in page]}
        if start + int(raw_max) < len(configs):
            out["NextMarker"] = configs[start + int(raw_max)].url_id
        return JSONResponse(out)

    # -- control plane: routes ---------------------------------------------------------------------------------
    async def put_routes(self, request: Request) -> Response:
        name = unquote(request.path_params["function"])
        self.functions.get_function(name, None)
        body = await read_json_object(request, LAMBDA_MAX_BODY_BYTES, "PutRoutes")
        entries = body.get("routes")
        if not isinstance(entries, list):
            raise InvalidParameterValue('The body must be {"routes": ["GET /hello/{name}", ...]}')
        keys: list[str] = []
        formats: list[str] = []
        for entry in entries:
            key, payload_format = _route_entry(entry)
            keys.append(key)
            formats.append(payload_format)
        shapes: dict[str, str] = {}
        for key, payload_format in zip(keys, formats, strict=True):
            route = compile_route(key, name, payload_format)
            if not route.is_default and key.partition(" ")[2].startswith(_RESERVED_PREFIXES):
                raise InvalidParameterValue(
                    f"RouteKey {key!r} is not valid: paths under {', '.join(_RESERVED_PREFIXES)} are reserved"
                )
            shape = _route_shape(route)
            if shape in shapes:
                raise InvalidParameterValue(f"RouteKey {key!r} duplicates {shapes[shape]!r}")
            shapes[shape] = key
        for route in self._routes:
            if route.target != name and _route_shape(route) in shapes:
                raise ResourceConflict(
                    f"RouteKey {shapes[_route_shape(route)]!r} conflicts with route {route.key!r} of function "
                    f"{route.target}; remove it there first"
                )
        self.store.replace_routes(name, keys, formats)
        self.refresh()
        return JSONResponse({"function": name, "routes": entries})

    async def list_routes(self, request: Request) -> Response:
        return JSONResponse(
            {
                "routes": [
                    {"routeKey": k, "function": f, "payloadFormatVersion": v} for k, f, v in self.store.route_formats()
                ]
            }
        )

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def on_change(self, name: str, qualifier: str) -> None:
        """Drop the URL configs and routes of deleted functions (and URL configs of deleted aliases)."""
        try:
            self.functions.get_function(name, None)
        except ResourceNotFound:
            if self.store.delete_function(name):
                self.refresh()
            return
        gone = False
        for cfg in self.store.list_configs(name):
            if not cfg.qualifier:
                continue
            try:
                self.functions.get_function(name, cfg.qualifier)
            except ResourceNotFound:
                gone = self.store.delete(name, cfg.qualifier) or gone
        if gone:
            self.refresh()

    def close(self) -> None:
        self.store.close()

    def triggers(self, function: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The dashboard's view (``core.ports.TriggerQuery``): URL configs and HTTP routes, by function."""
        out: list[tuple[str, dict[str, Any]]] = [
            (cfg.function, {
                "type": "url", "label": f"{self.public_url}{URL_PREFIX}{cfg.url_id}/",
                "qualifier": cfg.qualifier or None, "detail": f"auth {cfg.auth_type}",
            })
            for cfg in self.store.list_configs(function)
        ]  # fmt: skip
        out += [
            (fn, {"type": "route", "label": key, "detail": "squall.yaml route"})
            for key, fn in self.store.routes(function)
        ]
        return out

    # -- serving -------------------------------------------------------------------------------------------------
    async def public_app(self, scope: Any, receive: Any, send: Any) -> None:
        request_id = scope.get("squall.request_id") or new_request_id()
        try:
            status, headers, body = await self._handle(scope, receive, request_id)
        except Exception:
            log.exception("serving %s %s", scope.get("method"), scope.get("path"))
            status, headers, body = _message(500, "Internal Server Error")
        raw = [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in headers if k.lower() != "content-length"]
        raw.append((b"x-amzn-requestid", request_id.encode()))
        if scope["method"] == "HEAD":
            body = b""
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, scope: Any, receive: Any) -> bytes | None:
        """The request body, or None when the client went away; RequestTooLarge past the limit."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.strip().isdigit():
                    raise InvalidParameterValue("Content-Length is not a number")
                if int(value) > MAX_BODY_BYTES:
                    raise RequestTooLarge(f"Request must be smaller than {MAX_BODY_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise RequestTooLarge(f"Request must be smaller than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _handle(self, scope: Any, receive: Any, request_id: str) -> RawResponse:
        path: str = scope["path"]
        raw_path_bytes = scope.get("raw_path")
        raw_path = raw_path_bytes.decode("latin-1") if raw_path_bytes else path
        method: str = scope["method"]
        auth = scope.get("squall.auth")
        cors: dict[str, Any] | None = None
        path_params: dict[str, str] | None = None
        payload_format, prefix = "2.0", ""
        by_host = self.url_of_host(scope) if self._urls else None
        if by_host is not None:  # <url id>.lambda-url.<...> as on AWS: the whole path is the function's
            if by_host.auth_type == "AWS_IAM" and auth is None:
                return _message(403, "Forbidden")
            function, qualifier = by_host.function, by_host.qualifier or None
            event_path, route_key, api_id, cors, trigger = (
                raw_path,
                "$default",
                by_host.url_id,
                by_host.cors,
                "function-url",
            )
        elif path.startswith(URL_PREFIX):
            url_id, _, _ = path[len(URL_PREFIX) :].partition("/")
            cfg = self._urls.get(url_id)
            if cfg is None or (cfg.auth_type == "AWS_IAM" and auth is None):
                return _message(403, "Forbidden")
            function, qualifier = cfg.function, cfg.qualifier or None
            prefix = f"{URL_PREFIX}{url_id}"
            event_path = raw_path[len(prefix) :] if raw_path.startswith(prefix) else path[len(prefix) :]
            event_path = event_path or "/"
            route_key, api_id, cors, trigger = "$default", url_id, cfg.cors, "function-url"
        else:
            found = scope.get("squall.route_match") or match_route(self._routes, method, raw_path)
            if found is None:
                return _message(404, "Not Found")
            route, path_params = found
            function, qualifier, payload_format = str(route.target), None, route.payload_format
            event_path, route_key, api_id, trigger = raw_path, route.key, "squall", "http-route"
        if cors and is_preflight(method, scope["headers"]):
            return 200, cors_headers(cors, scope["headers"], preflight=True), b""
        try:
            body = await self._read_body(scope, receive)
        except RequestTooLarge:
            return _message(413, f"Request must be smaller than {MAX_BODY_BYTES} bytes")
        except InvalidParameterValue as e:
            return _message(400, e.message)
        if body is None:
            return _message(400, "Bad Request")
        host, trace_id, traceparent = "localhost", "", ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"x-amzn-trace-id":
                trace_id = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
        client = scope.get("client")
        account = self.account_id if auth is not None else "anonymous"
        trace_id = trace_header(trace_id, traceparent, Tracer.new_trace_id())
        build = build_event_v1 if payload_format == "1.0" else build_event
        event = build(
            method, event_path, scope.get("query_string", b""), scope["headers"], body,
            source_ip=client[0] if client else "127.0.0.1", route_key=route_key, path_parameters=path_params,
            domain_name=host, api_id=api_id, request_id=request_id, now=time.time(), max_body=MAX_BODY_BYTES,
            account_id=account, scheme=scope.get("scheme", "http"), trace_id=trace_id,
        )  # fmt: skip
        if auth is not None and payload_format == "1.0":
            event["requestContext"]["identity"]["accessKey"] = auth.access_key_id
            event["requestContext"]["identity"]["caller"] = auth.access_key_id
        elif auth is not None:
            event["requestContext"]["authorizer"] = {
                "iam": {"accessKey": auth.access_key_id, "accountId": account, "callerId": auth.access_key_id}
            }
        try:
            result = await self.invoker.invoke(
                function, qualifier, json.dumps(event).encode(), trigger=trigger, trace_id=trace_id,
                traceparent=traceparent, request_id=request_id, payload_is_json=True,
            )  # fmt: skip
        except ResourceNotFound:
            return _message(404, "Not Found")
        except TooManyRequests:
            return _message(429, "Too Many Requests")
        except RequestTooLarge:
            return _message(413, f"Request must be smaller than {MAX_BODY_BYTES} bytes")
        except SquallError as e:
            log.warning("invoking %s for %s: %s", function, path, e.message)
            return _message(502 if e.status >= 500 else e.status, "Internal Server Error")
        mapper = map_payload_v1 if payload_format == "1.0" else map_payload
        status, headers, payload = mapper(result.payload, function_error=bool(result.function_error))
        if prefix:
            headers = prefix_location(headers, prefix, host)
        if cors:
            headers = with_cors(headers, cors_headers(cors, scope["headers"]))
        if result.traceparent:  # the invocation's entry span (observability): the caller can continue the trace
            headers = [*headers, ("traceparent", result.traceparent)]
        return status, headers, payload


def _api(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Render SquallErrors as Lambda rest-json errors."""

    async def endpoint(request: Request) -> Response:
        rid = request_id(request.scope)
        try:
            response = await handler(request)
        except SquallError as e:
            return error_response(rid, e)
        except Exception:
            log.exception("function URL API %s %s", request.method, request.url.path)
            return error_response(rid, ServiceError("Internal error"))
        response.headers["x-amzn-RequestId"] = rid
        return response

    return endpoint


def install(
    store: FunctionUrlStore, functions: SqliteMetadataStore, invoker: Invoker, *, public_url: str, account_id: str
) -> Plugin:
    """The function URL / HTTP route plugin: its store, the functions it points at and the invoker it runs them
    through."""
    urls = FunctionUrls(store, functions, invoker, public_url=public_url, account_id=account_id)
    url_path = "/2021-10-31/functions/{FunctionName}/url"
    routes: list[BaseRoute] = [
        StarletteRoute(url_path, _api(urls.create_url), methods=["POST"]),
        StarletteRoute(url_path, _api(urls.get_url), methods=["GET"]),
        StarletteRoute(url_path, _api(urls.update_url), methods=["PUT"]),
        StarletteRoute(url_path, _api(urls.delete_url), methods=["DELETE"]),
        StarletteRoute("/2021-10-31/functions/{FunctionName}/urls", _api(urls.list_urls), methods=["GET"]),
        StarletteRoute("/_squall/api/routes/{function}", _api(urls.put_routes), methods=["PUT"]),
        StarletteRoute("/_squall/api/routes", _api(urls.list_routes), methods=["GET"]),
        StarletteRoute(URL_PREFIX + "{rest:path}", _Asgi(urls.public_app)),
    ]
    return Plugin(
        name="function-urls",
        routes=routes,
        accepts=urls.accepts,
        public_app=urls.public_app,
        on_change=urls.on_change,
        close=urls.close,
        query=urls,
    )
