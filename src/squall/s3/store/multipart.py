"""Multipart uploads of the object store: create, upload part, list parts, complete, abort, list uploads.

Each part is its own data file; completing concatenates them into a new data file, switches the object to it in
one transaction and then removes the parts.  The ETag is S3's: the MD5 of the concatenated binary part MD5s,
then ``-<number of parts>``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import BinaryIO

from squall.s3.errors import (
    BadDigest,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    MalformedXML,
    NoSuchUpload,
)
from squall.s3.store.base import UPSERT_OBJECT, StoreBase, check_key, decode_key
from squall.s3.store.events import EventOrigin
from squall.s3.store.types import ObjectAttrs, ObjectBody, ObjectMeta, Part, Upload

__all__ = ["MAX_PART_NUMBER", "MultipartMixin"]

MAX_PART_NUMBER = 10000


def _unquote_etag(etag: str) -> str:
    return etag.strip().strip('"').lower()


class MultipartMixin(StoreBase):
    def create_multipart_upload(self, bucket: str, key: str, attrs: ObjectAttrs | None = None) -> Upload:
        """Start an upload; its id is what the other calls take."""
        raw = check_key(key)
        upload = Upload(uuid.uuid4().hex, bucket, key, self.clock.now(), attrs or ObjectAttrs())
        with self._tx() as db:
            self._require_bucket(db, bucket)
            db.execute(
                "INSERT INTO uploads (upload_id, bucket, key, initiated, attrs) VALUES (?, ?, ?, ?, ?)",
                (upload.upload_id, bucket, raw, upload.initiated, upload.attrs.to_json()),
            )
        return upload

    def get_upload(self, bucket: str, key: str, upload_id: str) -> Upload:
        rows = self._query(
            "SELECT initiated, attrs FROM uploads WHERE upload_id = ? AND bucket = ? AND key = ?",
            (upload_id, bucket, check_key(key)),
        )
        if not rows:
            self._require_bucket_exists(bucket)
            raise NoSuchUpload(upload_id)
        return Upload(upload_id, bucket, key, rows[0][0], ObjectAttrs.from_json(rows[0][1]))

    def _require_bucket_exists(self, bucket: str) -> None:
        with self._lock:
            self._require_bucket(self._db, bucket)

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: bytes | BinaryIO | Iterable[bytes],
        *,
        expected_md5: bytes | None = None,
    ) -> Part:
        """Store one part (replacing an earlier part of the same number); returns it with its quoted ETag."""
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise InvalidArgument(
                f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive.",
                {"ArgumentName": "partNumber", "ArgumentValue": str(part_number)},
            )
        self.get_upload(bucket, key, upload_id)
        self._writable(len(data) if isinstance(data, (bytes, bytearray, memoryview)) else 0)
        written = self.files.write(data)
        now = self.clock.now()
        try:
            if expected_md5 is not None and written.md5 != expected_md5:
                raise BadDigest("The Content-MD5 you specified did not match what we received.")
            etag = f'"{written.md5.hex()}"'
            with self._tx() as db:
                if db.execute("SELECT 1 FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone() is None:
                    raise NoSuchUpload(upload_id)
                old = db.execute(
                    "SELECT file_id FROM parts WHERE upload_id = ? AND part_number = ?", (upload_id, part_number)
                ).fetchone()
                db.execute(
                    "INSERT INTO parts (upload_id, part_number, file_id, size, etag, last_modified) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (upload_id, part_number) DO UPDATE SET "
                    "file_id = excluded.file_id, size = excluded.size, etag = excluded.etag, "
                    "last_modified = excluded.last_modified",
                    (upload_id, part_number, written.file_id, written.size, etag, now),
                )
        except BaseException:
            self.files.unlink([written.file_id])
            raise
        if old is not None:
            self.files.unlink([old[0]])
        return Part(part_number, etag, written.size, now)

    def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        src_bucket: str,
        src_key: str,
        byte_range: tuple[int, int] | None = None,
    ) -> Part:
        """A part copied from (a ``(first, last)`` byte range of) another object."""
        with self.get_object(src_bucket, src_key) as body:
            if byte_range is not None:
                body.select(byte_range, f"bytes={byte_range[0]}-{byte_range[1]}")
            return self.upload_part(bucket, key, upload_id, part_number, body.chunks())

    def list_parts(
        self, bucket: str, key: str, upload_id: str, *, part_number_marker: int = 0, max_parts: int = 1000
    ) -> tuple[list[Part], bool]:
        """Parts after ``part_number_marker``, at most ``max_parts``; and whether there are more."""
        self.get_upload(bucket, key, upload_id)
        rows = self._query(
            "SELECT part_number, etag, size, last_modified FROM parts WHERE upload_id = ? AND part_number > ? "
            "ORDER BY part_number LIMIT ?",
            (upload_id, part_number_marker, max_parts + 1),
        )
        parts = [Part(*r) for r in rows[:max_parts]]
        return parts, len(rows) > max_parts

    def list_uploads(self, bucket: str, *, prefix: str = "", max_uploads: int = 1000) -> tuple[list[Upload], bool]:
        """In-progress uploads of ``bucket`` whose key starts with ``prefix``, by key then initiation time."""
        self._require_bucket_exists(bucket)
        raw_prefix = prefix.encode("utf-8")
        rows = self._query(
            "SELECT upload_id, key, initiated, attrs FROM uploads WHERE bucket = ? AND substr(key, 1, ?) = ? "
            "ORDER BY key, initiated LIMIT ?",
            (bucket, len(raw_prefix), raw_prefix, max_uploads + 1),
        )
        uploads = [Upload(r[0], bucket, decode_key(r[1]), r[2], ObjectAttrs.from_json(r[3])) for r in rows]
        return uploads[:max_uploads], len(uploads) > max_uploads

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.get_upload(bucket, key, upload_id)
        with self._tx(write=False) as db:
            files = [r[0] for r in db.execute("SELECT file_id FROM parts WHERE upload_id = ?", (upload_id,))]
            db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
            db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        self.files.unlink(files)

    def _checked_parts(self, upload_id: str, requested: Sequence[tuple[int, str]]) -> list[tuple[str, int, str]]:
        """(file id, size, etag) of the requested parts, after S3's checks."""
        if not requested:
            raise MalformedXML("You must specify at least one part.")
        stored = {
            r[0]: (r[1], r[2], r[3])
            for r in self._query("SELECT part_number, file_id, size, etag FROM parts WHERE upload_id = ?", (upload_id,))
        }
        numbers = [number for number, _ in requested]
        if any(b <= a for a, b in pairwise(numbers)):
            raise InvalidPartOrder(
                "The list of parts was not in ascending order. Parts must be ordered by part number.",
                {"UploadId": upload_id},
            )
        out: list[tuple[str, int, str]] = []
        for number, etag in requested:
            part = stored.get(number)
            if part is None or _unquote_etag(part[2]) != _unquote_etag(etag):
                raise InvalidPart(
                    "One or more of the specified parts could not be found. The part may not have been uploaded, "
                    "or the specified entity tag may not match the part's entity tag.",
                    {"UploadId": upload_id, "PartNumber": str(number), "ETag": etag},
                )
            out.append(part)
        for (number, _), part in zip(requested[:-1], out[:-1], strict=True):
            if part[1] < self.min_part_size:
                raise EntityTooSmall(
                    f"Your proposed upload is smaller than the minimum allowed size: part {number} has "
                    f"{part[1]} bytes; every part but the last must be at least {self.min_part_size} bytes.",
                    {"UploadId": upload_id, "PartNumber": str(number), "ProposedSize": str(part[1])},
                )
        return out

    def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        *,
        origin: EventOrigin | None = None,
    ) -> ObjectMeta:
        """Assemble ``parts`` (``(part number, etag)``, ascending) into the object; emits
        ``ObjectCreated:CompleteMultipartUpload``."""
        upload = self.get_upload(bucket, key, upload_id)
        chosen = self._checked_parts(upload_id, parts)
        written = self.files.concat(p[0] for p in chosen)
        digest = hashlib.md5(b"".join(bytes.fromhex(_unquote_etag(p[2])) for p in chosen)).hexdigest()
        etag = f'"{digest}-{len(chosen)}"'
        now = self.clock.now()
        raw = check_key(key)
        try:
            with self._tx() as db:
                self._require_bucket(db, bucket)
                if db.execute("SELECT 1 FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone() is None:
                    raise NoSuchUpload(upload_id)
                part_files = [r[0] for r in db.execute("SELECT file_id FROM parts WHERE upload_id = ?", (upload_id,))]
                old = db.execute("SELECT file_id FROM objects WHERE bucket = ? AND key = ?", (bucket, raw)).fetchone()
                db.execute(
                    "INSERT INTO objects (bucket, key, file_id, size, etag, last_modified, attrs, "
                    f"parts_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?) {UPSERT_OBJECT}",
                    (bucket, raw, written.file_id, written.size, etag, now, upload.attrs.to_json(), len(chosen)),
                )
                db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
                db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
                seq = self._next_sequencer(db, bucket)
                events = self._in_tx(
                    db,
                    [self._event(bucket, key, "ObjectCreated:CompleteMultipartUpload", seq, now, origin, written.size,
                                 etag)],
                )  # fmt: skip
        except BaseException:
            self.files.unlink([written.file_id])
            raise
        self.files.unlink(part_files + ([old[0]] if old else []))
        meta = ObjectMeta(bucket, key, written.size, etag, now, upload.attrs, len(chosen))
        self._emit(events)
        return meta

    # Provided by ObjectStore; declared for the type checker.
    def get_object(self, bucket: str, key: str) -> ObjectBody:  # pragma: no cover - overridden
        raise NotImplementedError
