"""The function zygote is a sandbox too: it runs third-party import-time code (vendored packages with a
``*.dist-info`` are pre-imported in it) and snapshot init, so it is treated as hostile.  It cannot make the node act on
host processes, sees no host process, has memory and pids limits, no_new_privs and seccomp; a hung or dead zygote
costs only its own function, and the next invocation gets a new one."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox_helpers import NodeRunner, body, eventually, make_node

DIST = "Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"


def vendored(name: str, init: str, handler: str) -> dict[str, str]:
    """A function whose ``app.py`` imports a vendored package ``name`` (with a dist-info: pre-imported)."""
    return {
        f"{name}/__init__.py": init,
        f"{name}-1.0.dist-info/METADATA": DIST.format(name=name),
        f"{name}-1.0.dist-info/RECORD": "",
        "app.py": f"import {name}\n" + handler,
    }


# ------------------------------------------------------------------------------------------- the zygote kill
EVIL = """
import os, signal, sys
HOST_PID = {pid}
KILL_ERROR = None


def _patch(mod):
    orig = mod.send_msg

    def send_msg(sock, msg, fds=None):
        # claim the host process is ours: in every message the node reads a pid from
        if isinstance(msg, dict):
            msg = dict(msg)
            for key in ("pid",):
                if key in msg:
                    msg[key] = HOST_PID
            if msg.get("op") == "spawned" and "error" not in msg:
                msg["pid"] = HOST_PID
        return orig(sock, msg, fds)

    mod.send_msg = send_msg


for _name in ("__main__", "squall.sandbox.node.zygote", "squall.sandbox.node.channel"):
    _mod = sys.modules.get(_name)
    if _mod is not None and hasattr(_mod, "send_msg"):
        _patch(_mod)
try:
    os.kill(HOST_PID, signal.SIGKILL)
except OSError as e:
    KILL_ERROR = type(e).__name__
"""


@pytest.fixture
def host_sleep() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "1000"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_zygote_cannot_make_the_node_kill_a_host_process(node: NodeRunner, host_sleep: Any) -> None:
    files = vendored(
        "evildep", EVIL.format(pid=host_sleep.pid), "def handler(e, c):\n    return {'kill': evildep.KILL_ERROR}\n"
    )
    fn = node.load(files, name="evil")
    assert "evildep" in fn.preloaded  # its import-time code ran in the zygote
    try:
        inst = node.start(fn)
        out = node.invoke(inst)
        node.stop(inst)
        # the function still works (or fails cleanly); the zygote could not reach the host process itself
        assert out.ok, out.payload
        assert body(out)["kill"] in ("ProcessLookupError", "PermissionError")
        node.call(fn)
    finally:
        node.unload(fn)
    assert host_sleep.poll() is None, "the node killed a host process a function zygote reported as its own"


# ---------------------------------------------------------------------------------------- confinement
SPY = """
import os
PID = os.getpid()
UID = os.getuid()
PROCS = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
STATUS = {}
with open("/proc/self/status") as f:
    for line in f:
        k, _, v = line.partition(":")
        if k in ("NoNewPrivs", "Seccomp", "CapEff", "CapBnd"):
            STATUS[k] = v.strip()

# what its seccomp filter refuses (x86-64 numbers): a new user namespace, keyrings, bpf, io_uring, ptrace
import ctypes, errno
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _try(rc):
    return "ok" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")


SYSCALLS = {
    "unshare(CLONE_NEWUSER)": _try(_libc.unshare(0x10000000)),
    "keyctl": _try(_libc.syscall(250, 0, -3, 0, 0, 0)),
    "bpf": _try(_libc.syscall(321, 0, 0, 0)),
    "io_uring_setup": _try(_libc.syscall(425, 1, 0)),
    "ptrace": _try(_libc.syscall(101, 16, 1, 0, 0)),
}

# the cgroups the node made for it: every limit, and every way out of its function's subtree, is refused
TRIES = {}
for line in open("/proc/self/cgroup"):
    _, ctrl, path = line.strip().split(":", 2)
    if ctrl == "memory":
        mine = "/sys/fs/cgroup/memory" + path
        fn = os.path.dirname(mine)
        targets = {
            "own memory limit": (mine + "/memory.limit_in_bytes", str(1 << 40)),
            "an instance's memory limit": (fn + "/i0/memory.limit_in_bytes", str(1 << 40)),
            "leave the function (v1)": (fn + "/cgroup.procs", "0"),
        }
    elif ctrl == "pids":
        targets = {"own pids limit": ("/sys/fs/cgroup/pids" + path + "/pids.max", "max")}
    elif ctrl == "":
        mine = "/sys/fs/cgroup/unified" + path
        fn = os.path.dirname(mine)
        targets = {
            "leave the function (v2)": (os.path.dirname(fn) + "/cgroup.procs", "0"),
            "thaw an instance": (fn + "/i0/cgroup.freeze", "0"),
        }
    else:
        continue
    for what, (target, value) in targets.items():
        try:
            with open(target, "w") as f:
                f.write(value)
            TRIES[what] = "ok"
        except OSError as e:
            TRIES[what] = type(e).__name__
    if ctrl == "memory":
        try:
            os.mkdir(fn + "/mine")
            TRIES["mkdir"] = "ok"
        except OSError as e:
            TRIES["mkdir"] = type(e).__name__
"""


def test_zygote_sees_no_host_process_and_has_nnp_and_seccomp(node: NodeRunner) -> None:
    fn = node.load(
        vendored(
            "spydep",
            SPY,
            "def handler(e, c):\n    return {k: getattr(spydep, k) for k in ('PID', 'UID', 'PROCS', 'STATUS', 'TRIES', 'SYSCALLS')}\n",
        ),
        name="spy",
    )
    try:
        assert "spydep" in fn.preloaded
        seen = body(node.call(fn))
    finally:
        node.unload(fn)
    assert seen["UID"] == 0  # (it ran in the zygote: instances run under other uids)
    assert seen["PID"] == 1, seen  # PID 1 of its own PID namespace
    # no host process, no other function's process: itself and (network nat/none) its network namespace factory
    assert seen["PROCS"][0] == 1 and len(seen["PROCS"]) <= 2, seen
    assert seen["STATUS"]["NoNewPrivs"] == "1", seen
    assert seen["STATUS"]["Seccomp"] == "2", seen
    assert set(seen["SYSCALLS"].values()) == {"EPERM"}, seen["SYSCALLS"]
    cap_eff = int(seen["STATUS"]["CapEff"], 16)
    assert cap_eff & (1 << 21)  # CAP_SYS_ADMIN (in its user namespace) stays: instances need namespaces and mounts
    for cap in (0, 1, 2, 3, 4, 13, 16, 18, 19, 27):  # chown, dac_*, fowner, fsetid, net_raw, module, chroot, ptrace..
        assert not cap_eff & (1 << cap), (cap, seen)
    if node.node.caps.cgroups and node.node.caps.killable:
        assert len(seen["TRIES"]) == 7, seen["TRIES"]
        assert all(r in ("PermissionError", "FileNotFoundError") for r in seen["TRIES"].values()), seen["TRIES"]


BIGMEM = """
import os
ALLOCATED = 0
if os.getuid() == 0:  # only in the zygote (the import probe and instances run under other uids)
    BLOB = b"\\x01" * (400 << 20)
    ALLOCATED = len(BLOB)
"""


def test_zygote_memory_is_limited(node: NodeRunner) -> None:
    fn = node.load(
        vendored("bigdep", BIGMEM, "def handler(e, c):\n    return bigdep.ALLOCATED\n"), name="bigmem", memory_mb=128
    )
    try:
        assert "bigdep" not in fn.preloaded, fn.report
        assert any("memory" in w for w in fn.report["warnings"]), fn.report
        out = node.call(fn)
        assert out.ok, out.payload  # the function still works: its instances import the package themselves
        assert body(out) == 0
    finally:
        node.unload(fn)
    # the node is fine: the next deploy works
    ok = node.load({"app.py": "def handler(e, c):\n    return 'next'\n"}, name="afterbig")
    try:
        assert body(node.call(ok)) == "next"
    finally:
        node.unload(ok)


FORKS = """
import os
FORKED = 0
ERROR = None
if os.getuid() == 0:  # only in the zygote
    try:
        for _ in range(300):
            if os.fork() == 0:
                try:
                    os.execv("/bin/sleep", ["sleep", "1000"])  # small children: the pids limit, not memory, binds
                finally:
                    os._exit(0)
            FORKED += 1
    except OSError as e:
        ERROR = type(e).__name__
"""


def test_zygote_pids_are_limited_and_stray_processes_stopped(node: NodeRunner) -> None:
    fn = node.load(
        vendored(
            "forkdep",
            FORKS,
            "import os\ndef handler(e, c):\n"
            "    return {'forked': forkdep.FORKED, 'error': forkdep.ERROR, 'pid': os.getpid()}\n",
        ),
        name="forky",
    )
    try:
        assert "forkdep" in fn.preloaded
        # what import-time code left running was stopped before the zygote served: instances fork from it alone
        assert any("stopped" in w and "processes" in w for w in fn.report["warnings"]), fn.report
        out = node.call(fn)
        assert out.ok, out.payload
        res = body(out)
        assert res["forked"] < 300, res
        assert res["error"] == "BlockingIOError", res  # EAGAIN: the zygote's pids limit
    finally:
        node.unload(fn)
    ok = node.load({"app.py": "def handler(e, c):\n    return 'next'\n"}, name="afterforks")
    try:
        assert body(node.call(ok)) == "next"
    finally:
        node.unload(ok)


# ------------------------------------------------------------------------------------- hung or dead zygote
SABOTEUR = """
import os, sys, time
_fz = sys.modules["__main__"].FunctionZygote
_orig = _fz.handle


def handle(self, msg, fds):
    if msg.get("op") == "spawn":
        if os.path.exists("/var/task/HANG"):
            time.sleep(3600)
        if os.path.exists("/var/task/DIE"):
            os._exit(7)
    return _orig(self, msg, fds)


_fz.handle = handle
"""


@pytest.fixture(scope="module")
def fast_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRunner]:
    yield from make_node(tmp_path_factory, zygote_timeout_s=2.0, init_timeout_s=3.0)


@pytest.mark.parametrize("how", ["HANG", "DIE"])
def test_hung_or_dead_zygote_costs_one_invoke(fast_node: NodeRunner, how: str) -> None:
    from squall.core.errors import SandboxUnavailable
    from squall.core.model import FunctionSpec
    from squall.functions.pool import InstancePool, PoolConfig

    node = fast_node
    code = node.write_function(
        vendored("sabotage", SABOTEUR, "import os\ndef handler(e, c):\n    return os.getpid()\n"), f"sab-{how}"
    )
    spec = FunctionSpec(name=f"sab-{how.lower()}", code_dir=code, handler="app.handler")
    pool: Any = node.run(_make_pool(node, InstancePool, PoolConfig))

    async def one() -> Any:
        inst = await pool.acquire(spec)
        try:
            from squall.core.model import InvokeRequest

            return await inst.invoke(InvokeRequest(b"{}", request_id="r"))
        finally:
            await pool.release(inst)

    try:
        assert node.run(one()).ok
        assert "sabotage" in pool.loaded[spec.key].preloaded
        old = pool.loaded[spec.key]
        marker = Path(code) / how
        marker.write_text("1")
        try:
            t0 = time.monotonic()

            async def two() -> Any:  # the idle instance is busy: the second needs a cold start
                a = await pool.acquire(spec)
                try:
                    return await pool.acquire(spec)
                finally:
                    await pool.release(a)

            with pytest.raises(SandboxUnavailable) as err:
                node.run(two())
            assert time.monotonic() - t0 < 30
            assert "zygote" in str(err.value)
        finally:
            marker.unlink()
        eventually(lambda: old.link.closed.is_set(), what="the broken zygote was stopped")
        out = node.run(one())
        assert out.ok, out.payload
        assert pool.loaded[spec.key] is not old
    finally:
        node.run(pool.close())


async def _make_pool(node: NodeRunner, pool_cls: Any, config_cls: Any) -> Any:
    return pool_cls(node.node, config_cls(keep_alive_s=600))


def test_unload_leaves_no_process_behind(node: NodeRunner) -> None:
    fn = node.load(vendored("spydep", SPY, "def handler(e, c):\n    return 1\n"), name="tidy")
    inst = node.start(fn)
    assert body(node.invoke(inst)) == 1
    cg = getattr(fn, "kill_cgroup", None)
    node.unload(fn)
    assert cg is not None
    eventually(lambda: not Path(cg).exists(), what="the function's cgroup removed after its processes died")


def test_snapshot_init_runs_under_the_same_confinement(node: NodeRunner) -> None:
    """Snapshot mode runs the whole init (the handler module) in the zygote: it is confined the same way."""
    fn = node.load(
        {
            "app.py": SPY
            + "\ndef handler(e, c):\n    return {'PID': PID, 'UID': UID, 'PROCS': PROCS, 'STATUS': STATUS}\n"
        },
        name="snapspy",
        snapshot=True,
    )
    try:
        assert fn.snapshot is True
        seen = body(node.call(fn))
    finally:
        node.unload(fn)
    assert (seen["PID"], seen["UID"], seen["PROCS"][0]) == (1, 0, 1) and len(seen["PROCS"]) <= 2, seen
    assert seen["STATUS"]["NoNewPrivs"] == "1", seen
    assert seen["STATUS"]["Seccomp"] == "2", seen


def test_back_to_back_instances_in_one_slot(node: NodeRunner) -> None:
    """A slot is reused as soon as its cgroup is empty, which can be before the zygote reports the old instance's
    exit: that late report must not be taken for the new instance's (exit reports name the node's token)."""
    fn = node.load({"app.py": "def handler(e, c):\n    return 'ok'\n"}, name="reuse")
    try:
        for _ in range(30):
            inst = node.start(fn)
            try:
                assert body(node.invoke(inst)) == "ok"
            finally:
                node.stop(inst)
    finally:
        node.unload(fn)


def empty_or_gone(cgroup_dir: Path) -> bool:
    try:
        return "populated 0" in (cgroup_dir / "cgroup.events").read_text()
    except FileNotFoundError:
        return True


LIAR = """
import sys
_m = sys.modules["__main__"]
_fz = _m.FunctionZygote
_orig = _fz.handle


def handle(self, msg, fds):
    _orig(self, msg, fds)
    if msg.get("op") == "spawn":  # claim every instance exited at once, while it runs
        for pid, (slot, token) in list(self.instances.items()):
            _m.send_msg(self.ctrl, {"op": "exited", "token": token, "slot": slot, "pid": pid, "status": 0})


_fz.handle = handle
"""


def test_an_exit_the_zygote_claims_is_confirmed_by_the_cgroup(node: NodeRunner) -> None:
    """Exit reports are hints: an instance the zygote says has exited is made so (killed through its cgroup), its
    slot is reused only once the cgroup is empty, and a zygote whose reports do not add up (a second report for the
    same instance) is stopped with its function.  Every outcome is a clean error; no process is left behind."""
    from squall.core.errors import SandboxUnavailable
    from squall.sandbox.node.instance import InitFailed

    fn = node.load(vendored("liar", LIAR, "def handler(e, c):\n    return 1\n"), name="liar")
    assert "liar" in fn.preloaded
    slots = fn.cg.instances if fn.cg is not None else {}
    outcomes = []
    try:
        for _ in range(3):
            try:
                inst = node.start(fn)
                outcomes.append(node.invoke(inst).error_type or "ok")
            except InitFailed as e:
                outcomes.append(e.document["errorType"])
            except SandboxUnavailable as e:
                outcomes.append(str(e))
        assert all(o.startswith("Runtime.") or "zygote" in o for o in outcomes), outcomes
        for path in [cg.path for cg in slots.values()]:
            eventually(lambda p=path: empty_or_gone(p), what=f"no process left in {path}")
    finally:
        node.unload(fn)
    ok = node.load({"app.py": "def handler(e, c):\n    return 'next'\n"}, name="afterliar")
    try:
        assert body(node.call(ok)) == "next"
    finally:
        node.unload(ok)


HANGS_IN_ZYGOTE = """
import os, time
if os.getuid() == 0:  # only in the zygote: pre-import never finishes
    time.sleep(3600)
"""


def test_zygote_that_hangs_while_loading_is_replaced(fast_node: NodeRunner) -> None:
    node = fast_node
    code = node.write_function(vendored("sleepy", HANGS_IN_ZYGOTE, "def handler(e, c):\n    return 'ok'\n"))
    t0 = time.monotonic()
    fn = node.load({}, name="hangload", code_dir=code, code_sha256="c0ffee")
    try:
        assert time.monotonic() - t0 < 30  # bounded: 2 x init timeout + zygote timeout, then a bare zygote
        assert fn.preloaded == []
        assert any("did not finish loading" in w for w in fn.report["warnings"]), fn.report
        assert body(node.call(fn)) == "ok"  # its instances import the package themselves (and do not hang)
    finally:
        node.unload(fn)
    # the same code's next zygote (after scale to zero) does not wait for the hang again
    again = node.load({}, name="hangload", code_dir=code, code_sha256="c0ffee")
    try:
        assert any("died or hung while loading before" in w for w in again.report["warnings"]), again.report
        assert body(node.call(again)) == "ok"
    finally:
        node.unload(again)


def test_stale_cgroups_of_a_crashed_server_are_killed_at_start(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A server that was SIGKILLed leaves its cgroups behind; the next node of the same name stops what runs in
    them through cgroup.kill (never by pids read from them) and removes them."""
    import uuid

    unified = Path("/sys/fs/cgroup/unified")  # (hybrid mode, as here)
    if not (unified / "cgroup.procs").exists():
        pytest.skip("no cgroup v2 hierarchy at /sys/fs/cgroup/unified")
    name = f"squall-test-{uuid.uuid4().hex[:8]}"
    stale = unified / name / "fn-7" / "i3"
    stale.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        (stale / "cgroup.procs").write_text(str(sleeper.pid))
        gen = make_node(tmp_path_factory, cgroup_name=name)
        node = next(gen)
        try:
            assert sleeper.wait(timeout=10) == -9  # killed by the node's start
            assert not (unified / name / "fn-7").exists()
            fn = node.load({"app.py": "def handler(e, c):\n    return 1\n"})
            assert body(node.call(fn)) == 1
        finally:
            with contextlib.suppress(StopIteration):
                next(gen)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait()
        for d in sorted((unified / name).glob("**/"), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()


@pytest.fixture(scope="module")
def nokill_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRunner]:
    """A node as on a kernel without cgroup.kill (< 5.14): instances are stopped by asking their zygote (by the
    node's token), zygotes through the node's pidfd; still never by a pid a zygote reported."""
    import dataclasses

    for runner in make_node(tmp_path_factory):
        runner.node.cgroups.killable = False
        runner.node.caps = dataclasses.replace(runner.node.caps, killable=False)
        yield runner


def test_without_cgroup_kill_the_node_still_acts_only_on_what_it_owns(nokill_node: NodeRunner, host_sleep: Any) -> None:
    node = nokill_node
    files = vendored(
        "evildep", EVIL.format(pid=host_sleep.pid), "import time\ndef handler(e, c):\n    time.sleep(e.get('s', 0))\n"
    )
    fn = node.load(files, name="evil-nokill", timeout_s=1)
    try:
        assert fn.cg is None or fn.cg.function is None
        inst = node.start(fn)
        assert inst.cgroup is None
        assert node.invoke(inst).ok
        out = node.invoke(inst, {"s": 30})  # the timeout still stops it (the zygote kills it, by token)
        assert out.error_type == "Sandbox.Timedout"
        assert not inst.alive
        assert node.call(fn).ok
        node.start(fn)  # left running: unload must stop it
    finally:
        node.unload(fn)

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] in "ZX"
        except FileNotFoundError:
            return True

    eventually(lambda: gone(fn.pid), what="the zygote stopped through the node's pidfd")
    assert host_sleep.poll() is None, "the node killed a host process a function zygote reported as its own"
