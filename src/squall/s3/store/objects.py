"""A filesystem-backed, S3-compatible object store with storage events.

``ObjectStore(root)`` keeps buckets and objects under ``root``:

* object data in immutable data files named by random ids (``data/ab/ab12...``), never by key, so any key
  ('../../etc/passwd', unicode, 1024 bytes, ...) stays a database value and cannot reach the filesystem; objects
  of up to ``INLINE_MAX`` bytes (64 KiB) live in their metadata row instead (no file at all);
* metadata (size, ETag, Last-Modified, Content-Type, Cache-Control, Content-Disposition, Content-Encoding,
  Content-Language, Expires, x-amz-meta-*) in one SQLite database; see ``squall.s3.store.base`` for why SQLite rather
  than sidecar JSON.

Writes are atomic and durable: the data goes to a temporary file that is fsync'd and ``os.replace``d into
``data/``; then one SQLite transaction (``synchronous=FULL``) points the key at it, and only then is the old data
file unlinked (a small object's bytes are simply part of that transaction).  A crash at any point leaves either the
old or the new object, never a mix; files no row points to are removed when the store is next opened.  A store directory may be open in one ``ObjectStore`` at a time
(an flock on ``root/LOCK`` enforces it).

Storage events: ``on_event(ObjectEvent)`` is called synchronously after the write is durable and before the
method returns (so before the API answers); if it raises, the exception reaches the caller (the write stays).
``tx_events(db, events)`` (cluster mode) is called inside the write's own transaction, before its commit: what it
writes through ``db`` (the events' outbox rows) commits with the object or not at all.
ObjectRemoved events are sent only for keys that existed.  See ``squall.s3.store.events`` for notification matching
and S3 event records.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any, BinaryIO

from squall.s3.errors import (
    BadDigest,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    InvalidArgument,
    NoSuchBucket,
    NoSuchKey,
    PreconditionFailed,
    S3Error,
)
from squall.s3.store.base import OBJECT_COLUMNS, OWNER_ID, UPSERT_OBJECT, check_bucket_name, check_key, row_meta
from squall.s3.store.events import (
    EventOrigin,
    NotificationTarget,
    ObjectEvent,
    event_payload,
    matching_configurations,
    matching_notifications,
    s3_event_record,
    validate_notification_config,
)
from squall.s3.store.files import Written
from squall.s3.store.multipart import MultipartMixin
from squall.s3.store.types import (
    Bucket,
    ByteRange,
    ListResult,
    ObjectAttrs,
    ObjectBody,
    ObjectMeta,
    Part,
    Upload,
)

__all__ = [
    "OWNER_ID",
    "Bucket",
    "ByteRange",
    "EventOrigin",
    "ListResult",
    "NotificationTarget",
    "ObjectAttrs",
    "ObjectBody",
    "ObjectEvent",
    "ObjectMeta",
    "ObjectStore",
    "Part",
    "Upload",
    "event_payload",
    "matching_configurations",
    "matching_notifications",
    "s3_event_record",
    "validate_notification_config",
]

_BATCH = 1000
#: objects up to this size are kept in their metadata row (written in the row's transaction, read without opening
#: a file); larger ones get a data file.  Most objects functions exchange (JSON, thumbnails, small images) fit.
INLINE_MAX = 64 * 1024


def _after_prefix(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string starting with ``prefix`` (non-empty, not all 0xFF)."""
    trimmed = prefix.rstrip(b"\xff")
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def _encode_token(position: bytes) -> str:
    return base64.urlsafe_b64encode(b"\x01" + position).decode("ascii")


def _decode_token(token: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if not raw.startswith(b"\x01"):
        raise InvalidArgument("The continuation token provided is incorrect", {"ArgumentName": "continuation-token"})
    return raw[1:]


class ObjectStore(MultipartMixin):
    """Buckets and objects under ``root``; see the module docstring.  Thread-safe; blocking (call it from a
    thread pool in async code)."""

    # ------------------------------------------------------------------------------------------------ buckets

    def create_bucket(self, name: str, region: str = "us-east-1") -> Bucket:
        check_bucket_name(name)
        bucket = Bucket(name, self.clock.now(), region)
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO buckets (name, created, region) VALUES (?, ?, ?)", (name, bucket.created, region)
                )
            except sqlite3.IntegrityError:
                raise BucketAlreadyOwnedByYou(name)
        return bucket

    def list_buckets(self) -> list[Bucket]:
        return [Bucket(*r) for r in self._query("SELECT name, created, region FROM buckets ORDER BY name")]

    def get_bucket(self, name: str) -> Bucket:
        rows = self._query("SELECT name, created, region FROM buckets WHERE name = ?", (name,))
        if not rows:
            raise NoSuchBucket(name)
        return Bucket(*rows[0])

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket (in-progress multipart uploads are aborted)."""
        with self._tx(write=False) as db:
            self._require_bucket(db, name)
            if db.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (name,)).fetchone():
                raise BucketNotEmpty(name)
            files = [
                r[0]
                for r in db.execute(
                    "SELECT file_id FROM parts WHERE upload_id IN (SELECT upload_id FROM uploads WHERE bucket = ?)",
                    (name,),
                )
            ]
            db.execute("DELETE FROM parts WHERE upload_id IN (SELECT upload_id FROM uploads WHERE bucket = ?)", (name,))
            db.execute("DELETE FROM uploads WHERE bucket = ?", (name,))
            db.execute("DELETE FROM buckets WHERE name = ?", (name,))
        self.files.unlink(files)

    # ------------------------------------------------------------------------------------------------ notifications

    def get_bucket_notification(self, bucket: str) -> dict[str, Any]:
        """The bucket's NotificationConfiguration, in botocore's dict shape (``{}`` when none)."""
        rows = self._query("SELECT notification FROM buckets WHERE name = ?", (bucket,))
        if not rows:
            raise NoSuchBucket(bucket)
        result: dict[str, Any] = json.loads(rows[0][0])
        return result

    def put_bucket_notification(
        self,
        bucket: str,
        config: Mapping[str, Any],
        *,
        function_exists: Callable[[str], bool] | None = None,
        queue_exists: Callable[[str], bool] | None = None,
    ) -> dict[str, Any]:
        """Validate and store a NotificationConfiguration (replacing the old one); returns it normalised."""
        self.get_bucket(bucket)
        normalised = validate_notification_config(config, function_exists=function_exists, queue_exists=queue_exists)
        with self._tx() as db:
            self._require_bucket(db, bucket)
            db.execute("UPDATE buckets SET notification = ? WHERE name = ?", (json.dumps(normalised), bucket))
        return normalised

    # ------------------------------------------------------------------------------------------------ objects

    def put_object(
        self,
        bucket: str,
        key: str,
        data: bytes | BinaryIO | Iterable[bytes],
        *,
        attrs: ObjectAttrs | None = None,
        expected_md5: bytes | None = None,
        if_none_match: bool = False,
        origin: EventOrigin | None = None,
        event_name: str = "ObjectCreated:Put",
    ) -> ObjectMeta:
        """Store an object atomically (replacing any old one); emits ``event_name`` (``ObjectCreated:Post`` for a
        form upload).

        ``expected_md5`` (the decoded Content-MD5) fails the put with ``BadDigest`` when the data differs;
        ``if_none_match`` (``If-None-Match: *``) fails it with ``PreconditionFailed`` when the key exists.
        """
        raw = check_key(key)
        self.get_bucket(bucket)
        self._writable(len(data) if isinstance(data, (bytes, bytearray, memoryview)) else 0)
        inline: bytes | None = None
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data) <= INLINE_MAX:
            # small: the bytes go into the metadata row, one transaction (one fsync) instead of a data file, its
            # fsync, a rename and a directory fsync first
            inline = bytes(data)
            written = Written("", len(inline), hashlib.md5(inline).digest())
        else:
            written = self.files.write(data)
        attrs = attrs or ObjectAttrs()
        etag = f'"{written.md5.hex()}"'
        now = self.clock.now()
        try:
            if expected_md5 is not None and expected_md5 != written.md5:
                raise BadDigest(
                    "The Content-MD5 you specified did not match what we received.",
                    {"ExpectedDigest": expected_md5.hex(), "CalculatedDigest": written.md5.hex()},
                )
            with self._tx() as db:
                old = self._replace_object(
                    db, bucket, raw, written.file_id, written.size, etag, now, attrs, None, inline
                )
                if if_none_match and old is not None:
                    raise PreconditionFailed("If-None-Match")
                seq = self._next_sequencer(db, bucket)
                events = self._in_tx(db, [self._event(bucket, key, event_name, seq, now, origin, written.size, etag)])
        except BaseException:
            self.files.unlink([written.file_id])
            raise
        if old is not None:
            self.files.unlink([old])
        self._emit(events)
        return ObjectMeta(bucket, key, written.size, etag, now, attrs)

    put = put_object

    def _replace_object(
        self,
        db: sqlite3.Connection,
        bucket: str,
        raw: bytes,
        file_id: str,
        size: int,
        etag: str,
        now: float,
        attrs: ObjectAttrs,
        parts_count: int | None,
        inline: bytes | None = None,
    ) -> str | None:
        """Point ``raw`` at a new data file (``file_id``), or at ``inline`` bytes kept in the row (``file_id``
        ""); returns the old data file's id ("" if the old object was inline)."""
        self._require_bucket(db, bucket)
        old = db.execute("SELECT file_id FROM objects WHERE bucket = ? AND key = ?", (bucket, raw)).fetchone()
        db.execute(
            "INSERT INTO objects (bucket, key, file_id, size, etag, last_modified, attrs, parts_count, inline) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) {UPSERT_OBJECT}",
            (bucket, raw, file_id, size, etag, now, attrs.to_json(), parts_count, inline),
        )
        return old[0] if old else None

    def _row(self, bucket: str, key: str) -> tuple[ObjectMeta, str, bytes | None]:
        """(metadata, data file id, inline bytes) of an object."""
        raw = check_key(key)
        with self._lock:
            row = self._db.execute(
                f"SELECT {OBJECT_COLUMNS}, file_id, inline FROM objects WHERE bucket = ? AND key = ?", (bucket, raw)
            ).fetchone()
            if row is None:
                self._require_bucket(self._db, bucket)
                raise NoSuchKey(key)
        return row_meta(bucket, row), row[6], row[7]

    def head_object(self, bucket: str, key: str) -> ObjectMeta:
        return self._row(bucket, key)[0]

    def get_object(self, bucket: str, key: str, byte_range: ByteRange | None = None) -> ObjectBody:
        """The object, open for streaming (``body.chunks()``); close it when done.  ``byte_range`` selects part
        of it (``InvalidRange`` when unsatisfiable); ``body.select`` can do that later too."""
        with self._lock:
            meta, file_id, inline = self._row(bucket, key)
            file: BinaryIO = io.BytesIO(inline) if inline is not None else self.files.open(file_id)
        body = ObjectBody(meta, file)
        try:
            return body.select(byte_range)
        except S3Error:
            body.close()
            raise

    def delete_object(self, bucket: str, key: str, *, origin: EventOrigin | None = None) -> bool:
        """Delete one object (idempotent); returns whether it existed.  Emits ``ObjectRemoved:Delete`` if so."""
        results, removed = self._delete(bucket, [key], origin)
        if results[0][1] is not None:
            raise results[0][1]
        return bool(removed)

    def delete_objects(
        self, bucket: str, keys: Iterable[str], *, origin: EventOrigin | None = None
    ) -> list[tuple[str, S3Error | None]]:
        """Delete several objects in one transaction: ``(key, None)`` for each deleted (or absent) key,
        ``(key, error)`` for an invalid one.  Emits ``ObjectRemoved:Delete`` for each key that existed."""
        return self._delete(bucket, keys, origin)[0]

    def _delete(
        self, bucket: str, keys: Iterable[str], origin: EventOrigin | None
    ) -> tuple[list[tuple[str, S3Error | None]], list[str]]:
        results: list[tuple[str, S3Error | None]] = []
        removed: list[tuple[str, str]] = []
        files: list[str] = []
        now = self.clock.now()
        with self._tx(write=False) as db:
            self._require_bucket(db, bucket)
            for key in keys:
                try:
                    raw = check_key(key)
                except S3Error as e:
                    results.append((key, e))
                    continue
                row = db.execute(
                    "DELETE FROM objects WHERE bucket = ? AND key = ? RETURNING file_id", (bucket, raw)
                ).fetchone()
                results.append((key, None))
                if row is not None:
                    files.append(row[0])
                    removed.append((key, self._next_sequencer(db, bucket)))
            events = self._in_tx(
                db, [self._event(bucket, key, "ObjectRemoved:Delete", seq, now, origin) for key, seq in removed]
            )
        self.files.unlink(files)
        self._emit(events)
        return results, [key for key, _ in removed]

    def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        attrs: ObjectAttrs | None = None,
        origin: EventOrigin | None = None,
    ) -> ObjectMeta:
        """Copy an object (``attrs`` None: keep the source's metadata, the COPY directive; otherwise REPLACE).
        Emits ``ObjectCreated:Copy``."""
        raw = check_key(dst_key)
        with self._lock:
            src, file_id, inline = self._row(src_bucket, src_key)
            self._require_bucket(self._db, dst_bucket)
            new_id = self.files.link(file_id) if inline is None else ""
        now = self.clock.now()
        final_attrs = src.attrs if attrs is None else attrs
        try:
            with self._tx() as db:
                old = self._replace_object(
                    db, dst_bucket, raw, new_id, src.size, src.etag, now, final_attrs, None, inline
                )
                seq = self._next_sequencer(db, dst_bucket)
                events = self._in_tx(
                    db, [self._event(dst_bucket, dst_key, "ObjectCreated:Copy", seq, now, origin, src.size, src.etag)]
                )
        except BaseException:
            self.files.unlink([new_id])
            raise
        if old is not None:
            self.files.unlink([old])
        self._emit(events)
        return ObjectMeta(dst_bucket, dst_key, src.size, src.etag, now, final_attrs)

    # ------------------------------------------------------------------------------------------------ listing

    def list_objects_v2(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        continuation_token: str | None = None,
        max_keys: int = 1000,
        fetch_owner: bool = False,
    ) -> ListResult:
        """One page of keys in UTF-8 byte order, keys sharing ``prefix`` + ... + ``delimiter`` rolled up into
        common prefixes.  Continue with ``continuation_token=result.next_token``."""
        position = start_after.encode("utf-8")
        if continuation_token:
            position = max(position, _decode_token(continuation_token))
        result = self._list(bucket, prefix.encode("utf-8"), delimiter.encode("utf-8"), position, max_keys)
        contents, prefixes, truncated, last = result
        return ListResult(
            contents,
            prefixes,
            truncated,
            next_token=_encode_token(last) if truncated else None,
            next_marker=last.decode("utf-8") if truncated else None,
            owner_id=OWNER_ID if fetch_owner else None,
        )

    def list_objects(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", marker: str = "", max_keys: int = 1000
    ) -> ListResult:
        """ListObjects (v1): like v2 with ``marker`` as start-after; ``next_marker`` continues it."""
        return self.list_objects_v2(
            bucket, prefix=prefix, delimiter=delimiter, start_after=marker, max_keys=max_keys, fetch_owner=True
        )

    def _list(
        self, bucket: str, prefix: bytes, delimiter: bytes, position: bytes, max_keys: int
    ) -> tuple[list[ObjectMeta], list[str], bool, bytes]:
        contents: list[ObjectMeta] = []
        prefixes: list[str] = []
        if max_keys <= 0:
            self.get_bucket(bucket)
            return contents, prefixes, False, position
        start_after = position
        lower, inclusive = (prefix, True) if prefix > position else (position, False)
        upper = _after_prefix(prefix) if prefix else None
        last = position
        with self._lock:
            self._require_bucket(self._db, bucket)
            while len(contents) + len(prefixes) < max_keys:
                rows = self._rows_from(bucket, lower, inclusive, upper, _BATCH)
                if not rows:
                    return contents, prefixes, False, last
                for row in rows:
                    key = bytes(row[0])
                    cut = key.find(delimiter, len(prefix)) if delimiter else -1
                    if cut < 0:
                        contents.append(row_meta(bucket, row))
                        lower, inclusive, last = key, False, key
                        if len(contents) + len(prefixes) >= max_keys:
                            break
                        continue
                    common = key[: cut + len(delimiter)]
                    lower, inclusive = _after_prefix(common), True
                    if common > start_after:
                        prefixes.append(common.decode("utf-8"))
                        last = common
                    break  # seek past the common prefix
            more = bool(self._rows_from(bucket, lower, inclusive, upper, 1))
        return contents, prefixes, more, last

    def _rows_from(
        self, bucket: str, lower: bytes, inclusive: bool, upper: bytes | None, limit: int
    ) -> list[tuple[Any, ...]]:
        op = ">=" if inclusive else ">"
        sql = f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key {op} ?"
        params: tuple[Any, ...] = (bucket, lower)
        if upper is not None:
            sql += " AND key < ?"
            params += (upper,)
        return self._db.execute(sql + " ORDER BY key LIMIT ?", (*params, limit)).fetchall()

    # ------------------------------------------------------------------------------------------------ events

    def notification_targets(self, event: ObjectEvent) -> list[NotificationTarget]:
        """Where ``event`` should be delivered under its bucket's current notification configuration."""
        try:
            config = self.get_bucket_notification(event.bucket)
        except NoSuchBucket:
            return []
        return matching_configurations(config, event)
