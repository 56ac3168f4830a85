"""The data files of the object store: immutable, named by random ids, never by object keys.

Layout under the store root::

    tmp/<id>.tmp          files being written (removed at open: a crash leaves only these)
    data/<id[:2]>/<id>    complete, fsync'd data files; a file is never modified once it is here

A file is written to ``tmp/``, flushed and fsync'd, then ``os.replace``d into ``data/`` and the directory is
fsync'd.  Whether a data file belongs to an object is decided only by the metadata database; ``gc`` removes the
files it does not reference (what a crash between writing a file and committing its metadata leaves behind).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from squall.store.blobs import Written, chunks_of
from squall.store.disk import DiskFull, is_disk_full

__all__ = ["DataFiles", "Written", "fsync_dir"]

_COPY_CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DataFiles:
    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self.tmp_dir = root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for i in range(256):
            (self.data_dir / f"{i:02x}").mkdir(exist_ok=True)
        fsync_dir(self.data_dir)
        fsync_dir(root)

    def path(self, file_id: str) -> Path:
        if len(file_id) != 32 or not all(c in "0123456789abcdef" for c in file_id):
            raise ValueError(f"not a data file id: {file_id!r}")
        return self.data_dir / file_id[:2] / file_id

    def open(self, file_id: str) -> BinaryIO:
        return open(self.path(file_id), "rb")

    def write(self, data: bytes | BinaryIO | Iterable[bytes]) -> Written:
        """Write ``data`` to a new data file, durably; nothing of it is left behind if this raises."""
        file_id = uuid.uuid4().hex
        tmp = self.tmp_dir / f"{file_id}.tmp"
        md5 = hashlib.md5()
        size = 0
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), "wb") as f:
                for chunk in chunks_of(data):
                    f.write(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            self._place(tmp, file_id)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if is_disk_full(e):
                raise DiskFull(self.data_dir.parent) from e
            raise
        return Written(file_id, size, md5.digest())

    def concat(self, file_ids: Iterable[str]) -> Written:
        """A new data file holding the given files one after another (``md5`` is of the whole)."""

        def parts() -> Iterator[bytes]:
            for fid in file_ids:
                with self.open(fid) as src:
                    while chunk := src.read(_COPY_CHUNK):
                        yield chunk

        return self.write(parts())

    def link(self, file_id: str) -> str:
        """A new data file with the same content (a hard link: data files are immutable), or a copy."""
        new_id = uuid.uuid4().hex
        try:
            os.link(self.path(file_id), self.path(new_id))
        except OSError:
            tmp = self.tmp_dir / f"{new_id}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                with self.open(file_id) as src, os.fdopen(fd, "wb") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
                    dst.flush()
                    os.fsync(dst.fileno())
                self._place(tmp, new_id)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return new_id
        fsync_dir(self.path(new_id).parent)
        return new_id

    def _place(self, tmp: Path, file_id: str) -> None:
        final = self.path(file_id)
        os.replace(tmp, final)
        fsync_dir(final.parent)

    def unlink(self, file_ids: Iterable[str]) -> None:
        """Remove data files no metadata points to any more (best effort: ``gc`` catches what is left)."""
        for fid in file_ids:
            if not fid:  # an object stored inline in the database has no data file
                continue
            try:
                self.path(fid).unlink(missing_ok=True)
            except OSError:
                pass

    def gc(self, referenced: set[str]) -> int:
        """Remove every temporary file and every data file not in ``referenced``; returns how many."""
        removed = 0
        for entry in self.tmp_dir.iterdir():
            entry.unlink(missing_ok=True)
            removed += 1
        for sub in self.data_dir.iterdir():
            if not sub.is_dir():
                continue
            for entry in sub.iterdir():
                if entry.name not in referenced:
                    entry.unlink(missing_ok=True)
                    removed += 1
        return removed
