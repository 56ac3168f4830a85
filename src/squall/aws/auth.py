"""SigV4 authentication for the whole HTTP port, as raw ASGI middleware (no per-request framework overhead).

Every request except the explicitly public paths must be signed with a key from the key ring.  The body is read
once here (bounded), checked against the signature, and replayed to the app; routes find it in
``scope["squall.body"]`` and the caller in ``scope["squall.auth"]``.

S3 also takes SigV2 presigned URLs (``AWSAccessKeyId``/``Signature``/``Expires``, ``squall.aws.sigv2``), verified
here like SigV4, and browser form uploads (``is_s3_post_upload``: an unsigned multipart POST to ``/bucket``), which
pass through unread with ``scope["squall.s3_post"]`` set: the S3 app streams the form and checks the policy
signature itself (``squall.s3.post``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from squall.aws import errors as aws_errors
from squall.aws.sigv2 import is_v2_query, verify_query_v2
from squall.aws.sigv4 import AuthContext, LowerHeaders, SigV4Error, parse_scope, verify_request
from squall.core.errors import RequestTooLarge
from squall.core.ids import request_id as new_request_id

__all__ = ["SigV4Middleware", "is_s3_post_upload", "service_for_unsigned"]

#: the dashboard's session check (``squall.dashboard.ui.sessions.SessionGate``): for an unsigned request, the caller it
#: authenticates, an ASGI response to send instead (a redirect to the login page, a refusal), or None (use SigV4)
SessionHook = Callable[[Scope, Mapping[str, str]], "AuthContext | ASGIApp | None"]

MAX_BODY_BYTES = 80 * 1024 * 1024
#: ``/bucket`` or ``/bucket/`` with an S3 bucket name (3-63 of a-z 0-9 . -): where POST Object forms go
_BUCKET_PATH = re.compile(rb"/[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/?")


def service_for_unsigned(headers: Mapping[str, str]) -> str:
    """Which AWS service an unsigned request is for, so its error has that service's shape: SQS's JSON protocol
    names itself in X-Amz-Target; S3 paths look like anything, so everything else answers as Lambda."""
    return "sqs" if headers.get("x-amz-target", "").startswith("AmazonSQS.") else "lambda"


def is_s3_post_upload(scope: Scope) -> bool:
    """An S3 POST Object form upload: an unsigned ``multipart/form-data`` POST to ``/bucket`` (its policy
    signature is inside the form)."""
    if scope["method"] != "POST":
        return False
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return False
        if name == b"content-type":
            content_type = value
    if not content_type.lower().startswith(b"multipart/form-data"):
        return False
    query = scope.get("query_string", b"").lower()
    if b"x-amz-" in query or b"awsaccesskeyid" in query or b"uploads" in query or b"delete" in query:
        return False
    raw = scope.get("raw_path") or scope["path"].encode()
    return _BUCKET_PATH.fullmatch(raw.split(b"?", 1)[0]) is not None


async def send_error(send: Send, service: str, error: Any, request_id: str, head: bool = False) -> None:
    status, headers, body = aws_errors.render(service, error, request_id)
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"x-amzn-requestid", request_id.encode()))
    if head:
        body = b""
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class SigV4Middleware:
    def __init__(
        self,
        app: ASGIApp,
        lookup_secret: Callable[[str], str | None],
        public_prefixes: tuple[str, ...] = (),
        is_public: Callable[[Scope], bool] | None = None,
        session: SessionHook | None = None,
    ) -> None:
        self.app = app
        self.session = session
        self.lookup_secret = lookup_secret
        self.public_prefixes = public_prefixes
        self.is_public = is_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(self.public_prefixes) or (self.is_public is not None and self.is_public(scope)):
            await self.app(scope, receive, send)
            return
        if is_s3_post_upload(scope):
            scope["squall.request_id"] = new_request_id()
            scope["squall.s3_post"] = True
            await self.app(scope, receive, send)
            return
        headers = LowerHeaders()  # (the SigV4 check reads it without lowering the names again)
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        query = scope.get("query_string", b"")
        scope_info = parse_scope(headers, query)
        v2 = scope_info is None and "authorization" not in headers and is_v2_query(query)
        service = "s3" if v2 else scope_info.service if scope_info else service_for_unsigned(headers)
        request_id = new_request_id()
        scope["squall.request_id"] = request_id
        scope["squall.headers"] = headers  # lower-case names, repeated fields joined: the Invoke path reads these
        ctx: AuthContext | None = None
        if self.session is not None and scope_info is None and not v2:
            verdict = self.session(scope, headers)
            if isinstance(verdict, AuthContext):
                ctx = verdict
            elif verdict is not None:
                await verdict(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                err = RequestTooLarge(f"Request must be smaller than {MAX_BODY_BYTES} bytes")
                await send_error(send, service, err, request_id)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            if v2:
                ctx = verify_query_v2(
                    scope["method"], scope.get("raw_path") or path.encode(), query, headers, self.lookup_secret,
                    time.time(),
                )  # fmt: skip
            ctx = ctx or verify_request(
                scope["method"],
                scope.get("raw_path") or path.encode(),
                scope.get("query_string", b""),
                headers,
                body,
                self.lookup_secret,
                time.time(),
            )
        except SigV4Error as e:
            await send_error(send, service, e, request_id, head=scope["method"] == "HEAD")
            return
        scope["squall.auth"] = ctx
        scope["squall.body"] = body
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
