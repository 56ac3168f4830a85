"""Lambda's Invoke operation: ``POST /2015-03-31/functions/{FunctionName}/invocations``.

Headers in: X-Amz-Invocation-Type (RequestResponse | Event | DryRun), X-Amz-Log-Type (None | Tail),
X-Amz-Client-Context (base64 JSON); query: Qualifier.  Headers out: X-Amz-Function-Error, X-Amz-Log-Result (base64 of
the last 4 KB of the log), X-Amz-Executed-Version.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request

from squall.aws import errors as aws_errors
from squall.core import jsonlimits
from squall.core.errors import InvalidParameterValue, InvalidRequestContent, ServiceError, SquallError
from squall.functions.control.names import parse_function_name
from squall.functions.invoker import Invoker
from squall.telemetry.tracing import KIND_SERVER, Span

__all__ = ["InvokeEndpoint"]

log = logging.getLogger("squall.edge")


def _client_context(header: str | None) -> dict[str, Any] | None:
    if not header:
        return None
    try:
        doc = jsonlimits.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.")
    if not isinstance(doc, dict):
        raise InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.")
    if len(header) > 3583:
        raise InvalidParameterValue("Client context must be smaller than 3583 bytes.")
    return doc


_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>.+)/invocations$")


class InvokeEndpoint:
    """The Invoke operation as a bare ASGI app: the hottest path in Squall skips the generic router and
    middleware stack (``is_invoke(scope)`` lets the top-level dispatcher send requests straight here), and Starlette's
    Request/Response objects too: the header fields are read from the dict the SigV4 check already built
    (``scope["squall.headers"]``) and the response goes out as two ASGI messages."""

    def __init__(self, invoker: Invoker) -> None:
        self.invoker = invoker

    @staticmethod
    def is_invoke(scope: Any) -> bool:
        return scope["method"] == "POST" and _INVOKE_PATH.match(scope["path"]) is not None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers_in: dict[str, str] | None = scope.get("squall.headers")
        if headers_in is None:
            headers_in = {}
            for k, v in scope["headers"]:
                name = k.decode("latin-1").lower()
                value = v.decode("latin-1")
                headers_in[name] = f"{headers_in[name]},{value}" if name in headers_in else value
        body = scope.get("squall.body")
        if body is None:
            body = await Request(scope, receive).body()
        status, headers, payload = await self.run(scope, headers_in, body)
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if status >= 200 and status not in (204, 304):  # as Starlette's Response framed it
            raw.append((b"content-length", b"%d" % len(payload)))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})

    async def run(self, scope: Any, headers_in: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one Invoke request; ``headers_in``: lower-case names."""
        request_id = scope.get("squall.request_id", "")
        tracer = self.invoker.tracer
        span: Span | None = None
        try:
            itype = headers_in.get("x-amz-invocation-type", "RequestResponse")
            if itype not in ("RequestResponse", "Event", "DryRun"):
                raise InvalidParameterValue(
                    f"1 validation error detected: Value '{itype}' at 'invocationType' failed to satisfy constraint: "
                    "Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
                )
            log_type = headers_in.get("x-amz-log-type", "None")
            m = _INVOKE_PATH.match(scope["path"])
            raw_name = m.group("function") if m else ""
            qualifier = _qualifier(scope.get("query_string") or b"")
            ref = parse_function_name(
                unquote(raw_name), qualifier, region=self.invoker.region, account_id=self.invoker.account_id
            )
            name, qualifier = ref.name, ref.qualifier
            amzn_trace_id = headers_in.get("x-amzn-trace-id", "")
            traceparent = headers_in.get("traceparent", "")
            if tracer is not None:  # the entry span: continues the caller's traceparent / X-Amzn-Trace-Id
                span = tracer.entry_span(f"Invoke {name}", traceparent, amzn_trace_id, KIND_SERVER, None, name)
                if span.sampled:  # attributes only for spans that are kept
                    span.attributes = {
                        "faas.invocation_id": request_id, "faas.name": name, "faas.trigger": "other",
                        "squall.trigger": "lambda-api", "squall.invocation_type": itype,
                    }  # fmt: skip
            result = await self.invoker.invoke(
                name,
                qualifier,
                body,
                invocation_type=itype,  # type: ignore[arg-type]
                client_context=_client_context(headers_in.get("x-amz-client-context")),
                trace_id=amzn_trace_id,
                traceparent=traceparent,
                request_id=request_id or None,
                span=span,
            )
        except SquallError as e:
            status, headers, payload = aws_errors.render("lambda", e, request_id)
            headers = {**headers, "x-amzn-RequestId": request_id}
            if span is not None and tracer is not None:
                span.attributes["error.type"] = e.code
                tracer.end(span, error=True)
                headers["traceparent"] = span.traceparent()
            return status, headers, payload
        except Exception as e:  # a bug of ours: log it, answer in Lambda's shape, never a bare 500
            log.exception("Invoke failed")
            err = ServiceError(f"Squall could not run the invocation ({type(e).__name__}: {e}); see the server log")
            status, headers, payload = aws_errors.render("lambda", err, request_id)
            if span is not None and tracer is not None:
                tracer.end(span, error=True)
            return status, {**headers, "x-amzn-RequestId": request_id}, payload
        headers = {"x-amzn-RequestId": result.request_id, "X-Amz-Executed-Version": result.executed_version}
        if span is not None and tracer is not None:
            if result.function_error:
                span.attributes["error.type"] = result.function_error
            tracer.end(span, error=result.function_error is not None)
            headers["traceparent"] = span.traceparent()
        if result.function_error:
            headers["X-Amz-Function-Error"] = result.function_error
        if log_type == "Tail" and itype == "RequestResponse":
            headers["X-Amz-Log-Result"] = result.log_tail_b64()
        headers["content-type"] = "application/json"
        return result.status, headers, result.payload


def _qualifier(query: bytes) -> str | None:
    """The ``Qualifier`` query parameter (its last value, as Starlette's query_params gave it), if any."""
    if not query:
        return None
    found = None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name == "Qualifier":
            found = value
    return found
