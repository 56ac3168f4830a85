"""S3's Signature Version 2 query-string authentication (presigned URLs), with no I/O.

botocore still presigns S3 URLs with SigV2 by default (``generate_presigned_url`` on a client without
``signature_version='s3v4'``): ``?AWSAccessKeyId=...&Signature=...&Expires=<epoch seconds>``.  The signature is
``base64(HMAC-SHA1(secret, StringToSign))`` over::

    HTTP-Verb \\n Content-MD5 \\n Content-Type \\n Expires \\n CanonicalizedAmzHeaders CanonicalizedResource

* Content-MD5 / Content-Type: the request's headers (botocore moves them into the query when presigning, so the
  query's ``content-md5`` / ``content-type`` stand in when the header is absent);
* CanonicalizedAmzHeaders: every ``x-amz-*`` header (and ``x-amz-*`` query parameter botocore moved there), names
  lower-cased, values trimmed, repeats joined with ``,``, sorted, one ``name:value\\n`` each;
* CanonicalizedResource: the raw path as sent (``/bucket/key``, still percent-encoded), then the sub-resources and
  ``response-*`` overrides present in the query, sorted by name, values percent-decoded (botocore's
  ``HmacV1Auth.canonical_resource``).

Only S3 accepts it; a verified request gets an ``AuthContext`` with service ``"s3"`` and an unsigned payload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from urllib.parse import unquote, unquote_to_bytes

from squall.aws.sigv4 import (
    AuthContext,
    MalformedPresignedUrl,
    PresignedUrlExpired,
    SignatureMismatch,
    SigV4Error,
    UnrecognizedAccessKey,
)
from squall.core.timefmt import iso_s

__all__ = [
    "SUBRESOURCES",
    "is_v2_query",
    "sign_v2",
    "string_to_sign_v2",
    "verify_query_v2",
]

#: query parameters that are part of the canonicalized resource (botocore's ``HmacV1Auth.QSAOfInterest``)
SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
        "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
        "response-content-type", "response-content-language", "response-expires", "response-cache-control",
        "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging", "restore",
        "storageClass", "notification", "replication", "analytics", "metrics", "inventory", "select", "select-type",
        "object-lock",
    }
)  # fmt: skip
_AUTH_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")
_SIGNATURE_HINT = (
    "The request signature we calculated does not match the signature you provided. Check your key and signing method."
)

_Pair = tuple[str, str | None]


def _raw_pairs(query_string: str | bytes) -> list[_Pair]:
    """(raw name, raw value or None when there is no '=') pairs, still percent-encoded."""
    raw = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    pairs: list[_Pair] = []
    for part in raw.split("&"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        pairs.append((name, value if sep else None))
    return pairs


def _decode(raw: str) -> str:
    return unquote_to_bytes(raw.replace("+", " ")).decode("utf-8", "replace")


def is_v2_query(query_string: str | bytes) -> bool:
    """Does the query carry SigV2 query-string authentication (``AWSAccessKeyId`` and ``Signature``)?"""
    names = {name for name, _ in _raw_pairs(query_string)}
    return "AWSAccessKeyId" in names and "Signature" in names


def _canonical_resource(path: str, pairs: list[_Pair]) -> str:
    subs = [(name, value) for name, value in pairs if name in SUBRESOURCES]
    if not subs:
        return path
    subs.sort(key=lambda p: p[0])
    return path + "?" + "&".join(name if value is None else f"{name}={unquote(value)}" for name, value in subs)


def string_to_sign_v2(
    method: str, raw_path: str | bytes, query_string: str | bytes, headers: Mapping[str, str], expires: str
) -> str:
    """The SigV2 StringToSign of a presigned request (``headers``: lower-case names, repeats joined with ``,``)."""
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    path = path.split("?", 1)[0] or "/"
    pairs = _raw_pairs(query_string)
    query = {_decode(name).lower(): _decode(value or "") for name, value in pairs}
    amz: dict[str, str] = {}
    for name, value in query.items():
        if name.startswith("x-amz-"):
            amz[name] = value.strip()
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("x-amz-"):
            amz[lower] = ",".join(v.strip() for v in value.split(","))
    md5 = headers.get("content-md5", query.get("content-md5", "")).strip()
    content_type = headers.get("content-type", query.get("content-type", "")).strip()
    lines = [method.upper(), md5, content_type, expires]
    lines += [f"{name}:{amz[name]}" for name in sorted(amz)]
    lines.append(_canonical_resource(path, pairs))
    return "\n".join(lines)


def sign_v2(secret: str, string_to_sign: str) -> str:
    """base64(HMAC-SHA1(secret, string_to_sign)), as botocore's ``HmacV1Auth.sign_string``."""
    digest = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_query_v2(
    method: str,
    raw_path: str | bytes,
    query_string: str | bytes,
    headers: Mapping[str, str],
    lookup_secret: Callable[[str], str | None],
    now: float,
) -> AuthContext:
    """Verify a SigV2 presigned S3 request, or raise a ``SigV4Error`` with S3's code (AccessDenied "Request has
    expired", InvalidAccessKeyId, SignatureDoesNotMatch with the StringToSign)."""
    params: dict[str, list[str]] = {}
    for name, value in _raw_pairs(query_string):
        if name in _AUTH_PARAMS:
            params.setdefault(name, []).append(_decode(value or ""))
    for name in _AUTH_PARAMS:
        values = params.get(name, [])
        if len(values) != 1 or not values[0]:
            raise SigV4Error(
                "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters, each "
                f"once ({name} is {'missing' if not values else 'repeated or empty'}); presign the URL with an "
                "AWS SDK (e.g. generate_presigned_url).",
                service="s3",
            )
    access_key, signature, expires = params["AWSAccessKeyId"][0], params["Signature"][0], params["Expires"][0]
    if not expires.isdigit():
        raise MalformedPresignedUrl(
            f"Expires must be the expiry time in whole seconds since the epoch, got {expires!r}.", service="s3"
        )
    if now > int(expires):
        raise PresignedUrlExpired(
            f"Request has expired: the presigned URL was valid until {iso_s(int(expires))}. Presign a new URL, with a "
            "longer ExpiresIn if needed.",
            service="s3",
            details={"Expires": iso_s(int(expires)), "ServerTime": iso_s(now)},
        )
    secret = lookup_secret(access_key)
    if secret is None:
        raise UnrecognizedAccessKey(
            "The AWS Access Key Id you provided does not exist in our records.",
            service="s3",
            details={"AWSAccessKeyId": access_key},
        )
    sts = string_to_sign_v2(method, raw_path, query_string, headers, expires)
    expected = sign_v2(secret, sts)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise SignatureMismatch(
            _SIGNATURE_HINT,
            service="s3",
            details={
                "AWSAccessKeyId": access_key,
                "StringToSign": sts,
                "SignatureProvided": signature,
                "StringToSignBytes": " ".join(f"{b:02x}" for b in sts.encode("utf-8")),
            },
        )
    return AuthContext(
        access_key_id=access_key,
        region="",
        service="s3",
        signed_headers=(),
        presigned=True,
        payload_hash="UNSIGNED-PAYLOAD",
        body_check="unsigned",
        signature=signature,
    )
