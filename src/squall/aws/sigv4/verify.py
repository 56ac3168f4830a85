"""``verify_request``: check a SigV4-signed request's date, payload hash and signature; say who signed it."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from squall.aws.sigv4.canonical import (
    _canonical_headers,
    _canonical_request,
    _without_signature,
    signing_key,
    string_to_sign,
)
from squall.aws.sigv4.errors import (
    InvalidPayloadHash,
    PayloadHashMismatch,
    PresignedUrlExpired,
    RequestTimeSkewed,
    SignatureMismatch,
    UnrecognizedAccessKey,
)
from squall.aws.sigv4.parse import (
    _CREDS_HINT,
    _S3_ONLY_CLAIMS,
    _SHA256_RE,
    _SIGNATURE_HINT,
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    AuthContext,
    BodyCheck,
    Scope,
    _Auth,
    _decoded_query,
    _first,
    _lower_headers,
    _parse_auth,
    _query_pairs,
)
from squall.core.timefmt import amz_date

__all__ = ["verify_request"]

# --------------------------------------------------------------------------------------------------- time


@functools.lru_cache(maxsize=64)
def _epoch(amz_date: str) -> float:
    """YYYYMMDD'T'HHMMSS'Z' (already matched by _AMZ_DATE_RE) as epoch seconds; ValueError for a day/time that
    does not exist.  The datetime constructor is ~10x cheaper than strptime, and this runs on every request
    (cached: the requests of one second share their X-Amz-Date)."""
    d = amz_date
    return datetime(
        int(d[:4]), int(d[4:6]), int(d[6:8]), int(d[9:11]), int(d[11:13]), int(d[13:15]), tzinfo=UTC
    ).timestamp()


def _check_header_time(auth: _Auth, now: float, max_skew_s: float) -> None:
    service = auth.scope.service
    t = _epoch(auth.amz_date)
    if abs(now - t) <= max_skew_s:
        return
    minutes = f"{max_skew_s / 60:g} min."
    details = {
        "RequestTime": auth.amz_date,
        "ServerTime": amz_date(now),
        "MaxAllowedSkewMilliseconds": str(int(max_skew_s * 1000)),
    }
    fix = " Check the clock of the machine that signed the request (Squall allows " + minutes + ")."
    if service == "s3":
        msg = "The difference between the request time and the current time is too large." + fix
    elif t < now:
        msg = (
            f"Signature expired: {auth.amz_date} is now earlier than {amz_date(now - max_skew_s)} "
            f"({amz_date(now)} - {minutes})" + fix
        )
    else:
        msg = (
            f"Signature not yet current: {auth.amz_date} is still later than {amz_date(now + max_skew_s)} "
            f"({amz_date(now)} + {minutes})" + fix
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
            details={"X-Amz-Date": auth.amz_date, "ServerTime": amz_date(now)},
        )
    if now > t + expires:
        raise PresignedUrlExpired(
            f"Request has expired: the presigned URL was valid until {amz_date(t + expires)} "
            f"(X-Amz-Date {auth.amz_date} + X-Amz-Expires {expires}s). Presign a new URL, with a longer "
            "ExpiresIn if needed.",
            service=service,
            details={"X-Amz-Expires": str(expires), "Expires": amz_date(t + expires), "ServerTime": amz_date(now)},
        )


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
    expected = hmac.digest(key, sts.encode("utf-8"), "sha256").hex()  # the one-shot C HMAC
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
