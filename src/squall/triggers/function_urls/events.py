"""HTTP <-> Lambda mapping for function URLs and HTTP API routes (API Gateway payload format 2.0), pure.

Request (``build_event``), following the format 2.0 / function URL event:

* ``headers``: names lower-cased, repeated headers joined with ``,`` (no space); header bytes are decoded as UTF-8,
  falling back to Latin-1.  ``cookie`` headers are removed from ``headers`` and become ``cookies``: every cookie
  header split on ``;``, items stripped, empty items dropped.  ``cookies`` is absent when there are none.
* ``rawQueryString`` is the query exactly as received (still percent-encoded, ``""`` when none).
  ``queryStringParameters`` decodes names and values with form rules (``%XX`` and ``+`` = space), joins repeated
  names with ``,`` and keeps blank values (``?a`` -> ``{"a": ""}``); the key is absent when the query is empty.
* ``pathParameters`` is absent when the route has none; values are percent-decoded (``+`` stays ``+``).
* ``body``: absent when the request has no body.  Sent as text (``isBase64Encoded`` false) when it is valid UTF-8
  and its content-type is textual (``text/*``, ``application/json``, ``application/javascript``,
  ``application/xml``, ``application/yaml``, any ``+json``/``+xml`` suffix) or absent; everything else
  (``application/octet-stream``, images, ``multipart/form-data``, ``application/x-www-form-urlencoded``, ...)
  is base64-encoded with ``isBase64Encoded`` true, as API Gateway HTTP APIs and function URLs do.
* ``requestContext.accountId`` is ``"anonymous"`` unless given (function URLs with auth type NONE).
  ``requestContext.domainName`` is the Host without its port and ``domainPrefix`` its first label, as API Gateway
  derives them.
* The headers API Gateway and function URLs add: ``x-forwarded-proto`` (the scheme the client used),
  ``x-forwarded-port`` (the Host's port, else 443/80 by scheme), ``x-forwarded-for`` (the client's address appended
  to any list it sent) and ``x-amzn-trace-id`` (``trace_header``: the caller's, else one naming the invocation's
  trace).

Payload format 1.0 (``build_event_v1`` / ``map_response_v1``, per route ``payload_format: "1.0"``): the REST API
proxy event (``resource``, ``path``, ``httpMethod``, ``headers`` + ``multiValueHeaders``, ``queryStringParameters`` +
``multiValueQueryStringParameters``, ``pathParameters``, ``stageVariables``, ``requestContext`` with
``resourcePath``/``httpMethod``/``identity.sourceIp``/..., ``body``, ``isBase64Encoded``), absent values as ``null``.
Its response must be an object with ``statusCode``; ``headers`` and ``multiValueHeaders`` are merged (a name in
``multiValueHeaders`` wins), no content-type is added, anything else is a 502.

Response (``map_response`` / ``map_payload``), following "Lambda function response for format 2.0":

* A function error (``X-Amz-Function-Error``) -> 502 ``{"message":"Internal Server Error"}``.
* A JSON object with a ``statusCode`` key is a structured response: ``statusCode`` must be an int 100-599;
  ``headers`` an object of scalar values; ``cookies`` a list of strings, each sent as its own ``set-cookie``;
  ``body`` a string (absent/null = empty), base64-decoded when ``isBase64Encoded`` is true.  ``multiValueHeaders``
  is a format 1.0 field and is ignored.  ``content-type: application/json`` is added when the function sets none
  (what function URLs do).  Anything malformed (wrong types, bad base64, CR/LF in a header) -> 502.
* Any other JSON value (object without ``statusCode``, list, number, boolean, null, string) -> 200 with
  ``content-type: application/json`` and the value as the body.  Per the AWS docs example (function returns
  ``"Hello from Lambda!"`` -> body ``Hello from Lambda!``) a string is sent as its text, without JSON quotes; every
  other value is sent as the function's JSON (``map_payload`` passes the payload bytes through unchanged).
* A payload that is not JSON at all -> 502.

CORS (function URL ``Cors`` config): see ``cors_headers``.  Routes: see ``match_route``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_plus

from squall.core import jsonlimits
from squall.core.errors import InvalidParameterValue, RequestTooLarge
from squall.telemetry.tracing import format_amzn_trace_id, parse_amzn_trace_id, parse_traceparent

__all__ = [
    "HOP_BY_HOP",
    "INTERNAL_ERROR",
    "PAYLOAD_FORMATS",
    "Route",
    "build_event",
    "build_event_v1",
    "compile_route",
    "cors_headers",
    "is_preflight",
    "map_payload",
    "map_payload_v1",
    "map_response",
    "map_response_v1",
    "match_route",
    "parse_query",
    "prefix_location",
    "split_host",
    "trace_header",
    "with_cors",
]

HeaderList = Sequence[tuple[bytes, bytes]]
Response = tuple[int, list[tuple[str, str]], bytes]

INTERNAL_ERROR: Response = (502, [("content-type", "application/json")], b'{"message":"Internal Server Error"}')

#: payload format versions a route can use (function URLs always use 2.0)
PAYLOAD_FORMATS = ("1.0", "2.0")
#: response headers a function cannot set: the server frames the response itself (one Content-Length)
HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"})

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_TYPES = frozenset({"application/json", "application/javascript", "application/xml", "application/yaml"})


# --- request ----------------------------------------------------------------------------------------------------


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _is_text_type(content_type: str | None) -> bool:
    if content_type is None:
        return True
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith("+json") or mime.endswith("+xml")


def _clf_time(now: float) -> str:
    t = time.gmtime(now)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def parse_query(raw_query: str) -> dict[str, str]:
    """``queryStringParameters`` of format 2.0: form-decoded, repeated names joined with ``,``."""
    out: dict[str, str] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        key, val = unquote_plus(name), unquote_plus(value)
        out[key] = f"{out[key]},{val}" if key in out else val
    return out


def split_host(host: str) -> tuple[str, str]:
    """(name, port) of a Host header value (``port`` is ``""`` when absent); IPv6 literals keep their brackets."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            rest = host[end + 1 :]
            return host[: end + 1], rest[1:] if rest.startswith(":") and rest[1:].isdigit() else ""
        return host, ""
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return name, port
    return host, ""


def trace_header(amzn_trace_id: str, traceparent: str, new_trace_id: int) -> str:
    """The ``x-amzn-trace-id`` API Gateway passes on: the caller's when valid, else one naming the caller's W3C
    trace, else a new root (``new_trace_id``, 128 bits starting with the epoch seconds as X-Ray requires)."""
    if amzn_trace_id and parse_amzn_trace_id(amzn_trace_id) is not None:
        return amzn_trace_id
    parsed = parse_traceparent(traceparent) if traceparent else None
    if parsed is not None:
        return format_amzn_trace_id(*parsed)
    t = new_trace_id.to_bytes(16, "big").hex()
    return f"Root=1-{t[:8]}-{t[8:]}"


def _gateway_headers(
    joined: dict[str, str], *, source_ip: str, scheme: str, port: str, trace_id: str
) -> dict[str, str]:
    """What API Gateway adds to a request's headers (x-forwarded-*, x-amzn-trace-id)."""
    forwarded = joined.get("x-forwarded-for", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    if not hops or hops[-1] != source_ip:
        hops.append(source_ip)
    joined["x-forwarded-for"] = ", ".join(hops)
    joined["x-forwarded-proto"] = scheme
    joined["x-forwarded-port"] = port or ("443" if scheme == "https" else "80")
    if trace_id:
        joined["x-amzn-trace-id"] = trace_id
    return joined


def _body_field(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    """(body text or base64, isBase64Encoded); None when there is no body."""
    if not body:
        return None, False
    if _is_text_type(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def build_event(
    method: str,
    raw_path: str | bytes,
    raw_query: bytes,
    headers: HeaderList,
    body: bytes,
    *,
    source_ip: str,
    route_key: str = "$default",
    path_parameters: Mapping[str, str] | None = None,
    stage: str = "$default",
    domain_name: str,
    api_id: str,
    request_id: str,
    now: float,
    max_body: int,
    account_id: str = "anonymous",
    scheme: str = "https",
    trace_id: str = "",
) -> dict[str, Any]:
    """The format 2.0 event for one HTTP request; raises RequestTooLarge when ``body`` exceeds ``max_body`` bytes.

    ``domain_name`` is the request's Host (its port, if any, becomes ``x-forwarded-port``); ``scheme`` is what the
    client used (``x-forwarded-proto``); ``trace_id`` the ``x-amzn-trace-id`` to pass on (see ``trace_header``)."""
    if len(body) > max_body:
        raise RequestTooLarge(f"Request body of {len(body)} bytes exceeds the limit of {max_body} bytes")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    query = raw_query.decode("latin-1")
    cookies: list[str] = []
    joined: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), _decode(raw_value)
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    domain, port = split_host(domain_name)
    _gateway_headers(joined, source_ip=source_ip, scheme=scheme, port=port, trace_id=trace_id)

    event: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": path, "rawQueryString": query}
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if query:
        event["queryStringParameters"] = parse_query(query)
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": method.upper(),
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": stage,
        "time": _clf_time(now),
        "timeEpoch": int(now * 1000),
    }
    text, is_b64 = _body_field(body, joined.get("content-type"))
    if text is not None:
        event["body"] = text
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    event["isBase64Encoded"] = is_b64
    return event


def _resource(route_key: str) -> str:
    """``resource`` / ``resourcePath`` of a format 1.0 event: the route's path template (``$default`` as is)."""
    return route_key.partition(" ")[2] or route_key


def build_event_v1(
    method: str,
    raw_path: str | bytes,
    raw_query: bytes,
    headers: HeaderList,
    body: bytes,
    *,
    source_ip: str,
    route_key: str = "$default",
    path_parameters: Mapping[str, str] | None = None,
    stage: str = "$default",
    domain_name: str,
    api_id: str,
    request_id: str,
    now: float,
    max_body: int,
    account_id: str = "anonymous",
    scheme: str = "https",
    trace_id: str = "",
    access_key: str | None = None,
) -> dict[str, Any]:
    """The payload format 1.0 event (REST API proxy integration / HTTP API format 1.0) for one HTTP request.

    ``path`` is percent-decoded, headers and query parameters come both single-valued (repeated headers joined with
    ``,`` as HTTP APIs do, the last value of a repeated query parameter as REST APIs do) and as lists; absent
    values are ``null``."""
    if len(body) > max_body:
        raise RequestTooLarge(f"Request body of {len(body)} bytes exceeds the limit of {max_body} bytes")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    multi: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        multi.setdefault(raw_name.decode("latin-1").lower(), []).append(_decode(raw_value))
    joined = {name: ",".join(values) for name, values in multi.items()}
    domain, port = split_host(domain_name)
    for name, value in _gateway_headers(
        dict(joined), source_ip=source_ip, scheme=scheme, port=port, trace_id=trace_id
    ).items():
        if joined.get(name) != value:
            joined[name] = value
            multi[name] = [value]
    query: dict[str, list[str]] = {}
    for part in raw_query.decode("latin-1").split("&"):
        if part:
            name, _, value = part.partition("=")
            query.setdefault(unquote_plus(name), []).append(unquote_plus(value))
    text, is_b64 = _body_field(body, joined.get("content-type"))
    decoded_path = unquote(path)
    resource = _resource(route_key)
    return {
        "version": "1.0",
        "resource": resource,
        "path": decoded_path,
        "httpMethod": method.upper(),
        "headers": joined,
        "multiValueHeaders": multi,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "extendedRequestId": request_id,
            "httpMethod": method.upper(),
            "identity": {
                "accessKey": access_key,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": source_ip,
                "user": None,
                "userAgent": joined.get("user-agent", ""),
                "userArn": None,
            },
            "path": decoded_path,
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": _clf_time(now),
            "requestTimeEpoch": int(now * 1000),
            "resourceId": route_key,
            "resourcePath": resource,
            "stage": stage,
        },
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": None,
        "body": text,
        "isBase64Encoded": is_b64,
    }


# --- response ---------------------------------------------------------------------------------------------------


def _header_value(value: Any) -> str | None:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        return None
    return None if ("\r" in text or "\n" in text) else text


def _structured(result: dict[str, Any]) -> Response:
    status = result.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return INTERNAL_ERROR
    out: list[tuple[str, str]] = []
    raw_headers = result.get("headers")
    if raw_headers is not None:
        if not isinstance(raw_headers, dict):
            return INTERNAL_ERROR
        for name, value in raw_headers.items():
            text = _header_value(value)
            if text is None or not name or "\r" in name or "\n" in name or ":" in name:
                return INTERNAL_ERROR
            if name.lower() not in HOP_BY_HOP:
                out.append((name.lower(), text))
    cookies = result.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, list) or not all(
            isinstance(c, str) and "\r" not in c and "\n" not in c for c in cookies
        ):
            return INTERNAL_ERROR
        out.extend(("set-cookie", c) for c in cookies)
    if not any(name == "content-type" for name, _ in out):
        out.append(("content-type", "application/json"))
    body = result.get("body")
    is_b64 = result.get("isBase64Encoded", False)
    if not isinstance(is_b64, bool) or not (body is None or isinstance(body, str)):
        return INTERNAL_ERROR
    if body is None:
        return status, out, b""
    if is_b64:
        try:
            return status, out, base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return INTERNAL_ERROR
    return status, out, body.encode("utf-8")


def map_response(result: Any, *, function_error: bool = False) -> Response:
    """The HTTP response for a function's (already JSON-decoded) result, per the format 2.0 rules above."""
    if function_error:
        return INTERNAL_ERROR
    if isinstance(result, dict) and "statusCode" in result:
        return _structured(result)
    json_type = [("content-type", "application/json")]
    if isinstance(result, str):
        return 200, json_type, result.encode("utf-8")
    try:
        return 200, json_type, json.dumps(result).encode("utf-8")
    except (TypeError, ValueError):
        return INTERNAL_ERROR


def map_payload(payload: bytes, *, function_error: bool = False) -> Response:
    """``map_response`` for the raw invocation payload; a non-JSON payload is a 502."""
    if function_error:
        return INTERNAL_ERROR
    try:
        result = jsonlimits.loads(payload, max_depth=jsonlimits.MAX_PAYLOAD_DEPTH)
    except (ValueError, UnicodeDecodeError):
        return INTERNAL_ERROR
    if isinstance(result, str) or (isinstance(result, dict) and "statusCode" in result):
        return map_response(result)
    return 200, [("content-type", "application/json")], payload.strip()


def _structured_v1(result: dict[str, Any]) -> Response:
    status = result.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return INTERNAL_ERROR
    merged: dict[str, list[str]] = {}
    single, multi = result.get("headers"), result.get("multiValueHeaders")
    if not isinstance(single, dict | None) or not isinstance(multi, dict | None):
        return INTERNAL_ERROR
    for name, value in (single or {}).items():
        text = _header_value(value)
        if text is None:
            return INTERNAL_ERROR
        merged[str(name).lower()] = [text]
    for name, values in (multi or {}).items():
        if not isinstance(values, list):
            return INTERNAL_ERROR
        texts = [_header_value(v) for v in values]
        if any(t is None for t in texts):
            return INTERNAL_ERROR
        merged[str(name).lower()] = [t for t in texts if t is not None]
    out: list[tuple[str, str]] = []
    for name, values in merged.items():
        if not name or "\r" in name or "\n" in name or ":" in name:
            return INTERNAL_ERROR
        if name not in HOP_BY_HOP:
            out.extend((name, v) for v in values)
    body = result.get("body")
    is_b64 = result.get("isBase64Encoded", False)
    if not isinstance(is_b64, bool) or not (body is None or isinstance(body, str)):
        return INTERNAL_ERROR
    if body is None:
        return status, out, b""
    if is_b64:
        try:
            return status, out, base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return INTERNAL_ERROR
    return status, out, body.encode("utf-8")


def map_response_v1(result: Any, *, function_error: bool = False) -> Response:
    """The HTTP response for a payload format 1.0 result: an object with ``statusCode`` (else 502)."""
    if function_error or not isinstance(result, dict) or "statusCode" not in result:
        return INTERNAL_ERROR
    return _structured_v1(result)


def map_payload_v1(payload: bytes, *, function_error: bool = False) -> Response:
    """``map_response_v1`` for the raw invocation payload; a non-JSON payload is a 502."""
    if function_error:
        return INTERNAL_ERROR
    try:
        result = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return INTERNAL_ERROR
    return map_response_v1(result)


def prefix_location(headers: list[tuple[str, str]], prefix: str, host: str) -> list[tuple[str, str]]:
    """Redirects of a function served under a path ``prefix`` (``/lambda-url/<id>``): a ``location`` that is a path
    from the root (``/docs/``) or an absolute URL on the request's ``host`` gets the prefix, so the redirect comes
    back through the same function URL (what a reverse proxy mounting an app under a prefix does).  Other
    locations (relative, other hosts, already prefixed) are left alone."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if name.lower() == "location":
            value = _prefixed(value, prefix, host)
        out.append((name, value))
    return out


def _prefixed(location: str, prefix: str, host: str) -> str:
    if location.startswith("/") and not location.startswith("//"):
        path, start = location, ""
    else:
        scheme, sep, rest = location.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            return location
        authority, slash, tail = rest.partition("/")
        if authority.lower() != host.lower():
            return location
        start, path = f"{scheme}://{authority}", slash + tail
    if path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?"):
        return location
    return start + prefix + (path or "/")


# --- CORS -------------------------------------------------------------------------------------------------------


def _lower_headers(headers: HeaderList | Mapping[str, str]) -> dict[str, str]:
    if isinstance(headers, Mapping):
        return {k.lower(): v for k, v in headers.items()}
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.decode("latin-1").lower()
        text = _decode(value)
        out[key] = f"{out[key]},{text}" if key in out else text
    return out


def is_preflight(method: str, headers: HeaderList | Mapping[str, str]) -> bool:
    """A CORS preflight: OPTIONS with both ``Origin`` and ``Access-Control-Request-Method``."""
    h = _lower_headers(headers)
    return method.upper() == "OPTIONS" and "origin" in h and "access-control-request-method" in h


def _listed(values: Iterable[str] | None) -> list[str]:
    return [v for v in (values or []) if isinstance(v, str) and v]


def cors_headers(
    config: Mapping[str, Any] | None, request_headers: HeaderList | Mapping[str, str], *, preflight: bool = False
) -> list[tuple[str, str]]:
    """CORS response headers for a function URL ``Cors`` config (AllowOrigins, AllowMethods, AllowHeaders,
    ExposeHeaders, MaxAge, AllowCredentials).

    Nothing is added when there is no config, no ``Origin`` header, or the origin is not allowed (the browser then
    blocks the response).  Origins match exactly (case-insensitively) or through ``*``.  The allowed origin is sent
    as ``*`` when ``*`` is configured without credentials, otherwise the request's origin is echoed with
    ``vary: Origin``.  Preflight answers add ``access-control-allow-methods``/``-headers`` (the configured lists;
    with credentials a configured ``*`` echoes the requested method/headers, since browsers do not treat ``*`` as a
    wildcard then) and ``access-control-max-age``; other responses add ``access-control-expose-headers``.
    """
    if not config:
        return []
    h = _lower_headers(request_headers)
    origin = h.get("origin")
    if not origin:
        return []
    origins = _listed(config.get("AllowOrigins"))
    credentials = bool(config.get("AllowCredentials"))
    wildcard = "*" in origins
    if not wildcard and origin.lower() not in {o.lower() for o in origins}:
        return []
    out: list[tuple[str, str]] = []
    if wildcard and not credentials:
        out.append(("access-control-allow-origin", "*"))
    else:
        out.append(("access-control-allow-origin", origin))
        out.append(("vary", "Origin"))
    if credentials:
        out.append(("access-control-allow-credentials", "true"))
    if preflight:
        methods = [m.upper() for m in _listed(config.get("AllowMethods"))]
        if "*" in methods and credentials:
            methods = [h.get("access-control-request-method", "*").upper()]
        if methods:
            out.append(("access-control-allow-methods", ",".join(methods)))
        allow_headers = [a.lower() for a in _listed(config.get("AllowHeaders"))]
        if "*" in allow_headers and credentials:
            requested = h.get("access-control-request-headers", "")
            allow_headers = [r.strip().lower() for r in requested.split(",") if r.strip()]
        if allow_headers:
            out.append(("access-control-allow-headers", ",".join(allow_headers)))
        max_age = config.get("MaxAge")
        if isinstance(max_age, int) and not isinstance(max_age, bool) and max_age >= 0:
            out.append(("access-control-max-age", str(max_age)))
    else:
        expose = [e.lower() for e in _listed(config.get("ExposeHeaders"))]
        if expose:
            out.append(("access-control-expose-headers", ",".join(expose)))
    return out


def with_cors(headers: list[tuple[str, str]], cors: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The function's response headers with the URL's CORS headers, which replace any the function set itself."""
    if not cors:
        return headers
    kept = [(n, v) for n, v in headers if not n.lower().startswith("access-control-")]
    return kept + cors


# --- routes -----------------------------------------------------------------------------------------------------

_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "ANY"})
_VAR = re.compile(r"\{([A-Za-z0-9_.\-]+)(\+?)\}")


@dataclass(frozen=True)
class Route:
    """A compiled route key.  ``segments`` holds literals and ``None`` where a ``{param}`` sits (named in
    ``params``); ``greedy`` names a trailing ``{name+}``.  ``target`` is the caller's payload (e.g. a function)."""

    key: str
    method: str
    segments: tuple[str | None, ...] = ()
    params: tuple[str, ...] = ()
    greedy: str | None = None
    target: Any = field(default=None, compare=False)
    payload_format: str = field(default="2.0", compare=False)

    @property
    def is_default(self) -> bool:
        return self.key == "$default"


def _bad_route(key: str, why: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"RouteKey {key!r} is not valid: {why}; use e.g. 'GET /hello/{{name}}', 'ANY /{{proxy+}}' or '$default'"
    )


def compile_route(route_key: str, target: Any = None, payload_format: str = "2.0") -> Route:
    """Compile ``'METHOD /path/{param}/{rest+}'`` or ``'$default'``; raise InvalidParameterValue when malformed.
    ``payload_format`` is the event format the route's function gets ("2.0" or "1.0")."""
    if payload_format not in PAYLOAD_FORMATS:
        raise InvalidParameterValue(
            f"PayloadFormatVersion {payload_format!r} of route {route_key!r} is not valid; use '2.0' or '1.0'"
        )
    if route_key == "$default":
        return Route(key=route_key, method="ANY", target=target, payload_format=payload_format)
    method, sep, path = route_key.partition(" ")
    if not sep or method not in _METHODS:
        raise _bad_route(route_key, f"the method must be one of {', '.join(sorted(_METHODS))}")
    if not path.startswith("/") or " " in path:
        raise _bad_route(route_key, "the path must start with '/'")
    parts = [] if path == "/" else path[1:].split("/")
    segments: list[str | None] = []
    params: list[str] = []
    greedy: str | None = None
    for i, part in enumerate(parts):
        if not part:
            raise _bad_route(route_key, "empty path segment")
        m = _VAR.fullmatch(part)
        if m is None:
            if "{" in part or "}" in part:
                raise _bad_route(route_key, f"a path variable must be a whole segment, not {part!r}")
            segments.append(part)
            continue
        name = m.group(1)
        if name in params or name == greedy:
            raise _bad_route(route_key, f"path variable {name!r} appears twice")
        if m.group(2):
            if i != len(parts) - 1:
                raise _bad_route(route_key, "a greedy path variable {name+} must be the last segment")
            greedy = name
        else:
            segments.append(None)
            params.append(name)
    return Route(
        key=route_key, method=method, segments=tuple(segments), params=tuple(params), greedy=greedy, target=target,
        payload_format=payload_format,
    )  # fmt: skip


def _match(route: Route, parts: list[str]) -> dict[str, str] | None:
    n = len(route.segments)
    if route.greedy is None:
        if len(parts) != n:
            return None
    elif len(parts) <= n:
        return None
    values: dict[str, str] = {}
    names = iter(route.params)
    for template, part in zip(route.segments, parts, strict=False):
        if template is None:
            if not part:
                return None
            values[next(names)] = unquote(part)
        elif template != part:
            return None
    if route.greedy is not None:
        rest = "/".join(parts[n:])
        if not rest:
            return None
        values[route.greedy] = unquote(rest)
    return values


def match_route(routes: Iterable[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The best route for ``method path`` with its path parameters, or None (API Gateway answers 404).

    Precedence (API Gateway's "most specific match"): routes without a greedy variable, then greedy ones (longer
    literal/param prefix first), then ``$default``.  Among equals, a literal segment beats a ``{param}`` at the first
    position where they differ (left to right), and then an explicit method beats ``ANY``.  Path parameters are
    percent-decoded; ``{proxy+}`` matches one or more whole segments.  ``method`` never matches another method
    (a ``GET`` route does not serve ``HEAD``).
    """
    method = method.upper()
    parts = [] if path in ("", "/") else path[1:].split("/") if path.startswith("/") else path.split("/")
    best: tuple[tuple[Any, ...], Route, dict[str, str]] | None = None
    for route in routes:
        if route.method not in (method, "ANY"):
            continue
        if route.is_default:
            rank: tuple[Any, ...] = (2, 0, (), 1)
            values: dict[str, str] | None = {}
        else:
            values = _match(route, parts)
            if values is None:
                continue
            kinds = tuple(0 if s is not None else 1 for s in route.segments)
            greedy = route.greedy is not None
            rank = (1 if greedy else 0, -len(route.segments) if greedy else 0, kinds, 1 if route.method == "ANY" else 0)
        assert values is not None
        if best is None or rank < best[0]:
            best = (rank, route, values)
    return None if best is None else (best[1], best[2])
