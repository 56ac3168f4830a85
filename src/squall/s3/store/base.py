"""The shared core of ``ObjectStore``: its SQLite metadata database, the lock, name checks and event emission.

Metadata lives in one SQLite database (``objects.db``, WAL, ``synchronous=FULL``) rather than sidecar JSON files:

* a commit is the single atomic switch that makes a new data file an object's content, so data and metadata
  can never disagree after a crash (sidecars would need their own rename dance per key, and a put that replaces
  an object would touch two files non-atomically);
* keys are stored as UTF-8 BLOBs, which SQLite compares with memcmp: listings come out in S3's UTF-8 byte order
  straight from the primary-key index, with prefix/start-after seeks and no directory scans;
* multi-object operations (DeleteObjects, CompleteMultipartUpload, the per-bucket event sequencer) are one
  transaction each.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

from squall.core.clock import Clock, SystemClock
from squall.core.errors import ServiceError
from squall.s3.errors import InvalidArgument, InvalidBucketName, KeyTooLong, NoSuchBucket
from squall.s3.store.events import EventOrigin, ObjectEvent
from squall.s3.store.files import DataFiles
from squall.s3.store.types import ObjectAttrs, ObjectMeta
from squall.store.blobs import DbDataFiles
from squall.store.db import PgTarget, migrate, open_connection
from squall.store.disk import DiskFull, DiskGuard, create_private_file, is_disk_full

__all__ = ["MIN_PART_SIZE", "OWNER_ID", "UPSERT_OBJECT", "StoreBase", "check_bucket_name", "check_key"]

MIN_PART_SIZE = 5 * 1024 * 1024
#: The canonical user id every bucket and object is owned by (Squall has a single tenant).
OWNER_ID = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    region TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    notification TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    file_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    last_modified REAL NOT NULL,
    attrs TEXT NOT NULL,
    parts_count INTEGER,
    inline BLOB,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    initiated REAL NOT NULL,
    attrs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, initiated);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    file_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    last_modified REAL NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
"""

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
#: S3's reserved prefixes and suffixes (general purpose bucket naming rules; access point aliases, Object Lambda,
#: Multi-Region Access Points, directory and table buckets end in the suffixes)
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
OBJECT_COLUMNS = "key, size, etag, last_modified, attrs, parts_count"
#: the upsert clause of an INSERT INTO objects (what SQLite's INSERT OR REPLACE did, in a form PostgreSQL shares)
UPSERT_OBJECT = (
    "ON CONFLICT (bucket, key) DO UPDATE SET file_id = excluded.file_id, size = excluded.size, etag = excluded.etag, "
    "last_modified = excluded.last_modified, attrs = excluded.attrs, parts_count = excluded.parts_count, "
    "inline = excluded.inline"
)


def check_bucket_name(name: str) -> None:
    """S3's bucket naming rules (3-63 characters of a-z 0-9 . -, no IP addresses, no '..')."""
    if not 3 <= len(name) <= 63:
        raise InvalidBucketName(name, "bucket names must be between 3 and 63 characters long.")
    if not _BUCKET_RE.fullmatch(name):
        raise InvalidBucketName(
            name,
            "bucket names may contain only lower-case letters, digits, dots and hyphens, and must begin and end "
            "with a letter or digit.",
        )
    if ".." in name or ".-" in name or "-." in name:
        raise InvalidBucketName(name, "bucket names must not contain '..', '.-' or '-.'.")
    with contextlib.suppress(ValueError):
        ipaddress.IPv4Address(name)
        raise InvalidBucketName(name, "bucket names must not be formatted as an IP address.")
    for prefix in _RESERVED_PREFIXES:
        if name.startswith(prefix):
            raise InvalidBucketName(name, f"bucket names must not start with the reserved prefix '{prefix}'.")
    for suffix in _RESERVED_SUFFIXES:
        if name.endswith(suffix):
            raise InvalidBucketName(name, f"bucket names must not end with the reserved suffix '{suffix}'.")


def check_key(key: str) -> bytes:
    """The UTF-8 bytes of an object key; 1 to 1024 bytes of valid UTF-8."""
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("Object keys must be valid UTF-8.", {"ArgumentName": "key"})
    if not raw:
        raise InvalidArgument("Object keys must not be empty.", {"ArgumentName": "key"})
    if len(raw) > 1024:
        raise KeyTooLong(len(raw))
    return raw


def decode_key(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else bytes(raw).decode("utf-8")


def row_meta(bucket: str, row: tuple[Any, ...]) -> ObjectMeta:
    """An ``ObjectMeta`` from a row of ``OBJECT_COLUMNS``."""
    return ObjectMeta(
        bucket=bucket,
        key=decode_key(row[0]),
        size=row[1],
        etag=row[2],
        last_modified=row[3],
        attrs=ObjectAttrs.from_json(row[4]),
        parts_count=row[5],
    )


class StoreBase:
    """Opening, locking, the database and event plumbing; the operations live in the subclasses."""

    def __init__(
        self,
        root: Path,
        *,
        on_event: Callable[[ObjectEvent], None] | None = None,
        clock: Clock | None = None,
        min_part_size: int = MIN_PART_SIZE,
        disk: DiskGuard | None = None,
        database: PgTarget | None = None,
        tx_events: Callable[[Any, list[ObjectEvent]], None] | None = None,
    ) -> None:
        """``database``: keep metadata and object data in PostgreSQL (cluster mode) instead of ``root``.
        ``tx_events``: called with the connection and the events of a write *inside* its metadata transaction,
        before the commit (cluster mode: the events' outbox rows, committed with the object or not at all); then
        ``on_event`` after the commit, as without it."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.on_event = on_event
        self.tx_events = tx_events
        self.clock: Clock = clock or SystemClock()
        self.min_part_size = min_part_size
        self._lock = threading.RLock()
        self._lock_fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise ServiceError(f"The object store at {self.root} is already open in another process or instance.")
        #: the data directory's free-space guard (None: no checks)
        self.disk = disk
        self.files: DataFiles | DbDataFiles
        if database is not None:
            self.files = DbDataFiles(PgTarget(database.url, "blobs"))
            self._db = open_connection(database)
            migrate(self._db, "s3", [_SCHEMA])
        else:
            self.files = DataFiles(self.root)
            create_private_file(self.root / "objects.db")  # 0600, and so its -wal/-shm
            self._db = sqlite3.connect(self.root / "objects.db", check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            if "inline" not in {r[1] for r in self._db.execute("PRAGMA table_info(objects)")}:  # made before
                self._db.execute("ALTER TABLE objects ADD COLUMN inline BLOB")
        self.orphans_removed = self._gc()

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if isinstance(self.files, DbDataFiles):
                self.files.close()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _gc(self) -> int:
        referenced = {r[0] for r in self._db.execute("SELECT file_id FROM objects UNION SELECT file_id FROM parts")}
        return self.files.gc(referenced)

    # ----------------------------------------------------------------------------------------------- db helpers

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _writable(self, nbytes: int = 0) -> None:
        """Raise ``DiskFull`` before a write that would not fit (or while the disk is full)."""
        if self.disk is not None:
            self.disk.check_write(nbytes)

    @contextlib.contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction, durable when the block exits without an exception.  ``write=False`` for a delete:
        let through on a full disk (see ``squall.store.disk``), where a write is refused."""
        if self.disk is not None:
            if write:
                self.disk.check_write()
            elif self.disk.before_delete():
                with self._lock, contextlib.suppress(sqlite3.Error):  # no reserve left: shrink the WAL
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error:
                    with contextlib.suppress(sqlite3.Error):  # SQLITE_FULL may leave the transaction open
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                if self.disk is not None:
                    full = self.disk.failed(e)
                else:
                    full = DiskFull(self.root) if is_disk_full(e) else None
                if full is not None:
                    raise full from e
                raise

    def _require_bucket(self, db: sqlite3.Connection, bucket: str) -> None:
        if db.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is None:
            raise NoSuchBucket(bucket)

    def _next_sequencer(self, db: sqlite3.Connection, bucket: str) -> str:
        row = db.execute("UPDATE buckets SET seq = seq + 1 WHERE name = ? RETURNING seq", (bucket,)).fetchone()
        if row is None:
            raise NoSuchBucket(bucket)
        return f"{row[0]:016X}"

    def _in_tx(self, db: sqlite3.Connection, events: list[ObjectEvent]) -> list[ObjectEvent]:
        """The events of the write ``db``'s transaction is making, handed to ``tx_events`` before its commit."""
        if self.tx_events is not None and events:
            self.tx_events(db, events)
        return events

    def _emit(self, events: list[ObjectEvent]) -> None:
        """Hand events to ``on_event``: after the commit (durable), before the API answers, outside the lock."""
        if self.on_event is None:
            return
        for event in events:
            self.on_event(event)

    def _event(
        self,
        bucket: str,
        key: str,
        name: str,
        sequencer: str,
        now: float,
        origin: EventOrigin | None,
        size: int = 0,
        etag: str = "",
    ) -> ObjectEvent:
        return ObjectEvent(
            bucket=bucket,
            key=key,
            event_name=name,
            size=size,
            etag=etag,
            sequencer=sequencer,
            time=now,
            origin=origin or EventOrigin(),
        )
