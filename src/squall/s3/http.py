"""HTTP plumbing of the S3 API: the parsed request, the response, and S3's header rules (ranges, conditional
requests, dates, object attribute headers, payload decoding and checksums)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from squall.aws.sigv4 import (
    AuthContext,
    PayloadHashMismatch,
    decode_aws_chunked,
    verify_aws_chunked,
)
from squall.core.timefmt import http_date
from squall.s3.errors import (
    BadDigest,
    InvalidArgument,
    InvalidDigest,
    NotModified,
    PreconditionFailed,
)
from squall.s3.store.objects import ByteRange, ObjectAttrs, ObjectBody, ObjectMeta

__all__ = [
    "S3Request",
    "S3Response",
    "attrs_from_headers",
    "check_conditions",
    "content_md5",
    "object_headers",
    "parse_copy_source",
    "parse_range",
    "payload",
]

_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")
_ATTR_HEADERS = {
    "cache-control": "cache_control",
    "content-disposition": "content_disposition",
    "content-encoding": "content_encoding",
    "content-language": "content_language",
    "expires": "expires",
}
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


@dataclass
class S3Request:
    """One request, decoded: ``bucket`` and ``key`` come from the raw (still percent-encoded) path."""

    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    request_id: str
    auth: AuthContext | None = None
    client_ip: str = ""
    host: str = "localhost"
    scheme: str = "http"

    @property
    def resource(self) -> str:
        return "/" + self.bucket + ("/" + self.key if self.key else "")

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


@dataclass
class S3Response:
    """Either a ``body`` in memory or a ``stream`` (an open object body, closed by whoever sends it)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: ObjectBody | None = None


def _parse_http_date(value: str) -> float | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_range(value: str) -> ByteRange | None:
    """A single ``bytes=`` range; None for anything else (S3 then ignores the header and sends everything)."""
    match = _RANGE_RE.fullmatch(value)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:
        return None, int(last)
    return int(first), int(last) if last else None


def _etag_matches(header: str, etag: str) -> bool:
    bare = etag.strip('"')
    for item in header.split(","):
        candidate = item.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate.strip('"') == bare:
            return True
    return False


def check_conditions(headers: Mapping[str, str], meta: ObjectMeta, prefix: str = "", *, copy: bool = False) -> None:
    """If-Match / If-Unmodified-Since (412) and If-None-Match / If-Modified-Since (304, or 412 for a copy
    source, whose headers carry ``prefix`` 'x-amz-copy-source-'), in RFC 7232's order."""
    modified = int(meta.last_modified)
    if_match = headers.get(prefix + "if-match")
    if if_match is not None:
        if not _etag_matches(if_match, meta.etag):
            raise PreconditionFailed(prefix + "If-Match")
    else:
        since = _parse_http_date(headers.get(prefix + "if-unmodified-since", ""))
        if since is not None and modified > since:
            raise PreconditionFailed(prefix + "If-Unmodified-Since")
    if_none = headers.get(prefix + "if-none-match")
    if if_none is not None:
        if _etag_matches(if_none, meta.etag):
            if copy:
                raise PreconditionFailed(prefix + "If-None-Match")
            raise NotModified()
    else:
        since = _parse_http_date(headers.get(prefix + "if-modified-since", ""))
        if since is not None and modified <= since:
            if copy:
                raise PreconditionFailed(prefix + "If-Modified-Since")
            raise NotModified()


def attrs_from_headers(headers: Mapping[str, str]) -> ObjectAttrs:
    """What a PutObject / CreateMultipartUpload / CopyObject(REPLACE) request sets on the object."""
    values: dict[str, str | None] = {}
    for header, attr in _ATTR_HEADERS.items():
        value = headers.get(header)
        if attr == "content_encoding" and value is not None:
            kept = [v.strip() for v in value.split(",") if v.strip() and v.strip().lower() != "aws-chunked"]
            value = ",".join(kept) or None
        values[attr] = value
    metadata = {name[len("x-amz-meta-") :]: value for name, value in headers.items() if name.startswith("x-amz-meta-")}
    return ObjectAttrs(
        content_type=headers.get("content-type") or "binary/octet-stream",
        metadata=metadata,
        **values,
    )


def object_headers(meta: ObjectMeta, query: Mapping[str, str] | None = None) -> dict[str, str]:
    """GetObject / HeadObject headers of an object (``response-*`` query overrides applied)."""
    headers = meta.attrs.headers()
    headers["ETag"] = meta.etag
    headers["Last-Modified"] = http_date(meta.last_modified)
    headers["Accept-Ranges"] = "bytes"
    if query:
        for param, header in _RESPONSE_OVERRIDES.items():
            if param in query:
                headers[header] = query[param]
    return headers


def parse_copy_source(value: str) -> tuple[str, str]:
    """``(bucket, key)`` of an ``x-amz-copy-source`` header (``[/]bucket/key[?versionId=...]``, URL-encoded)."""
    path = value.split("?", 1)[0]
    try:
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(
            "x-amz-copy-source is not valid UTF-8 once decoded.", {"ArgumentName": "x-amz-copy-source"}
        )
    bucket, _, key = decoded.lstrip("/").partition("/")
    if not bucket or not key:
        raise InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            {"ArgumentName": "x-amz-copy-source", "ArgumentValue": value},
        )
    return bucket, key


def _is_chunked(headers: Mapping[str, str]) -> bool:
    encodings = [v.strip().lower() for v in headers.get("content-encoding", "").split(",")]
    return "aws-chunked" in encodings or headers.get("x-amz-content-sha256", "").startswith("STREAMING-")


def payload(request: S3Request) -> bytes:
    """The request's payload: aws-chunked framing removed (chunk signatures verified when the request was
    signed with a streaming signature), the SHA-256 checked when verification was deferred, and Content-MD5 /
    x-amz-checksum-{crc32,sha1,sha256} checked (BadDigest)."""
    headers = request.headers
    body = request.body
    if _is_chunked(headers):
        raw_length = headers.get("x-amz-decoded-content-length")
        try:
            decoded_length = int(raw_length) if raw_length is not None else None
        except ValueError:
            raise InvalidArgument("x-amz-decoded-content-length must be a number.")
        if request.auth is not None:
            body = verify_aws_chunked(body, request.auth, decoded_length=decoded_length)
        else:
            body = decode_aws_chunked(body, decoded_length=decoded_length)
    elif request.auth is not None and request.auth.body_check == "deferred":
        computed = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(computed, request.auth.payload_hash):
            raise PayloadHashMismatch(
                "The provided 'x-amz-content-sha256' header does not match what was computed.", service="s3"
            )
    _check_checksums(headers, body)
    return body


def content_md5(headers: Mapping[str, str]) -> bytes | None:
    """The decoded Content-MD5 header (InvalidDigest when it is not base64 of 16 bytes)."""
    value = headers.get("content-md5")
    if value is None:
        return None
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise InvalidDigest("The Content-MD5 you specified was invalid.", {"Content-MD5": value})
    return digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_checksums(headers: Mapping[str, str], body: bytes) -> None:
    checks = {
        "x-amz-checksum-crc32": lambda: _b64(zlib.crc32(body).to_bytes(4, "big")),
        "x-amz-checksum-sha1": lambda: _b64(hashlib.sha1(body).digest()),
        "x-amz-checksum-sha256": lambda: _b64(hashlib.sha256(body).digest()),
    }
    for header, compute in checks.items():
        claimed = headers.get(header)
        if claimed is not None and claimed.strip() != compute():
            name = header.rsplit("-", 1)[1].upper()
            raise BadDigest(f"The {name} you specified did not match the calculated checksum.")
