"""Ephemeral storage (/tmp) on disk, apart from memory, as on Lambda.

A tmpfs /tmp is charged to the memory cgroup of whoever writes it: a function with MemorySize 128 and
EphemeralStorage 512 could not hold 200 MB in /tmp.  Here each instance slot of a function gets its own small ext4
filesystem instead: a sparse image on the data disk (a copy of a once-formatted template: ~0.4 MB written), on a
loop device (``LO_FLAGS_AUTOCLEAR``; buffered: with direct I/O each mount reads the
disk, ~2x slower), mounted *detached* with the new mount API (``fsopen`` /
``fsmount``: no path in the host's mount table; the image file is unlinked as soon as the loop device holds it).
Its page cache is reclaimable, so writing /tmp never OOM-kills an instance; its size is EphemeralStorage (ENOSPC
beyond it).

The node (host root) owns these filesystems; the function zygote only ever receives, per spawn, a fresh detached
clone of its slot's mount (``open_tree(OPEN_TREE_CLONE)``), which the instance moves onto /tmp in its own mount
namespace.  A slot's filesystem is reused by the next instance of that slot (same function, same uid), which
empties it as that uid before any user code runs; it is released with the function's zygote.  When the node dies,
its descriptors close and the kernel frees everything (no stale mounts or images to clean up).

First use of a slot costs ~1.2 ms of CPU and ~3 ms of wall time in a worker thread of the node; later instances of
the slot ~0.02 ms.  Without root or loop devices the instance falls back to a size-limited tmpfs (charged to its
memory) and the node says so once.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import struct
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["EXECUTOR", "EphemeralStorage", "available"]

log = logging.getLogger("squall.node")

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_OPEN_TREE, _SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 428, 430, 431, 432
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_FLAG, _FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 0, 1, 6
_FSMOUNT_CLOEXEC = 1
_MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV, _MOUNT_ATTR_NOATIME = 0x2, 0x4, 0x10
_OPEN_TREE_CLONE, _AT_EMPTY_PATH = 1, 0x1000
_LOOP_CTL_GET_FREE, _LOOP_CONFIGURE = 0x4C82, 0x4C0A
_LO_FLAGS_AUTOCLEAR = 4

#: where new slots' filesystems are made: creating one is mostly waiting (an RCU grace period in LOOP_CONFIGURE,
#: block reads through the loop worker at mount), so many at once share those waits (a burst of new slots)
EXECUTOR = ThreadPoolExecutor(max_workers=32, thread_name_prefix="squall-tmp")


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def available() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/loop-control")


_LOOP_CTL_ADD = 0x4C80
_fresh_lock = threading.Lock()
_fresh_next = -1


def _fresh_loop_number(ctl: int) -> int:
    """A loop device nobody else in this process is trying: a new one (LOOP_CTL_ADD) above the existing ones."""
    global _fresh_next
    with _fresh_lock:
        if _fresh_next < 0:
            existing = [int(n[4:]) for n in os.listdir("/dev") if n.startswith("loop") and n[4:].isdigit()]
            _fresh_next = max(existing, default=-1) + 1
        while True:
            n = _fresh_next
            _fresh_next += 1
            try:
                fcntl.ioctl(ctl, _LOOP_CTL_ADD, n)
                return n
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise


def _loop_attach(image: Path) -> int:
    """Attach ``image`` to a free loop device (auto-cleared when its last user goes); returns the device's fd.

    A free device is asked of the kernel (LOOP_CTL_GET_FREE); threads creating slots at the same time all get the
    same one and all but one lose the race (EBUSY), so after a few losses a thread adds a device of its own."""
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for attempt in range(64):
            n = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE) if attempt < 2 else _fresh_loop_number(ctl)
            dev = f"/dev/loop{n}"
            if not os.path.exists(dev):
                with contextlib.suppress(FileExistsError):
                    os.mknod(dev, 0o600 | 0o060000, os.makedev(7, n))
            lfd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
            info = struct.pack("QQQQQIIII64s64s32sQQ", 0, 0, 0, 0, 0, 0, 0, 0, _LO_FLAGS_AUTOCLEAR, b"", b"", b"", 0, 0)
            try:
                fcntl.ioctl(lfd, _LOOP_CONFIGURE, struct.pack("II", backing, 0) + info + bytes(64))
                return lfd
            except OSError as e:
                os.close(lfd)
                if e.errno != errno.EBUSY:  # EBUSY: taken by someone else meanwhile: try another one
                    raise
        raise OSError(errno.EBUSY, "no free loop device")
    finally:
        os.close(ctl)
        os.close(backing)


def _fsmount(device: str) -> int:
    """A detached ext4 mount of ``device`` (nosuid, nodev, noatime, discard, noinit_itable); returns its fd."""
    fsfd = _check(_libc.syscall(_SYS_FSOPEN, b"ext4", _FSOPEN_CLOEXEC), "fsopen")
    try:
        _check(_libc.syscall(_SYS_FSCONFIG, fsfd, _FSCONFIG_SET_STRING, b"source", device.encode(), 0), "fsconfig")
        _check(_libc.syscall(_SYS_FSCONFIG, fsfd, _FSCONFIG_SET_FLAG, b"discard", None, 0), "fsconfig discard")
        # no background zeroing of inode tables (a kernel thread per mount writing ~8 MB per 512 MB): the
        # filesystem never outlives the node, so nothing will ever fsck it
        _check(
            _libc.syscall(_SYS_FSCONFIG, fsfd, _FSCONFIG_SET_FLAG, b"noinit_itable", None, 0), "fsconfig noinit_itable"
        )
        _check(_libc.syscall(_SYS_FSCONFIG, fsfd, _FSCONFIG_CMD_CREATE, None, None, 0), "fsconfig create")
        attrs = _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV | _MOUNT_ATTR_NOATIME
        return _check(_libc.syscall(_SYS_FSMOUNT, fsfd, _FSMOUNT_CLOEXEC, attrs), "fsmount")
    finally:
        os.close(fsfd)


def _clone(mount_fd: int) -> int:
    return _check(
        _libc.syscall(_SYS_OPEN_TREE, mount_fd, b"", _OPEN_TREE_CLONE | _AT_EMPTY_PATH | os.O_CLOEXEC), "open_tree"
    )


def _copy_sparse(src: Path, dst: Path) -> None:
    with open(src, "rb") as s, open(dst, "wb") as d:
        size = os.fstat(s.fileno()).st_size
        off = 0
        while off < size:
            try:
                data = os.lseek(s.fileno(), off, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(s.fileno(), data, os.SEEK_HOLE)
            while data < hole:
                data += os.copy_file_range(s.fileno(), d.fileno(), hole - data, data, data)
            off = hole
        os.ftruncate(d.fileno(), size)
    os.chmod(dst, 0o600)


def _mkfs(image: Path, size_bytes: int) -> None:
    with open(image, "wb") as f:
        f.truncate(size_bytes)
    os.chmod(image, 0o600)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", "-i", "16384",
         "-E", "lazy_itable_init=1,nodiscard,root_owner=0:0", str(image)],
        check=True, capture_output=True, env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"},
    )  # fmt: skip


class _Templates:
    """One formatted image per size (root directory 1777, no lost+found), whose free space is at least the size
    asked for and less than one more MB: an instance can write exactly EphemeralStorage."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._made: dict[int, Path] = {}

    def get(self, size_mb: int) -> Path:
        with self._lock:
            path = self._made.get(size_mb)
            if path is not None and path.exists():
                return path
            self.root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
            path = self.root / f"ext4-{size_mb}m.img"
            want = size_mb << 20
            size = want + (1 << 20)
            for _ in range(4):
                tmp = self.root / f".{path.name}.{uuid.uuid4().hex[:8]}"
                _mkfs(tmp, size)
                free = self._finish(tmp)
                if want <= free < want + (1 << 20):
                    os.replace(tmp, path)
                    self._made[size_mb] = path
                    return path
                tmp.unlink()
                size += want + (512 << 10) - free  # aim at half a MB over
            raise OSError(f"could not size an ext4 image for {size_mb} MB of /tmp")

    @staticmethod
    def _finish(image: Path) -> int:
        """Make the root 1777 and drop lost+found; return the bytes available for files."""
        lfd = _loop_attach(image)
        try:
            mfd = _fsmount(f"/proc/self/fd/{lfd}")
        finally:
            os.close(lfd)
        try:
            root = f"/proc/self/fd/{mfd}"
            with contextlib.suppress(OSError):
                os.rmdir(f"{root}/lost+found")
            os.chmod(root, 0o1777)
            st = os.statvfs(root)
            return st.f_bavail * st.f_frsize
        finally:
            os.close(mfd)


class EphemeralStorage:
    """The /tmp filesystems of one function zygote's instance slots, held by the node."""

    def __init__(self, data_dir: Path, size_mb: int) -> None:
        self.dir = data_dir / "tmp"
        self.size_mb = size_mb
        self._mounts: dict[int, int] = {}
        self._creating: dict[int, threading.Lock] = {}
        self._spares: dict[int, int] = {}
        self._lock = threading.Lock()
        self.closed = False

    _templates: dict[Path, _Templates] = {}

    def _template(self) -> Path:
        t = EphemeralStorage._templates.setdefault(self.dir, _Templates(self.dir / "templates"))
        return t.get(self.size_mb)

    def _create(self) -> int:
        template = self._template()
        image = self.dir / f"{uuid.uuid4().hex}.img"
        _copy_sparse(template, image)
        try:
            lfd = _loop_attach(image)
        finally:
            image.unlink()  # the loop device holds it; the space goes when the loop device does
        try:
            return _fsmount(f"/proc/self/fd/{lfd}")
        finally:
            os.close(lfd)

    def instance_mount(self, slot: int) -> int:
        """A detached clone of ``slot``'s /tmp filesystem (created on first use), for one instance: the caller
        passes it to the zygote and closes it."""
        with self._lock:
            if self.closed:
                raise OSError(errno.ESHUTDOWN, "ephemeral storage released")
            creating = self._creating.setdefault(slot, threading.Lock())
        with creating:  # slots are created in parallel; one slot once
            if slot not in self._mounts:
                new = self._create()
                with self._lock:
                    if self.closed:
                        os.close(new)
                    else:
                        self._mounts[slot] = new
            with self._lock:
                if self.closed:
                    raise OSError(errno.ESHUTDOWN, "ephemeral storage released")
                return _clone(self._mounts[slot])

    def take_spare(self, slot: int) -> int:
        """A clone of ``slot``'s mount made ahead of time (see :meth:`make_spare`), or -1: no system call."""
        with self._lock:
            return self._spares.pop(slot, -1)

    def make_spare(self, slot: int) -> None:
        """Make the clone the slot's next instance will take (in a worker thread: cloning a mount waits for the
        kernel's mount lock, which a burst of instances keeps busy)."""
        try:
            fd = self.instance_mount(slot)
        except OSError:
            return
        with self._lock:
            if self.closed or slot in self._spares:
                os.close(fd)
            else:
                self._spares[slot] = fd

    def ready(self, slot: int) -> bool:
        """The slot's filesystem exists: :meth:`instance_mount` does no I/O (callable from the event loop)."""
        return slot in self._mounts

    def prefetch(self, *slots: int) -> None:
        """Create these slots' filesystems in a background thread (errors are left for first use to report)."""

        def run() -> None:
            for slot in slots:
                with contextlib.suppress(OSError):
                    os.close(self.instance_mount(slot))

        threading.Thread(target=run, name="squall-tmp-prefetch", daemon=True).start()

    def close(self) -> None:
        """Release every slot's filesystem (they go once no instance has them mounted any more)."""
        with self._lock:
            self.closed = True
            for fd in [*self._mounts.values(), *self._spares.values()]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._mounts.clear()
            self._spares.clear()
