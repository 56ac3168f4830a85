"""SigV4 verification against requests signed by botocore itself (real clients, real signers)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from squall.aws import sigv4
from squall.aws.sigv4 import (
    AuthContext,
    LowerHeaders,
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
    decode_aws_chunked,
    parse_scope,
    verify_aws_chunked,
    verify_request,
)

KEY_ID = "AKSQTESTTESTTEST0001"
SECRET = "s3cr3t/with+chars=andmore0123456789abcd"
SIGNED_AT = dt.datetime(2024, 5, 1, 12, 0, 0)
NOW = SIGNED_AT.replace(tzinfo=dt.UTC).timestamp()
ENDPOINT = "http://localhost:8080"


def lookup(key: str) -> str | None:
    return SECRET if key == KEY_ID else None


@dataclass
class Captured:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def verify(self, *, now: float = NOW, secret_lookup: Any = lookup, **changes: Any) -> AuthContext:
        fields: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "query_string": self.query,
            "headers": self.headers,
            "body": self.body,
        }
        fields.update(changes)
        return verify_request(
            fields["method"],
            fields["path"],
            fields["query_string"],
            fields["headers"],
            fields["body"],
            secret_lookup,
            now,
        )


class _Sent(Exception):
    pass


@pytest.fixture(autouse=True)
def frozen_signing_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: SIGNED_AT)


def _client(service: str, **config: Any) -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=ENDPOINT,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 0}, **config),
    )


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    data = body.read()
    body.seek(0)
    return bytes(data)


def capture(client: Any, operation: str, **params: Any) -> Captured:
    """Call ``operation`` on a real client and capture the signed request instead of sending it."""
    seen: list[Captured] = []

    def before_send(request: Any, **_: Any) -> None:
        seen.append(_from_awsrequest(request))
        raise _Sent

    client.meta.events.register("before-send", before_send)
    with pytest.raises(_Sent):
        getattr(client, operation)(**params)
    return seen[0]


def presigned(url: str) -> Captured:
    parts = urlsplit(url)
    return Captured("GET", parts.path, parts.query, {"Host": parts.netloc}, b"")


# ------------------------------------------------------------------------------------------------ good requests


@pytest.mark.parametrize(
    ("function_name", "qualifier"),
    [
        ("plain", None),
        ("with-alias", "prod"),
        ("arn:aws:lambda:us-east-1:123456789012:function:my-fn:live", None),
        ("my-fn:7", None),
        ("tilde~fn", "$LATEST"),
    ],
)
def test_lambda_invoke_verifies(function_name: str, qualifier: str | None) -> None:
    params: dict[str, Any] = {"FunctionName": function_name, "Payload": b'{"k": "v \\u00e9"}'}
    if qualifier:
        params["Qualifier"] = qualifier
    req = capture(_client("lambda"), "invoke", **params)
    ctx = req.verify()
    assert ctx == AuthContext(
        access_key_id=KEY_ID,
        region="us-east-1",
        service="lambda",
        signed_headers=ctx.signed_headers,
        amz_date="20240501T120000Z",
        payload_hash=hashlib.sha256(req.body).hexdigest(),
        body_check="verified",
        signature=ctx.signature,
        signing_key=ctx.signing_key,
    )
    assert "host" in ctx.signed_headers


def test_lambda_path_with_colon_is_double_encoded() -> None:
    req = capture(_client("lambda"), "invoke", FunctionName="fn:live")
    assert "%3A" in req.path
    req.verify()
    canonical = sigv4.canonical_request(
        req.method, req.path, req.query, req.headers, ["host"], sigv4.EMPTY_SHA256, "lambda"
    )
    assert canonical.splitlines()[1] == "/2015-03-31/functions/fn%253Alive/invocations"


def test_lambda_list_functions_with_query() -> None:
    req = capture(_client("lambda"), "list_functions", Marker="a b+c~d/é", MaxItems=5)
    assert req.query
    assert req.verify().service == "lambda"


def test_sqs_json_request_verifies() -> None:
    req = capture(
        _client("sqs"),
        "send_message",
        QueueUrl=f"{ENDPOINT}/000000000000/my-queue",
        MessageBody="hello wörld ~+",
    )
    assert req.headers["X-Amz-Target"] == "AmazonSQS.SendMessage"
    ctx = req.verify()
    assert (ctx.service, ctx.body_check) == ("sqs", "verified")


@pytest.mark.parametrize(
    "key",
    ["plain.txt", "with space/and+plus.txt", "unicodé/ключ.bin", "tilde~/x", "colon:key", "a//double/../dots"],
)
def test_s3_put_object_verifies_without_double_encoding(key: str) -> None:
    client = _client("s3", s3={"addressing_style": "path"})
    req = capture(client, "put_object", Bucket="bucket", Key=key, Body=b"data \x00\xff")
    ctx = req.verify()
    assert ctx.service == "s3"
    assert ctx.body_check == "verified"
    canonical = sigv4.canonical_request(
        req.method, req.path, req.query, req.headers, ["host"], sigv4.EMPTY_SHA256, "s3"
    )
    assert canonical.splitlines()[1] == req.path


def test_s3_list_objects_query_params() -> None:
    client = _client("s3", s3={"addressing_style": "path"})
    req = capture(client, "list_objects_v2", Bucket="bucket", Prefix="dir with space/é+~", Delimiter="/")
    assert "prefix=" in req.query
    req.verify()


def test_s3_body_is_only_checked_later_when_not_given() -> None:
    client = _client("s3", s3={"addressing_style": "path"})
    req = capture(client, "put_object", Bucket="bucket", Key="k", Body=b"payload")
    ctx = req.verify(body=None)
    assert ctx.body_check == "deferred"
    assert ctx.payload_hash == hashlib.sha256(b"payload").hexdigest()


def test_s3_unsigned_payload() -> None:
    request = AWSRequest(
        method="PUT",
        url="https://localhost:8443/bucket/key",
        data=b"anything",
        headers={"Content-MD5": "x"},
    )
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    _sign(request, "s3")
    assert request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    ctx = _from_awsrequest(request).verify(body=b"something else entirely")
    assert ctx.body_check == "unsigned"


@pytest.mark.parametrize("service", ["lambda", "sqs", "iam"])
@pytest.mark.parametrize(
    "claim",
    ["UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"],
)
def test_unsigned_or_streaming_payload_is_for_s3_only(service: str, claim: str) -> None:
    """Signed correctly, but with the body left out of the signature: any body would then run."""
    request = AWSRequest(
        method="POST",
        url="http://localhost:8080/2015-03-31/functions/f/invocations",
        data=b'{"signed": "body"}',
        headers={"X-Amz-Content-SHA256": claim},
    )
    _sign(request, service)
    with pytest.raises(sigv4.InvalidPayloadHash) as ei:
        _from_awsrequest(request).verify(body=b'{"another": "body"}')
    assert ei.value.code == "InvalidSignatureException" and ei.value.status == 403
    assert "accepted by S3 only" in ei.value.message


def _signed_with_spaced_header() -> Captured:
    """A signed Invoke whose ``X-Custom`` header has leading, trailing and inner runs of spaces."""
    request = AWSRequest(
        method="POST",
        url="http://localhost:8080/2015-03-31/functions/f/invocations",
        data=b"{}",
        headers={"X-Custom": "  a   b  ", "Content-Type": "application/json"},
    )
    _sign(request, "lambda")
    return _from_awsrequest(request)


def test_headers_are_case_insensitive_and_whitespace_trimmed() -> None:
    req = _signed_with_spaced_header()
    req.headers = {k.upper(): v for k, v in req.headers.items()}
    assert "x-custom" in req.verify().signed_headers


@pytest.mark.parametrize(
    "query",
    ["b=2&a=1&a=&c", "z=%20&y=%2B&x=~&w=%E2%82%AC", "empty=&=novalue&k=v", "a=1&a=0&a=10"],
)
@pytest.mark.parametrize("service", ["lambda", "s3"])
def test_query_strings_with_repeated_and_empty_keys(query: str, service: str) -> None:
    request = AWSRequest(method="GET", url=f"http://localhost:8080/some%20path/~x?{query}", headers={})
    _sign(request, service)
    _from_awsrequest(request).verify()


def test_date_header_instead_of_x_amz_date() -> None:
    request = AWSRequest(
        method="GET",
        url="http://localhost:8080/2015-03-31/functions",
        headers={"Date": "Wed, 01 May 2024 12:00:00 GMT"},
    )
    _sign(request, "lambda")
    req = _from_awsrequest(request)
    assert "X-Amz-Date" not in req.headers
    assert req.verify().amz_date == "20240501T120000Z"


# ------------------------------------------------------------------------------------------------ presigned


def test_s3_presigned_get_verifies() -> None:
    client = _client("s3", s3={"addressing_style": "path"}, signature_version="s3v4")
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "dir/ä file+~.txt"}, ExpiresIn=600)
    ctx = presigned(url).verify(now=NOW + 599)
    assert ctx.presigned
    assert ctx.body_check == "unsigned"
    assert ctx.payload_hash == sigv4.UNSIGNED_PAYLOAD


def test_s3_presigned_with_s3sigv4queryauth_and_extra_params() -> None:
    request = AWSRequest(
        method="GET",
        url="http://localhost:8080/bucket/key%20x?versionId=v%2B1&response-content-type=text%2Fplain",
    )
    botocore.auth.S3SigV4QueryAuth(Credentials(KEY_ID, SECRET), "s3", "eu-west-1", expires=60).add_auth(request)
    ctx = presigned(request.url).verify()
    assert (ctx.region, ctx.presigned) == ("eu-west-1", True)


def test_presigned_url_expired() -> None:
    client = _client("s3", s3={"addressing_style": "path"}, signature_version="s3v4")
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60)
    with pytest.raises(PresignedUrlExpired) as info:
        presigned(url).verify(now=NOW + 61)
    assert info.value.code_for("s3") == "AccessDenied"
    assert info.value.message.startswith("Request has expired")
    assert info.value.status_for("s3") == 403


def test_presigned_url_tampered_key() -> None:
    client = _client("s3", s3={"addressing_style": "path"}, signature_version="s3v4")
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    req = presigned(url)
    with pytest.raises(SignatureMismatch) as info:
        req.verify(path="/b/other")
    assert info.value.code_for("s3") == "SignatureDoesNotMatch"
    assert info.value.details["CanonicalRequest"].splitlines()[1] == "/b/other"


def test_presigned_url_bad_expires() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKSQTESTTESTTEST0001%2F20240501%2Fus-east-1%2Fs3%2F"
        "aws4_request&X-Amz-Date=20240501T120000Z&X-Amz-Expires=999999999&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=00"
    )
    with pytest.raises(MalformedPresignedUrl) as info:
        verify_request("GET", "/b/k", query, {"host": "x"}, b"", lookup, NOW)
    assert info.value.code_for("s3") == "AuthorizationQueryParametersError"
    assert info.value.status_for("s3") == 400


# ------------------------------------------------------------------------------------------------ failures


@pytest.fixture
def lambda_req() -> Captured:
    return capture(
        _client("lambda"),
        "invoke",
        FunctionName="fn:live",
        Payload=b'{"a": 1}',
        InvocationType="RequestResponse",
        LogType="Tail",
    )


def test_tampered_body(lambda_req: Captured) -> None:
    with pytest.raises(SignatureMismatch) as info:
        lambda_req.verify(body=b'{"a": 2}')
    err = info.value
    assert err.code == "InvalidSignatureException"
    assert err.code_for("s3") == "SignatureDoesNotMatch"
    assert "Check your AWS Secret Access Key and signing method" in err.message
    assert "The Canonical String for this request should have been" in err.message


@pytest.mark.parametrize(
    ("name", "value"),
    [("Host", "elsewhere:8080"), ("X-Amz-Date", "20240501T120001Z"), ("X-Amz-Invocation-Type", "Event")],
)
def test_tampered_signed_header(lambda_req: Captured, name: str, value: str) -> None:
    signed = lambda_req.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert name.lower() in signed
    with pytest.raises(SignatureMismatch):
        lambda_req.verify(headers=dict(lambda_req.headers, **{name: value}))


def test_unsigned_extra_header_is_ignored(lambda_req: Captured) -> None:
    lambda_req.verify(headers=dict(lambda_req.headers, **{"X-Forwarded-For": "10.0.0.1"}))


def _lowered(headers: dict[str, str]) -> LowerHeaders:
    out = LowerHeaders()  # as the SigV4 middleware builds it: lower-case names, repeated fields joined with ","
    for name, value in headers.items():
        out[name.lower()] = f"{out[name.lower()]},{value}" if name.lower() in out else value
    return out


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"X-Custom": "  a   b  "},  # signed below, squeezed
        {"X-Amz-Date": "20240501T130000Z"},  # a signed header changed: refused
        {"Authorization": "AWS4-HMAC-SHA256 Credential=x/y, SignedHeaders=host, Signature=00"},
        {"Authorization": "Basic abc"},
    ],
)
def test_middleware_headers_are_read_like_any_mapping(change: dict[str, str]) -> None:
    """The middleware's ``LowerHeaders`` (read without lowering the names again) gets the same verdict, error and
    context as the same headers in a plain dict with their original case."""
    req = _signed_with_spaced_header()
    headers = {**req.headers, **change}
    assert parse_scope(_lowered(headers), "") == parse_scope(headers, "")
    outcomes: list[object] = []
    for form in (headers, _lowered(headers)):
        try:
            outcomes.append(req.verify(headers=form))
        except SigV4Error as e:
            outcomes.append((type(e), e.message))
    assert outcomes[0] == outcomes[1]
    assert isinstance(outcomes[0], AuthContext) == (change in ({}, {"X-Custom": "  a   b  "}))


def test_removed_signed_header(lambda_req: Captured) -> None:
    headers = {k: v for k, v in lambda_req.headers.items() if k.lower() != "x-amz-log-type"}
    with pytest.raises(SignatureMismatch, match="missing from the request"):
        lambda_req.verify(headers=headers)


@pytest.mark.parametrize(
    "path",
    [
        "/2015-03-31/functions/fn%3Alater/invocations",
        "/2015-03-31/functions/fn:live/invocations",
        "/2015-03-31/functions/other/invocations",
    ],
)
def test_tampered_path(lambda_req: Captured, path: str) -> None:
    with pytest.raises(SignatureMismatch):
        lambda_req.verify(path=path)


def test_tampered_method_and_query(lambda_req: Captured) -> None:
    with pytest.raises(SignatureMismatch):
        lambda_req.verify(method="PUT")
    with pytest.raises(SignatureMismatch):
        lambda_req.verify(query_string="Qualifier=x")


def test_wrong_secret(lambda_req: Captured) -> None:
    with pytest.raises(SignatureMismatch):
        lambda_req.verify(secret_lookup=lambda key: "not-the-secret")


def test_unknown_access_key(lambda_req: Captured) -> None:
    with pytest.raises(UnrecognizedAccessKey) as info:
        lambda_req.verify(secret_lookup=lambda key: None)
    err = info.value
    assert err.code == "UnrecognizedClientException"
    assert err.code_for("s3") == "InvalidAccessKeyId"
    assert err.code_for("sqs") == "UnrecognizedClientException"
    assert err.sqs_query_code == "InvalidClientTokenId"
    assert "SQUALL_ACCESS_KEY_ID" in err.message and "credentials.json" in err.message


@pytest.mark.parametrize("offset", [-901.0, 901.0])
def test_skewed_clock(lambda_req: Captured, offset: float) -> None:
    with pytest.raises(RequestTimeSkewed) as info:
        lambda_req.verify(now=NOW + offset)
    err = info.value
    assert err.code == "InvalidSignatureException"
    assert err.code_for("s3") == "RequestTimeTooSkewed"
    expected = "Signature expired" if offset > 0 else "Signature not yet current"
    assert err.message.startswith(expected)


def test_skew_within_limit_is_fine(lambda_req: Captured) -> None:
    lambda_req.verify(now=NOW + 899)
    lambda_req.verify(now=NOW - 899)


def test_s3_skew_message() -> None:
    client = _client("s3", s3={"addressing_style": "path"})
    req = capture(client, "get_object", Bucket="b", Key="k")
    with pytest.raises(RequestTimeSkewed) as info:
        req.verify(now=NOW + 3600)
    assert info.value.code == "RequestTimeTooSkewed"
    assert "too large" in info.value.message
    assert info.value.details["ServerTime"] == "20240501T130000Z"


def test_s3_body_hash_mismatch() -> None:
    client = _client("s3", s3={"addressing_style": "path"})
    req = capture(client, "put_object", Bucket="b", Key="k", Body=b"original")
    with pytest.raises(PayloadHashMismatch) as info:
        req.verify(body=b"tampered")
    assert info.value.code == "XAmzContentSHA256Mismatch"
    assert info.value.status == 400


def test_missing_auth() -> None:
    with pytest.raises(MissingAuthentication) as info:
        verify_request("GET", "/", "", {"Host": "x"}, b"", lookup, NOW)
    err = info.value
    assert (err.code_for("lambda"), err.code_for("sqs"), err.code_for("s3")) == (
        "MissingAuthenticationTokenException",
        "MissingAuthenticationTokenException",
        "AccessDenied",
    )
    assert err.status == 403


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS AKSQ:abc",
        "AWS4-HMAC-SHA256 Credential=AKSQ/20240501/us-east-1/lambda/aws4_request, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AKSQ/20240501/us-east-1, SignedHeaders=host, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AKSQ/20240501/us-east-1/lambda/aws4_request, SignedHeaders=x, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AKSQ/20240502/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AKSQ/20240501/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=nothex",
    ],
)
def test_malformed_authorization(authorization: str) -> None:
    headers = {"Authorization": authorization, "X-Amz-Date": "20240501T120000Z", "Host": "x"}
    with pytest.raises(MalformedAuthorization) as info:
        verify_request("GET", "/", "", headers, b"", lookup, NOW)
    assert info.value.code_for("lambda") == "IncompleteSignatureException"
    assert info.value.code_for("s3") == "AuthorizationHeaderMalformed"


def test_every_error_is_a_squall_error() -> None:
    for cls in (MissingAuthentication, SignatureMismatch, MalformedChunkedBody, PresignedUrlExpired):
        err = cls("m", service="sqs")
        assert isinstance(err, SigV4Error)
        assert err.fault == "user"
        assert err.code == err.code_for("sqs")


# ------------------------------------------------------------------------------------------------ parse_scope


def test_parse_scope_header_and_query(lambda_req: Captured) -> None:
    scope = parse_scope(lambda_req.headers, lambda_req.query)
    assert scope == sigv4.Scope(KEY_ID, "20240501", "us-east-1", "lambda")
    client = _client("s3", s3={"addressing_style": "path"}, signature_version="s3v4")
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    assert parse_scope({}, urlsplit(url).query) == sigv4.Scope(KEY_ID, "20240501", "us-east-1", "s3")
    assert parse_scope({"Host": "x"}, "a=b") is None
    assert parse_scope({"authorization": "AWS4-HMAC-SHA256 Credential=junk"}, "") is None


# ------------------------------------------------------------------------------------------------ aws-chunked


def _chunk_sig(ctx: AuthContext, previous: str, data: bytes) -> str:
    sts = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            ctx.amz_date,
            ctx.credential_scope,
            previous,
            sigv4.EMPTY_SHA256,
            hashlib.sha256(data).hexdigest(),
        ]
    )
    return hmac.new(ctx.signing_key, sts.encode(), hashlib.sha256).hexdigest()


def _signed_chunks(ctx: AuthContext, pieces: list[bytes]) -> Iterator[bytes]:
    previous = ctx.signature
    for piece in [*pieces, b""]:
        sig = _chunk_sig(ctx, previous, piece)
        yield b"%x;chunk-signature=%s\r\n%s\r\n" % (len(piece), sig.encode(), piece)
        previous = sig


def _streaming_request() -> tuple[Captured, list[bytes]]:
    pieces = [b"a" * 100, b"b" * 7]
    request = AWSRequest(
        method="PUT",
        url="http://localhost:8080/bucket/streamed",
        headers={
            "X-Amz-Content-SHA256": sigv4.STREAMING_PAYLOAD,
            "Content-Encoding": "aws-chunked",
            "X-Amz-Decoded-Content-Length": "107",
        },
    )
    _StreamingSigner(Credentials(KEY_ID, SECRET), "s3", "us-east-1").add_auth(request)
    return _from_awsrequest(request), pieces


class _StreamingSigner(botocore.auth.S3SigV4Auth):
    """botocore does not stream signed chunks itself; sign the seed request the way the Java/Go SDKs do."""

    def payload(self, request: Any) -> str:
        return sigv4.STREAMING_PAYLOAD


def test_streaming_seed_and_chunk_signatures() -> None:
    req, pieces = _streaming_request()
    ctx = req.verify(body=None)
    assert ctx.body_check == "chunked"
    body = b"".join(_signed_chunks(ctx, pieces))
    assert verify_aws_chunked(body, ctx, decoded_length=107) == b"".join(pieces)
    assert decode_aws_chunked(body) == b"".join(pieces)
    tampered = body.replace(b"bbbbbbb", b"bbbbbbc")
    with pytest.raises(SignatureMismatch, match="chunk #1"):
        verify_aws_chunked(tampered, ctx)


def test_aws_documentation_streaming_example() -> None:
    """The worked example of 'Signature Calculations for the Authorization Header: Transferring Payload in
    Multiple Chunks' in the Amazon S3 API reference."""
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    headers = {
        "Host": "s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        f"x-amz-decoded-content-length;x-amz-storage-class,Signature={seed}",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560",
        "Content-Length": "66824",
    }
    now = dt.datetime(2013, 5, 24, tzinfo=dt.UTC).timestamp()
    ctx = verify_request("PUT", "/examplebucket/chunkObject.txt", "", headers, None, lambda _k: secret, now)
    sigs = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]
    pieces = [b"a" * 65536, b"a" * 1024, b""]
    body = b"".join(
        b"%x;chunk-signature=%s\r\n%s\r\n" % (len(p), s.encode(), p) for p, s in zip(pieces, sigs, strict=True)
    )
    assert len(body) == 66824
    assert verify_aws_chunked(body, ctx, decoded_length=66560) == b"a" * 66560


def test_decode_unsigned_trailer_body_from_botocore() -> None:
    from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

    wrapped = AwsChunkedWrapper(
        _Reader(b"x" * 70000), checksum_cls=Crc32Checksum, checksum_name="x-amz-checksum-crc32"
    ).read()
    assert decode_aws_chunked(wrapped, decoded_length=70000) == b"x" * 70000


@pytest.mark.parametrize(
    "body",
    [b"", b"5\r\nabc", b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabc\r\n0\r\n\r\ngarbage", b"3\r\nabcXX0\r\n\r\n"],
)
def test_decode_malformed(body: bytes) -> None:
    with pytest.raises(MalformedChunkedBody) as info:
        decode_aws_chunked(body)
    assert info.value.code_for("s3") == "IncompleteBody"


def test_decoded_length_mismatch() -> None:
    with pytest.raises(MalformedChunkedBody, match="x-amz-decoded-content-length"):
        decode_aws_chunked(b"3\r\nabc\r\n0\r\n\r\n", decoded_length=4)


# ------------------------------------------------------------------------------------------------ helpers


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._pos + size
        out = self._data[self._pos : end]
        self._pos += len(out)
        return out


def _sign(request: AWSRequest, service: str) -> None:
    signer_cls = botocore.auth.S3SigV4Auth if service == "s3" else botocore.auth.SigV4Auth
    signer_cls(Credentials(KEY_ID, SECRET), service, "us-east-1").add_auth(request)


def _from_awsrequest(request: AWSRequest) -> Captured:
    url = urlsplit(request.url)
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    headers.setdefault("Host", url.netloc)  # added on the wire by urllib3
    return Captured(request.method, url.path, url.query, headers, _body_bytes(request.body))


def test_non_s3_presigned_url_hashes_the_body() -> None:
    request = AWSRequest(method="GET", url="http://localhost:8080/2015-03-31/functions/fn%3Alive?MaxItems=5")
    botocore.auth.SigV4QueryAuth(Credentials(KEY_ID, SECRET), "lambda", "us-east-1", expires=300).add_auth(request)
    ctx = presigned(request.url).verify(now=NOW + 299)
    assert (ctx.service, ctx.presigned, ctx.payload_hash) == ("lambda", True, sigv4.EMPTY_SHA256)
    with pytest.raises(PresignedUrlExpired) as info:
        presigned(request.url).verify(now=NOW + 301)
    assert info.value.code == "InvalidSignatureException"


def test_starlette_style_repeated_headers_are_joined() -> None:
    class MultiHeaders(dict[str, str]):
        """Like starlette.datastructures.Headers: items() yields every (name, value), repeats included."""

        def __init__(self, pairs: list[tuple[str, str]]) -> None:
            super().__init__(pairs)
            self._pairs = pairs

        def items(self) -> Any:
            return list(self._pairs)

    request = AWSRequest(method="GET", url="http://localhost:8080/2015-03-31/functions", headers={"X-A": "1,2"})
    _sign(request, "lambda")
    req = _from_awsrequest(request)
    pairs = [(k, v) for k, v in req.headers.items() if k != "X-A"] + [("x-a", "1"), ("x-a", " 2 ")]
    req.verify(headers=MultiHeaders(pairs))
