"""S3 presigned URLs (SigV2 as botocore makes them by default, and SigV4) and POST Object form uploads
(``generate_presigned_post``), made by real boto3 and sent by plain HTTP clients (urllib, httpx) to a real uvicorn
server running the S3 app behind the SigV4 middleware."""

from __future__ import annotations

import hashlib
import socket
import threading
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest
import uvicorn
from botocore.config import Config

from squall.aws.auth import SigV4Middleware
from squall.s3.api import s3_app
from squall.s3.store.objects import ObjectEvent, ObjectStore
from tests.pg_helpers import pg_database

KEY = "AKIASQUALLTEST000002"
SECRET = "squall-test-secret-key-presign-0123456"


@dataclass
class Harness:
    url: str
    store: ObjectStore
    events: list[ObjectEvent] = field(default_factory=list)

    def client(self, **config: Any) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=KEY,
            aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 1}, **config),
        )  # fmt: skip


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    events: list[ObjectEvent] = []
    root = tmp_path_factory.mktemp("s3presign")
    store = ObjectStore(root, on_event=events.append, database=pg_database(root, "s3"))
    lookup = {KEY: SECRET}.get
    app = SigV4Middleware(s3_app(store, lookup_secret=lookup), lookup_secret=lookup)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Harness(f"http://127.0.0.1:{sock.getsockname()[1]}", store, events)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()


@pytest.fixture
def bucket(harness: Harness) -> str:
    name = f"p-{uuid.uuid4().hex[:12]}"
    harness.client(signature_version="s3v4", s3={"addressing_style": "path"}).create_bucket(Bucket=name)
    return name


def s3_error(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    return {child.tag: child.text or "" for child in root}


def fetch(url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


# --------------------------------------------------------------------------------------------------- presigned URLs


def test_default_presigned_urls_are_sigv2_and_work(harness: Harness, bucket: str) -> None:
    s3 = harness.client()  # botocore's default: SigV2 query auth for presigned S3 URLs
    key = "shared/file name+1.txt"
    put = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key, "ContentType": "text/plain"}, ExpiresIn=300
    )
    assert "AWSAccessKeyId=" in put and "Signature=" in put and "X-Amz-" not in put
    status, _, body = fetch(put, "PUT", b"v2 upload", {"Content-Type": "text/plain"})
    assert status == 200, body
    events = [e for e in harness.events if e.bucket == bucket]
    assert [(e.event_name, e.key, e.origin.principal_id) for e in events] == [("ObjectCreated:Put", key, KEY)]
    get = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    status, headers, body = fetch(get)
    assert (status, body, headers["Content-Type"]) == (200, b"v2 upload", "text/plain")
    # response-* overrides are part of the signed resource
    get = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": key, "ResponseContentDisposition": "attachment; filename=x.txt"},
        ExpiresIn=300,
    )
    status, headers, _ = fetch(get)
    assert status == 200 and headers["Content-Disposition"] == "attachment; filename=x.txt"
    # metadata botocore moved into the signed query is stored, as S3 does
    put = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "meta", "Metadata": {"owner": "ann"}}, ExpiresIn=300
    )
    assert "x-amz-meta-owner=ann" in put
    status, _, body = fetch(put, "PUT", b"m", {"Content-Type": ""})
    assert status == 200, body
    head = harness.client(signature_version="s3v4", s3={"addressing_style": "path"}).head_object(
        Bucket=bucket, Key="meta"
    )
    assert head["Metadata"] == {"owner": "ann"}


def test_sigv4_presigned_urls_still_work(harness: Harness, bucket: str) -> None:
    s3 = harness.client(signature_version="s3v4", s3={"addressing_style": "path"})
    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "v4.bin"}, ExpiresIn=300)
    assert "X-Amz-Signature=" in put
    status, _, body = fetch(put, "PUT", b"\x00v4", {"Content-Type": "application/octet-stream"})
    assert status == 200, body
    get = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v4.bin"}, ExpiresIn=300)
    r = httpx.get(get, timeout=30)
    assert r.status_code == 200 and r.content == b"\x00v4"


def test_sigv2_expired_tampered_and_unknown_key(harness: Harness, bucket: str) -> None:
    s3 = harness.client()
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    expired = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=-60)
    status, _, body = fetch(expired)
    err = s3_error(body)
    assert status == 403 and err["Code"] == "AccessDenied" and err["Message"].startswith("Request has expired")
    good = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
    status, _, body = fetch(good.replace("Signature=", "Signature=AAAA"))
    err = s3_error(body)
    assert status == 403 and err["Code"] == "SignatureDoesNotMatch"
    assert err["StringToSign"].startswith("GET\n\n\n") and err["StringToSign"].endswith(f"/{bucket}/k")
    # the URL signs the method and the key: neither can be changed
    status, _, body = fetch(good.replace(f"/{bucket}/k?", f"/{bucket}/other?"))
    assert status == 403 and s3_error(body)["Code"] == "SignatureDoesNotMatch"
    status, _, body = fetch(good, "DELETE")
    assert status == 403 and s3_error(body)["Code"] == "SignatureDoesNotMatch"
    status, _, body = fetch(good.replace(f"AWSAccessKeyId={KEY}", "AWSAccessKeyId=AKIANOBODY"))
    assert status == 403 and s3_error(body)["Code"] == "InvalidAccessKeyId"


# --------------------------------------------------------------------------------------------------- POST uploads


def _post(
    harness: Harness, presigned: dict[str, Any], content: bytes, filename: str = "photo.jpg", **extra: str
) -> httpx.Response:
    fields = {**presigned["fields"], **extra}
    return httpx.post(presigned["url"], data=fields, files={"file": (filename, content, "image/jpeg")}, timeout=30)


@pytest.mark.parametrize("signature_version", [None, "s3v4"])
def test_presigned_post_upload(harness: Harness, bucket: str, signature_version: str | None) -> None:
    config = {"signature_version": signature_version, "s3": {"addressing_style": "path"}} if signature_version else {}
    s3 = harness.client(**config)
    presigned = s3.generate_presigned_post(
        bucket,
        "uploads/${filename}",
        Fields={"Content-Type": "image/jpeg", "success_action_status": "201", "x-amz-meta-owner": "ann"},
        Conditions=[
            {"Content-Type": "image/jpeg"},
            {"success_action_status": "201"},
            {"x-amz-meta-owner": "ann"},
            ["content-length-range", 1, 1024],
        ],
        ExpiresIn=300,
    )
    assert ("x-amz-signature" in presigned["fields"]) == (signature_version == "s3v4")
    content = b"\xff\xd8jpeg bytes"
    r = _post(harness, presigned, content)
    assert r.status_code == 201, r.text
    doc = {child.tag: child.text for child in ET.fromstring(r.content)}
    etag = '"' + hashlib.md5(content).hexdigest() + '"'
    assert doc == {
        "Location": f"{harness.url}/{bucket}/uploads/photo.jpg",
        "Bucket": bucket,
        "Key": "uploads/photo.jpg",
        "ETag": etag,
    }
    head = harness.client(signature_version="s3v4", s3={"addressing_style": "path"}).head_object(
        Bucket=bucket, Key="uploads/photo.jpg"
    )
    assert head["ContentType"] == "image/jpeg" and head["Metadata"] == {"owner": "ann"} and head["ETag"] == etag
    # a POST fires the bucket's notifications like any PUT: ObjectCreated:Post
    events = [e for e in harness.events if e.bucket == bucket]
    assert [(e.event_name, e.key, e.size, e.origin.principal_id) for e in events] == [
        ("ObjectCreated:Post", "uploads/photo.jpg", 12, KEY)
    ]


def test_post_default_status_is_204_and_200_on_request(harness: Harness, bucket: str) -> None:
    s3 = harness.client()
    presigned = s3.generate_presigned_post(bucket, "a.txt", ExpiresIn=300)
    r = _post(harness, presigned, b"hello")
    assert r.status_code == 204 and r.content == b"" and r.headers["etag"]
    presigned = s3.generate_presigned_post(
        bucket, "b.txt", Fields={"success_action_status": "200"}, Conditions=[{"success_action_status": "200"}]
    )
    r = _post(harness, presigned, b"hello")
    assert r.status_code == 200 and r.content == b""
    presigned = s3.generate_presigned_post(
        bucket, "c.txt", Fields={"success_action_redirect": "https://app.example/done"},
        Conditions=[{"success_action_redirect": "https://app.example/done"}],
    )  # fmt: skip
    r = _post(harness, presigned, b"hello")
    assert r.status_code == 303
    assert r.headers["location"].startswith(f"https://app.example/done?bucket={bucket}&key=c.txt&etag=")


def _refused(r: httpx.Response) -> tuple[int, str, str]:
    err = s3_error(r.content)
    return r.status_code, err["Code"], err["Message"]


def test_post_policy_refusals(harness: Harness, bucket: str) -> None:
    s3 = harness.client()
    presigned = s3.generate_presigned_post(
        bucket, "up/${filename}", Conditions=[["content-length-range", 2, 10]], ExpiresIn=300
    )
    # a key outside the policy's prefix
    r = _post(harness, presigned, b"12345", key="elsewhere/x")
    assert _refused(r) == (
        403, "AccessDenied", 'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "up/"]'
    )  # fmt: skip
    # too large / too small for content-length-range
    status, code, _ = _refused(_post(harness, presigned, b"x" * 11))
    assert (status, code) == (400, "EntityTooLarge")
    assert s3_error(_post(harness, presigned, b"x" * 11).content)["MaxSizeAllowed"] == "10"
    assert _refused(_post(harness, presigned, b"x"))[:2] == (400, "EntityTooSmall")
    # a field the policy does not name
    r = _post(harness, presigned, b"12345", **{"Content-Type": "text/html"})
    assert _refused(r) == (403, "AccessDenied", "Invalid according to Policy: Extra input fields: content-type")
    # a tampered signature, an expired policy
    bad = {**presigned, "fields": {**presigned["fields"], "signature": "AAAA" + presigned["fields"]["signature"][4:]}}
    assert _refused(_post(harness, bad, b"12345"))[:2] == (403, "SignatureDoesNotMatch")
    expired = s3.generate_presigned_post(bucket, "up/${filename}", ExpiresIn=-60)
    assert _refused(_post(harness, expired, b"12345")) == (
        403, "AccessDenied", "Invalid according to Policy: Policy expired."
    )  # fmt: skip
    # no policy at all
    r = httpx.post(presigned["url"], data={"key": "up/x"}, files={"file": ("x", b"1")}, timeout=30)
    assert _refused(r)[:2] == (403, "AccessDenied")
    # form fields before the file are bounded (S3's 20 KB), checked before the policy
    many = {f"x-ignore-{i}": "v" * 100 for i in range(400)}
    r = _post(harness, presigned, b"12345", **many)
    assert _refused(r)[:2] == (400, "MaxPostPreDataLengthExceeded")
    # an empty key is refused
    empty = s3.generate_presigned_post(bucket, "", ExpiresIn=300)
    assert _refused(_post(harness, empty, b"12345"))[0] == 400
    # nothing was stored by any of these
    assert not [e for e in harness.events if e.bucket == bucket]
    r = _post(harness, presigned, b"12345", filename="ok.txt")
    assert r.status_code == 204
    assert [e.key for e in harness.events if e.bucket == bucket] == ["up/ok.txt"]


def test_post_v4_policy_signed_for_another_key_is_refused(harness: Harness, bucket: str) -> None:
    s3 = harness.client(signature_version="s3v4", s3={"addressing_style": "path"})
    presigned = s3.generate_presigned_post(bucket, "k", ExpiresIn=300)
    fields = dict(presigned["fields"])
    fields["x-amz-credential"] = fields["x-amz-credential"].replace(KEY, "AKIANOBODY")
    r = httpx.post(presigned["url"], data=fields, files={"file": ("x", b"1")}, timeout=30)
    assert _refused(r)[:2] == (403, "InvalidAccessKeyId")
