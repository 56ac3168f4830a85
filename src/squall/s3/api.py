"""The S3-compatible HTTP API, as a raw ASGI app over an ``ObjectStore``.

``s3_app(store)`` serves every request routed to it (in Squall: every request whose SigV4 credential scope names
the service 's3') with path-style addressing: ``/`` (ListBuckets), ``/BUCKET`` and ``/BUCKET/KEY``, the key
percent-decoded from ``scope["raw_path"]``.  Behind ``squall.aws.auth.SigV4Middleware`` it takes the body from
``scope["squall.body"]`` and the signer from ``scope["squall.auth"]`` (aws-chunked uploads then have their chunk
signatures verified); without it, it reads the body itself and only decodes aws-chunked framing.

Supported: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation, GetBucketVersioning,
Get/PutBucketNotificationConfiguration, ListObjects (v1 and v2), PutObject, GetObject (ranges, conditional
requests, ``response-*`` overrides), HeadObject, DeleteObject, DeleteObjects, CopyObject, and multipart uploads
(create, upload part, upload part copy, list parts, complete, abort, list uploads), and POST Object form uploads
(``scope["squall.s3_post"]``, set by the auth middleware: ``squall.s3.post`` streams the form and checks its
policy signature with ``lookup_secret``).  Other sub-resources
(``?acl``, ``?tagging``, ``?policy``, ...) answer ``NotImplemented``.  Errors are S3's XML errors
(``squall.aws.errors.render("s3", ...)``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote_to_bytes

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from squall.aws import errors as aws_errors
from squall.aws.sigv2 import is_v2_query
from squall.core.errors import ServiceError, SquallError
from squall.s3.errors import InvalidURI, MethodNotAllowed, NotImplementedOperation, NotModified
from squall.s3.http import S3Request, S3Response
from squall.s3.ops import S3Operations
from squall.s3.post import post_object
from squall.s3.store.objects import ObjectStore

__all__ = ["S3Operations", "s3_app"]

log = logging.getLogger(__name__)

Handler = Callable[[S3Request], S3Response]

_BUCKET_SUBRESOURCES = frozenset(
    [
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "lifecycle",
        "logging",
        "metrics",
        "metadataTable",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "tagging",
        "versioning",
        "versions",
        "website",
    ]
)
_OBJECT_SUBRESOURCES = frozenset(
    ["acl", "attributes", "legal-hold", "restore", "retention", "select", "tagging", "torrent"]
)


def _not_implemented(request: S3Request, sub: str) -> NotImplementedOperation:
    return NotImplementedOperation(
        f"Squall does not implement the S3 {request.method} ?{sub} API. Supported: buckets, objects, listings, "
        "copies, multipart uploads and notification configurations.",
        {"Method": request.method, "Subresource": sub},
    )


def _subresource(request: S3Request, known: frozenset[str]) -> str | None:
    for name in request.query:
        if name in known:
            return name
    return None


def route(ops: S3Operations, request: S3Request) -> Handler:
    """The operation a request asks for."""
    method, query = request.method, request.query
    if not request.bucket:
        if method == "GET":
            return ops.list_buckets
        raise MethodNotAllowed("The specified method is not allowed against this resource.", {"Method": method})
    if not request.key:
        return _route_bucket(ops, request, method, query)
    return _route_object(ops, request, method, query)


def _route_bucket(ops: S3Operations, request: S3Request, method: str, query: dict[str, str]) -> Handler:
    sub = _subresource(request, _BUCKET_SUBRESOURCES)
    if method == "GET":
        if sub == "notification":
            return ops.get_notification
        if sub == "versioning":
            return ops.get_bucket_versioning
        if sub is not None:
            raise _not_implemented(request, sub)
        if "location" in query:
            return ops.get_bucket_location
        if "uploads" in query:
            return ops.list_uploads
        if query.get("list-type") == "2":
            return lambda r: ops.list_objects(r, v2=True)
        return lambda r: ops.list_objects(r, v2=False)
    if method == "PUT":
        if sub == "notification":
            return ops.put_notification
        if sub is not None:
            raise _not_implemented(request, sub)
        return ops.create_bucket
    if method == "HEAD" and sub is None:
        return ops.head_bucket
    if method == "DELETE" and sub is None:
        return ops.delete_bucket
    if method == "POST" and "delete" in query:
        return ops.delete_objects
    if sub is not None:
        raise _not_implemented(request, sub)
    raise MethodNotAllowed("The specified method is not allowed against this resource.", {"Method": method})


def _route_object(ops: S3Operations, request: S3Request, method: str, query: dict[str, str]) -> Handler:
    sub = _subresource(request, _OBJECT_SUBRESOURCES)
    if sub is not None:
        raise _not_implemented(request, sub)
    upload = "uploadId" in query
    if method == "PUT":
        if upload or "partNumber" in query:
            return ops.upload_part
        if "x-amz-copy-source" in request.headers:
            return ops.copy_object
        return ops.put_object
    if method == "GET":
        return ops.list_parts if upload else ops.get_object
    if method == "HEAD":
        return lambda r: ops.get_object(r, head=True)
    if method == "DELETE":
        return ops.abort_multipart_upload if upload else ops.delete_object
    if method == "POST":
        if "uploads" in query:
            return ops.create_multipart_upload
        if upload:
            return ops.complete_multipart_upload
    raise MethodNotAllowed("The specified method is not allowed against this resource.", {"Method": method})


# --------------------------------------------------------------------------------------------------- ASGI


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _decode_path(raw: bytes) -> tuple[str, str]:
    rest = raw.split(b"?", 1)[0].lstrip(b"/")
    bucket_raw, _, key_raw = rest.partition(b"/")
    try:
        return unquote_to_bytes(bucket_raw).decode("utf-8"), unquote_to_bytes(key_raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURI("Couldn't parse the specified URI: the path is not valid UTF-8 once percent-decoded.")


def _request(scope: Scope, body: bytes, request_id: str) -> S3Request:
    headers: dict[str, str] = {}
    for k, v in scope["headers"]:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    query: dict[str, str] = {}
    raw_query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(name, value)
    if scope.get("squall.auth") is not None and is_v2_query(raw_query):
        # botocore moves a SigV2 presigned request's x-amz-* and content headers into the (signed) query
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            lower = name.lower()
            if lower.startswith("x-amz-") or lower in ("content-type", "content-md5"):
                headers.setdefault(lower, value)
    bucket, key = _decode_path(scope.get("raw_path") or scope["path"].encode("utf-8"))
    client = scope.get("client")
    return S3Request(
        method=scope["method"].upper(),
        bucket=bucket,
        key=key,
        query=query,
        headers=headers,
        body=body,
        request_id=request_id,
        auth=scope.get("squall.auth"),
        client_ip=client[0] if client else "",
        host=headers.get("host", "localhost"),
        scheme=scope.get("scheme", "http"),
    )


def _encode_header(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


async def _send(send: Send, response: S3Response, request_id: str, head: bool) -> None:
    headers = {"x-amz-request-id": request_id, "x-amz-id-2": request_id, "Server": "Squall", **response.headers}
    stream = response.stream
    if stream is None and not (head and "Content-Length" in headers):
        headers["Content-Length"] = str(len(response.body))
    raw = [(k.lower().encode("latin-1"), _encode_header(v)) for k, v in headers.items()]
    try:
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        if stream is None:
            await send({"type": "http.response.body", "body": b"" if head else response.body})
            return
        offset = 0
        while offset < stream.length:
            chunk = await anyio.to_thread.run_sync(stream.read_chunk, offset)
            if not chunk:
                break
            offset += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        if stream is not None:
            stream.close()


def _error_response(error: SquallError, request_id: str, resource: str, head: bool) -> S3Response:
    if isinstance(error, NotModified):
        return S3Response(304)
    status, headers, body = aws_errors.render("s3", error, request_id, resource, head=head)
    return S3Response(status, headers, body)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def s3_app(
    store: ObjectStore,
    *,
    region: str = "us-east-1",
    function_exists: Callable[[str], bool] | None = None,
    queue_exists: Callable[[str], bool] | None = None,
    lookup_secret: Callable[[str], str | None] | None = None,
    authorize_post: Callable[[str, str, str], SquallError | None] | None = None,
) -> ASGIApp:
    """The S3 API over ``store``.  ``lookup_secret`` (access key -> secret) checks POST Object policy signatures.  ``function_exists(arn)`` / ``queue_exists(arn)``, when given, are asked about
    every Lambda / SQS destination of a PutBucketNotificationConfiguration (InvalidArgument when False);
    ``region`` is the region of buckets created without a LocationConstraint by unsigned requests."""
    ops = S3Operations(store, region=region, function_exists=function_exists, queue_exists=queue_exists)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = scope.get("squall.request_id") or uuid.uuid4().hex[:16].upper()
        head = scope["method"].upper() == "HEAD"
        resource = scope.get("path", "")
        try:
            if scope.get("squall.s3_post"):
                resource = scope.get("path", "")
                response = await post_object(
                    store, scope, receive, lookup_secret, time.time, request_id, authorize_post
                )
                await _send(send, response, request_id, head)
                return
            body = scope.get("squall.body")
            if body is None:
                body = await _read_body(receive)
            request = _request(scope, body, request_id)
            resource = request.resource
            handler = route(ops, request)
            response = await anyio.to_thread.run_sync(handler, request)
        except SquallError as e:
            response = _error_response(e, request_id, resource, head)
        except Exception:
            log.exception("S3 request %s %s failed", scope.get("method"), resource)
            error = ServiceError("We encountered an internal error. Please try again.")
            response = _error_response(error, request_id, resource, head)
        await _send(send, response, request_id, head)

    return app
