"""S3 POST Object: browser form uploads (``generate_presigned_post``), streamed, with the policy checked.

A ``multipart/form-data`` POST to ``/bucket`` carries form fields (``key``, ``policy``, the signature fields,
``Content-Type``, ``x-amz-meta-*``, ``success_action_status``, ...) and then the ``file`` part; fields after the
file are ignored, as S3 does.  Before a byte of the file is stored:

* the signature over the base64 policy is checked (``check_signature``): SigV4 (``x-amz-algorithm``,
  ``x-amz-credential``, ``x-amz-date``, ``x-amz-signature``: hex HMAC-SHA256 with the day's signing key) or SigV2
  (``AWSAccessKeyId``, ``signature``: base64 HMAC-SHA1 with the secret);
* the policy document is checked (``check_policy``): ``expiration`` (AccessDenied "Policy expired"), every
  condition (``{"field": "value"}``, ``["eq", "$field", v]``, ``["starts-with", "$field", prefix]``, ``bucket``
  against the URL's bucket; AccessDenied "Invalid according to Policy: Policy Condition failed: [...]"), and every
  form field but the signature fields, ``file``, ``policy`` and ``x-ignore-*`` must be named by a condition
  ("Extra input fields: ...").

The file part is streamed (``MultipartParser``) into a spooled temporary file and refused with EntityTooLarge as
soon as it passes the policy's ``content-length-range`` maximum (or ``MAX_POST_OBJECT_BYTES``); EntityTooSmall
under its minimum.  ``${filename}`` in ``key`` becomes the file's name.  The object is stored like a PutObject
(``ObjectCreated:Post`` fires the bucket's notifications); the answer is 204 by default, 200, or 201 with the XML
``PostResponse`` per ``success_action_status``, or a 303 to ``success_action_redirect``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlencode

import anyio.to_thread
from starlette.types import Receive

from squall.aws.sigv2 import sign_v2
from squall.aws.sigv4 import (
    ALGORITHM,
    AuthContext,
    SignatureMismatch,
    UnrecognizedAccessKey,
    signing_key,
)
from squall.core import jsonlimits
from squall.core.errors import SquallError
from squall.s3 import xml as s3_xml
from squall.s3.errors import EntityTooSmall, InvalidArgument, S3Error
from squall.s3.http import S3Response, attrs_from_headers
from squall.s3.store.objects import EventOrigin, ObjectStore

__all__ = [
    "MAX_FIELDS_BYTES",
    "MAX_POST_OBJECT_BYTES",
    "EntityTooLarge",
    "EntityTooSmall",
    "InvalidPolicyDocument",
    "MalformedPOSTRequest",
    "MultipartParser",
    "PolicyDenied",
    "check_policy",
    "check_signature",
    "post_object",
]

#: S3's limit on the form fields before the file part (MaxPostPreDataLengthExceeded past it)
MAX_FIELDS_BYTES = 20 * 1024
#: S3's limit on one POSTed object (PutObject's 5 GiB); a policy's content-length-range may set a lower one
MAX_POST_OBJECT_BYTES = 5 * 1024**3
#: file data kept in memory before the spooled temporary file goes to disk
_SPOOL_BYTES = 1024 * 1024
_MAX_PART_HEADER_BYTES = 8 * 1024
#: fields never named by a policy condition
_EXEMPT = frozenset({"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"})


# --------------------------------------------------------------------------------------------------- errors


class MalformedPOSTRequest(S3Error):
    code = "MalformedPOSTRequest"
    status = 400
    fault = "user"


class MaxPostPreDataLengthExceeded(S3Error):
    code = "MaxPostPreDataLengthExceeded"
    status = 400
    fault = "user"


class InvalidPolicyDocument(S3Error):
    code = "InvalidPolicyDocument"
    status = 400
    fault = "user"


class PolicyDenied(S3Error):
    code = "AccessDenied"
    status = 403
    fault = "user"


class EntityTooLarge(S3Error):
    code = "EntityTooLarge"
    status = 400
    fault = "user"


# --------------------------------------------------------------------------------------------------- multipart


@dataclass
class Part:
    """One form part's headers: its field ``name`` and, for a file, its ``filename``."""

    name: str
    filename: str | None
    content_type: str | None


def _param(header: str, name: str) -> str | None:
    """A parameter of a Content-Disposition / Content-Type value (quoted or not)."""
    for item in header.split(";")[1:]:
        key, sep, value = item.strip().partition("=")
        if sep and key.strip().lower() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"')
            return value
    return None


def boundary_of(content_type: str) -> bytes:
    """The multipart boundary of a ``multipart/form-data`` Content-Type (MalformedPOSTRequest without one)."""
    boundary = _param(content_type, "boundary") or ""
    if not content_type.lower().startswith("multipart/form-data") or not boundary or len(boundary) > 200:
        raise MalformedPOSTRequest(
            "The body of your POST request is not well-formed multipart/form-data: the Content-Type needs a "
            "boundary (multipart/form-data; boundary=...)."
        )
    return boundary.encode("latin-1")


def _parse_part_headers(block: bytes) -> Part:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("utf-8", "replace")
    disposition = headers.get("content-disposition", "")
    field = _param(disposition, "name")
    if not disposition.lower().startswith("form-data") or field is None:
        raise MalformedPOSTRequest(
            "The body of your POST request is not well-formed multipart/form-data: a part has no "
            'Content-Disposition: form-data; name="..." header.'
        )
    return Part(field, _param(disposition, "filename"), headers.get("content-type"))


class MultipartParser:
    """An incremental ``multipart/form-data`` parser: ``feed(data)`` returns events ``("part", Part)``,
    ``("data", bytes)``, ``("end", None)`` (end of a part) and ``("done", None)`` (closing boundary)."""

    def __init__(self, boundary: bytes) -> None:
        self._first = b"--" + boundary
        self._delimiter = b"\r\n--" + boundary
        self._buf = b""
        self._state = "preamble"

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> list[tuple[str, Any]]:
        self._buf += data
        events: list[tuple[str, Any]] = []
        while True:
            if self._state == "preamble":
                at = self._buf.find(self._first)
                if at < 0:
                    self._buf = self._buf[-len(self._first) :]
                    return events
                self._buf = self._buf[at + len(self._first) :]
                self._state = "after-boundary"
            elif self._state == "after-boundary":
                if len(self._buf) < 2:
                    return events
                if self._buf.startswith(b"--"):
                    self._state = "done"
                    events.append(("done", None))
                    return events
                end = self._buf.find(b"\r\n")
                if end < 0:
                    if len(self._buf) > 64:
                        raise self._malformed("a boundary line is not followed by CRLF")
                    return events
                if self._buf[:end].strip(b" \t"):
                    raise self._malformed("unexpected bytes after a boundary")
                self._buf = self._buf[end + 2 :]
                self._state = "headers"
            elif self._state == "headers":
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if self._buf.startswith(b"\r\n"):  # a part without headers
                        raise self._malformed("a part has no headers")
                    if len(self._buf) > _MAX_PART_HEADER_BYTES:
                        raise self._malformed(f"a part's headers exceed {_MAX_PART_HEADER_BYTES} bytes")
                    return events
                events.append(("part", _parse_part_headers(self._buf[:end])))
                self._buf = self._buf[end + 4 :]
                self._state = "body"
            elif self._state == "body":
                at = self._buf.find(self._delimiter)
                if at < 0:
                    keep = len(self._delimiter) - 1
                    if len(self._buf) > keep:
                        events.append(("data", self._buf[:-keep]))
                        self._buf = self._buf[-keep:]
                    return events
                if at:
                    events.append(("data", self._buf[:at]))
                events.append(("end", None))
                self._buf = self._buf[at + len(self._delimiter) :]
                self._state = "after-boundary"
            else:  # done: the epilogue is ignored
                self._buf = b""
                return events

    @staticmethod
    def _malformed(why: str) -> MalformedPOSTRequest:
        return MalformedPOSTRequest(f"The body of your POST request is not well-formed multipart/form-data: {why}.")


# --------------------------------------------------------------------------------------------------- policy


def _policy_failed(condition: Any) -> PolicyDenied:
    return PolicyDenied(f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}")


def _parse_expiration(value: Any) -> float:
    if isinstance(value, str):
        for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
            try:
                return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()
            except ValueError:
                continue
    raise InvalidPolicyDocument(
        f"Invalid Policy: Invalid 'expiration' value: {json.dumps(value)}; use an ISO 8601 UTC time like "
        "2030-01-01T00:00:00Z."
    )


def decode_policy(policy_b64: str) -> dict[str, Any]:
    """The policy document of a form's ``policy`` field (InvalidPolicyDocument when it is not base64 JSON)."""
    try:
        doc = jsonlimits.loads(base64.b64decode(policy_b64, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidPolicyDocument("Invalid Policy: Invalid JSON (the policy field must be base64 of a JSON object).")
    if not isinstance(doc, dict):
        raise InvalidPolicyDocument("Invalid Policy: Invalid JSON (the policy field must be base64 of a JSON object).")
    return doc


def check_policy(doc: Mapping[str, Any], fields: Mapping[str, str], bucket: str, now: float) -> tuple[int, int] | None:
    """Check a POST policy document against the form ``fields`` (lower-case names) and the URL's ``bucket``;
    returns the ``content-length-range`` (min, max) when the policy sets one.  Raises PolicyDenied (403
    AccessDenied) or InvalidPolicyDocument (400)."""
    if "expiration" not in doc:
        raise InvalidPolicyDocument("Invalid Policy: Policy missing expiration.")
    if now > _parse_expiration(doc["expiration"]):
        raise PolicyDenied("Invalid according to Policy: Policy expired.")
    conditions = doc.get("conditions")
    if not isinstance(conditions, list):
        raise InvalidPolicyDocument("Invalid Policy: Policy missing conditions.")
    values = {**fields, "bucket": bucket}
    named: set[str] = set()
    size_range: tuple[int, int] | None = None
    for condition in conditions:
        if isinstance(condition, dict) and len(condition) == 1:
            ((name, expected),) = condition.items()
            op, field_name = "eq", str(name).lower()
        elif isinstance(condition, list) and len(condition) == 3 and isinstance(condition[0], str):
            op = condition[0].lower()
            if op == "content-length-range":
                low, high = condition[1], condition[2]
                if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (low, high)):
                    raise InvalidPolicyDocument(
                        f"Invalid Policy: Invalid content-length-range condition: {json.dumps(condition)}"
                    )
                size_range = (low, high)
                continue
            if op not in ("eq", "starts-with") or not isinstance(condition[1], str) or not condition[1].startswith("$"):
                raise InvalidPolicyDocument(f"Invalid Policy: Invalid Condition: {json.dumps(condition)}")
            field_name, expected = condition[1][1:].lower(), condition[2]
        else:
            raise InvalidPolicyDocument(f"Invalid Policy: Invalid Condition: {json.dumps(condition)}")
        if not isinstance(expected, str):
            raise InvalidPolicyDocument(f"Invalid Policy: Invalid Condition: {json.dumps(condition)}")
        named.add(field_name)
        actual = values.get(field_name)
        ok = actual is not None and (actual == expected if op == "eq" else actual.startswith(expected))
        if not ok:
            raise _policy_failed(condition if isinstance(condition, list) else ["eq", f"${field_name}", expected])
    extra = sorted(n for n in fields if n not in named and n not in _EXEMPT and not n.startswith("x-ignore-"))
    if extra:
        raise PolicyDenied(f"Invalid according to Policy: Extra input fields: {', '.join(extra)}")
    return size_range


def check_signature(fields: Mapping[str, str], lookup_secret: Callable[[str], str | None]) -> AuthContext:
    """Verify the signature of the form's ``policy`` field (SigV4 or SigV2 fields); who signed it."""
    policy = fields.get("policy")
    if "x-amz-signature" in fields or "x-amz-credential" in fields or "x-amz-algorithm" in fields:
        return _check_v4(fields, policy or "", lookup_secret)
    if "signature" in fields or "awsaccesskeyid" in fields:
        access_key = fields.get("awsaccesskeyid", "")
        secret = _secret(access_key, lookup_secret)
        if policy is None or "signature" not in fields:
            raise InvalidArgument(
                "Bucket POST must contain a field named 'policy' and its 'signature'; use generate_presigned_post.",
                {"ArgumentName": "policy"},
            )
        if not hmac.compare_digest(sign_v2(secret, policy).encode(), fields["signature"].encode()):
            raise _mismatch(access_key, policy, fields["signature"])
        return AuthContext(access_key_id=access_key, region="", service="s3", signed_headers=(), presigned=True)
    raise PolicyDenied(
        "Anonymous POST uploads are not allowed: sign the form's policy (boto3's generate_presigned_post gives the "
        "fields to send)."
    )


def _secret(access_key: str, lookup_secret: Callable[[str], str | None]) -> str:
    secret = lookup_secret(access_key) if access_key else None
    if secret is None:
        raise UnrecognizedAccessKey(
            "The AWS Access Key Id you provided does not exist in our records.",
            service="s3",
            details={"AWSAccessKeyId": access_key},
        )
    return secret


def _mismatch(access_key: str, policy: str, provided: str) -> SignatureMismatch:
    return SignatureMismatch(
        "The request signature we calculated does not match the signature you provided. Check your key and "
        "signing method.",
        service="s3",
        details={"AWSAccessKeyId": access_key, "StringToSign": policy, "SignatureProvided": provided},
    )


def _check_v4(fields: Mapping[str, str], policy: str, lookup_secret: Callable[[str], str | None]) -> AuthContext:
    missing = [
        f for f in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature", "policy") if f not in fields
    ]
    if missing:
        raise InvalidArgument(
            f"Bucket POST must contain the field(s) {', '.join(missing)}; use generate_presigned_post.",
            {"ArgumentName": missing[0]},
        )
    if fields["x-amz-algorithm"] != ALGORITHM:
        raise InvalidArgument(
            f"x-amz-algorithm must be {ALGORITHM}, got {fields['x-amz-algorithm']!r}.",
            {"ArgumentName": "x-amz-algorithm"},
        )
    parts = fields["x-amz-credential"].split("/")
    amz_date = fields["x-amz-date"]
    if len(parts) != 5 or parts[4] != "aws4_request" or parts[3] != "s3" or amz_date[:8] != parts[1]:
        raise InvalidArgument(
            "x-amz-credential must be '<access key>/<YYYYMMDD>/<region>/s3/aws4_request' for the day of x-amz-date.",
            {"ArgumentName": "x-amz-credential", "ArgumentValue": fields["x-amz-credential"]},
        )
    access_key, date, region = parts[0], parts[1], parts[2]
    secret = _secret(access_key, lookup_secret)
    key = signing_key(secret, date, region, "s3")
    expected = hmac.new(key, policy.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), fields["x-amz-signature"].lower().encode("utf-8", "replace")):
        raise _mismatch(access_key, policy, fields["x-amz-signature"])
    return AuthContext(
        access_key_id=access_key, region=region, service="s3", signed_headers=(), presigned=True, amz_date=amz_date
    )


# --------------------------------------------------------------------------------------------------- handler


class _Spool:
    """The file part: in memory up to ``_SPOOL_BYTES``, then in a temporary file written from a worker thread."""

    def __init__(self) -> None:
        self.size = 0
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.file: Any = None

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= _SPOOL_BYTES:
            await anyio.to_thread.run_sync(self._flush)

    def _flush(self) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.file.write(b"".join(self.pending))
        self.pending, self.pending_size = [], 0

    def data(self) -> Any:
        """The whole file: bytes when it stayed in memory, else the file object rewound (call from a thread)."""
        if self.file is None:
            return b"".join(self.pending)
        self._flush()
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _bucket_of(scope: Mapping[str, Any]) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    try:
        return unquote_to_bytes(raw.split(b"?", 1)[0].strip(b"/")).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPOSTRequest("The bucket name in the URL is not valid UTF-8.")


async def post_object(
    store: ObjectStore,
    scope: Mapping[str, Any],
    receive: Receive,
    lookup_secret: Callable[[str], str | None] | None,
    now: Callable[[], float],
    request_id: str,
    authorize: Callable[[str, str, str], SquallError | None] | None = None,
) -> S3Response:
    """Handle one POST Object form upload (see the module docstring); raises SquallErrors in S3's shape.
    ``authorize(access_key, bucket, key)`` is asked before the object is stored (a function's key: its role)."""
    if lookup_secret is None:
        raise PolicyDenied("POST uploads need the server's key ring to check policy signatures.")
    bucket = _bucket_of(scope)
    content_type = ""
    host = "localhost"
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"host":
            host = value.decode("latin-1")
    parser = MultipartParser(boundary_of(content_type))
    fields: dict[str, str] = {}
    current: Part | None = None
    value = bytearray()
    fields_size = 0
    received = 0
    spool: _Spool | None = None
    limit = MAX_POST_OBJECT_BYTES
    size_range: tuple[int, int] | None = None
    filename = ""
    file_type: str | None = None
    auth: AuthContext | None = None
    try:
        while not parser.done and (spool is None or current is not None):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise MalformedPOSTRequest("The client went away before the upload was complete.")
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            for kind, payload in parser.feed(chunk):
                if spool is not None and current is None:
                    break  # the file is complete: later fields are ignored, as S3 does
                if kind == "part":
                    current = payload
                    value = bytearray()
                    if current.name.lower() == "file":
                        auth, size_range = _authorize(fields, bucket, lookup_secret, now())
                        if size_range is not None:
                            limit = min(limit, size_range[1])
                        filename, file_type = current.filename or "", current.content_type
                        spool = _Spool()
                elif kind == "data" and current is not None:
                    if spool is not None:
                        if spool.size + len(payload) > limit:
                            raise EntityTooLarge(
                                "Your proposed upload exceeds the maximum allowed size",
                                {"ProposedSize": str(spool.size + len(payload)), "MaxSizeAllowed": str(limit)},
                            )
                        await spool.write(payload)
                    else:
                        fields_size += len(payload)
                        if fields_size > MAX_FIELDS_BYTES:
                            raise MaxPostPreDataLengthExceeded(
                                "Your POST request fields preceeding the upload file was too large."
                            )
                        value += payload
                elif kind == "end" and current is not None:
                    if spool is None:
                        fields[current.name.lower()] = value.decode("utf-8", "replace")
                    current = None
            if spool is None:
                received += len(chunk)
                if received > MAX_FIELDS_BYTES + _MAX_PART_HEADER_BYTES:
                    raise MaxPostPreDataLengthExceeded(
                        "Your POST request fields preceeding the upload file was too large."
                    )
            if not more and not parser.done and (spool is None or current is not None):
                raise MalformedPOSTRequest(
                    "The body of your POST request is not well-formed multipart/form-data: it ends before its "
                    "closing boundary."
                )
        if spool is None or auth is None:
            raise InvalidArgument(
                "POST requires exactly one file upload per request.", {"ArgumentName": "file", "ArgumentValue": "0"}
            )
        if size_range is not None and spool.size < size_range[0]:
            raise EntityTooSmall(
                "Your proposed upload is smaller than the minimum allowed size",
                {"ProposedSize": str(spool.size), "MinSizeAllowed": str(size_range[0])},
            )
        key = fields.get("key", "").replace("${filename}", filename)
        denied = authorize(auth.access_key_id, bucket, key) if authorize is not None else None
        if denied is not None:
            raise denied
        headers = dict(fields)
        if "content-type" not in headers and file_type:
            headers["content-type"] = file_type
        origin = EventOrigin(
            request_id=request_id,
            source_ip=(scope.get("client") or ("", 0))[0],
            principal_id=auth.access_key_id,
        )
        ready = spool

        def store_it() -> Any:
            return store.put_object(
                bucket, key, ready.data(), attrs=attrs_from_headers(headers), origin=origin,
                event_name="ObjectCreated:Post",
            )  # fmt: skip

        meta = await anyio.to_thread.run_sync(store_it)
    finally:
        if spool is not None:
            spool.close()
    scheme = scope.get("scheme", "http")
    location = f"{scheme}://{host}/{quote(bucket)}/{quote(key, safe='/')}"
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and redirect.startswith(("http://", "https://")):
        sep = "&" if "?" in redirect else "?"
        query = urlencode({"bucket": bucket, "key": key, "etag": meta.etag})
        return S3Response(303, {"Location": f"{redirect}{sep}{query}", "ETag": meta.etag})
    status = fields.get("success_action_status", "204")
    headers_out = {"ETag": meta.etag, "Location": location}
    if status == "201":
        body = s3_xml.document(
            ("PostResponse", [("Location", location), ("Bucket", bucket), ("Key", key), ("ETag", meta.etag)]),
            xmlns=False,
        )
        return S3Response(201, {**headers_out, "Content-Type": "application/xml"}, body)
    return S3Response(200 if status == "200" else 204, headers_out)


def _authorize(
    fields: Mapping[str, str], bucket: str, lookup_secret: Callable[[str], str | None], now: float
) -> tuple[AuthContext, tuple[int, int] | None]:
    if "key" not in fields:
        raise InvalidArgument("Bucket POST must contain a field named 'key'.", {"ArgumentName": "key"})
    auth = check_signature(fields, lookup_secret)
    return auth, check_policy(decode_policy(fields.get("policy", "")), fields, bucket, now)
