"""``aws-chunked`` bodies: strip the framing, and check each chunk's signature for
``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` uploads."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from squall.aws.sigv4.errors import MalformedChunkedBody, SignatureMismatch
from squall.aws.sigv4.parse import (
    _HEX_RE,
    _SIGNATURE_HINT,
    ALGORITHM,
    EMPTY_SHA256,
    STREAMING_PAYLOAD_TRAILER,
    AuthContext,
)

__all__ = ["decode_aws_chunked", "verify_aws_chunked"]

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
