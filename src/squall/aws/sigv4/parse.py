"""What a SigV4 request claims: the Authorization header or presigned query parsed into a credential scope,
signed headers, signature and date, checked for shape (not yet for truth)."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Literal
from urllib.parse import unquote_to_bytes

from squall.aws.sigv4.errors import MalformedAuthorization, MalformedPresignedUrl, MissingAuthentication, SigV4Error
from squall.core import timefmt

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_PRESIGN_EXPIRES_S",
    "STREAMING_PAYLOAD",
    "STREAMING_PAYLOAD_TRAILER",
    "STREAMING_UNSIGNED_TRAILER",
    "UNSIGNED_PAYLOAD",
    "AuthContext",
    "BodyCheck",
    "LowerHeaders",
    "Scope",
    "parse_scope",
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


class LowerHeaders(dict[str, str]):
    """Header name, already lower case -> its value, repeated fields already joined with ``,`` (what the SigV4
    middleware builds from the raw ASGI headers).  ``verify_request`` and ``parse_scope`` take it as it is instead of
    lowering and regrouping every name a second time; any other mapping is read the general way."""

    __slots__ = ()


def _lower_headers(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Header name (lower case) -> every value, in order.  ``items()`` of Starlette's ``Headers`` yields repeats."""
    if type(headers) is LowerHeaders:
        return {name: [value] for name, value in headers.items()}
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


def _auth_header_fields(value: str) -> tuple[str, Mapping[str, str]]:
    """Split ``AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=x;y, Signature=hex`` into its parts (read-only).

    Every signed request asks twice (``parse_scope`` routes by the service, then the check itself parses the same
    string): the second answer comes from a small cache of the last headers seen, which holds only what the client
    sent, parsed."""
    return _auth_header_fields_cached(value)


@functools.lru_cache(maxsize=64)  # at most 64 header values (each within the edge's header limit) held
def _auth_header_fields_cached(value: str) -> tuple[str, Mapping[str, str]]:
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            fields[key.strip()] = val.strip()
    return algorithm, MappingProxyType(fields)


def parse_scope(headers: Mapping[str, str], query_string: str | bytes) -> Scope | None:
    """The credential scope of a request (header or presigned form), or None when there is none or it is
    malformed.  Cheap: no hashing and no secret lookup, for routing by ``scope.service`` before verifying."""
    if type(headers) is LowerHeaders:
        value = headers.get("authorization")
    else:
        value = next((v for name, v in headers.items() if name.lower() == "authorization"), None)
    if value is not None:
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
    return timefmt.amz_date(parsed.timestamp())


def _check_signature_format(signature: str, error: type[SigV4Error], service: str) -> str:
    if not _HEX_RE.fullmatch(signature):
        raise error(f"The signature {signature!r} is not a hex string.", service=service)
    return signature.lower()


@functools.lru_cache(maxsize=64)  # at most 64 header values (each within the edge's header limit) held
def _signed_names(value: str) -> tuple[str, ...]:
    """``host;x-amz-date`` → its names, lower case (cached: a client signs the same list on every request)."""
    return tuple(n.strip().lower() for n in value.split(";") if n.strip())


def _signed_header_list(value: str, error: type[SigV4Error], service: str) -> tuple[str, ...]:
    names = _signed_names(value)
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
