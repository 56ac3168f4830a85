"""Thin ctypes wrappers for the Linux calls Python 3.11 lacks (unshare, mount, setns, mount_setattr, ...)."""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

__all__ = [
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "SockFprog",
    "bring_loopback_up",
    "clone_process",
    "drop_capabilities",
    "install_seccomp",
    "mount",
    "move_tree",
    "open_tree_clone",
    "set_child_subreaper",
    "set_no_new_privs",
    "set_not_dumpable",
    "set_pdeathsig",
    "set_readonly",
    "sethostname",
    "setns",
    "unshare",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_RDONLY = 0x1

_SYS_CLONE = 56
_CLONE_CHILD_CLEARTID = 0x00200000
_CLONE_CHILD_SETTID = 0x01000000

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SECCOMP_MODE_FILTER = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
#: the same libc, called without releasing the GIL (clone must copy a process that holds it, as os.fork does)
_libc_gil = ctypes.PyDLL(None, use_errno=True)
_libc_gil.syscall.restype = ctypes.c_long
_libc_gil.pthread_self.restype = ctypes.c_void_p
_pyapi = ctypes.pythonapi


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def make_private(path: str = "/") -> None:
    mount(None, path, None, MS_REC | MS_PRIVATE)


def set_readonly(path: str, readonly: bool = True, recursive: bool = True) -> None:
    """Set (or clear) the read-only flag on the mount at ``path`` (and below it), in this mount namespace only."""
    attr = _MountAttr(_MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else _MOUNT_ATTR_RDONLY, 0, 0)
    flags = _AT_RECURSIVE if recursive else 0
    _check(
        _libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, path.encode(), flags, ctypes.byref(attr), ctypes.sizeof(attr)),
        f"mount_setattr {path}",
    )


def open_tree_clone(path: str) -> int:
    """A detached copy of the mount tree at ``path``, to be attached elsewhere with :func:`move_tree`."""
    return _check(
        _libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, path.encode(), _OPEN_TREE_CLONE | _AT_RECURSIVE | os.O_CLOEXEC),
        f"open_tree {path}",
    )


def move_tree(fd: int, target: str) -> None:
    _check(
        _libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, target.encode(), _MOVE_MOUNT_F_EMPTY_PATH),
        f"move_mount {target}",
    )


#: offset of the thread id glibc caches in its thread descriptor (glibc 2.3x, x86-64); checked before use
_GLIBC_TID_OFFSET = 0x2D0


def _glibc_tid_address() -> int | None:
    """Where glibc keeps this thread's tid (fork's ``CLONE_CHILD_SETTID`` target), if the layout is the known one."""
    import threading

    base = _libc_gil.pthread_self()
    if not base:
        return None
    addr = int(base) + _GLIBC_TID_OFFSET
    return addr if ctypes.c_int.from_address(addr).value == threading.get_native_id() else None


def clone_process(flags: int) -> int:
    """``os.fork()`` that also puts the child into new namespaces (``CLONE_NEW*`` flags) in the same system call.

    A child made by ``unshare(CLONE_NEWPID)`` + fork would need an intermediate process (unshare may move only
    the caller's future children into a new PID namespace); clone() makes the child PID 1 of its namespace
    directly: one page-table copy instead of two and no intermediate to tear down.  Like ``os.fork`` it runs
    Python's fork hooks (``PyOS_BeforeFork`` / ``PyOS_AfterFork_*``: import lock, ``os.register_at_fork``
    callbacks, thread state) and lets the kernel update glibc's cached tid, as glibc's fork does.  It does not
    run ``pthread_atfork`` handlers: call it only from a single-threaded process (the zygotes check that).
    Returns the child's pid (0 in the child)."""
    tid = _glibc_tid_address()
    extra = _CLONE_CHILD_SETTID | _CLONE_CHILD_CLEARTID if tid is not None else 0
    _pyapi.PyOS_BeforeFork()
    pid = _libc_gil.syscall(
        ctypes.c_long(_SYS_CLONE),
        ctypes.c_ulong(flags | extra | 17),  # 17: SIGCHLD to the parent when the child exits
        ctypes.c_void_p(0),  # no new stack: the child continues on a copy of this one, as with fork
        ctypes.c_void_p(0),
        ctypes.c_void_p(tid or 0),
        ctypes.c_void_p(0),
    )
    if pid == 0:
        _pyapi.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _pyapi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return int(pid)


class SockFprog(ctypes.Structure):
    """``struct sock_fprog`` over a copy of a BPF program (8 bytes per instruction), kept alive with it."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    def __init__(self, program: bytes) -> None:
        self._buf = ctypes.create_string_buffer(program, len(program))
        super().__init__(len(program) // 8, ctypes.addressof(self._buf))


def install_seccomp(fprog: SockFprog) -> None:
    """Attach a seccomp filter to this thread (and all its future children); needs no_new_privs first."""
    _check(_libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "prctl(SET_SECCOMP)")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities(keep: set[int]) -> None:
    """Keep only the capabilities ``keep`` (numbers, as in linux/capability.h): drop the rest from the bounding,
    ambient, inheritable, permitted and effective sets, for this process and everything it starts."""
    try:
        last = int(open("/proc/sys/kernel/cap_last_cap").read())  # noqa: SIM115
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        if cap not in keep:
            _check(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(CAPBSET_DROP {cap})")
    _check(_libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(CAP_AMBIENT_CLEAR_ALL)")
    mask = 0
    for cap in keep:
        mask |= 1 << cap
    data = (_CapData * 2)(_CapData(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0), _CapData(mask >> 32, mask >> 32, 0))
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc.sethostname(b, len(b)), "sethostname")


def set_no_new_privs() -> None:
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def set_child_subreaper() -> None:
    _check(_libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(CHILD_SUBREAPER)")


def set_not_dumpable() -> None:
    """prctl(PR_SET_DUMPABLE, 0): processes of the same uid without CAP_SYS_PTRACE cannot ptrace this one or open
    its /proc/<pid>/mem."""
    _check(_libc.prctl(4, 0, 0, 0, 0), "prctl(SET_DUMPABLE)")


def set_pdeathsig(sig: int) -> None:
    _check(_libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0), "prctl(PDEATHSIG)")


def bring_loopback_up() -> None:
    """``ip link set lo up`` in the current network namespace."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), siocgifflags, ifreq))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
