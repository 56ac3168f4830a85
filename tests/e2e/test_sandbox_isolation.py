"""Escape attempts from inside the sandbox.  Each test states what must hold, and checks it from both sides."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox_helpers import (
    PROC_STATUS,
    SECRET_ENV,
    SECRET_VALUE,
    NodeRunner,
    body,
    eventually,
    make_node,
    write_tree,
)

PIDS_MAX = 48

PROBE = (
    r"""
import ctypes, errno, os, socket, time

libc = ctypes.CDLL(None, use_errno=True)

def err(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) else type(e).__name__

def write(path, data="x"):
    try:
        with open(path, "wb") as f:
            f.write(data.encode())
        return "ok"
    except OSError as e:
        return err(e)

def read(path):
    try:
        if os.path.isdir(path):
            return ["dir", sorted(os.listdir(path))]
        with open(path, "rb") as f:
            return ["file", f.read(200).decode(errors="replace")]
    except OSError as e:
        return err(e)

def exists(path):
    return os.path.exists(path)

def fill(path, mb):
    written = 0
    try:
        with open(path, "wb") as f:
            for _ in range(mb):
                f.write(b"\0" * (1 << 20))
                f.flush()
                written += 1
        return ["ok", written]
    except OSError as e:
        return [err(e), written]

def kill(pid, sig=0):
    try:
        os.kill(pid, sig)
        return "ok"
    except OSError as e:
        return err(e)

def ids():
    procs = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "pid": os.getpid(), "procs": procs,
            "hostname": socket.gethostname()}

"""
    + PROC_STATUS
    + r"""

def libc_call(name, *args):
    ctypes.set_errno(0)
    rc = getattr(libc, name)(*args)
    return [rc, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())]

def syscalls():
    return {
        "unshare_user": libc_call("unshare", 0x10000000),
        "unshare_ns": libc_call("unshare", 0x00020000),
        "mount": libc_call("mount", b"tmpfs", b"/mnt", b"tmpfs", ctypes.c_ulong(0), None),
        "umount": libc_call("umount2", b"/var/task", 2),
        "ptrace": libc_call("ptrace", 0, 0, None, None),
        "chroot": libc_call("chroot", b"/tmp"),
        "setuid0": libc_call("setuid", 0),
    }

def filtered():
    # answers only the seccomp filter gives (without it: keyctl works, clone3(NULL, 0) is EINVAL, bpf is EPERM)
    libc.syscall.restype = ctypes.c_long
    return {
        "keyctl": libc_call("syscall", 250, 0, -3, 0),
        "clone3": libc_call("syscall", 435, None, 0),
        "clone_newuser": libc_call("syscall", 56, 0x10000000 | 17, None, None, None, None),
        # without the filter: io_uring_setup(1, NULL) is EFAULT, enter/register on fd -1 are EBADF
        "io_uring_setup": libc_call("syscall", 425, 1, None),
        "io_uring_enter": libc_call("syscall", 426, -1, 0, 0, 0, None),
        "io_uring_register": libc_call("syscall", 427, -1, 0, None, 0),
    }

def connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return "ok"
    except OSError as e:
        return err(e) if e.errno else type(e).__name__

def forkbomb():
    n, why = 0, None
    while n < 10000:
        try:
            pid = os.fork()
        except OSError as e:
            why = err(e)
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
    return {"forked": n, "error": why}

def scan_memory_for(needle):
    # look through this process's own memory where the kernel put the initial environment: the stack top
    libc.getauxval.restype = ctypes.c_ulong
    execfn = libc.getauxval(31)  # AT_EXECFN points into the strings at the very top of the stack
    blob = ctypes.string_at(execfn - 32768, 32768)
    return needle.encode() in blob

def fds():
    return sorted(int(f) for f in os.listdir("/proc/self/fd"))

def handler(event, context):
    return [globals()[name](*args) for name, *args in event["calls"]]
"""
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRunner]:
    yield from make_node(tmp_path_factory, pids_max=PIDS_MAX)


@pytest.fixture(scope="module")
def probe(node: NodeRunner) -> Any:
    return node.load({"app.py": PROBE}, name="probe", timeout_s=10, tmp_mb=8)


def run(node: NodeRunner, inst: Any, *calls: Sequence[Any]) -> list[Any]:
    out = node.invoke(inst, {"calls": [list(c) for c in calls]})
    assert out.ok, out.payload
    return body(out)


@pytest.fixture
def inst(node: NodeRunner, probe: Any) -> Iterator[Any]:
    i = node.start(probe)
    yield i
    node.stop(i)


# ------------------------------------------------------------------------------------------------ filesystem


def test_cannot_write_host_paths(node: NodeRunner, inst: Any) -> None:
    marker = f"squall_pwn_{uuid.uuid4().hex[:8]}"
    targets = [
        f"/etc/{marker}",
        f"/var/task/{marker}",
        str(node.data_dir / marker),
        str(node.code_root / marker),
        f"/root/{marker}",
        f"/usr/{marker}",
        f"/var/tmp/{marker}",
    ]
    results = run(node, inst, *[("write", t) for t in targets])
    for target, res in zip(targets, results, strict=True):
        assert res in {"EROFS", "EACCES", "ENOENT", "EPERM"}, (target, res)
        assert not Path(target).exists(), f"{target} appeared on the host"


def test_code_is_read_only_and_visible(node: NodeRunner, inst: Any) -> None:
    listing, appw = run(node, inst, ("read", "/var/task"), ("write", "/var/task/app.py", ""))
    assert listing == ["dir", ["app.py"]]
    assert appw in {"EROFS", "EACCES"}


def test_tmp_is_writable_and_private(node: NodeRunner, probe: Any) -> None:
    name = f"/tmp/private-{uuid.uuid4().hex}"
    a, b = node.start(probe), node.start(probe)
    try:
        assert run(node, a, ("write", name), ("exists", name)) == ["ok", True]
        assert run(node, b, ("exists", name)) == [False]
        assert run(node, a, ("exists", name)) == [True]  # survives between invocations of one instance
    finally:
        node.stop(a)
        node.stop(b)
    assert not os.path.exists(name), "the instance's /tmp is the host's"
    c = node.start(probe)
    try:
        assert run(node, c, ("exists", name)) == [False]  # a new instance starts with an empty /tmp
    finally:
        node.stop(c)


def test_tmp_size_limit(node: NodeRunner, inst: Any) -> None:
    (res,) = run(node, inst, ("fill", "/tmp/big", 20))
    assert res[0] == "ENOSPC"
    assert res[1] <= 8  # 8 MB fit, the 9th does not
    # after freeing space the instance can write again
    assert run(node, inst, ("write", "/tmp/big", "x"), ("write", "/tmp/small")) == ["ok", "ok"]


FILLER = """
import os

def handler(event, context):
    if event.get("mess"):  # leave things behind that are awkward to remove
        os.makedirs("/tmp/d/sub", exist_ok=True)
        open("/tmp/d/sub/f", "w").write("x")
        os.chmod("/tmp/d/sub", 0)
        os.chmod("/tmp/d", 0)
        os.symlink("/var/task/app.py", "/tmp/link")
        return sorted(os.listdir("/tmp"))
    if event.get("list"):
        return sorted(os.listdir("/tmp"))
    with open("/tmp/fill", "wb") as f:  # no try: the handler fails with the OSError
        for _ in range(event["mb"]):
            f.write(b"\\1" * (1 << 20))
            f.flush()
"""


def test_full_tmp_is_an_ordinary_handler_error(node: NodeRunner) -> None:
    """Filling /tmp is ENOSPC for the handler, reported as its own (Unhandled) error: not an out-of-memory death,
    even with /tmp larger than the memory limit; the instance keeps serving."""
    fn = node.load({"app.py": FILLER}, memory_mb=128, tmp_mb=160)
    inst = node.start(fn)
    try:
        out = node.invoke(inst, {"mb": 300})
        assert out.error_type == "OSError", out.payload
        assert "No space left on device" in body(out)["errorMessage"]
        assert inst.alive
        assert node.invoke(inst, {"list": True}).ok
    finally:
        node.stop(inst)


def test_next_instance_of_a_slot_starts_with_an_empty_tmp(node: NodeRunner) -> None:
    # no spare instance: it would sit in another slot, and the next start would take it instead of a's slot
    spares, node.node.spare_instances = node.node.spare_instances, 0
    try:
        fn = node.load({"app.py": FILLER}, tmp_mb=16)
        a = node.start(fn)
        try:
            assert body(node.invoke(a, {"mess": True})) == ["d", "link"]
        finally:
            node.stop(a)
        b = node.start(fn)  # takes the slot a left
        try:
            assert b.slot == a.slot
            assert body(node.invoke(b, {"list": True})) == []
        finally:
            node.stop(b)
    finally:
        node.node.spare_instances = spares


def test_cannot_read_other_functions_code_or_node_data(node: NodeRunner, inst: Any) -> None:
    secret_b = f"CODE_OF_B_{uuid.uuid4().hex}"
    fn_b = node.load({"app.py": f"SECRET = {secret_b!r}\ndef handler(e, c):\n    return SECRET\n"}, name="other")
    code_b = Path(fn_b.spec.code_dir)
    assert node.call(fn_b).payload == f'"{secret_b}"'.encode()  # B itself can read it
    paths = [str(code_b / "app.py"), str(code_b), str(node.data_dir), str(node.code_root)]
    results = run(node, inst, *[("read", p) for p in paths])
    for p, res in zip(paths, results, strict=True):
        assert secret_b not in str(res), p
        # the data dir is masked: empty or not there at all
        assert res in ("ENOENT", "EACCES") or res == ["dir", []], (p, res)


def test_code_from_outside_the_data_dir_is_staged_and_hidden(node: NodeRunner, inst: Any) -> None:
    """Code loaded from elsewhere is copied under the (masked) data dir: the copy that runs is not readable by
    other functions.  (The user's own source tree stays an ordinary host path: the host is visible read-only.)"""
    base = Path(tempfile.mkdtemp(prefix="squall-test-code-", dir="/var/tmp"))
    try:
        os.chmod(base, 0o755)
        secret_b = f"CODE_OF_B_{uuid.uuid4().hex}"
        code_b = write_tree(base / "b", {"app.py": f"SECRET = {secret_b!r}\ndef handler(e, c):\n    return SECRET\n"})
        fn_b = node.load({}, name="other-outside", code_dir=code_b)
        staged = Path(fn_b.spec.code_dir)
        assert staged != code_b and node.data_dir.resolve() in staged.resolve().parents
        assert node.call(fn_b).payload == f'"{secret_b}"'.encode()
        (res,) = run(node, inst, ("read", str(staged / "app.py")))
        assert secret_b not in str(res) and res in ("ENOENT", "EACCES")
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_cannot_read_root_only_files(node: NodeRunner, inst: Any) -> None:
    (res,) = run(node, inst, ("read", "/etc/shadow"))
    assert res in {"EACCES", "ENOENT"}


# ---------------------------------------------------------------------------------------------- identities


def test_unprivileged_distinct_uids(node: NodeRunner, probe: Any) -> None:
    a, b = node.start(probe), node.start(probe)
    try:
        (ia,) = run(node, a, ("ids",))
        (ib,) = run(node, b, ("ids",))
        host_uids = []
        for i in (a, b):
            status = Path(f"/proc/{i.host_pid()}/status").read_text()
            uid_line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
            host_uids.append({int(x) for x in uid_line.split()[1:]})
    finally:
        node.stop(a)
        node.stop(b)
    for ident in (ia, ib):
        assert ident["uid"] != 0 and ident["euid"] != 0 and ident["gid"] != 0
    assert ia["uid"] != ib["uid"]
    # and on the host, each is a single non-root uid, different from the other
    assert all(len(u) == 1 and 0 not in u for u in host_uids)
    assert host_uids[0] != host_uids[1]


def test_pid_namespace(node: NodeRunner, inst: Any) -> None:
    (ident,) = run(node, inst, ("ids",))
    assert ident["pid"] == 1
    assert len(ident["procs"]) <= 3
    assert all(p < 100 for p in ident["procs"])
    assert os.getpid() not in ident["procs"] or os.getpid() < 100
    assert ident["hostname"] == "localhost"  # its own UTS namespace


def test_cannot_signal_node_or_other_instances(node: NodeRunner, probe: Any) -> None:
    other = node.start(probe)
    a = node.start(probe)
    try:
        targets = [os.getpid(), node.node._base_proc.pid, probe.pid, other.pid]
        results = run(node, a, *[("kill", p, 0) for p in targets])
        for pid, res in zip(targets, results, strict=True):
            assert res in {"ESRCH", "EPERM"}, (pid, res)
        results = run(node, a, *[("kill", p, 9) for p in targets[1:]])
        assert all(r in {"ESRCH", "EPERM"} for r in results), results
        assert other.alive
        assert run(node, other, ("ids",))[0]["pid"] == 1  # still serving
        assert node.node._base_proc.poll() is None
    finally:
        node.stop(a)
        node.stop(other)


def test_no_inherited_descriptors(node: NodeRunner, inst: Any) -> None:
    """Only stdin (/dev/null), the log pipe (1, 2) and the node socket (3): no zygote control socket, no other fd."""
    (fds,) = run(node, inst, ("fds",))
    assert set(fds) - {0, 1, 2, 3} <= {4}  # 4: the descriptor os.listdir itself opened on /proc/self/fd


def test_cannot_raise_own_limits(node: NodeRunner, probe: Any, inst: Any) -> None:
    if "memory" not in probe.cgroups:
        pytest.skip("no cgroups")
    mem = Path(probe.cgroups["memory"]) / f"i{inst.slot}"
    pids = Path(probe.cgroups["pids"]) / f"i{inst.slot}"
    before = (mem / "memory.limit_in_bytes").read_text()
    targets = [
        (str(mem / "memory.limit_in_bytes"), str(1 << 40)),
        (str(pids / "pids.max"), "max"),
        (str(Path(probe.cgroups["memory"]) / "cgroup.procs"), "1"),
        ("/sys/fs/cgroup/memory/cgroup.procs", "1"),
    ]
    results = run(node, inst, *[("write", p, v) for p, v in targets])
    assert all(r in {"EROFS", "EACCES", "ENOENT", "EPERM"} for r in results), results
    assert (mem / "memory.limit_in_bytes").read_text() == before == f"{128 * 1024 * 1024}\n"
    assert (pids / "pids.max").read_text().strip() == str(PIDS_MAX)


# ------------------------------------------------------------------------------------------------ processes


def test_fork_bomb_is_contained(node: NodeRunner, probe: Any) -> None:
    inst = node.start(probe)
    pids_dir = Path(probe.cgroups["pids"]) / f"i{inst.slot}" if "pids" in probe.cgroups else None
    try:
        out = node.invoke(inst, {"calls": [["forkbomb"]]})
        if out.ok:
            (res,) = body(out)
            assert res["error"] in {"EAGAIN", "ENOMEM"}, res
            assert res["forked"] < PIDS_MAX
        else:  # it may also end as a timeout or an error: either way it ended
            assert out.error_type in {"Sandbox.Timedout", "Runtime.ExitError", "Runtime.OutOfMemory"}
        if pids_dir is not None:
            assert int((pids_dir / "pids.max").read_text()) == PIDS_MAX
            assert int((pids_dir / "pids.current").read_text()) <= PIDS_MAX
    finally:
        node.stop(inst)
    if pids_dir is not None:  # stopping PID 1 took every child with it
        eventually(lambda: int((pids_dir / "pids.current").read_text()) == 0, what="fork bomb children gone")
    # the node still serves
    fresh = node.start(probe)
    try:
        assert run(node, fresh, ("ids",))[0]["pid"] == 1
    finally:
        node.stop(fresh)


BOMB = """
import os

def handler(event, context):
    while True:  # every process forks until the process limit refuses ...
        try:
            os.fork()
        except OSError:
            break
    hog = []
    step = (2 if os.getpid() == 1 else 1) << 20
    while True:  # ... then all of them allocate, until memory runs out (PID 1, the largest, is killed)
        hog.append(bytearray(step))
"""


def test_fork_bomb_is_reported_as_the_process_limit_not_out_of_memory(node: NodeRunner) -> None:
    """A fork bomb that also exhausts memory died because of the process limit: Runtime.ExitError naming it."""
    if not node.node.caps.cgroups:
        pytest.skip("no cgroups")
    fn = node.load({"app.py": BOMB}, memory_mb=512, timeout_s=60)
    inst = node.start(fn)
    try:
        out = node.invoke(inst, {}, request_id="bomb-1")
    finally:
        node.stop(inst)
    assert out.error_type == "Runtime.ExitError", out.payload
    msg = body(out)["errorMessage"]
    assert msg.startswith("RequestId: bomb-1 Error: Runtime exited with error: "), msg
    assert f"limit of {PIDS_MAX} processes and threads" in msg
    assert "Error Type: Runtime.ExitError" in out.logs


def test_dangerous_syscalls_fail(node: NodeRunner, inst: Any) -> None:
    (res,) = run(node, inst, ("syscalls",))
    for name, (rc, err) in res.items():
        assert rc == -1, (name, rc, err)
        assert err == "EPERM", (name, err)


def test_seccomp_filter_installed_from_the_precompiled_program(node: NodeRunner, inst: Any) -> None:
    if not node.node.caps.seccomp:
        pytest.skip("no seccomp here")
    (res,) = run(node, inst, ("filtered",))
    assert res["keyctl"] == [-1, "EPERM"]
    assert res["clone3"] == [-1, "ENOSYS"]
    assert res["clone_newuser"] == [-1, "EPERM"]
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        assert res[name] == [-1, "ENOSYS"], (name, res[name])
    (st,) = run(node, inst, ("status",))
    # one program installed by the instance, on top of the one it inherits from its zygote
    assert st.get("Seccomp_filters", "2") == "2"


def test_no_new_privs_and_seccomp(node: NodeRunner, inst: Any) -> None:
    (st,) = run(node, inst, ("status",))
    assert st["NoNewPrivs"] == "1"
    if node.node.caps.seccomp:
        assert st["Seccomp"] == "2"
    assert st["CapEff"] == "0000000000000000"
    assert st["CapPrm"] == "0000000000000000"


# ------------------------------------------------------------------------------------------------- network


@pytest.fixture
def listener() -> Iterator[int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def test_network_none_vs_host(node: NodeRunner, probe: Any, listener: int) -> None:
    isolated = node.load({"app.py": PROBE}, name="nonet", network="none")
    hostnet = node.load({"app.py": PROBE}, name="hostnet", network="host")
    a = node.start(isolated)
    b = node.start(hostnet)
    c = node.start(probe)  # the default, "nat": the host's loopback is not reachable either
    try:
        (res_none,) = run(node, a, ("connect", listener))
        (res_host,) = run(node, b, ("connect", listener))
        (res_nat,) = run(node, c, ("connect", listener))
    finally:
        node.stop(a)
        node.stop(b)
        node.stop(c)
    assert res_host == "ok"
    assert res_none in {"ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH", "timeout"}
    assert res_nat in {"ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH", "timeout"}


# --------------------------------------------------------------------------------------------- environment


def test_secret_not_in_environment(node: NodeRunner, inst: Any) -> None:
    out = node.invoke(inst, {"calls": [["read", "/proc/self/environ"], ["read", "/proc/1/environ"]]})
    assert SECRET_VALUE not in out.payload.decode()
    assert os.environ[SECRET_ENV] == SECRET_VALUE


def test_secret_not_in_instance_memory(node: NodeRunner, inst: Any) -> None:
    """The initial environment block stays in a process's memory after os.environ.clear(): the node's own
    environment must never reach the zygotes in the first place."""
    (found,) = run(node, inst, ("scan_memory_for", f"{SECRET_ENV}="))
    assert found is False


ORPHANS = """
import os, time

def handler(event, context):
    if event["do"] == "orphan":
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0)
            os.write(w, str(grandchild).encode())
            os._exit(0)
        os.close(w)
        os.waitpid(child, 0)  # the handler reaps its own child; the grandchild is now an orphan of PID 1
        pid = int(os.read(r, 32))
        os.close(r)
        return pid
    # a later invocation: has PID 1 reaped the orphan?
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{event['pid']}"):
            return "reaped"
        time.sleep(0.01)
    return open(f"/proc/{event['pid']}/stat").read().rsplit(") ", 1)[1][:1]
"""


def test_pid1_reaps_orphans(node: NodeRunner) -> None:
    fn = node.load({"app.py": ORPHANS})
    inst = node.start(fn)
    try:
        pid = body(node.invoke(inst, {"do": "orphan"}))
        assert body(node.invoke(inst, {"do": "check", "pid": pid})) == "reaped"
    finally:
        node.stop(inst)


def test_tmp_does_not_count_against_memory(node: NodeRunner) -> None:
    fn = node.load({"app.py": PROBE}, memory_mb=128, tmp_mb=512)
    inst = node.start(fn)
    try:
        out = node.invoke(inst, {"calls": [["fill", "/tmp/big", 200]]})
        assert out.ok, out.payload
        assert body(out) == [["ok", 200]]
    finally:
        node.stop(inst)
