"""Entering the sandbox.  Runs inside zygote and instance processes (root only inside their user namespace).

Per function zygote (once):  user namespace mapped to the function's host uid range, mount namespace with the host
root read-only, the code bound read-only at /var/task, the runtime site-packages (runtime_site.py) at /var/runtime,
the data directory and any directory the instance uids cannot traverse masked by an empty tmpfs (the Python
installation is re-exposed inside it), the server's virtualenv and source tree hidden the same way.

Per instance (every cold start): PID, mount, UTS and IPC namespaces (PID 1 of its own PID namespace: killing it
kills everything it started; it reaps orphans, runtime/init.py), cgroups (memory, CPU share, pids), a private
size-limited /tmp (its slot's filesystem on disk from the node, ephemeral.py; a tmpfs without one), its own /proc,
a distinct unprivileged uid, rlimits, no_new_privs and a seccomp filter.  Network mode ``none`` adds an
empty network namespace (loopback only) taken from the zygote's pool.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import resource
import stat
import sys
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from squall.sandbox.node import runtime_site, syscalls

__all__ = [
    "NetnsFactory",
    "SeccompFilter",
    "build_seccomp_filter",
    "build_zygote_seccomp_filter",
    "enter_function_sandbox",
    "enter_instance_sandbox",
    "forget_platform_modules",
    "function_sys_path",
    "make_netns",
    "masks_for",
    "platform_paths",
    "resolv_conf_for_netns",
    "warm",
]

#: syscalls an instance never needs; they fail with EPERM (defence in depth behind the uid and namespaces)
DENIED_SYSCALLS = (
    "mount", "umount2", "pivot_root", "chroot", "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "ptrace", "process_vm_readv", "process_vm_writev", "bpf",
    "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "unshare", "setns",
    "open_by_handle_at", "name_to_handle_at", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "syslog", "quotactl", "iopl", "ioperm", "uselib", "mount_setattr", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "kcmp", "vhangup", "lookup_dcookie",
)  # fmt: skip

#: refused with ENOSYS ("not implemented here"), as container runtimes do
IO_URING_SYSCALLS = ("io_uring_setup", "io_uring_enter", "io_uring_register")


def _untraversable_ancestor(path: Path) -> Path | None:
    """The first directory on the way to ``path`` that 'other' users cannot traverse, if any."""
    cur = Path("/")
    for part in path.parts[1:]:
        cur = cur / part
        try:
            st = cur.stat()
        except OSError:
            return None
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH:
            return cur
    return None


def needed_paths() -> list[Path]:
    """Directories instances must be able to read: the Python installation (interpreter, stdlib).  Not the
    server's virtualenv nor Squall's source: the runtime loop is already imported when the sandbox is entered."""
    return [Path(sys.base_prefix).resolve()]


@functools.cache
def _stdlib_entries() -> tuple[str, ...]:
    """The ``sys.path`` entries of the stdlib (zip, stdlib, lib-dynload), in their order (the server's sys.path, as
    the base zygote saw it)."""
    base = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["stdlib"])
    keep = {base, base / "lib-dynload", base.parent / f"python{sys.version_info.major}{sys.version_info.minor}.zip"}
    return tuple(p for p in sys.path if p and Path(p) in keep)


_PLATFORM_PATHS: list[Path] | None = None
_SECCOMP: dict[str, SeccompFilter | None] = {}


def warm() -> None:
    """Compute, once in the base zygote, what every function zygote would otherwise redo (~15 ms on this machine:
    the paths to hide, both seccomp programs): function zygotes are its forks and inherit the results."""
    platform_paths()
    build_seccomp_filter()
    build_zygote_seccomp_filter()
    _stdlib_entries()


def platform_paths() -> list[Path]:
    """What of the server's Python environment a function must not see: the virtualenv, every site-packages, and
    every other directory on the server's ``sys.path`` (Squall's source tree, editable installs).  Computed once per
    process (the base zygote's answer is every function zygote's)."""
    global _PLATFORM_PATHS
    if _PLATFORM_PATHS is None:
        _PLATFORM_PATHS = _platform_paths()
    return list(_PLATFORM_PATHS)


def _platform_paths() -> list[Path]:
    import site

    import squall

    out: set[Path] = set()
    if sys.prefix != sys.base_prefix:
        out.add(Path(sys.prefix))
    base_paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
    candidates = [*site.getsitepackages(), site.getusersitepackages(), base_paths["purelib"], base_paths["platlib"]]
    stdlib = set(_stdlib_entries())
    candidates += [p for p in sys.path if p and os.path.isabs(p) and p not in stdlib]
    candidates.append(str(Path(squall.__file__).resolve().parent.parent))
    needed = needed_paths()
    for c in candidates:
        p = Path(c).resolve()
        if p == Path("/") or not p.is_dir() or any(p == n or p in n.parents for n in needed if p != n):
            continue
        if any(p == n for n in needed):
            continue
        out.add(p)
    return sorted(m for m in out if not any(m != o and o in m.parents for o in out))


def function_sys_path(task_root: str, runtime_dir: str) -> list[str]:
    """A function's ``sys.path`` as on Lambda: its code, its layers, the runtime's site-packages, the stdlib."""
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return [task_root, f"/opt/python/lib/{py}/site-packages", "/opt/python", runtime_dir, *_stdlib_entries()]


def forget_platform_modules() -> None:
    """After the function's ``sys.path`` is set: ``import squall`` (and anything under it not yet imported) fails
    as it would on Lambda.  The runtime's own modules stay loaded under their full names (``from squall.x import
    y`` of a loaded module still works for the runtime loop); only the top-level package is forgotten."""
    sys.modules.pop("squall", None)
    sys.executable = getattr(sys, "_base_executable", sys.executable)


_UNDER_TMP: list[str] | None = None


def _under_tmp() -> list[str]:
    """Needed paths under /tmp; computed once (the zygote calls it before forking: instances only read it)."""
    global _UNDER_TMP
    if _UNDER_TMP is None:
        _UNDER_TMP = sorted({str(p) for p in needed_paths() if Path("/tmp") in p.parents})
    return _UNDER_TMP


def prepare_for_instances() -> None:
    """Compute, in the zygote, what :func:`enter_instance_sandbox` needs, so instances do not each redo it."""
    _under_tmp()


def masks_for(data_dir: Path, needed: Iterable[Path]) -> list[Path]:
    """Directories to hide behind an empty tmpfs: the data dir, and untraversable ancestors of what is needed."""
    masks = {data_dir.resolve()}
    for p in needed:
        anc = _untraversable_ancestor(p)
        if anc is not None:
            masks.add(anc)
    # a mask inside another mask is redundant
    return sorted(m for m in masks if not any(m != o and o in m.parents for o in masks))


def _nameservers(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [p[1] for p in (line.split() for line in lines) if len(p) > 1 and p[0] == "nameserver"]


def resolv_conf_for_netns(
    etc: str = "/etc/resolv.conf", upstream: str = "/run/systemd/resolve/resolv.conf"
) -> tuple[str | None, str | None]:
    """(a resolv.conf to show instances in their own network namespace instead of /etc/resolv.conf, a warning).

    A loopback resolver (systemd-resolved's 127.0.0.53 stub, a local dnsmasq) is unreachable from another network
    namespace: use systemd-resolved's list of upstream servers when it has one."""
    servers = _nameservers(etc)
    if not servers or any(not (s.startswith("127.") or s == "::1") for s in servers):
        return None, None
    if any(not (s.startswith("127.") or s == "::1") for s in _nameservers(upstream)):
        return upstream, None
    return None, (
        f"{etc} lists only loopback resolvers ({', '.join(servers)}), unreachable from a function's own network "
        "namespace: functions cannot resolve names"
    )


def enter_function_sandbox(
    code_dir: str, data_dir: str, cgroups: bool, network: str = "host", opt_dir: str | None = None
) -> list[str]:
    """Called by the function zygote, as root of its fresh user+mount namespace.  Returns warnings.

    ``opt_dir``: the function's merged layers (squall.sandbox.node.layers), bound read-only at /opt as on Lambda."""
    warnings: list[str] = []
    # what the zygote still imports from the server's environment after it is hidden: load it now
    with contextlib.suppress(ImportError):
        import pyseccomp  # noqa: F401
    site_dir = runtime_site.ensure(Path(data_dir))
    hide = platform_paths()
    syscalls.make_private("/")
    if network == "nat":
        resolv, why = resolv_conf_for_netns()
        if why:
            warnings.append(why)
        if resolv:
            try:
                syscalls.mount(resolv, "/etc/resolv.conf", None, syscalls.MS_BIND)
            except OSError as e:
                warnings.append(f"could not show {resolv} as /etc/resolv.conf: {e}")
    needed = [p for p in needed_paths() if p.exists()]
    if opt_dir is not None and any(p == Path("/opt") or Path("/opt") in p.parents for p in needed):
        raise OSError("the Python installation or Squall lives under /opt, where the function's layers must go")
    masks = masks_for(Path(data_dir), needed)
    code_fd = syscalls.open_tree_clone(code_dir)
    opt_fd = syscalls.open_tree_clone(opt_dir) if opt_dir is not None else -1
    site_fd = syscalls.open_tree_clone(str(site_dir))
    reexpose = [(p, syscalls.open_tree_clone(str(p))) for p in needed if any(m in p.parents or m == p for m in masks)]
    for m in masks:
        if m.exists():
            syscalls.mount("tmpfs", str(m), "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "size=64k,mode=755")
    for p, fd in reexpose:
        os.makedirs(p, exist_ok=True)
        syscalls.move_tree(fd, str(p))
        os.close(fd)
    syscalls.move_tree(code_fd, "/var/task")
    os.close(code_fd)
    if opt_fd >= 0:
        os.makedirs("/opt", exist_ok=True)
        syscalls.move_tree(opt_fd, "/opt")
        os.close(opt_fd)
    os.makedirs(runtime_site.SANDBOX_PATH, mode=0o755, exist_ok=True)
    syscalls.move_tree(site_fd, runtime_site.SANDBOX_PATH)
    os.close(site_fd)
    # the server's virtualenv and source tree: an empty directory in here
    for p in hide:
        if p.is_dir():  # (not there: under a mask already)
            syscalls.mount("tmpfs", str(p), "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "size=4k,mode=755")
    try:
        syscalls.set_readonly("/", True, recursive=True)
    except OSError as e:
        warnings.append(f"host filesystem could not be made read-only in the sandbox ({e}); relying on permissions")
        for ro in ("/var/task", "/opt") if opt_fd >= 0 else ("/var/task",):
            with contextlib.suppress(OSError):
                syscalls.mount(None, ro, None, syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY)
    if cgroups:
        for c in ("memory", "cpu", "pids"):
            try:
                syscalls.set_readonly(f"/sys/fs/cgroup/{c}", False, recursive=False)
            except OSError as e:
                warnings.append(f"cgroup {c} not writable in the sandbox: {e}")
    os.chdir("/var/task")
    return warnings


class SeccompFilter:
    """A seccomp program compiled once (per zygote) by libseccomp; :meth:`load` installs it with one prctl.

    ``seccomp_load`` would regenerate the BPF program in every instance; here the instance only hands the
    prepared ``sock_fprog`` to the kernel (``PR_SET_SECCOMP``, ``SECCOMP_MODE_FILTER``, no flags: what
    ``seccomp_load`` does with the default attributes).  No-new-privs must be set first."""

    def __init__(self, program: bytes) -> None:
        if not program or len(program) % 8:
            raise ValueError("not a BPF program")
        self.program = program
        self._fprog = syscalls.SockFprog(program)  # built now: the instance only makes the call

    def load(self) -> None:
        syscalls.install_seccomp(self._fprog)


def build_seccomp_filter() -> SeccompFilter | None:
    """The instance filter (default allow, the syscalls above denied, no new user namespaces), or None.  Compiled
    once per process (see :func:`warm`)."""
    if "instance" not in _SECCOMP:
        _SECCOMP["instance"] = _build_seccomp_filter()
    return _SECCOMP["instance"]


def _build_seccomp_filter() -> SeccompFilter | None:
    try:
        import pyseccomp as sc

        f = sc.SyscallFilter(defaction=sc.ALLOW)
        for name in DENIED_SYSCALLS:
            with contextlib.suppress(Exception):
                f.add_rule(sc.ERRNO(errno.EPERM), name)
        # clone3 hides its flags in a struct a filter cannot read: make glibc fall back to clone, whose flags we
        # can check, and refuse new user namespaces (the way container runtimes do)
        with contextlib.suppress(Exception):
            f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        # io_uring: a large kernel attack surface that also performs I/O outside the syscalls this filter sees.
        # ENOSYS (not EPERM) so that libraries which probe for it (libuv, liburing users) fall back to epoll/read
        for name in IO_URING_SYSCALLS:
            with contextlib.suppress(Exception):
                f.add_rule(sc.ERRNO(errno.ENOSYS), name)
        f.add_rule(
            sc.ERRNO(errno.EPERM),
            "clone",
            sc.Arg(0, sc.MASKED_EQ, syscalls.CLONE_NEWUSER, syscalls.CLONE_NEWUSER),
        )
        return _compiled(f)
    except Exception:
        return None


def _compiled(f: Any) -> SeccompFilter:
    """libseccomp's BPF program for filter ``f``, exported once (through a memfd) for :class:`SeccompFilter`."""
    fd = os.memfd_create("squall-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "rb", closefd=True) as out:
            f.export_bpf(out)
        os.lseek(fd, 0, os.SEEK_SET)
        program = b""
        while chunk := os.read(fd, 1 << 16):
            program += chunk
    finally:
        os.close(fd)
    return SeccompFilter(program)


#: what a function zygote never needs once set up (it still clones instances into new PID/mount/UTS/IPC namespaces,
#: lets them mount /tmp and /proc and join a network namespace, and unshares network namespaces for its pool)
ZYGOTE_DENIED_SYSCALLS = (
    "umount2", "pivot_root", "chroot", "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "ptrace", "process_vm_readv", "process_vm_writev", "bpf",
    "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "open_by_handle_at", "name_to_handle_at",
    "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog", "quotactl", "iopl", "ioperm",
    "uselib", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "kcmp", "vhangup",
    "lookup_dcookie", "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip


def build_zygote_seccomp_filter() -> SeccompFilter | None:
    """The function zygote's filter (default allow): the syscalls above fail with EPERM, and no clone or unshare
    may make a user namespace (clone3 hides its flags: ENOSYS makes glibc fall back to clone).  Instances stack
    their own, stricter filter on top of it.  Compiled once per process (see :func:`warm`)."""
    if "zygote" not in _SECCOMP:
        _SECCOMP["zygote"] = _build_zygote_seccomp_filter()
    return _SECCOMP["zygote"]


def _build_zygote_seccomp_filter() -> SeccompFilter | None:
    try:
        import pyseccomp as sc

        f = sc.SyscallFilter(defaction=sc.ALLOW)
        for name in ZYGOTE_DENIED_SYSCALLS:
            with contextlib.suppress(Exception):
                f.add_rule(sc.ERRNO(errno.EPERM), name)
        with contextlib.suppress(Exception):
            f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        for name in ("clone", "unshare"):
            f.add_rule(
                sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.MASKED_EQ, syscalls.CLONE_NEWUSER, syscalls.CLONE_NEWUSER)
            )
        return _compiled(f)
    except Exception:
        return None


def _write(path: str, value: str) -> None:
    """One write to a control file (os.open/os.write: no file objects; after a fork every object touched is a
    page copied)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def enter_instance_sandbox(
    *,
    cgroup_dirs: dict[str, str],
    tmp_mb: int,
    tmp_fd: int = -1,
    uid: int,
    hostname: str,
    pids_max: int,
    nofile_max: int,
    seccomp_filter: SeccompFilter | None,
    mounts: bool,
    drop_privileges: bool,
    mark: Callable[[str], None] | None = None,
) -> None:
    """Called by the instance (PID 1 of its namespaces) before any user code runs.  ``mark``: called after each
    step with its name (a bench's per-phase breakdown)."""
    for d in cgroup_dirs.values():
        _write(os.path.join(d, "cgroup.procs"), "0")
    if mark is not None:
        mark("cgroups")
    if mounts:
        # Squall itself (or its Python) may live under /tmp (a checkout there): keep those paths visible through
        # the private /tmp by binding them back in from fds opened before it covers them
        keep = [(p, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p in _under_tmp() if os.path.isdir(p)]
        if tmp_fd >= 0:  # this slot's filesystem on disk (ephemeral.py), not charged to the memory limit
            syscalls.move_tree(tmp_fd, "/tmp")
            os.close(tmp_fd)
        else:
            syscalls.mount(
                "tmpfs", "/tmp", "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, f"size={tmp_mb}m,mode=1777"
            )
        for path, fd in keep:
            os.makedirs(path, exist_ok=True)
            syscalls.mount(f"/proc/self/fd/{fd}", path, None, syscalls.MS_BIND | syscalls.MS_REC)
            os.close(fd)
        syscalls.mount(
            "proc", "/proc", "proc", syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
        )
        if cgroup_dirs:
            syscalls.set_readonly("/sys/fs/cgroup", True, recursive=True)
        with contextlib.suppress(OSError):
            syscalls.sethostname(hostname)
    if mark is not None:
        mark("mounts")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_max, nofile_max))
    if drop_privileges:
        # RLIMIT_NPROC is checked before the pids cgroup: with a pids cgroup, leave it a little above pids.max so
        # the cgroup refuses the fork and counts it (pids.events), which is how the node tells a fork bomb from
        # an out-of-memory death; without one, it is the limit
        nproc = pids_max + 8 if "pids" in cgroup_dirs else pids_max
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if mark is not None:
        mark("uid")
    if tmp_fd >= 0:
        _wipe("/tmp")  # what the slot's previous instance left (same uid: it can remove all of it)
    if mark is not None:
        mark("wipe")
    syscalls.set_no_new_privs()
    if seccomp_filter is not None:
        seccomp_filter.load()
    if mark is not None:
        mark("seccomp")


def _wipe(path: str) -> None:
    """Empty a directory whose contents this process owns (it runs as their uid, so it may chmod a directory
    left unreadable); one scandir when it is already empty.  Symbolic links are removed, never followed."""
    with os.scandir(path) as it:
        entries = list(it)
    for e in entries:
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                os.chmod(e.path, 0o700)
                _wipe(e.path)
                os.rmdir(e.path)
            else:
                os.unlink(e.path)


def make_netns() -> int:
    """A new, empty network namespace with loopback up; returns an fd that keeps it alive.  Costs a fork."""
    import socket

    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pid = os.fork()
    if pid == 0:
        try:
            parent.close()
            syscalls.unshare(syscalls.CLONE_NEWNET)
            syscalls.bring_loopback_up()
            fd = os.open("/proc/self/ns/net", os.O_RDONLY)
            socket.send_fds(child, [b"1"], [fd])
        finally:
            os._exit(0)
    child.close()
    try:
        msg, fds, _, _ = socket.recv_fds(parent, 16, 1)
        if msg != b"1" or not fds:
            raise OSError("network namespace helper failed")
        os.set_inheritable(fds[0], False)
        return fds[0]
    finally:
        parent.close()
        os.waitpid(pid, 0)


class NetnsFactory:
    """A helper process that makes network namespaces on request: it ``unshare``s a new one in place each time (its
    previous one lives on through the fd it sent), so a namespace costs no fork.  Measured here: ~1.2 ms per
    namespace, against ~7 ms for :func:`make_netns` (fork, unshare, exit, wait).

    Started by the function zygote before any function code runs (a small, single-threaded process); it dies with
    the zygote (parent-death signal).  Falls back to :func:`make_netns` if it is gone."""

    def __init__(self) -> None:
        import socket

        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                self.sock.close()
                os.closerange(3, child.fileno())
                os.closerange(child.fileno() + 1, 1 << 16)
                _factory_main(child)
            finally:
                os._exit(0)
        child.close()
        os.set_inheritable(self.sock.fileno(), False)

    def make(self) -> int:
        """A new network namespace with loopback up; returns an fd that keeps it alive."""
        import socket

        if self.pid > 0:
            try:
                self.sock.send(b"n")
                msg, fds, _, _ = socket.recv_fds(self.sock, 16, 1)
                if msg == b"1" and fds:
                    os.set_inheritable(fds[0], False)
                    return fds[0]
                for fd in fds:
                    os.close(fd)
            except OSError:
                pass
            self.pid = -1  # gone or broken: the slow path from now on
        return make_netns()


def _factory_main(sock: object) -> None:
    import signal
    import socket

    assert isinstance(sock, socket.socket)
    syscalls.set_pdeathsig(signal.SIGKILL)
    # it keeps the zygote's pre-lockdown capabilities (in the function's user namespace) and no seccomp filter:
    # the zygote, once it runs function code, must not be able to take it over (ptrace, /proc/<pid>/mem)
    syscalls.set_not_dumpable()
    while sock.recv(1):
        try:
            syscalls.unshare(syscalls.CLONE_NEWNET)
            syscalls.bring_loopback_up()
            fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            sock.send(b"0")
            continue
        try:
            socket.send_fds(sock, [b"1"], [fd])
        finally:
            os.close(fd)
