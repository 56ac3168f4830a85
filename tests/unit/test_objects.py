"""The object store: atomic and crash-safe writes, traversal-proof keys, listings, multipart, events, and the
pure notification helpers (matching, validation, S3 event records)."""

from __future__ import annotations

import hashlib
import os
import select
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from squall.core.clock import FakeClock
from squall.core.errors import ServiceError
from squall.s3.errors import (
    BadDigest,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooSmall,
    InvalidArgument,
    InvalidBucketName,
    InvalidPart,
    InvalidRange,
    KeyTooLong,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
)
from squall.s3.store import files as objects_files
from squall.s3.store.objects import (
    INLINE_MAX,
    EventOrigin,
    ObjectAttrs,
    ObjectEvent,
    ObjectStore,
    event_payload,
    matching_configurations,
    matching_notifications,
    s3_event_record,
    validate_notification_config,
)
from squall.store.disk import DiskFull

MB = 1024 * 1024


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def events() -> list[ObjectEvent]:
    return []


@pytest.fixture
def store(root: Path, events: list[ObjectEvent]) -> Iterator[ObjectStore]:
    s = ObjectStore(root, on_event=events.append, clock=FakeClock())
    s.create_bucket("bkt")
    yield s
    s.close()


def _data_files(root: Path) -> list[Path]:
    return [p for p in (root / "data").rglob("*") if p.is_file()]


def _read(store: ObjectStore, key: str, bucket: str = "bkt") -> bytes:
    with store.get_object(bucket, key) as body:
        return body.read()


# --------------------------------------------------------------------------------------------------- basics


def test_put_get_head_and_reopen(root: Path, store: ObjectStore) -> None:
    attrs = ObjectAttrs(content_type="text/plain", metadata={"a": "1"}, cache_control="no-cache", expires="never")
    meta = store.put_object("bkt", "k", b"hello", attrs=attrs)
    assert meta.etag == f'"{hashlib.md5(b"hello").hexdigest()}"'
    assert meta.size == 5
    store.close()
    again = ObjectStore(root)
    try:
        head = again.head_object("bkt", "k")
        assert (head.attrs, head.etag, head.size) == (attrs, meta.etag, 5)
        assert _read(again, "k") == b"hello"
        assert again.orphans_removed == 0
    finally:
        again.close()


def test_second_open_of_the_same_root_is_refused(root: Path, store: ObjectStore) -> None:
    with pytest.raises(ServiceError):
        ObjectStore(root)


def test_buckets(store: ObjectStore) -> None:
    with pytest.raises(BucketAlreadyOwnedByYou):
        store.create_bucket("bkt")
    for bad in ("ab", "Upper", "-dash", "a..b", "192.168.1.1", "x" * 64, "under_score"):
        with pytest.raises(InvalidBucketName):
            store.create_bucket(bad)
    store.create_bucket("other.bucket-1", region="eu-west-1")
    assert [b.name for b in store.list_buckets()] == ["bkt", "other.bucket-1"]
    assert store.get_bucket("other.bucket-1").region == "eu-west-1"
    store.put_object("other.bucket-1", "k", b"x")
    with pytest.raises(BucketNotEmpty):
        store.delete_bucket("other.bucket-1")
    store.delete_object("other.bucket-1", "k")
    store.create_multipart_upload("other.bucket-1", "pending")
    store.delete_bucket("other.bucket-1")
    with pytest.raises(NoSuchBucket):
        store.put_object("other.bucket-1", "k", b"x")
    with pytest.raises(NoSuchBucket):
        store.get_object("nope", "k")


def test_missing_and_invalid_keys(store: ObjectStore) -> None:
    with pytest.raises(NoSuchKey):
        store.head_object("bkt", "missing")
    assert store.delete_object("bkt", "missing") is False
    with pytest.raises(KeyTooLong):
        store.put_object("bkt", "é" * 513, b"x")
    with pytest.raises(InvalidArgument):
        store.put_object("bkt", "", b"x")
    store.put_object("bkt", "é" * 512, b"x")


def test_ranges(store: ObjectStore) -> None:
    data = bytes(range(100))
    store.put_object("bkt", "r", data)
    for spec, want in [
        ((10, 19), data[10:20]),
        ((90, None), data[90:]),
        ((None, 5), data[-5:]),
        ((95, 500), data[95:]),
    ]:
        with store.get_object("bkt", "r", spec) as body:
            assert body.read() == want
            assert body.ranged
    for spec in [(100, None), (None, 0), (50, 10)]:
        with pytest.raises(InvalidRange):
            store.get_object("bkt", "r", spec)
    store.put_object("bkt", "empty", b"")
    with pytest.raises(InvalidRange):
        store.get_object("bkt", "empty", (0, None))


def test_streamed_body_survives_overwrite_and_delete(store: ObjectStore) -> None:
    store.put_object("bkt", "k", b"A" * (3 * MB))
    with store.get_object("bkt", "k") as body:
        store.put_object("bkt", "k", b"new")
        store.delete_object("bkt", "k")
        chunks = list(body.chunks(MB))
    assert [len(c) for c in chunks] == [MB, MB, MB]
    assert b"".join(chunks) == b"A" * (3 * MB)


def test_put_accepts_iterables_and_files(store: ObjectStore, tmp_path: Path) -> None:
    store.put_object("bkt", "it", iter([b"ab", b"", b"cd"]))
    assert _read(store, "it") == b"abcd"
    src = tmp_path / "f"
    src.write_bytes(b"x" * (2 * MB + 3))
    with open(src, "rb") as f:
        meta = store.put_object("bkt", "file", f)
    assert meta.size == 2 * MB + 3


@pytest.mark.parametrize("size", [4, INLINE_MAX + 1])  # kept in the row / in a data file
def test_content_md5_and_if_none_match(root: Path, store: ObjectStore, size: int) -> None:
    data, again = b"d" * size, b"a" * size
    with pytest.raises(BadDigest):
        store.put_object("bkt", "k", data, expected_md5=hashlib.md5(b"other").digest())
    with pytest.raises(NoSuchKey):
        store.head_object("bkt", "k")
    store.put_object("bkt", "k", data, expected_md5=hashlib.md5(data).digest(), if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put_object("bkt", "k", again, if_none_match=True)
    assert _read(store, "k") == data
    assert len(_data_files(root)) == (0 if size <= INLINE_MAX else 1)  # failed puts left nothing behind


def test_copy_keeps_or_replaces_metadata(store: ObjectStore) -> None:
    store.put_object("bkt", "src", b"payload", attrs=ObjectAttrs(content_type="a/b", metadata={"x": "1"}))
    copied = store.copy_object("bkt", "src", "bkt", "dst")
    assert copied.attrs.metadata == {"x": "1"} and copied.etag == store.head_object("bkt", "src").etag
    replaced = store.copy_object("bkt", "src", "bkt", "dst2", attrs=ObjectAttrs(content_type="c/d"))
    assert replaced.attrs == ObjectAttrs(content_type="c/d")
    store.delete_object("bkt", "src")
    assert _read(store, "dst") == b"payload" == _read(store, "dst2")


# --------------------------------------------------------------------------------------------------- safety


@pytest.mark.parametrize(
    "key", ["../../etc/passwd", "/etc/passwd", "..", ".", "a/../../../b", "..\\..\\x", "\x00nul", "~/.ssh/id"]
)
def test_keys_never_become_paths(tmp_path: Path, key: str) -> None:
    root = tmp_path / "deep" / "store"
    with ObjectStore(root) as store:
        store.create_bucket("bkt")
        store.put_object("bkt", key, b"secret" * 20_000)  # big enough for a data file
        assert _read(store, key) == b"secret" * 20_000
        assert [m.key for m in store.list_objects_v2("bkt").contents] == [key]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.parent == tmp_path) == ["deep"]
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["store"]
    files = _data_files(root)
    assert len(files) == 1
    assert len(files[0].name) == 32 and all(c in "0123456789abcdef" for c in files[0].name)
    assert files[0].resolve().is_relative_to(root.resolve())


def test_failed_replace_leaves_old_object_and_no_orphan(
    root: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_object("bkt", "k", b"old content")

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(DiskFull):  # ENOSPC is reported as the disk being full (S3: 503 ServiceUnavailable)
        store.put_object("bkt", "k", b"new content" * 10_000)  # big enough for a data file
    monkeypatch.undo()
    assert _read(store, "k") == b"old content"
    assert list((root / "tmp").iterdir()) == []
    assert len(_data_files(root)) == 0  # the old object is small: it lives in its row


def _crash_child(root: Path, stage: str) -> None:
    """In a forked child: open the store and start replacing 'k', then block at ``stage`` until killed."""
    ready_r, ready_w = os.pipe()
    block_r, block_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(ready_r)
            store = ObjectStore(root)

            def block() -> None:
                os.write(ready_w, b"x")
                os.read(block_r, 1)  # never written: wait here for SIGKILL

            if stage == "writing":

                def data() -> Iterator[bytes]:
                    yield b"N" * MB
                    block()
                    yield b"N" * MB

                store.put_object("bkt", "k", data())
            else:

                def placed(path: Path) -> None:
                    block()

                objects_files.fsync_dir = placed
                store.put_object("bkt", "k", b"N" * MB)
        finally:
            os._exit(3)
    os.close(ready_w)
    try:
        ready, _, _ = select.select([ready_r], [], [], 30)
        assert ready, "the child never reached the crash point"
        assert os.read(ready_r, 1) == b"x"
    finally:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        for fd in (ready_r, block_r, block_w):
            os.close(fd)
    assert os.WIFSIGNALED(status)


@pytest.mark.parametrize("stage", ["writing", "placed"])
def test_crash_mid_put_keeps_old_object(root: Path, stage: str) -> None:
    with ObjectStore(root) as store:
        store.create_bucket("bkt")
        store.put_object("bkt", "k", b"old")
    _crash_child(root, stage)
    leftovers = list((root / "tmp").iterdir()) + _data_files(root)
    assert len(leftovers) == 1  # the half-done file (the committed object is small: it lives in its row)
    with ObjectStore(root) as store:
        assert store.orphans_removed == 1
        assert _read(store, "k") == b"old"
        assert store.head_object("bkt", "k").size == 3
    assert list((root / "tmp").iterdir()) == []
    assert _data_files(root) == []


def test_small_objects_live_in_their_row_and_large_ones_in_files(root: Path, store: ObjectStore) -> None:
    small, edge, large = b"s" * 100, b"e" * INLINE_MAX, b"L" * (INLINE_MAX + 1)
    store.put_object("bkt", "small", small)
    store.put_object("bkt", "edge", edge)
    assert _data_files(root) == []
    assert _read(store, "small") == small and _read(store, "edge") == edge
    with store.get_object("bkt", "small", byte_range=(10, 19)) as body:
        assert body.read() == small[10:20]
    store.put_object("bkt", "small", large)  # small -> large: now a file
    assert len(_data_files(root)) == 1 and _read(store, "small") == large
    store.put_object("bkt", "small", small)  # large -> small: the file goes
    assert _data_files(root) == [] and _read(store, "small") == small
    copied = store.copy_object("bkt", "small", "bkt", "copy")
    assert copied.etag == f'"{hashlib.md5(small).hexdigest()}"' and _read(store, "copy") == small
    assert store.delete_object("bkt", "small") and _read(store, "copy") == small
    store.close()
    with ObjectStore(root) as again:
        assert _read(again, "copy") == small and _read(again, "edge") == edge
        assert again.orphans_removed == 0 and _data_files(root) == []


def test_a_store_made_before_inline_objects_is_upgraded(root: Path) -> None:
    import sqlite3

    with ObjectStore(root) as store:
        store.create_bucket("bkt")
        store.put_object("bkt", "big", b"B" * (INLINE_MAX + 1))
    db = sqlite3.connect(root / "objects.db")
    db.execute("ALTER TABLE objects DROP COLUMN inline")  # the schema of an older Squall
    db.commit()
    db.close()
    with ObjectStore(root) as store:
        assert _read(store, "big") == b"B" * (INLINE_MAX + 1)
        store.put_object("bkt", "small", b"tiny")
        assert _read(store, "small") == b"tiny"


# --------------------------------------------------------------------------------------------------- listing


def test_list_order_prefix_delimiter_and_pages(store: ObjectStore) -> None:
    keys = ["a/1", "a/2", "a/b/3", "b", "B", "c d", "é", "z/é/1", "z/é/2", "zz", "\U0001f600"]
    for k in keys:
        store.put_object("bkt", k, b"")
    everything = store.list_objects_v2("bkt")
    assert [m.key for m in everything.contents] == sorted(keys, key=lambda k: k.encode())
    rolled = store.list_objects_v2("bkt", delimiter="/")
    assert rolled.common_prefixes == ["a/", "z/"]
    assert [m.key for m in rolled.contents] == ["B", "b", "c d", "zz", "é", "\U0001f600"]
    sub = store.list_objects_v2("bkt", prefix="z/", delimiter="/")
    assert (sub.common_prefixes, sub.contents) == (["z/é/"], [])
    seen: list[str] = []
    token = None
    for _ in range(20):
        page = store.list_objects_v2("bkt", delimiter="/", max_keys=2, continuation_token=token)
        assert page.key_count <= 2
        seen += page.common_prefixes + [m.key for m in page.contents]
        if not page.is_truncated:
            break
        token = page.next_token
    assert sorted(seen) == sorted(rolled.common_prefixes + [m.key for m in rolled.contents])
    assert len(seen) == len(set(seen))
    after = store.list_objects("bkt", delimiter="/", marker="a/")
    assert "a/" not in after.common_prefixes and after.common_prefixes == ["z/"]
    multi = store.list_objects_v2("bkt", delimiter="/é/")
    assert multi.common_prefixes == ["z/é/"]
    with pytest.raises(InvalidArgument):
        store.list_objects_v2("bkt", continuation_token="garbage!")


def test_start_after_and_max_keys(store: ObjectStore) -> None:
    for i in range(10):
        store.put_object("bkt", f"k{i}", b"")
    page = store.list_objects_v2("bkt", start_after="k4", max_keys=3)
    assert [m.key for m in page.contents] == ["k5", "k6", "k7"] and page.is_truncated
    rest = store.list_objects_v2("bkt", continuation_token=page.next_token)
    assert [m.key for m in rest.contents] == ["k8", "k9"] and not rest.is_truncated
    assert store.list_objects_v2("bkt", max_keys=0).key_count == 0


# --------------------------------------------------------------------------------------------------- multipart


def test_multipart(root: Path, store: ObjectStore, events: list[ObjectEvent]) -> None:
    up = store.create_multipart_upload("bkt", "big", ObjectAttrs(content_type="x/y"))
    p1 = store.upload_part("bkt", "big", up.upload_id, 1, b"a" * (5 * MB))
    p2 = store.upload_part("bkt", "big", up.upload_id, 2, b"tiny")
    p2 = store.upload_part("bkt", "big", up.upload_id, 2, b"tail")  # replaces
    parts, truncated = store.list_parts("bkt", "big", up.upload_id)
    assert [(p.part_number, p.size) for p in parts] == [(1, 5 * MB), (2, 4)] and not truncated
    with pytest.raises(InvalidPart):
        store.complete_multipart_upload("bkt", "big", up.upload_id, [(1, p1.etag), (3, p2.etag)])
    meta = store.complete_multipart_upload("bkt", "big", up.upload_id, [(1, p1.etag), (2, p2.etag)])
    digest = hashlib.md5(hashlib.md5(b"a" * (5 * MB)).digest() + hashlib.md5(b"tail").digest()).hexdigest()
    assert meta.etag == f'"{digest}-2"' and meta.parts_count == 2 and meta.attrs.content_type == "x/y"
    assert _read(store, "big") == b"a" * (5 * MB) + b"tail"
    assert events[-1].event_name == "ObjectCreated:CompleteMultipartUpload" and events[-1].size == 5 * MB + 4
    with pytest.raises(NoSuchUpload):
        store.upload_part("bkt", "big", up.upload_id, 3, b"late")
    assert len(_data_files(root)) == 1


def test_multipart_part_size_rules(store: ObjectStore) -> None:
    up = store.create_multipart_upload("bkt", "k")
    p1 = store.upload_part("bkt", "k", up.upload_id, 1, b"x" * 10)
    p2 = store.upload_part("bkt", "k", up.upload_id, 2, b"y")
    with pytest.raises(EntityTooSmall):
        store.complete_multipart_upload("bkt", "k", up.upload_id, [(1, p1.etag), (2, p2.etag)])
    with pytest.raises(InvalidArgument):
        store.upload_part("bkt", "k", up.upload_id, 10001, b"z")
    store.complete_multipart_upload("bkt", "k", up.upload_id, [(1, p1.etag)])  # a single small part is fine
    assert store.list_uploads("bkt") == ([], False)


# --------------------------------------------------------------------------------------------------- events


def test_events_after_durable_writes_with_increasing_sequencers(store: ObjectStore, events: list[ObjectEvent]) -> None:
    seen_in_callback: list[bytes] = []

    def on_event(event: ObjectEvent) -> None:
        events.append(event)
        if event.event_name.startswith("ObjectCreated"):
            seen_in_callback.append(_read(store, event.key))  # the object is visible when the event fires

    store.on_event = on_event
    origin = EventOrigin(request_id="REQ1", source_ip="10.0.0.1", principal_id="AKIA")
    store.put_object("bkt", "a", b"1", origin=origin)
    store.copy_object("bkt", "a", "bkt", "b")
    store.delete_objects("bkt", ["a", "b", "never"])
    assert [e.event_name for e in events] == [
        "ObjectCreated:Put",
        "ObjectCreated:Copy",
        "ObjectRemoved:Delete",
        "ObjectRemoved:Delete",
    ]
    assert seen_in_callback == [b"1", b"1"]
    assert events[0].origin == origin
    sequencers = [e.sequencer for e in events]
    assert all(len(s) == 16 and int(s, 16) > 0 for s in sequencers)
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == 4


def test_failing_on_event_reaches_the_caller_after_the_write(store: ObjectStore) -> None:
    def boom(event: ObjectEvent) -> None:
        raise RuntimeError("queue down")

    store.on_event = boom
    with pytest.raises(RuntimeError):
        store.put_object("bkt", "k", b"v")
    assert _read(store, "k") == b"v"


def _event(key: str = "photos/my cat+dog.jpg", name: str = "ObjectCreated:Put") -> ObjectEvent:
    return ObjectEvent(
        bucket="bkt",
        key=key,
        event_name=name,
        size=42,
        etag='"0123456789abcdef0123456789abcdef"',
        sequencer="00000000000000A1",
        time=1_700_000_000.123,
        origin=EventOrigin(request_id="REQ", source_ip="192.0.2.1", principal_id="AKIAX"),
    )


def test_s3_event_record_shape() -> None:
    record = s3_event_record(_event(), "eu-west-1", configuration_id="thumbs")
    assert record == {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventTime": "2023-11-14T22:13:20.123Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AKIAX"},
        "requestParameters": {"sourceIPAddress": "192.0.2.1"},
        "responseElements": {"x-amz-request-id": "REQ", "x-amz-id-2": "REQ"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "thumbs",
            "bucket": {"name": "bkt", "ownerIdentity": {"principalId": "SQUALL"}, "arn": "arn:aws:s3:::bkt"},
            "object": {
                "key": "photos/my+cat%2Bdog.jpg",
                "size": 42,
                "eTag": "0123456789abcdef0123456789abcdef",
                "sequencer": "00000000000000A1",
            },
        },
    }
    removed = s3_event_record(_event("ü ß", "ObjectRemoved:Delete"), "us-east-1")
    assert removed["s3"]["object"] == {"key": "%C3%BC+%C3%9F", "sequencer": "00000000000000A1"}
    assert event_payload(_event(), "us-east-1")["Records"][0]["eventSource"] == "aws:s3"


_CONFIG: dict[str, Any] = {
    "LambdaFunctionConfigurations": [
        {
            "Id": "jpg",
            "LambdaFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:thumbs",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {
                "Key": {"FilterRules": [{"Name": "Prefix", "Value": "photos/"}, {"Name": "suffix", "Value": ".jpg"}]}
            },
        },
        {
            "Id": "del",
            "LambdaFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:audit:live",
            "Events": ["s3:ObjectRemoved:Delete"],
        },
    ],
    "QueueConfigurations": [
        {"Id": "q", "QueueArn": "arn:aws:sqs:us-east-1:123456789012:puts", "Events": ["s3:ObjectCreated:Put"]}
    ],
}


@pytest.mark.parametrize(
    ("key", "name", "want"),
    [
        ("photos/a.jpg", "ObjectCreated:Put", ["function:thumbs", "puts"]),
        ("photos/a.jpg", "ObjectCreated:CompleteMultipartUpload", ["function:thumbs"]),
        ("photos/a.png", "ObjectCreated:Copy", []),
        ("other/a.jpg", "ObjectCreated:Put", ["puts"]),
        ("photos/a.jpg", "ObjectRemoved:Delete", ["audit:live"]),
        ("x", "ObjectRemoved:DeleteMarkerCreated", []),
    ],
)
def test_matching_notifications(key: str, name: str, want: list[str]) -> None:
    arns = matching_notifications(_CONFIG, _event(key, name))
    assert len(arns) == len(want)
    assert all(a.endswith(w) for a, w in zip(arns, want, strict=True))


def test_matching_configurations_carry_ids_and_kinds() -> None:
    targets = matching_configurations(_CONFIG, _event("photos/x.jpg"))
    assert [(t.configuration_id, t.kind) for t in targets] == [("jpg", "lambda"), ("q", "sqs")]


@pytest.mark.parametrize(
    "config",
    [
        {"LambdaFunctionConfigurations": [{"LambdaFunctionArn": "arn:aws:sqs:us-east-1:1:q", "Events": ["s3:ObjectCreated:*"]}]},
        {"LambdaFunctionConfigurations": [{"LambdaFunctionArn": "thumbs", "Events": ["s3:ObjectCreated:*"]}]},
        {"QueueConfigurations": [{"QueueArn": "arn:aws:lambda:us-east-1:123456789012:function:f", "Events": ["s3:ObjectCreated:*"]}]},
        {"LambdaFunctionConfigurations": [{"LambdaFunctionArn": _CONFIG["LambdaFunctionConfigurations"][0]["LambdaFunctionArn"], "Events": ["s3:Nope"]}]},
        {"LambdaFunctionConfigurations": [{"LambdaFunctionArn": _CONFIG["LambdaFunctionConfigurations"][0]["LambdaFunctionArn"], "Events": []}]},
        {"LambdaFunctionConfigurations": [{**_CONFIG["LambdaFunctionConfigurations"][0], "Filter": {"Key": {"FilterRules": [{"Name": "infix", "Value": "x"}]}}}]},
        {"TopicConfigurations": [{"TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Events": ["s3:ObjectCreated:*"]}]},
    ],
)  # fmt: skip
def test_invalid_notification_configs(config: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        validate_notification_config(config)


def test_notification_config_storage(store: ObjectStore) -> None:
    assert store.get_bucket_notification("bkt") == {}
    conf = {
        "QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:123456789012:q", "Events": ["s3:ObjectRemoved:*"]}]
    }
    saved = store.put_bucket_notification("bkt", conf)
    assert saved["QueueConfigurations"][0]["Id"]  # S3 names unnamed configurations
    assert store.get_bucket_notification("bkt") == saved
    with pytest.raises(InvalidArgument):
        store.put_bucket_notification(
            "bkt",
            {"LambdaFunctionConfigurations": [{**_CONFIG["LambdaFunctionConfigurations"][0]}]},
            function_exists=lambda arn: False,
        )
    assert store.get_bucket_notification("bkt") == saved
    removed = _event("anything", "ObjectRemoved:Delete")
    assert [t.kind for t in store.notification_targets(removed)] == ["sqs"]
