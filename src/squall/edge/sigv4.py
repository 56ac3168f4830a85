"""AWS Signature Version 4 verification, with no I/O and no web framework.

``verify_request`` checks a request signed the way botocore (and every other AWS SDK) signs it: either with an
``Authorization: AWS4-HMAC-SHA256 ...`` header or as a presigned URL (``X-Amz-Signature`` in the query).  It
rebuilds the canonical request exactly as botocore does:

* the path is the *raw* path as sent on the wire (``scope["raw_path"]`` in ASGI, never the decoded path).  For S3
  it is used as is; for every other service it is normalised (dot segments and duplicate slashes removed) and
  percent-encoded a second time, like botocore's ``SigV4Auth`` (``S3SigV4Auth`` skips both steps);
* query parameters are decoded, re-encoded with ``-_.~`` left alone, and sorted by key then value;
* header values are trimmed and inner runs of whitespace squeezed to one space; repeated headers are joined
  with ``,``;
* the payload hash is the ``x-amz-content-sha256`` header when present (``UNSIGNED-PAYLOAD`` and the
  ``STREAMING-*`` forms included), ``UNSIGNED-PAYLOAD`` for S3 presigned URLs, and the SHA-256 of the body
  otherwise.

``parse_scope`` reads only the credential scope, so a router can pick the service before verifying.
``decode_aws_chunked`` strips ``aws-chunked`` framing; ``verify_aws_chunked`` also checks the chunk signatures
of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` upload.

Every failure is a ``SigV4Error`` whose wire code depends on the service (``error.code_for("s3")``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import ClassVar, Literal
from urllib.parse import quote, unquote_to_bytes

from squall.errors import SquallError

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "STREAMING_PAYLOAD",
    "STREAMING_PAYLOAD_TRAILER",
    "STREAMING_UNSIGNED_TRAILER",
    "UNSIGNED_PAYLOAD",
    "AuthContext",
    "BodyCheck",
    "InvalidPayloadHash",
    "MalformedAuthorization",
    "MalformedChunkedBody",
    "MalformedPresignedUrl",
    "MissingAuthentication",
    "PayloadHashMismatch",
    "PresignedUrlExpired",
    "RequestTimeSkewed",
    "Scope",
    "SigV4Error",
    "SignatureMismatch",
    "UnrecognizedAccessKey",
    "canonical_request",
    "decode_aws_chunked",
    "parse_scope",
    "signing_key",
    "string_to_sign",
    "verify_aws_chunked",
    "verify_request",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CREDS_HINT = (
    "Use the access key printed by `squall` at first start (or the one in SQUALL_ACCESS_KEY_ID), which is "
    "stored in <data dir>/credentials.json."
)
_SIGNATURE_HINT = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)

_S3_ONLY_CLAIMS = frozenset(
    {UNSIGNED_PAYLOAD, STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_TRAILER}
)

BodyCheck = Literal["verified", "unsigned", "chunked", "deferred"]


# --------------------------------------------------------------------------------------------------- errors


class SigV4Error(SquallError):
    """A request failed SigV4 authentication.  The AWS code differs per service: use ``code_for(service)``.

    ``codes`` maps a service name ("lambda", "s3", "sqs") to the AWS error code, with "*" as the fallback;
    ``statuses`` does the same for the HTTP status.  ``sqs_query_code`` is the legacy query-protocol code SQS
    sends in ``x-amzn-query-error`` (what botocore reports as ``Error.Code``).  ``details`` are extra fields S3
    puts in its XML error (``StringToSign``, ``CanonicalRequest``, ``ServerTime``, ...).
    """

    status = 403
    fault = "user"
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "AccessDenied"}
    statuses: ClassVar[Mapping[str, int]] = {}
    sqs_query_code: ClassVar[str] = "SignatureDoesNotMatch"

    def __init__(self, message: str, *, service: str | None = None, details: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.details: dict[str, str] = dict(details or {})
        self.code = self.code_for(service)
        self.status = self.status_for(service)

    def code_for(self, service: str | None = None) -> str:
        """The AWS error code for ``service`` (defaults to the service named in the request, if known)."""
        svc = service if service is not None else self.service
        return self.codes.get(svc or "*", self.codes["*"])

    def status_for(self, service: str | None = None) -> int:
        svc = service if service is not None else self.service
        return self.statuses.get(svc or "*", self.statuses.get("*", type(self).status))


class MissingAuthentication(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "MissingAuthenticationTokenException", "s3": "AccessDenied"}
    sqs_query_code = "MissingAuthenticationToken"


class MalformedAuthorization(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "IncompleteSignatureException", "s3": "AuthorizationHeaderMalformed"}
    statuses: ClassVar[Mapping[str, int]] = {"s3": 400}
    sqs_query_code = "IncompleteSignature"


class MalformedPresignedUrl(MalformedAuthorization):
    codes: ClassVar[Mapping[str, str]] = {
        "*": "IncompleteSignatureException",
        "s3": "AuthorizationQueryParametersError",
    }


class UnrecognizedAccessKey(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "UnrecognizedClientException", "s3": "InvalidAccessKeyId"}
    sqs_query_code = "InvalidClientTokenId"


class SignatureMismatch(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "SignatureDoesNotMatch"}


class RequestTimeSkewed(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "RequestTimeTooSkewed"}


class PresignedUrlExpired(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "AccessDenied"}


class PayloadHashMismatch(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "XAmzContentSHA256Mismatch"}
    statuses: ClassVar[Mapping[str, int]] = {"s3": 400}


class InvalidPayloadHash(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidSignatureException", "s3": "InvalidArgument"}
    statuses: ClassVar[Mapping[str, int]] = {"s3": 400}


class MalformedChunkedBody(SigV4Error):
    codes: ClassVar[Mapping[str, str]] = {"*": "InvalidRequestContentException", "s3": "IncompleteBody"}
    statuses: ClassVar[Mapping[str, int]] = {"*": 400}
    sqs_query_code = "InvalidParameterValue"


# --------------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Scope:
    """The credential scope of a request: ``<access key>/<date>/<region>/<service>/aws4_request``."""

    access_key_id: str
    date: str
    region: str
    service: str


@dataclass(frozen=True)
class AuthContext:
    """Who signed a verified request and how.

    ``body_check`` says what is left to do with the body:
    ``"verified"`` (its SHA-256 matched the signed hash), ``"unsigned"`` (the client chose ``UNSIGNED-PAYLOAD`` or
    ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``), ``"chunked"`` (call ``verify_aws_chunked(body, ctx)``) or
    ``"deferred"`` (``body`` was None: compare ``sha256(body)`` with ``payload_hash`` yourself).
    """

    access_key_id: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    presigned: bool = False
    amz_date: str = ""
    payload_hash: str = ""
    body_check: BodyCheck = "verified"
    signature: str = ""
    signing_key: bytes = field(default=b"", repr=False)

    @property
    def credential_scope(self) -> str:
        return f"{self.amz_date[:8]}/{self.region}/{self.service}/aws4_request"


@dataclass(frozen=True)
class _Auth:
    """What the client claims: parsed from the Authorization header or the presigned query."""

    scope: Scope
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    presigned: bool
    expires_s: int | None = None


_Pair = tuple[bytes, bytes]


# --------------------------------------------------------------------------------------------------- parsing


def _lower_headers(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Header name (lower case) -> every value, in order.  ``items()`` of Starlette's ``Headers`` yields repeats."""
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out


def _first(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _as_text(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _query_pairs(query_string: str | bytes) -> list[_Pair]:
    """Raw ``key=value`` pairs, still percent-encoded, in order (a key without '=' has an empty value)."""
    raw = _as_bytes(query_string)
    if not raw:
        return []
    pairs: list[_Pair] = []
    for part in raw.split(b"&"):
        key, _, value = part.partition(b"=")
        pairs.append((key, value))
    return pairs


def _unquote(raw: bytes) -> bytes:
    """Decode a query component the way the application will see it ('+' is a space)."""
    return unquote_to_bytes(raw.replace(b"+", b" "))


def _decoded_query(pairs: Iterable[_Pair]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        k = _unquote(key).decode("utf-8", "replace")
        out.setdefault(k, []).append(_unquote(value).decode("utf-8", "replace"))
    return out


def _split_credential(credential: str) -> Scope | None:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts[:4]):
        return None
    return Scope(access_key_id=parts[0], date=parts[1], region=parts[2], service=parts[3])


def _auth_header_fields(value: str) -> tuple[str, dict[str, str]]:
    """Split ``AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=x;y, Signature=hex`` into its parts."""
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            fields[key.strip()] = val.strip()
    return algorithm, fields


def parse_scope(headers: Mapping[str, str], query_string: str | bytes) -> Scope | None:
    """The credential scope of a request (header or presigned form), or None when there is none or it is
    malformed.  Cheap: no hashing and no secret lookup, for routing by ``scope.service`` before verifying."""
    for name, value in headers.items():
        if name.lower() == "authorization":
            algorithm, fields = _auth_header_fields(value)
            if algorithm != ALGORITHM or "Credential" not in fields:
                return None
            return _split_credential(fields["Credential"])
    for raw_key, raw_value in _query_pairs(query_string):
        if raw_key == b"X-Amz-Credential":
            return _split_credential(_unquote(raw_value).decode("utf-8", "replace"))
    return None


def _scope_or_raise(credential: str, error: type[SigV4Error], where: str) -> Scope:
    scope = _split_credential(credential)
    if scope is None:
        raise error(
            f"The credential in {where} is malformed: expected "
            f"'<access key id>/<YYYYMMDD>/<region>/<service>/aws4_request', got {credential!r}."
        )
    return scope


def _header_amz_date(headers: Mapping[str, list[str]], service: str) -> str:
    amz_date = _first(headers, "x-amz-date")
    if amz_date is not None:
        return amz_date.strip()
    date = _first(headers, "date")
    if date is None:
        raise MalformedAuthorization(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
            "Add X-Amz-Date (YYYYMMDD'T'HHMMSS'Z', UTC) and include it in the signature.",
            service=service,
        )
    try:
        parsed = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        raise MalformedAuthorization(
            f"The Date header {date!r} is not an RFC 1123 date; send X-Amz-Date instead.", service=service
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _check_signature_format(signature: str, error: type[SigV4Error], service: str) -> str:
    if not _HEX_RE.fullmatch(signature):
        raise error(f"The signature {signature!r} is not a hex string.", service=service)
    return signature.lower()


def _signed_header_list(value: str, error: type[SigV4Error], service: str) -> tuple[str, ...]:
    names = tuple(n.strip().lower() for n in value.split(";") if n.strip())
    if "host" not in names:
        raise error(
            f"SignedHeaders {value!r} must include 'host'; sign the Host header (every AWS SDK does).",
            service=service,
        )
    return names


def _parse_header_auth(value: str, headers: Mapping[str, list[str]]) -> _Auth:
    algorithm, fields = _auth_header_fields(value)
    if algorithm != ALGORITHM:
        raise MalformedAuthorization(
            f"Unsupported authorization type {algorithm or value!r}: Squall accepts only AWS Signature "
            f"Version 4 ('{ALGORITHM} Credential=..., SignedHeaders=..., Signature=...'). Configure your client "
            "with signature_version='s3v4' / 'v4'."
        )
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if k not in fields]
    if missing:
        raise MalformedAuthorization(
            f"Authorization header requires {', '.join(repr(m) for m in missing)} parameter(s). Authorization={value}"
        )
    scope = _scope_or_raise(fields["Credential"], MalformedAuthorization, "the Authorization header")
    service = scope.service
    amz_date = _header_amz_date(headers, service)
    return _Auth(
        scope=scope,
        signed_headers=_signed_header_list(fields["SignedHeaders"], MalformedAuthorization, service),
        signature=_check_signature_format(fields["Signature"], MalformedAuthorization, service),
        amz_date=amz_date,
        presigned=False,
    )


def _single_param(query: Mapping[str, list[str]], name: str, service: str | None) -> str:
    values = query.get(name)
    if not values:
        raise MalformedPresignedUrl(
            f"Query-string authentication requires the {name} parameter; presign the URL with an AWS SDK "
            "(e.g. generate_presigned_url).",
            service=service,
        )
    if len(values) > 1:
        raise MalformedPresignedUrl(f"The {name} parameter appears more than once.", service=service)
    return values[0]


def _parse_presigned(query: Mapping[str, list[str]]) -> _Auth:
    algorithm = _single_param(query, "X-Amz-Algorithm", None)
    credential = _single_param(query, "X-Amz-Credential", None)
    scope = _scope_or_raise(credential, MalformedPresignedUrl, "X-Amz-Credential")
    service = scope.service
    if algorithm != ALGORITHM:
        raise MalformedPresignedUrl(f"X-Amz-Algorithm only supports '{ALGORITHM}', got {algorithm!r}.", service=service)
    expires_raw = _single_param(query, "X-Amz-Expires", service)
    try:
        expires = int(expires_raw)
    except ValueError:
        expires = -1
    if not 0 <= expires <= MAX_PRESIGN_EXPIRES_S:
        raise MalformedPresignedUrl(
            f"X-Amz-Expires must be a whole number of seconds between 0 and {MAX_PRESIGN_EXPIRES_S} "
            f"(one week), got {expires_raw!r}.",
            service=service,
        )
    return _Auth(
        scope=scope,
        signed_headers=_signed_header_list(
            _single_param(query, "X-Amz-SignedHeaders", service), MalformedPresignedUrl, service
        ),
        signature=_check_signature_format(
            _single_param(query, "X-Amz-Signature", service), MalformedPresignedUrl, service
        ),
        amz_date=_single_param(query, "X-Amz-Date", service),
        presigned=True,
        expires_s=expires,
    )


def _parse_auth(headers: Mapping[str, list[str]], query: Mapping[str, list[str]]) -> _Auth:
    header = _first(headers, "authorization")
    presigned = "X-Amz-Signature" in query or "X-Amz-Credential" in query
    if header is not None and presigned:
        raise MalformedAuthorization(
            "Only one auth mechanism allowed; send either the Authorization header or the X-Amz-* query "
            "parameters of a presigned URL, not both."
        )
    if header is not None:
        auth = _parse_header_auth(header, headers)
    elif presigned:
        auth = _parse_presigned(query)
    else:
        raise MissingAuthentication(
            "Missing Authentication Token: the request is not signed. Sign it with AWS Signature Version 4 "
            "(any AWS SDK or the AWS CLI does this) using your Squall access key. " + _CREDS_HINT
        )
    _check_date_format(auth)
    return auth


def _check_date_format(auth: _Auth) -> None:
    error = MalformedPresignedUrl if auth.presigned else MalformedAuthorization
    service = auth.scope.service
    if not _AMZ_DATE_RE.fullmatch(auth.amz_date):
        raise error(
            f"X-Amz-Date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z', got {auth.amz_date!r}.",
            service=service,
        )
    if auth.scope.date != auth.amz_date[:8]:
        raise error(
            f"Invalid credential date {auth.scope.date!r}: it must be the same day as X-Amz-Date {auth.amz_date!r}.",
            service=service,
        )


# --------------------------------------------------------------------------------------------------- time


def _epoch(amz_date: str) -> float:
    """YYYYMMDD'T'HHMMSS'Z' (already matched by _AMZ_DATE_RE) as epoch seconds; ValueError for a day/time that
    does not exist.  The datetime constructor is ~10x cheaper than strptime, and this runs on every request."""
    d = amz_date
    return datetime(
        int(d[:4]), int(d[4:6]), int(d[6:8]), int(d[9:11]), int(d[11:13]), int(d[13:15]), tzinfo=UTC
    ).timestamp()


def _amz(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")


def _check_header_time(auth: _Auth, now: float, max_skew_s: float) -> None:
    service = auth.scope.service
    t = _epoch(auth.amz_date)
    if abs(now - t) <= max_skew_s:
        return
    minutes = f"{max_skew_s / 60:g} min."
    details = {
        "RequestTime": auth.amz_date,
        "ServerTime": _amz(now),
        "MaxAllowedSkewMilliseconds": str(int(max_skew_s * 1000)),
    }
    fix = " Check the clock of the machine that signed the request (Squall allows " + minutes + ")."
    if service == "s3":
        msg = "The difference between the request time and the current time is too large." + fix
    elif t < now:
        msg = (
            f"Signature expired: {auth.amz_date} is now earlier than {_amz(now - max_skew_s)} "
            f"({_amz(now)} - {minutes})" + fix
        )
    else:
        msg = (
            f"Signature not yet current: {auth.amz_date} is still later than {_amz(now + max_skew_s)} "
            f"({_amz(now)} + {minutes})" + fix
        )
    raise RequestTimeSkewed(msg, service=service, details=details)


def _check_presigned_time(auth: _Auth, now: float, max_skew_s: float) -> None:
    service = auth.scope.service
    t = _epoch(auth.amz_date)
    expires = auth.expires_s or 0
    if t - now > max_skew_s:
        raise PresignedUrlExpired(
            f"Request is not valid yet: the presigned URL was signed for {auth.amz_date}, which is in the "
            "future. Check the clock of the machine that presigned it.",
            service=service,
            details={"X-Amz-Date": auth.amz_date, "ServerTime": _amz(now)},
        )
    if now > t + expires:
        raise PresignedUrlExpired(
            f"Request has expired: the presigned URL was valid until {_amz(t + expires)} "
            f"(X-Amz-Date {auth.amz_date} + X-Amz-Expires {expires}s). Presign a new URL, with a longer "
            "ExpiresIn if needed.",
            service=service,
            details={"X-Amz-Expires": str(expires), "Expires": _amz(t + expires), "ServerTime": _amz(now)},
        )


# --------------------------------------------------------------------------------------------------- canonical


def _remove_dot_segments(path: str) -> str:
    """botocore.utils.remove_dot_segments: RFC 3986 5.2.4, also dropping empty segments."""
    if not path:
        return ""
    out: list[str] = []
    for seg in path.split("/"):
        if seg and seg != ".":
            if seg == "..":
                if out:
                    out.pop()
            else:
                out.append(seg)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and out else ""
    return first + "/".join(out) + last


def canonical_path(path: str | bytes, service: str) -> str:
    """The path line of the canonical request: raw for S3, normalised and encoded again for other services."""
    text = _as_text(path)
    if service == "s3":
        return text or "/"
    normalised = _remove_dot_segments(text) or "/"
    return quote(normalised.encode("utf-8", "surrogateescape"), safe="/~")


def canonical_query(pairs: Iterable[_Pair]) -> str:
    """Decode every key and value, encode them again (only ``A-Za-z0-9-_.~`` left alone) and sort."""
    encoded = sorted((quote(_unquote(k), safe="-_.~"), quote(_unquote(v), safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_headers(headers: Mapping[str, list[str]], signed: Iterable[str]) -> tuple[str, list[str]]:
    """The header block of the canonical request and the signed headers the request does not carry."""
    lines: list[str] = []
    missing: list[str] = []
    for name in signed:
        values = headers.get(name)
        if values is None:
            missing.append(name)
            continue
        lines.append(f"{name}:" + ",".join(" ".join(v.split()) for v in values))
    return "\n".join(lines) + "\n", missing


def _canonical_request(
    method: str,
    path: str | bytes,
    query_pairs: Iterable[_Pair],
    header_block: str,
    signed_headers: Iterable[str],
    payload_hash: str,
    service: str,
) -> str:
    return "\n".join(
        [
            method.upper(),
            canonical_path(path, service),
            canonical_query(query_pairs),
            header_block,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def _without_signature(pairs: Iterable[_Pair]) -> list[_Pair]:
    return [p for p in pairs if _unquote(p[0]) != b"X-Amz-Signature"]


def canonical_request(
    method: str,
    path: str | bytes,
    query_string: str | bytes,
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
    payload_hash: str,
    service: str,
) -> str:
    """The canonical request as botocore builds it (``X-Amz-Signature`` is left out of the query).  For
    debugging clients and for tests; ``verify_request`` is what checks requests."""
    signed = [n.lower() for n in signed_headers]
    header_block, _ = _canonical_headers(_lower_headers(headers), signed)
    pairs = _without_signature(_query_pairs(query_string))
    return _canonical_request(method, path, pairs, header_block, signed, payload_hash, service)


def string_to_sign(amz_date: str, credential_scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return "\n".join([ALGORITHM, amz_date, credential_scope, digest])


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key (four HMACs), cached: a key is the same for every request of its day and scope."""
    k_date = _hmac(f"AWS4{secret}".encode(), date)
    return _hmac(_hmac(_hmac(k_date, region), service), "aws4_request")


# --------------------------------------------------------------------------------------------------- payload


def _payload_hash(auth: _Auth, headers: Mapping[str, list[str]], body: bytes | None) -> tuple[str, BodyCheck]:
    claim = _first(headers, "x-amz-content-sha256")
    service = auth.scope.service
    if claim is None:
        if auth.presigned and service == "s3":
            return UNSIGNED_PAYLOAD, "unsigned"
        return hashlib.sha256(body or b"").hexdigest(), "verified"
    claim = claim.strip()
    if service != "s3" and claim in _S3_ONLY_CLAIMS:
        # only S3 lets a client leave its body out of the signature (or sign it in chunks): for Lambda, SQS, IAM
        # an unsigned body would let anyone who sees one signed request replay its headers with another body
        raise InvalidPayloadHash(
            f"x-amz-content-sha256: {claim} is accepted by S3 only; a {service} request must sign the SHA-256 of "
            "its body (AWS SDKs do this by default: remove the header or the payload-signing override).",
            service=service,
        )
    if claim in (UNSIGNED_PAYLOAD, STREAMING_UNSIGNED_TRAILER):
        return claim, "unsigned"
    if claim in (STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER):
        return claim, "chunked"
    if not _SHA256_RE.fullmatch(claim):
        raise InvalidPayloadHash(
            f"x-amz-content-sha256 must be {UNSIGNED_PAYLOAD}, {STREAMING_PAYLOAD}, "
            f"{STREAMING_PAYLOAD_TRAILER}, {STREAMING_UNSIGNED_TRAILER} or the lower-case hex SHA-256 of the "
            f"body, got {claim!r}.",
            service=service,
        )
    return claim, "deferred" if body is None else "verified"


def _check_body(claim: str, check: BodyCheck, body: bytes | None, service: str) -> None:
    if check != "verified" or body is None:
        return
    computed = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(computed, claim):
        raise PayloadHashMismatch(
            "The provided 'x-amz-content-sha256' header does not match what was computed: the body was "
            "changed after it was signed (a proxy re-encoding it?) or the client hashed a different body.",
            service=service,
            details={"ClientComputedContentSHA256": claim, "S3ComputedContentSHA256": computed},
        )


# --------------------------------------------------------------------------------------------------- verify


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _signature_mismatch(auth: _Auth, canonical: str, sts: str) -> SignatureMismatch:
    service = auth.scope.service
    if service == "s3":
        message = _SIGNATURE_HINT
    else:
        message = (
            f"{_SIGNATURE_HINT} Consult the service documentation for details.\n\n"
            f"The Canonical String for this request should have been\n'{_printable(canonical)}'\n\n"
            f"The String-to-Sign should have been\n'{sts}'\n"
        )
    return SignatureMismatch(
        message,
        service=service,
        details={
            "AWSAccessKeyId": auth.scope.access_key_id,
            "StringToSign": sts,
            "SignatureProvided": auth.signature,
            "CanonicalRequest": _printable(canonical),
        },
    )


def _unknown_key(scope: Scope) -> UnrecognizedAccessKey:
    if scope.service == "s3":
        first = "The AWS Access Key Id you provided does not exist in our records."
    else:
        first = "The security token included in the request is invalid."
    return UnrecognizedAccessKey(
        f"{first} Squall does not know the access key {scope.access_key_id!r}. {_CREDS_HINT}",
        service=scope.service,
        details={"AWSAccessKeyId": scope.access_key_id},
    )


def verify_request(
    method: str,
    path: str | bytes,
    query_string: str | bytes,
    headers: Mapping[str, str],
    body: bytes | None,
    lookup_secret: Callable[[str], str | None],
    now: float,
    *,
    max_skew_s: float = 900,
) -> AuthContext:
    """Verify a SigV4-signed request and say who signed it, or raise a ``SigV4Error``.

    ``path`` and ``query_string`` are the raw, still percent-encoded forms from the request line (ASGI
    ``scope["raw_path"]`` and ``scope["query_string"]``).  ``headers`` may be any mapping; names are matched
    case-insensitively and repeated headers are honoured when ``items()`` yields them.  ``body`` is the full
    body, or None to defer the payload check to the caller (see ``AuthContext.body_check``).  ``now`` is the
    current Unix time.
    """
    lowered = _lower_headers(headers)
    pairs = _query_pairs(query_string)
    auth = _parse_auth(lowered, _decoded_query(pairs))
    scope = auth.scope
    secret = lookup_secret(scope.access_key_id)
    if secret is None:
        raise _unknown_key(scope)
    if auth.presigned:
        _check_presigned_time(auth, now, max_skew_s)
        pairs = _without_signature(pairs)
    else:
        _check_header_time(auth, now, max_skew_s)
    payload, check = _payload_hash(auth, lowered, body)
    header_block, missing = _canonical_headers(lowered, auth.signed_headers)
    if missing:
        raise SignatureMismatch(
            f"{_SIGNATURE_HINT} The signed header(s) {', '.join(missing)} are missing from the request; a "
            "proxy in between may have removed them.",
            service=scope.service,
        )
    canonical = _canonical_request(method, path, pairs, header_block, auth.signed_headers, payload, scope.service)
    credential_scope = f"{scope.date}/{scope.region}/{scope.service}/aws4_request"
    sts = string_to_sign(auth.amz_date, credential_scope, canonical)
    key = signing_key(secret, scope.date, scope.region, scope.service)
    expected = hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, auth.signature):
        raise _signature_mismatch(auth, canonical, sts)
    if _first(lowered, "x-amz-content-sha256") is not None:
        _check_body(payload, check, body, scope.service)
    return AuthContext(
        access_key_id=scope.access_key_id,
        region=scope.region,
        service=scope.service,
        signed_headers=auth.signed_headers,
        presigned=auth.presigned,
        amz_date=auth.amz_date,
        payload_hash=payload,
        body_check=check,
        signature=auth.signature,
        signing_key=key,
    )


# --------------------------------------------------------------------------------------------------- aws-chunked


@dataclass(frozen=True)
class _Chunk:
    data: bytes
    signature: str | None


def _malformed(message: str) -> MalformedChunkedBody:
    return MalformedChunkedBody(
        f"The aws-chunked request body is malformed: {message}. Send it with an AWS SDK, or send a plain body "
        "without Content-Encoding: aws-chunked.",
        service="s3",
    )


def _chunk_line(body: bytes, pos: int) -> tuple[bytes, int]:
    end = body.find(b"\r\n", pos)
    if end < 0:
        raise _malformed(f"the body ends inside a chunk header at byte {pos}")
    return body[pos:end], end + 2


def _parse_chunk_header(line: bytes, pos: int) -> tuple[int, str | None]:
    size_part, *extensions = line.split(b";")
    size_text = size_part.strip()
    if not size_text or not _HEX_RE.fullmatch(size_text.decode("ascii", "replace")):
        raise _malformed(f"bad chunk size {size_text[:32]!r} at byte {pos}")
    signature = None
    for ext in extensions:
        name, _, value = ext.partition(b"=")
        if name.strip() == b"chunk-signature":
            signature = value.strip().decode("ascii", "replace")
    return int(size_text, 16), signature


def _parse_trailers(body: bytes, pos: int) -> list[tuple[str, str]]:
    trailers: list[tuple[str, str]] = []
    while pos < len(body):
        line, pos = _chunk_line(body, pos)
        if not line:
            if pos != len(body):
                raise _malformed(f"{len(body) - pos} unexpected byte(s) after the final chunk")
            return trailers
        name, sep, value = line.partition(b":")
        if not sep:
            raise _malformed(f"bad trailer line {line[:64]!r}")
        trailers.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
    return trailers


def _parse_aws_chunked(body: bytes) -> tuple[list[_Chunk], list[tuple[str, str]]]:
    chunks: list[_Chunk] = []
    pos = 0
    while True:
        line, data_start = _chunk_line(body, pos)
        size, signature = _parse_chunk_header(line, pos)
        if size == 0:
            chunks.append(_Chunk(b"", signature))
            return chunks, _parse_trailers(body, data_start)
        data_end = data_start + size
        if body[data_end : data_end + 2] != b"\r\n":
            raise _malformed(f"chunk at byte {pos} declares {size} bytes but the data or its CRLF is missing")
        chunks.append(_Chunk(body[data_start:data_end], signature))
        pos = data_end + 2


def _joined(chunks: Iterable[_Chunk], decoded_length: int | None) -> bytes:
    data = b"".join(c.data for c in chunks)
    if decoded_length is not None and len(data) != decoded_length:
        raise _malformed(f"x-amz-decoded-content-length is {decoded_length} but the chunks hold {len(data)} bytes")
    return data


def decode_aws_chunked(body: bytes, *, decoded_length: int | None = None) -> bytes:
    """The payload inside an ``aws-chunked`` body (chunk signatures and trailers are dropped, not checked)."""
    chunks, _ = _parse_aws_chunked(body)
    return _joined(chunks, decoded_length)


def _same_hex(expected: str, provided: str | None) -> bool:
    if provided is None or not _HEX_RE.fullmatch(provided):
        return False
    return hmac.compare_digest(expected, provided.lower())


def _chunk_mismatch(index: int) -> SignatureMismatch:
    return SignatureMismatch(
        f"{_SIGNATURE_HINT} The signature of aws-chunked chunk #{index} is wrong or missing: the body was "
        "changed in transit or the client signed it with another key.",
        service="s3",
    )


def verify_aws_chunked(body: bytes, ctx: AuthContext, *, decoded_length: int | None = None) -> bytes:
    """Check every chunk signature (and the trailer signature) of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``
    body against the seed signature in ``ctx`` and return the payload.  For an unsigned streaming payload
    this only decodes."""
    chunks, trailers = _parse_aws_chunked(body)
    if ctx.body_check != "chunked":
        return _joined(chunks, decoded_length)
    previous = ctx.signature
    for index, chunk in enumerate(chunks):
        sts = "\n".join(
            [
                f"{ALGORITHM}-PAYLOAD",
                ctx.amz_date,
                ctx.credential_scope,
                previous,
                EMPTY_SHA256,
                hashlib.sha256(chunk.data).hexdigest(),
            ]
        )
        expected = hmac.new(ctx.signing_key, sts.encode(), hashlib.sha256).hexdigest()
        if not _same_hex(expected, chunk.signature):
            raise _chunk_mismatch(index)
        previous = expected
    if ctx.payload_hash == STREAMING_PAYLOAD_TRAILER:
        _verify_trailer(trailers, ctx, previous)
    return _joined(chunks, decoded_length)


def _verify_trailer(trailers: list[tuple[str, str]], ctx: AuthContext, previous: str) -> None:
    provided = [v for k, v in trailers if k == "x-amz-trailer-signature"]
    canonical = "".join(f"{k}:{v}\n" for k, v in trailers if k != "x-amz-trailer-signature")
    sts = "\n".join(
        [
            f"{ALGORITHM}-TRAILER",
            ctx.amz_date,
            ctx.credential_scope,
            previous,
            hashlib.sha256(canonical.encode("latin-1")).hexdigest(),
        ]
    )
    expected = hmac.new(ctx.signing_key, sts.encode(), hashlib.sha256).hexdigest()
    if len(provided) != 1 or not _same_hex(expected, provided[0]):
        raise SignatureMismatch(
            f"{_SIGNATURE_HINT} The x-amz-trailer-signature of the aws-chunked body is wrong or missing.",
            service="s3",
        )
