"""The canonical request, string to sign and signing key, built exactly as botocore builds them."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from squall.aws.sigv4.parse import ALGORITHM, _as_text, _lower_headers, _Pair, _query_pairs, _unquote

__all__ = ["canonical_path", "canonical_query", "canonical_request", "signing_key", "string_to_sign"]

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
        if len(values) == 1:  # (nearly always: the middleware joins repeated fields)
            lines.append(f"{name}:{' '.join(values[0].split())}")
        else:
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
