"""The one-port dispatch: every request on Squall's port reaches exactly one service.

In order: SigV4 (or a dashboard session, or a public path) in front (``aws.auth.SigV4Middleware``); unsigned
requests a trigger serves itself (function URLs with auth NONE, HTTP routes) go to that trigger; signed requests go
by the service they were signed for (S3 paths look like anything, so the signature decides, not the path): S3, SQS,
IAM/STS, Lambda's Invoke, a Lambda-shaped "not implemented" for other services, and everything else (the Lambda
control plane, Squall's own API, the dashboard) to one Starlette app.  A function's own key gets only what its
execution role allows (``iam.gate``), never management.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from squall.aws.auth import SigV4Middleware, send_error
from squall.aws.credentials import KeyRing
from squall.dashboard.ui.sessions import SessionGate
from squall.functions.invoke_api import InvokeEndpoint
from squall.iam.gate import Gate, lambda_not_implemented_route, not_implemented_service, render_unknown_service
from squall.sqs.api import is_sqs_request

__all__ = ["Public", "router"]

#: (accepts(scope), app): an unsigned request a trigger serves itself
Public = tuple[Callable[[Scope], bool], ASGIApp]


def router(
    *,
    routes: Sequence[BaseRoute],
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    health: Callable[[], dict[str, Any]],
    pool_summary: Callable[[], dict[str, Any]],
    s3: ASGIApp,
    sqs: ASGIApp,
    iam: ASGIApp,
    invoke: InvokeEndpoint,
    gate: Gate,
    keyring: KeyRing,
    public: Sequence[Public],
    public_prefixes: Sequence[str],
    session: SessionGate,
) -> ASGIApp:
    """The ASGI app of the whole port.  ``routes``: the signed Starlette routes (Lambda control plane, Squall's
    API, the dashboard); ``start``/``stop``: the app's lifespan; ``health`` and ``pool_summary``: the bodies of
    ``/_squall/health`` (public) and ``/_squall/api/pool``."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await start()
        try:
            yield
        finally:
            await stop()

    async def health_route(_: Request) -> Response:
        return JSONResponse(health())

    async def pool_route(_: Request) -> Response:
        return JSONResponse(pool_summary())

    all_routes = [
        Route("/_squall/health", health_route),
        Route("/_squall/api/pool", pool_route),
        *routes,
        lambda_not_implemented_route(),  # last: Lambda-shaped "not implemented" for any other API path
    ]
    app = Starlette(routes=all_routes, lifespan=lifespan)

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        """One port, routed by the service the request was signed for (S3 paths look like anything)."""
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        auth = scope.get("squall.auth")
        service = auth.service if auth is not None else ""
        # a function's own key: only what its execution role allows (squall.iam), never management
        function = keyring.scope_of(auth.access_key_id) if auth is not None else None
        request_id = scope.get("squall.request_id", "")
        if service == "s3" or scope.get("squall.s3_post"):  # signed S3, or a form upload (policy-signed)
            denied = gate.s3(function, scope) if function is not None else None
            if denied is not None:
                await send_error(send, "s3", denied, request_id, head=scope["method"] == "HEAD")
                return
            await s3(scope, receive, send)
        elif service == "sqs" or is_sqs_request(scope):
            denied = gate.sqs(function, scope) if function is not None else None
            if denied is not None:
                await send_error(send, "sqs", denied, request_id)
                return
            await sqs(scope, receive, send)
        elif service in ("iam", "sts"):
            await iam(scope, receive, send)  # IAM: admin key only; STS GetCallerIdentity: anyone
        elif invoke.is_invoke(scope):
            denied = gate.invoke(function, scope) if function is not None else None
            if denied is not None:
                await send_error(send, "lambda", denied, request_id)
                return
            await invoke(scope, receive, send)
        elif service and service != "lambda":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            status, h, body = render_unknown_service(
                service, headers, scope.get("query_string", b""), not_implemented_service(service), request_id
            )
            raw = [(k.lower().encode(), v.encode()) for k, v in h.items()]
            raw += [(b"x-amzn-requestid", request_id.encode()), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
        elif function is not None:
            await send_error(send, "lambda", gate.management(function, scope), request_id)
        else:
            await app(scope, receive, send)

    handlers = list(public)

    def is_public(scope: Scope) -> bool:
        for accepts, handler in handlers:
            if accepts(scope):
                scope["squall.public_app"] = handler  # outer() serves it without asking every handler again
                return True
        return False

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "squall.auth" not in scope:
            chosen = scope.get("squall.public_app")
            if chosen is not None:
                await chosen(scope, receive, send)
                return
            for accepts, handler in handlers:
                if accepts(scope):
                    await handler(scope, receive, send)
                    return
        await dispatch(scope, receive, send)

    return SigV4Middleware(
        outer,
        keyring.secret_for,
        public_prefixes=("/_squall/health", "/ui/login", "/ui/static/", *public_prefixes),
        is_public=is_public,
        session=session,
    )
