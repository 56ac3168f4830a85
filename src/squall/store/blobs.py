"""Data in the database, chunked: what the S3 store's ``DataFiles`` does with files, for cluster mode (PostgreSQL).

Every node must see every object, so with ``SQUALL_DATABASE_URL`` the data lives in PostgreSQL next to the metadata:
``blob_files`` names each data "file" (an id, its size, when it was written) and ``blob_chunks`` holds its bytes in
``CHUNK`` (1 MiB) rows.  Writes stream: one chunk in memory at a time, each chunk its own short statement (no
transaction spans a whole upload); reads fetch one chunk per ``read`` as the response is sent.  As with files, a
data file is immutable once written and an object points at it only when the metadata transaction commits; a crash
in between leaves an unreferenced data file, removed by ``gc`` once older than ``ORPHAN_AGE_S`` (never one another
node is still writing).  Copies (CopyObject) and multipart concatenation copy chunks inside the database.
``blob_names`` gives data files a content-addressed name (code packages: ``code/<sha256>``), kept until deleted.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from squall.store.db import DbTarget, migrate, open_connection

__all__ = ["CHUNK", "ORPHAN_AGE_S", "DbDataFiles", "Written", "chunks_of"]

CHUNK = 1 << 20
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Written:
    """A data file now in place: its id, size and MD5 digest (raw bytes)."""

    file_id: str
    size: int
    md5: bytes


def chunks_of(data: bytes | BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    """``data`` (bytes, a readable file, or an iterable of bytes) in pieces of at most 1 MiB."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for pos in range(0, len(view), _COPY_CHUNK):
            yield bytes(view[pos : pos + _COPY_CHUNK])
        return
    read = getattr(data, "read", None)
    if callable(read):
        while True:
            chunk = read(_COPY_CHUNK)
            if not chunk:
                return
            yield chunk
        return
    yield from data


#: an unreferenced data file younger than this may be an upload still in progress on some node
ORPHAN_AGE_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blob_files (
    file_id TEXT PRIMARY KEY,
    size INTEGER,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_names (
    name TEXT PRIMARY KEY,
    file_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_chunks (
    file_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (file_id, n)
);
"""


class _ChunkReader(io.RawIOBase):
    """A data file, read one chunk at a time (seekable; the ranges of GetObject seek)."""

    def __init__(self, files: DbDataFiles, file_id: str, size: int) -> None:
        self._files = files
        self._id = file_id
        self._size = size
        self._pos = 0
        self._chunk_n = -1
        self._chunk = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        left = self._size - self._pos
        if left <= 0:
            return b""
        want = left if size is None or size < 0 else min(size, left)
        out = bytearray()
        while want > 0:
            n, off = divmod(self._pos, CHUNK)
            if n != self._chunk_n:
                self._chunk, self._chunk_n = self._files.chunk(self._id, n), n
            piece = self._chunk[off : off + want]
            if not piece:
                break
            out += piece
            self._pos += len(piece)
            want -= len(piece)
        return bytes(out)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class DbDataFiles:
    """The ``DataFiles`` interface over a database connection (its own: a long upload never holds the metadata's)."""

    def __init__(self, target: DbTarget) -> None:
        self._conn = open_connection(target, bulk=True)
        self._lock = threading.Lock()
        migrate(self._conn, "blobs", [_SCHEMA])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with self._lock:
            return self._conn.execute(sql, params)

    def named(self, name: str) -> str | None:
        """The data file stored under ``name`` (code packages: ``code/<sha256>``), or None."""
        row = self._exec("SELECT file_id FROM blob_names WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def put_named(self, name: str, data: bytes) -> str:
        """Store ``data`` under ``name`` once (content-addressed names: a second writer's copy is dropped)."""
        existing = self.named(name)
        if existing is not None:
            return existing
        written = self.write(data)
        row = self._exec(
            "INSERT INTO blob_names (name, file_id) VALUES (?, ?) ON CONFLICT (name) DO NOTHING RETURNING file_id",
            (name, written.file_id),
        ).fetchone()
        if row is None:  # another node stored it meanwhile
            self.unlink([written.file_id])
            return self.named(name) or ""
        return written.file_id

    def read_named(self, name: str) -> bytes | None:
        """The whole of a (small: code packages are at most 50 MB) named data file, or None."""
        file_id = self.named(name)
        if file_id is None:
            return None
        with self.open(file_id) as f:
            return f.read()

    def chunk(self, file_id: str, n: int) -> bytes:
        row = self._exec("SELECT data FROM blob_chunks WHERE file_id = ? AND n = ?", (file_id, n)).fetchone()
        return bytes(row[0]) if row else b""

    def open(self, file_id: str) -> BinaryIO:
        row = self._exec("SELECT size FROM blob_files WHERE file_id = ?", (file_id,)).fetchone()
        if row is None or row[0] is None:
            raise FileNotFoundError(f"data file {file_id} is missing")
        return io.BufferedReader(_ChunkReader(self, file_id, int(row[0])), CHUNK)

    def write(self, data: bytes | BinaryIO | Iterable[bytes]) -> Written:
        """Store ``data`` chunk by chunk; nothing of it is left behind if this raises."""
        file_id = uuid.uuid4().hex
        md5 = hashlib.md5()
        size = 0
        self._exec("INSERT INTO blob_files (file_id, size, created_at) VALUES (?, NULL, ?)", (file_id, time.time()))
        try:
            buf = bytearray()
            n = 0
            for piece in chunks_of(data):
                md5.update(piece)
                size += len(piece)
                buf += piece
                while len(buf) >= CHUNK:
                    self._exec(
                        "INSERT INTO blob_chunks (file_id, n, data) VALUES (?, ?, ?)", (file_id, n, bytes(buf[:CHUNK]))
                    )
                    del buf[:CHUNK]
                    n += 1
            if buf:
                self._exec("INSERT INTO blob_chunks (file_id, n, data) VALUES (?, ?, ?)", (file_id, n, bytes(buf)))
            self._exec("UPDATE blob_files SET size = ? WHERE file_id = ?", (size, file_id))
        except BaseException:
            self.unlink([file_id])
            raise
        return Written(file_id, size, md5.digest())

    def concat(self, file_ids: Iterable[str]) -> Written:
        """A new data file holding the given ones one after another (re-chunked: parts need not be whole chunks)."""
        ids = list(file_ids)

        def pieces() -> Iterable[bytes]:
            for fid in ids:
                with self.open(fid) as src:
                    while piece := src.read(CHUNK):
                        yield piece

        return self.write(pieces())

    def link(self, file_id: str) -> str:
        """A copy of ``file_id`` (copied inside the database, chunk rows and all)."""
        new_id = uuid.uuid4().hex
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.execute(
                    "INSERT INTO blob_files (file_id, size, created_at) SELECT ?, size, ? FROM blob_files "
                    "WHERE file_id = ?",
                    (new_id, time.time(), file_id),
                )
                self._conn.execute(
                    "INSERT INTO blob_chunks (file_id, n, data) SELECT ?, n, data FROM blob_chunks WHERE file_id = ?",
                    (new_id, file_id),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return new_id

    def unlink(self, file_ids: Iterable[str]) -> None:
        for fid in file_ids:
            if fid:
                self._exec("DELETE FROM blob_chunks WHERE file_id = ?", (fid,))
                self._exec("DELETE FROM blob_files WHERE file_id = ?", (fid,))

    def gc(self, referenced: set[str]) -> int:
        """Remove data files no object or part points to and older than ``ORPHAN_AGE_S``; returns how many."""
        old = [
            r[0]
            for r in self._exec(
                "SELECT file_id FROM blob_files WHERE created_at < ? AND file_id NOT IN (SELECT file_id FROM blob_names)",
                (time.time() - ORPHAN_AGE_S,),
            ).fetchall()
            if r[0] not in referenced
        ]
        self.unlink(old)
        return len(old)
