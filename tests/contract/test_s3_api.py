"""Contract tests of the S3 API against real clients: boto3 (path-style), presigned URLs fetched with urllib,
hand-signed aws-chunked uploads and the AWS CLI (cp, ls, sync), all through a real uvicorn server on loopback
with SigV4 verification switched on."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import uvicorn
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from squall.aws.auth import SigV4Middleware
from squall.aws.sigv4 import (
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    STREAMING_UNSIGNED_TRAILER,
    canonical_request,
    signing_key,
    string_to_sign,
)
from squall.s3.api import s3_app
from squall.s3.store.objects import ObjectEvent, ObjectStore
from tests.aws_cli import AWS_CLI, aws_env, needs_aws_cli
from tests.pg_helpers import pg_database

KEY = "AKIASQUALLTEST000001"
SECRET = "squall-test-secret-key-0123456789abcdef"
REGION = "us-east-1"
ACCOUNT = "123456789012"
MB = 1024 * 1024


@dataclass
class Harness:
    url: str
    port: int
    store: ObjectStore
    events: list[ObjectEvent] = field(default_factory=list)

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("s3store")
    events: list[ObjectEvent] = []
    store = ObjectStore(root, on_event=events.append, database=pg_database(root, "s3"))
    app = s3_app(store, function_exists=lambda arn: not arn.endswith(":function:missing"))
    wrapped = SigV4Middleware(app, lookup_secret=lambda k: SECRET if k == KEY else None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(wrapped, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()  # the socket already listens: clients queue in its backlog until uvicorn accepts
    try:
        yield Harness(f"http://127.0.0.1:{port}", port, store, events)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()


@pytest.fixture
def s3(harness: Harness) -> Any:
    return harness.client()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


# --------------------------------------------------------------------------------------------------- buckets


def test_bucket_lifecycle(s3: Any) -> None:
    name = f"life-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-west-1"
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=name)
    assert _code(err) == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket=name, Key="x", Body=b"1")
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=name)
    assert _code(err) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="x")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket=name)
    assert _code(err) == "404"
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket=name)


def test_us_east_1_location_is_empty(s3: Any, bucket: str) -> None:
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None


def test_invalid_bucket_name(s3: Any) -> None:
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket="ab")
    assert _code(err) == "InvalidBucketName"


def test_missing_bucket_and_key(s3: Any, bucket: str) -> None:
    with pytest.raises(s3.exceptions.NoSuchKey) as err:
        s3.get_object(Bucket=bucket, Key="nope/none")
    assert err.value.response["Error"]["Key"] == "nope/none"
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    with pytest.raises(ClientError) as head_err:
        s3.head_object(Bucket=bucket, Key="nope")
    assert _code(head_err) == "404"
    s3.delete_object(Bucket=bucket, Key="never-existed")  # idempotent


def test_unsigned_and_badly_signed_requests_are_rejected(harness: Harness, bucket: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{harness.url}/{bucket}", timeout=10)
    assert err.value.code == 403
    err.value.close()
    bad = boto3.client(
        "s3",
        endpoint_url=harness.url,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key="wrong",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as cerr:
        bad.list_objects_v2(Bucket=bucket)
    assert _code(cerr) == "SignatureDoesNotMatch"


# --------------------------------------------------------------------------------------------------- objects


def test_put_get_head_with_metadata(s3: Any, bucket: str) -> None:
    body = b"hello squall" * 100
    put = s3.put_object(
        Bucket=bucket,
        Key="docs/a.txt",
        Body=body,
        ContentType="text/plain",
        Metadata={"owner": "alice", "Mixed-Case": "v"},
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="a.txt"',
        ContentLanguage="en",
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="docs/a.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"owner": "alice", "mixed-case": "v"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == 'attachment; filename="a.txt"'
    assert got["ContentLanguage"] == "en"
    assert got["ETag"] == put["ETag"]
    assert got["ContentLength"] == len(body)
    head = s3.head_object(Bucket=bucket, Key="docs/a.txt")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == put["ETag"]
    assert isinstance(head["LastModified"], datetime)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]


def test_default_content_type_and_empty_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ContentType"] == "binary/octet-stream"
    assert got["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'


@pytest.mark.parametrize(
    "key",
    ["with space.txt", "a+b=c&d.txt", "ünïcødé/ファイル ✓.bin", "../../etc/passwd", "q?x=1#frag", "%41%2F", "dir/"],
)
def test_awkward_keys_round_trip(s3: Any, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == [key]
    listed_v1 = s3.list_objects(Bucket=bucket)
    assert [o["Key"] for o in listed_v1["Contents"]] == [key]


def test_long_key(s3: Any, bucket: str) -> None:
    key = "k" * 1024
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 1
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert _code(err) == "KeyTooLongError"


def test_ranges(s3: Any, bucket: str) -> None:
    data = bytes(range(256)) * 4
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    cases = {
        "bytes=2-5": (2, 5),
        "bytes=1000-": (1000, 1023),
        "bytes=-3": (1021, 1023),
        "bytes=1020-5000": (1020, 1023),
    }
    for header, (first, last) in cases.items():
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["Body"].read() == data[first : last + 1], header
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(data)}"
        assert got["ContentLength"] == last - first + 1
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=5000-")
    assert _code(err) == "InvalidRange"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    whole = s3.get_object(Bucket=bucket, Key="r", Range="bytes=a-b")
    assert whole["Body"].read() == data


def test_conditional_get(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"cond")["ETag"]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert _code(err) == "304"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert _code(err) == "PreconditionFailed"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    future = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert _code(err) == "304"
    past = datetime.now(UTC) - timedelta(days=1)
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past, IfMatch=etag)["Body"].read() == b"cond"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="c", Body=b"again", IfNoneMatch="*")
    assert _code(err) == "PreconditionFailed"


def test_response_overrides(harness: Harness, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o.bin", Body=b"abc")
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "o.bin", "ResponseContentType": "text/csv"},
        ExpiresIn=60,
    )
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "text/csv"
        assert resp.read() == b"abc"


def test_bad_content_md5(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="md5", Body=b"data", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
    assert _code(err) == "BadDigest"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="md5")


def test_copy_object(s3: Any, bucket: str) -> None:
    src = "src dir/ünï +.txt"
    s3.put_object(Bucket=bucket, Key=src, Body=b"copy me", ContentType="text/x-a", Metadata={"a": "1"})
    out = s3.copy_object(Bucket=bucket, Key="dst/copied", CopySource={"Bucket": bucket, "Key": src})
    assert out["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"copy me").hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="dst/copied")
    assert (got["Body"].read(), got["ContentType"], got["Metadata"]) == (b"copy me", "text/x-a", {"a": "1"})
    s3.copy_object(
        Bucket=bucket,
        Key="dst/replaced",
        CopySource=f"{bucket}/{src}?versionId=null",  # botocore URL-encodes it
        MetadataDirective="REPLACE",
        ContentType="text/x-b",
        Metadata={"b": "2"},
    )
    got = s3.get_object(Bucket=bucket, Key="dst/replaced")
    assert (got["ContentType"], got["Metadata"]) == ("text/x-b", {"b": "2"})
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key=src, CopySource={"Bucket": bucket, "Key": src})
    assert _code(err) == "InvalidRequest"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "missing"})
    s3.put_object(Bucket=bucket, Key="dst/copied", Body=b"overwritten")
    assert s3.get_object(Bucket=bucket, Key=src)["Body"].read() == b"copy me"


def test_delete_objects(s3: Any, bucket: str) -> None:
    for k in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "zz"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["a", "b", "zz"]
    assert "Errors" not in out
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c"}], "Quiet": True})
    assert "Deleted" not in quiet
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# --------------------------------------------------------------------------------------------------- listing


def test_list_pagination(harness: Harness, s3: Any, bucket: str) -> None:
    keys = [f"p/{i:05d}" for i in range(1100)]
    for k in keys:
        harness.store.put_object(bucket, k, b"x")
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 1000}))
    assert [p["KeyCount"] for p in pages] == [1000, 100]
    assert pages[0]["IsTruncated"] and not pages[1]["IsTruncated"]
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys
    v1 = list(s3.get_paginator("list_objects").paginate(Bucket=bucket))
    assert [o["Key"] for p in v1 for o in p["Contents"]] == keys
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="p/01090", FetchOwner=True)
    assert [o["Key"] for o in after["Contents"]] == keys[1091:]
    assert after["Contents"][0]["Owner"]["ID"]
    small = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert small["KeyCount"] == 0


def test_delimiter_and_prefix(s3: Any, bucket: str) -> None:
    for k in ["a/1", "a/2", "a/b/3", "b/1", "top", "c d/x", "é/1"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    out = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["a/", "b/", "c d/", "é/"]
    assert [o["Key"] for o in out["Contents"]] == ["top"]
    sub = s3.list_objects_v2(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in sub["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["a/b/"]
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 2})
    )
    flat = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    flat += [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert sorted(flat) == ["a/", "b/", "c d/", "top", "é/"]
    v1 = list(s3.get_paginator("list_objects").paginate(Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 2}))
    assert sorted(p["Prefix"] for page in v1 for p in page.get("CommonPrefixes", [])) == ["a/", "b/", "c d/", "é/"]


# --------------------------------------------------------------------------------------------------- multipart


def test_upload_file_multipart_and_download(harness: Harness, s3: Any, bucket: str, tmp_path: Path) -> None:
    data = os.urandom(12 * MB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB, max_concurrency=3)
    s3.upload_file(str(src), bucket, "big/file.bin", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="big/file.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-3"')
    dst = tmp_path / "back.bin"
    s3.download_file(bucket, "big/file.bin", str(dst), Config=cfg)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    completed = [e for e in harness.events if e.event_name == "ObjectCreated:CompleteMultipartUpload"]
    assert completed and completed[-1].key == "big/file.bin" and completed[-1].size == len(data)


def test_multipart_low_level(s3: Any, bucket: str) -> None:
    key = "mp/ünï"
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="text/x-mp", Metadata={"m": "1"})
    uid = up["UploadId"]
    part1 = os.urandom(5 * MB)
    e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=part1)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=2, Body=b"tail")["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MB), (2, 4)]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [uid]
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]},
        )
    assert _code(err) == "InvalidPartOrder"
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]}
        )
    assert _code(err) == "InvalidPart"
    out = s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
    )
    md5s = bytes.fromhex(e1.strip('"')) + bytes.fromhex(e2.strip('"'))
    assert out["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-2"'
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == part1 + b"tail"
    assert (got["ContentType"], got["Metadata"]) == ("text/x-mp", {"m": "1"})
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)


def test_multipart_entity_too_small_and_abort(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=1, Body=b"a" * 100)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=2, Body=b"b")["ETag"]
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="small",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
        )
    assert _code(err) == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=uid)
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=uid)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_upload_part_copy(s3: Any, bucket: str) -> None:
    data = os.urandom(6 * MB)
    s3.put_object(Bucket=bucket, Key="source", Body=data)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    p1 = s3.upload_part_copy(
        Bucket=bucket,
        Key="assembled",
        UploadId=uid,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "source"},
        CopySourceRange=f"bytes=0-{5 * MB - 1}",
    )["CopyPartResult"]["ETag"]
    p2 = s3.upload_part_copy(
        Bucket=bucket,
        Key="assembled",
        UploadId=uid,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "source"},
        CopySourceRange=f"bytes={5 * MB}-{6 * MB - 1}",
    )["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="assembled",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]},
    )
    assert s3.get_object(Bucket=bucket, Key="assembled")["Body"].read() == data


# --------------------------------------------------------------------------------------------------- presign / chunked


def test_presigned_get(harness: Harness, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="shared/file name+1.txt", Body=b"presigned!")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "shared/file name+1.txt"}, ExpiresIn=60
    )
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"presigned!"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url.replace("Signature=", "Signature=0"), timeout=10)
    assert err.value.code in (400, 403)
    err.value.close()


def _chunked_put(harness: Harness, bucket: str, key: str, data: bytes, *, tamper: bool = False) -> tuple[int, bytes]:
    """A PutObject with a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body, signed like the AWS SDKs for Java/Go do."""
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)] + [b""]
    encoded_length = sum(len(f"{len(c):x};chunk-signature=") + 64 + 2 + len(c) + 2 for c in chunks)
    path = f"/{bucket}/{quote(key, safe='/~')}"
    headers = {
        "host": f"127.0.0.1:{harness.port}",
        "x-amz-date": amz_date,
        "x-amz-content-sha256": STREAMING_PAYLOAD,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "content-length": str(encoded_length),
        "content-type": "text/plain",
    }
    signed = sorted(headers)
    canonical = canonical_request("PUT", path, "", headers, signed, STREAMING_PAYLOAD, "s3")
    skey = signing_key(SECRET, amz_date[:8], REGION, "s3")
    seed = hmac.new(skey, string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256).hexdigest()
    body = b""
    previous = seed
    for chunk in chunks:
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA256, hashlib.sha256(chunk).hexdigest()]
        )
        previous = hmac.new(skey, sts.encode(), hashlib.sha256).hexdigest()
        sent = chunk[:-1] + b"\x00" if tamper and chunk else chunk
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + sent + b"\r\n"
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={KEY}/{scope}, SignedHeaders={';'.join(signed)}, Signature={seed}"
    )
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=30)
    try:
        conn.request("PUT", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_aws_chunked_signed_upload(harness: Harness, s3: Any, bucket: str) -> None:
    data = os.urandom(200_000)
    status, body = _chunked_put(harness, bucket, "chunked/ü.txt", data)
    assert status == 200, body
    got = s3.get_object(Bucket=bucket, Key="chunked/ü.txt")
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/plain"
    assert "ContentEncoding" not in got
    status, body = _chunked_put(harness, bucket, "chunked/bad", data, tamper=True)
    assert status == 403 and b"SignatureDoesNotMatch" in body
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="chunked/bad")


def test_aws_chunked_unsigned_trailer_upload(harness: Harness, s3: Any, bucket: str) -> None:
    """What botocore sends over HTTPS: STREAMING-UNSIGNED-PAYLOAD-TRAILER with a checksum trailer."""
    data = b"trailing checksum body"
    body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    path = f"/{bucket}/trailer"
    headers = {
        "host": f"127.0.0.1:{harness.port}",
        "x-amz-date": amz_date,
        "x-amz-content-sha256": STREAMING_UNSIGNED_TRAILER,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    signed = sorted(headers)
    canonical = canonical_request("PUT", path, "", headers, signed, STREAMING_UNSIGNED_TRAILER, "s3")
    skey = signing_key(SECRET, amz_date[:8], REGION, "s3")
    sig = hmac.new(skey, string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={KEY}/{scope}, SignedHeaders={';'.join(signed)}, Signature={sig}"
    )
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=30)
    try:
        conn.request("PUT", path, body=body, headers=headers)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    finally:
        conn.close()
    assert s3.get_object(Bucket=bucket, Key="trailer")["Body"].read() == data


# --------------------------------------------------------------------------------------------------- notifications


def _fn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def test_notification_configuration_round_trip(s3: Any, bucket: str) -> None:
    assert "LambdaFunctionConfigurations" not in s3.get_bucket_notification_configuration(Bucket=bucket)
    config = {
        "LambdaFunctionConfigurations": [
            {
                "Id": "thumbs",
                "LambdaFunctionArn": _fn("thumbnailer"),
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {
                    "Key": {
                        "FilterRules": [{"Name": "prefix", "Value": "images/"}, {"Name": "suffix", "Value": ".jpg"}]
                    }
                },
            },
            {"Id": "gone", "LambdaFunctionArn": _fn("cleanup"), "Events": ["s3:ObjectRemoved:Delete"]},
        ],
        "QueueConfigurations": [
            {"Id": "q", "QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:uploads", "Events": ["s3:ObjectCreated:Put"]}
        ],
    }
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    got = s3.get_bucket_notification_configuration(Bucket=bucket)
    got.pop("ResponseMetadata")
    assert got == config
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert "LambdaFunctionConfigurations" not in s3.get_bucket_notification_configuration(Bucket=bucket)


@pytest.mark.parametrize(
    ("conf", "needle"),
    [
        (
            {"LambdaFunctionArn": "arn:aws:sqs:us-east-1:123456789012:q", "Events": ["s3:ObjectCreated:*"]},
            "not a Lambda",
        ),
        ({"LambdaFunctionArn": _fn("missing"), "Events": ["s3:ObjectCreated:*"]}, "does not exist"),
        ({"LambdaFunctionArn": _fn("ok"), "Events": ["s3:ObjectExploded:*"]}, "s3:ObjectExploded:*"),
    ],
)
def test_notification_configuration_is_validated(s3: Any, bucket: str, conf: dict[str, Any], needle: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": [conf]}
        )
    assert _code(err) == "InvalidArgument"
    assert needle in err.value.response["Error"]["Message"]


def test_storage_events(harness: Harness, s3: Any, bucket: str) -> None:
    start = len(harness.events)
    s3.put_object(Bucket=bucket, Key="ev/one two", Body=b"12345")
    s3.copy_object(Bucket=bucket, Key="ev/copy", CopySource={"Bucket": bucket, "Key": "ev/one two"})
    s3.delete_object(Bucket=bucket, Key="ev/one two")
    s3.delete_object(Bucket=bucket, Key="ev/one two")  # already gone: no event
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "ev/copy"}]})
    events = [e for e in harness.events[start:] if e.bucket == bucket]
    assert [(e.event_name, e.key) for e in events] == [
        ("ObjectCreated:Put", "ev/one two"),
        ("ObjectCreated:Copy", "ev/copy"),
        ("ObjectRemoved:Delete", "ev/one two"),
        ("ObjectRemoved:Delete", "ev/copy"),
    ]
    assert events[0].size == 5 and events[0].etag == f'"{hashlib.md5(b"12345").hexdigest()}"'
    assert events[0].origin.source_ip == "127.0.0.1" and events[0].origin.principal_id == KEY
    assert events[0].origin.request_id
    sequencers = [int(e.sequencer, 16) for e in events]
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == len(sequencers)


# --------------------------------------------------------------------------------------------------- AWS CLI


def _aws(harness: Harness, tmp_path: Path, *args: str) -> str:
    config = tmp_path / "aws-config"
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    env = aws_env(KEY, SECRET, REGION, tmp_path, AWS_CONFIG_FILE=str(config), AWS_MAX_ATTEMPTS="1")
    proc = subprocess.run(
        [str(AWS_CLI), "--endpoint-url", harness.url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"aws {' '.join(args)} failed: {proc.stderr}\n{proc.stdout}"
    return proc.stdout


@needs_aws_cli
def test_aws_cli_cp_ls_sync(harness: Harness, s3: Any, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "nested dir").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "nested dir" / "b+c.json").write_text(json.dumps({"b": 1}))
    (src / "big.bin").write_bytes(os.urandom(9 * MB))
    _aws(harness, tmp_path, "s3", "cp", str(src / "a.txt"), f"s3://{bucket}/single/a.txt")
    assert s3.get_object(Bucket=bucket, Key="single/a.txt")["Body"].read() == b"alpha"
    _aws(harness, tmp_path, "s3", "sync", str(src), f"s3://{bucket}/synced")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="synced/")["Contents"])
    assert keys == ["synced/a.txt", "synced/big.bin", "synced/nested dir/b+c.json"]
    listing = _aws(harness, tmp_path, "s3", "ls", f"s3://{bucket}/synced/")
    assert "PRE nested dir/" in listing and "a.txt" in listing
    recursive = _aws(harness, tmp_path, "s3", "ls", "--recursive", f"s3://{bucket}")
    assert "synced/nested dir/b+c.json" in recursive
    buckets = _aws(harness, tmp_path, "s3", "ls")
    assert bucket in buckets
    again = _aws(harness, tmp_path, "s3", "sync", str(src), f"s3://{bucket}/synced")
    assert "upload:" not in again  # nothing changed
    back = tmp_path / "back"
    _aws(harness, tmp_path, "s3", "sync", f"s3://{bucket}/synced", str(back))
    assert (back / "nested dir" / "b+c.json").read_text() == json.dumps({"b": 1})
    assert (back / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    _aws(harness, tmp_path, "s3", "cp", f"s3://{bucket}/single/a.txt", str(tmp_path / "down.txt"))
    assert (tmp_path / "down.txt").read_text() == "alpha"
    _aws(harness, tmp_path, "s3", "rm", "--recursive", f"s3://{bucket}/synced")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="synced/")
