"""The data directory at rest: its permissions, and what happens when its disk is full.

Permissions: the data directory is 0700 and every file in it 0600 (directories 0700), created that way and fixed
at every start for a directory made by an older Squall.  The extracted code trees (``code/code/<digest>/``,
``staged/``) keep their read-only 0444/0555 modes: sandboxes read them through a bind mount at /var/task as a uid that
is not the owner (the mount is made as root, so the 0700 directories above them do not stand in the way).

A full disk: writes fail with ``DiskFull`` (S3: 503 ServiceUnavailable, SQS: 503 ServiceUnavailable, Lambda: 500
ServiceException; the message says the disk is full and what to do) before anything is half-written; deletes and
reads keep working.  Deleting needs a little space too (SQLite appends to its WAL before it can free pages), so the
``DiskGuard`` keeps a reserve file (``<data dir>/.reserve``, ``SQUALL_DISK_RESERVE_MB``) that it releases when
free space runs out, and writes are refused while the reserve is released; it is re-created once there is room
again.  The server starts on a full disk (the reserve is released first, so SQLite can open its WAL files).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from squall.core.errors import ServiceError

__all__ = [
    "RESERVE_FILE",
    "DiskFull",
    "DiskGuard",
    "create_private_file",
    "is_disk_full",
    "secure_data_dir",
]

log = logging.getLogger("squall.store")

RESERVE_FILE = ".reserve"
#: trees sandboxes read through a bind mount: their modes are the code store's (read-only for everyone)
#: trees sandboxes read, whose files are hard links of files elsewhere (the code store's, the server's own Python
#: packages for /var/runtime, merged layers for /opt): a chmod here would change those files too
_SANDBOX_READABLE = (("code", "code"), ("staged",), ("runtime",), ("opt",))


class DiskFull(ServiceError):
    """A write was refused because the data directory's disk is full."""

    status = 503
    codes: ClassVar[Mapping[str, tuple[str, int]]] = {
        "s3": ("ServiceUnavailable", 503),
        "sqs": ("ServiceUnavailable", 503),
        "*": ("ServiceException", 500),
    }

    def __init__(self, where: Path | str, detail: str = "") -> None:
        super().__init__(
            f"Squall's disk is full ({where}): writes are refused until space is freed. Delete objects, functions "
            f"or queues (deletes and reads keep working), or free space on that volume.{detail}"
        )
        self.code = "ServiceException"

    def code_for(self, service: str) -> str:
        return self.codes.get(service, self.codes["*"])[0]

    def status_for(self, service: str) -> int:
        return self.codes.get(service, self.codes["*"])[1]


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from the OS, or SQLite's "database or disk is full"."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "database or disk is full" in text or "disk is full" in text
    return False


def create_private_file(path: Path | str) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (SQLite then gives its -wal/-shm the same mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass


def _skipped(rel: tuple[str, ...]) -> bool:
    """Inside a tree sandboxes read (the tree's own directory is still made 0700)."""
    return any(len(rel) > len(prefix) and rel[: len(prefix)] == prefix for prefix in _SANDBOX_READABLE)


def secure_data_dir(data_dir: Path) -> int:
    """Make ``data_dir`` 0700 and what is in it owner-only (dirs 0700, files lose their group/other bits); the
    code trees sandboxes read keep their modes.  Returns how many modes were changed."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    changed = 0
    if stat.S_IMODE(data_dir.stat().st_mode) != 0o700:
        os.chmod(data_dir, 0o700)
        changed += 1
    for root, dirs, files in os.walk(data_dir):
        rel = Path(root).relative_to(data_dir).parts
        keep = []
        for name in dirs:
            sub = (*rel, name)
            path = os.path.join(root, name)
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                continue
            if _skipped(sub):
                continue
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700 | 0o700)
                changed += 1
            keep.append(name)
        dirs[:] = keep
        for name in files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
                changed += 1
    return changed


class DiskGuard:
    """Free space of the data directory's filesystem, and the reserve that keeps deletes possible when it is full."""

    def __init__(self, data_dir: Path, reserve_bytes: int) -> None:
        self.data_dir = data_dir
        self.reserve_bytes = max(0, reserve_bytes)
        self.reserve = data_dir / RESERVE_FILE
        self._lock = threading.Lock()
        #: writes are refused while the reserve is released (set when free space ran out)
        self.full = False

    def free_bytes(self) -> int:
        st = os.statvfs(self.data_dir)
        return st.f_bavail * st.f_frsize

    def start(self) -> None:
        """At server start, before the stores open: on a full disk refuse writes from the start; keep a reserve of
        the configured size, or of half the free space when that is all there is (SQLite needs the other half
        to open its WAL files), so a delete always has room once the disk fills."""
        if not self.reserve_bytes:
            return
        if self.free_bytes() < self.reserve_bytes // 2:
            self.full = True
            log.warning("the disk of %s is full: writes are refused until space is freed", self.data_dir)
        if not self.reserve.exists():
            free = self.free_bytes()
            self._create(self.reserve_bytes if free >= self.reserve_bytes * 3 // 2 else free // 2)

    def _create(self, size: int) -> bool:
        if size < 64 * 1024:
            return False
        tmp = self.reserve.with_name(RESERVE_FILE + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
            os.replace(tmp, self.reserve)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if not is_disk_full(e):
                log.warning("could not create the disk reserve %s: %s", self.reserve, e)
            return False
        return True

    def _try_recover(self) -> bool:
        """After the disk was full: accept writes again once there is room for a full reserve and half as much
        again (re-creating the reserve)."""
        with self._lock:
            if not self.full:
                return True
            try:
                size = self.reserve.stat().st_size
            except FileNotFoundError:
                size = 0
            if self.free_bytes() < self.reserve_bytes * 3 // 2:
                return False
            if size < self.reserve_bytes and not self._create(self.reserve_bytes):
                return False
            self.full = False
            return True

    def release(self) -> None:
        """Free the reserve (the disk is full: deletes need the room)."""
        with self._lock:
            self.full = True
            try:
                self.reserve.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("could not release the disk reserve %s: %s", self.reserve, e)

    def check_write(self, nbytes: int = 0) -> None:
        """Raise ``DiskFull`` unless ``nbytes`` more (plus some slack) fit without touching the reserve."""
        if not self.reserve_bytes:
            return
        if self.full and not self._try_recover():
            raise DiskFull(self.data_dir)
        if self.free_bytes() < nbytes + self.reserve_bytes // 4:
            raise DiskFull(self.data_dir)

    def before_delete(self) -> bool:
        """Make room for the journal of a delete when free space is nearly gone; True if space is still short
        (no reserve was left to release: the caller may shrink its WAL)."""
        if self.reserve_bytes and self.free_bytes() < self.reserve_bytes // 4:
            self.release()
            return self.free_bytes() < self.reserve_bytes // 4
        return False

    def failed(self, exc: BaseException) -> DiskFull | None:
        """For an exception from a write: ``DiskFull`` (the reserve released) if it was the disk, else None."""
        if not is_disk_full(exc):
            return None
        self.release()
        return DiskFull(self.data_dir)
