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

The package is cut along those seams: ``parse`` (what the request claims), ``canonical`` (canonical request,
string to sign, signing key), ``verify`` (dates, payload hash, signature), ``chunked`` (aws-chunked bodies) and
``errors``.  Every failure is a ``SigV4Error`` whose wire code depends on the service (``error.code_for("s3")``).
"""

from __future__ import annotations

from squall.aws.sigv4.canonical import canonical_path, canonical_query, canonical_request, signing_key, string_to_sign
from squall.aws.sigv4.chunked import decode_aws_chunked, verify_aws_chunked
from squall.aws.sigv4.errors import (
    InvalidPayloadHash,
    MalformedAuthorization,
    MalformedChunkedBody,
    MalformedPresignedUrl,
    MissingAuthentication,
    PayloadHashMismatch,
    PresignedUrlExpired,
    RequestTimeSkewed,
    SignatureMismatch,
    SigV4Error,
    UnrecognizedAccessKey,
)
from squall.aws.sigv4.parse import (
    ALGORITHM,
    EMPTY_SHA256,
    MAX_PRESIGN_EXPIRES_S,
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    AuthContext,
    BodyCheck,
    LowerHeaders,
    Scope,
    parse_scope,
)
from squall.aws.sigv4.verify import verify_request

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
    "InvalidPayloadHash",
    "LowerHeaders",
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
    "canonical_path",
    "canonical_query",
    "canonical_request",
    "decode_aws_chunked",
    "parse_scope",
    "signing_key",
    "string_to_sign",
    "verify_aws_chunked",
    "verify_request",
]
