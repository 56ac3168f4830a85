"""SigV2 query-string auth (botocore's HmacV1QueryAuth as the oracle), the streaming multipart parser, and POST
policy checks: pure functions, table-tested."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from squall.aws.auth import is_s3_post_upload
from squall.aws.sigv2 import is_v2_query, sign_v2, string_to_sign_v2, verify_query_v2
from squall.aws.sigv4 import PresignedUrlExpired, SignatureMismatch, UnrecognizedAccessKey
from squall.s3.post import (
    EntityTooLarge,
    InvalidPolicyDocument,
    MalformedPOSTRequest,
    MultipartParser,
    PolicyDenied,
    check_policy,
    check_signature,
)

KEY, SECRET = "AKIDV2TEST", "v2-secret"
NOW = 1_700_000_000
lookup = {KEY: SECRET}.get


def presign(method: str, url: str, headers: dict[str, str] | None = None, token: str | None = None) -> str:
    req = AWSRequest(method=method, url=url, headers=headers or {})
    HmacV1QueryAuth(Credentials(KEY, SECRET, token), expires=3600).add_auth(req)
    return str(req.url)


def split(url: str) -> tuple[str, str]:
    u = urlsplit(url)
    return u.path, u.query


CASES: list[tuple[str, str, dict[str, str], dict[str, str]]] = [
    ("GET", "http://h/bucket/key.txt", {}, {}),
    ("GET", "http://h/bucket/a%20b/%E2%9C%93+1.txt", {}, {}),
    ("PUT", "http://h/bucket/k", {"Content-Type": "text/plain", "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, {}),
    ("PUT", "http://h/bucket/k", {"x-amz-meta-owner": "ann", "x-amz-acl": "private"}, {}),
    ("GET", "http://h/bucket/k?response-content-type=text%2Fhtml&versionId=3", {}, {}),
    ("PUT", "http://h/bucket/k?partNumber=2&uploadId=abc%2Bdef", {}, {}),
    ("GET", "http://h/bucket?acl", {}, {}),
    ("GET", "http://h/bucket/k?unrelated=1", {}, {}),
]


@pytest.mark.parametrize(("method", "url", "headers", "extra"), CASES)
def test_v2_matches_botocore(method: str, url: str, headers: dict[str, str], extra: dict[str, str]) -> None:
    signed = presign(method, url, dict(headers))
    path, query = split(signed)
    assert is_v2_query(query)
    # the client sends the content headers it signed (botocore moved x-amz-* into the query)
    sent = {k.lower(): v for k, v in headers.items() if not k.lower().startswith("x-amz-")}
    ctx = verify_query_v2(method, path, query, sent, lookup, NOW)
    assert (ctx.access_key_id, ctx.service, ctx.body_check, ctx.presigned) == (KEY, "s3", "unsigned", True)


def test_v2_security_token_is_signed() -> None:
    signed = presign("GET", "http://h/b/k", token="tok")
    path, query = split(signed)
    assert "x-amz-security-token=tok" in query
    verify_query_v2("GET", path, query, {}, lookup, NOW)
    with pytest.raises(SignatureMismatch):
        verify_query_v2("GET", path, query.replace("token=tok", "token=other"), {}, lookup, NOW)


def test_v2_string_to_sign_shape() -> None:
    sts = string_to_sign_v2(
        "put",
        "/b/a%20b",
        "AWSAccessKeyId=K&Signature=S&Expires=99&uploadId=u%2B1&partNumber=2&x-amz-meta-b=2&foo=1",
        {"content-type": "text/plain", "x-amz-meta-a": " 1 "},
        "99",
    )
    assert sts == "PUT\n\ntext/plain\n99\nx-amz-meta-a:1\nx-amz-meta-b:2\n/b/a%20b?partNumber=2&uploadId=u+1"


@pytest.mark.parametrize(
    ("mutate", "error", "needle"),
    [
        (lambda p, q: (p, q.replace("Expires=", "Expires=1")), SignatureMismatch, ""),
        (lambda p, q: (p + "x", q), SignatureMismatch, ""),
        (lambda p, q: (p, q.replace(f"AWSAccessKeyId={KEY}", "AWSAccessKeyId=NOPE")), UnrecognizedAccessKey, ""),
        (lambda p, q: (p, q + "&Signature=again"), Exception, "each once"),
    ],
)
def test_v2_refusals(mutate: Any, error: type[Exception], needle: str) -> None:
    path, query = split(presign("GET", "http://h/b/k"))
    path, query = mutate(path, query)
    with pytest.raises(error, match=needle or None):
        verify_query_v2("GET", path, query, {}, lookup, NOW)


def test_v2_expiry() -> None:
    sts = string_to_sign_v2("GET", "/b/k", "", {}, str(NOW - 1))
    query = f"AWSAccessKeyId={KEY}&Signature={quote(sign_v2(SECRET, sts), safe='')}&Expires={NOW - 1}"
    with pytest.raises(PresignedUrlExpired, match=r"^Request has expired") as err:
        verify_query_v2("GET", "/b/k", query, {}, lookup, NOW)
    assert err.value.code == "AccessDenied" and err.value.status == 403
    verify_query_v2("GET", "/b/k", query, {}, lookup, NOW - 1)  # valid up to and including Expires


def test_is_v2_query() -> None:
    assert is_v2_query("AWSAccessKeyId=a&Signature=b&Expires=1")
    assert not is_v2_query("X-Amz-Signature=a&X-Amz-Credential=b")
    assert not is_v2_query("Signature=x")


# --------------------------------------------------------------------------------------------------- multipart


def form(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b"preamble ignored\r\n"
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\nepilogue".encode()


def parse(body: bytes, boundary: str, step: int) -> list[tuple[str, Any]]:
    parser = MultipartParser(boundary.encode())
    events: list[tuple[str, Any]] = []
    for i in range(0, len(body), step):
        events.extend(parser.feed(body[i : i + step]))
    merged: list[tuple[str, Any]] = []
    for kind, value in events:
        if kind == "data" and merged and merged[-1][0] == "data":
            merged[-1] = ("data", merged[-1][1] + value)
        elif kind == "part":
            merged.append((kind, (value.name, value.filename)))
        else:
            merged.append((kind, value))
    return merged


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
def test_multipart_parser_any_chunking(step: int) -> None:
    tricky = b"line\r\n--not-the-boundary\r\n--boun\r\n-\r\n--bounD"  # starts of delimiters, all data
    body = form("bound", [("key", None, b"up/${filename}"), ("empty", None, b""), ("file", "a.bin", tricky)])
    assert parse(body, "bound", step) == [
        ("part", ("key", None)),
        ("data", b"up/${filename}"),
        ("end", None),
        ("part", ("empty", None)),
        ("end", None),
        ("part", ("file", "a.bin")),
        ("data", tricky),
        ("end", None),
        ("done", None),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",  # no Content-Disposition name
        b"--bXX\r\n",  # junk after the boundary
        b"--b\r\n" + b"x" * 9000,  # endless part headers
    ],
)
def test_multipart_parser_refuses_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPOSTRequest):
        MultipartParser(b"b").feed(body)


# --------------------------------------------------------------------------------------------------- policy

EXP = "2023-11-14T22:13:20Z"  # == NOW


def policy(*conditions: Any, expiration: str = "2030-01-01T00:00:00Z") -> dict[str, Any]:
    return {"expiration": expiration, "conditions": list(conditions)}


FIELDS = {"key": "up/photo.jpg", "content-type": "image/jpeg", "policy": "p", "signature": "s", "awsaccesskeyid": "k"}


@pytest.mark.parametrize(
    ("doc", "fields", "result"),
    [
        (policy({"bucket": "b"}, ["starts-with", "$key", "up/"], {"content-type": "image/jpeg"}), FIELDS, None),
        (policy({"bucket": "b"}, ["eq", "$key", "up/photo.jpg"], ["starts-with", "$Content-Type", "image/"]), FIELDS, None),
        (policy(["starts-with", "$key", ""], ["starts-with", "$content-type", ""], ["content-length-range", 0, 5]), FIELDS, (0, 5)),
        (policy(["starts-with", "$key", ""], ["eq", "$content-type", "image/jpeg"]), {**FIELDS, "x-ignore-extra": "1"}, None),
    ],
)  # fmt: skip
def test_policy_accepts(doc: dict[str, Any], fields: dict[str, str], result: Any) -> None:
    assert check_policy(doc, fields, "b", NOW) == result


@pytest.mark.parametrize(
    ("doc", "error", "message"),
    [
        (policy({"bucket": "other"}), PolicyDenied, 'Policy Condition failed: ["eq", "$bucket", "other"]'),
        (policy(["starts-with", "$key", "down/"]), PolicyDenied, 'Policy Condition failed: ["starts-with", "$key", "down/"]'),
        (policy(["starts-with", "$key", "up/"]), PolicyDenied, "Extra input fields: content-type"),
        (policy(["eq", "$missing", "x"]), PolicyDenied, 'Policy Condition failed: ["eq", "$missing", "x"]'),
        (policy(expiration=EXP.replace(":20Z", ":19Z")), PolicyDenied, "Invalid according to Policy: Policy expired."),
        ({"conditions": []}, InvalidPolicyDocument, "missing expiration"),
        (policy(expiration="tomorrow"), InvalidPolicyDocument, "expiration"),
        (policy(["nope", "$key", "x"]), InvalidPolicyDocument, "Invalid Condition"),
        (policy(["content-length-range", "1", 5]), InvalidPolicyDocument, "content-length-range"),
        ({"expiration": EXP}, InvalidPolicyDocument, "missing conditions"),
    ],
)  # fmt: skip
def test_policy_refuses(doc: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as err:
        check_policy(doc, FIELDS, "b", NOW)
    assert message in str(err.value)


def test_policy_signature_v2_and_v4() -> None:
    p = base64.b64encode(json.dumps(policy()).encode()).decode()
    ctx = check_signature({"policy": p, "awsaccesskeyid": KEY, "signature": sign_v2(SECRET, p)}, lookup)
    assert ctx.access_key_id == KEY
    with pytest.raises(SignatureMismatch):
        check_signature({"policy": p, "awsaccesskeyid": KEY, "signature": sign_v2("wrong", p)}, lookup)
    with pytest.raises(PolicyDenied, match="Anonymous POST uploads are not allowed"):
        check_signature({"policy": p}, lookup)
    _ = EntityTooLarge  # raised while streaming: covered by the contract tests


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "expected"),
    [
        ("POST", "/bucket", b"", [(b"content-type", b"multipart/form-data; boundary=x")], True),
        ("POST", "/bucket/", b"", [(b"content-type", b"Multipart/Form-Data; boundary=x")], True),
        ("POST", "/bucket/key", b"", [(b"content-type", b"multipart/form-data; boundary=x")], False),
        ("POST", "/", b"", [(b"content-type", b"multipart/form-data; boundary=x")], False),
        ("POST", "/ui", b"", [(b"content-type", b"multipart/form-data; boundary=x")], False),  # not a bucket name
        ("POST", "/_squall", b"", [(b"content-type", b"multipart/form-data; boundary=x")], False),
        ("PUT", "/bucket", b"", [(b"content-type", b"multipart/form-data; boundary=x")], False),
        ("POST", "/bucket", b"", [(b"content-type", b"application/json")], False),
        ("POST", "/bucket", b"delete", [(b"content-type", b"multipart/form-data; boundary=x")], False),
        ("POST", "/bucket", b"X-Amz-Signature=a", [(b"content-type", b"multipart/form-data; boundary=x")], False),
        (
            "POST", "/bucket", b"",
            [(b"content-type", b"multipart/form-data; boundary=x"), (b"authorization", b"AWS4-HMAC-SHA256 ...")], False,
        ),
    ],
)  # fmt: skip
def test_is_s3_post_upload(
    method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], expected: bool
) -> None:
    scope = {"method": method, "path": path, "raw_path": path.encode(), "query_string": query, "headers": headers}
    assert is_s3_post_upload(scope) is expected
