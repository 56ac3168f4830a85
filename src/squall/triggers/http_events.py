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

from squall import jsonlimits
from squall.errors import InvalidParameterValue, RequestTooLarge

__all__ = [
    "INTERNAL_ERROR",
    "Route",
    "build_event",
    "compile_route",
    "cors_headers",
    "is_preflight",
    "map_payload",
    "map_response",
    "match_route",
    "parse_query",
    "with_cors",
]

HeaderList = Sequence[tuple[bytes, bytes]]
Response = tuple[int, list[tuple[str, str]], bytes]

INTERNAL_ERROR: Response = (502, [("content-type", "application/json")], b'{"message":"Internal Server Error"}')

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
) -> dict[str, Any]:
    """The format 2.0 event for one HTTP request; raises RequestTooLarge when ``body`` exceeds ``max_body`` bytes."""
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

    event: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": path, "rawQueryString": query}
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if query:
        event["queryStringParameters"] = parse_query(query)
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".", 1)[0],
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
    is_b64 = False
    if body:
        text: str | None = None
        if _is_text_type(joined.get("content-type")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"] = base64.b64encode(body).decode("ascii")
            is_b64 = True
        else:
            event["body"] = text
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    event["isBase64Encoded"] = is_b64
    return event


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

    @property
    def is_default(self) -> bool:
        return self.key == "$default"


def _bad_route(key: str, why: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"RouteKey {key!r} is not valid: {why}; use e.g. 'GET /hello/{{name}}', 'ANY /{{proxy+}}' or '$default'"
    )


def compile_route(route_key: str, target: Any = None) -> Route:
    """Compile ``'METHOD /path/{param}/{rest+}'`` or ``'$default'``; raise InvalidParameterValue when malformed."""
    if route_key == "$default":
        return Route(key=route_key, method="ANY", target=target)
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
        key=route_key, method=method, segments=tuple(segments), params=tuple(params), greedy=greedy, target=target
    )


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
