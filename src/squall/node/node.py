"""The node API the platform calls: load a function version, start instances, invoke them, stop them.

node = Node(NodeConfig(data_dir=...))
await node.start()
fn = await node.load(FunctionSpec(name="hello", code_dir=..., handler="app.handler"))
inst = await node.start_instance(fn)          # cold start: fork from the function zygote, init
out = await inst.invoke(InvokeRequest(b'{"x": 1}', request_id="..."))
await node.stop_instance(inst); await node.unload(fn); await node.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squall.config import NodeConfig
from squall.errors import SandboxUnavailable
from squall.model import FunctionSpec
from squall.node import ephemeral, isolation
from squall.node.cgroups import CgroupLayout
from squall.node.ephemeral import EphemeralStorage
from squall.node.instance import Instance, InstanceDied, _Conn
from squall.node.link import ZygoteLink

__all__ = ["Capabilities", "LoadedFunction", "Node"]

log = logging.getLogger("squall.node")


@dataclass(frozen=True)
class Capabilities:
    """What this kernel and this user allow; anything missing is logged once, loudly."""

    root: bool
    userns: bool
    namespaces: bool
    cgroups: bool
    seccomp: bool

    @classmethod
    def detect(cls, cgroups: CgroupLayout) -> Capabilities:
        root = os.geteuid() == 0
        try:
            userns = int(Path("/proc/sys/user/max_user_namespaces").read_text()) > 0
        except (OSError, ValueError):
            userns = False
        return cls(
            root=root,
            userns=root and userns,
            namespaces=root,
            cgroups=cgroups.available,
            seccomp=isolation.build_seccomp_filter() is not None,
        )

    def missing(self) -> list[str]:
        out = []
        if not self.root:
            out.append("not running as root: no per-instance uid, namespaces or read-only host filesystem")
        elif not self.userns:
            out.append("user namespaces disabled: function zygotes run as host root")
        if not self.cgroups:
            out.append("cgroup controllers unavailable: no memory/CPU/pids limits per instance")
        if not self.seccomp:
            out.append("seccomp unavailable: no syscall filter")
        return out


@dataclass
class LoadedFunction:
    spec: FunctionSpec
    slot: int
    link: ZygoteLink
    pid: int
    report: dict[str, Any]
    cgroups: dict[str, str]
    instances: dict[int, Instance] = field(default_factory=dict)
    free_slots: list[int] = field(default_factory=list)
    next_slot: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    exits: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    #: per-slot /tmp filesystems (on disk, not charged to memory); None: instances use a tmpfs
    tmp: EphemeralStorage | None = None

    @property
    def preloaded(self) -> list[str]:
        return list(self.report.get("preloaded", []))

    @property
    def snapshot(self) -> bool:
        return bool(self.report.get("snapshot"))

    def take_slot(self) -> int:
        return self.free_slots.pop() if self.free_slots else next(self.next_slot)


#: the only variables of the node's environment the zygotes inherit.  Everything else (keys, tokens) stays out:
#: a process's initial environment block remains readable in its memory (/proc/self/environ) even after
#: os.environ.clear(), and every instance is a fork of the base zygote.
_ZYGOTE_ENV_KEEP = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV")


def _zygote_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _ZYGOTE_ENV_KEEP if k in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _raise_nofile() -> None:
    """Each instance holds two fds in the node (socket, log pipe): lift the soft limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Node:
    """One machine's zygotes and instances."""

    def __init__(self, config: NodeConfig | None = None) -> None:
        self.config = config or NodeConfig()
        self.cgroups = CgroupLayout(self.config.cgroup_name)
        self.caps = Capabilities.detect(self.cgroups)
        self._base: ZygoteLink | None = None
        self._base_proc: subprocess.Popen[bytes] | None = None
        self._slots = itertools.count(1)
        self._free_fn_slots: list[int] = []
        self._probe_cache: dict[str, list[str]] = {}
        self.functions: dict[str, LoadedFunction] = {}
        self._staged: set[Path] = set()
        #: /tmp of instances on disk (ephemeral.py) where loop devices can be used
        self._ephemeral = self.caps.root and ephemeral.available()

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        for why in self.caps.missing():
            log.warning("sandbox degraded: %s", why)
        _raise_nofile()
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.caps.namespaces:
            with contextlib.suppress(OSError):
                Path("/var/task").mkdir(parents=True, exist_ok=True)
        self.cgroups.setup()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._base_proc = subprocess.Popen(
            [sys.executable, "-m", "squall.node.zygote", str(child.fileno())],
            pass_fds=[child.fileno()],
            env=_zygote_env(),
        )
        child.close()
        self._base = ZygoteLink(parent)
        ready = await self._base.next_unsolicited(60)
        if not ready or ready.get("op") != "ready":
            raise SandboxUnavailable("the base zygote did not start; see the server log")

    async def close(self) -> None:
        await asyncio.gather(*(self.unload(fn) for fn in list(self.functions.values())), return_exceptions=True)
        if self._base is not None:
            self._base.close()
        if self._base_proc is not None:
            with contextlib.suppress(Exception):
                self._base_proc.kill()
            await asyncio.to_thread(self._base_proc.wait)
        self.cgroups.teardown()
        for staged in self._staged:
            shutil.rmtree(staged, ignore_errors=True)
        self._staged.clear()

    # -- functions ----------------------------------------------------------------------------------------
    def _sandbox_for(self, slot: int, memory_mb: int) -> dict[str, Any]:
        c = self.config
        host_base = c.uid_base + slot * 65536
        cgroups = self.cgroups.create_function(slot, host_base) if self.caps.cgroups else {}
        return {
            "userns": self.caps.userns,
            "namespaces": self.caps.namespaces,
            "drop_privileges": self.caps.root,
            "seccomp": self.caps.seccomp,
            "cgroups": cgroups,
            "uid_base": host_base,
            "instance_uid_first": c.instance_uid_first,
            "pids_max": c.pids_max,
            "cpu_shares": max(2, memory_mb * c.cpu_shares_per_vcpu // c.mb_per_vcpu),
            "nofile_max": c.nofile_max,
            "sched_batch": c.instance_sched == "batch",
            "init_timeout_s": c.init_timeout_s,
            "netns_pool_size": c.netns_pool_size,
            "data_dir": str(c.data_dir),
        }

    async def load(self, spec: FunctionSpec, *, preload: list[str] | None = None) -> LoadedFunction:
        """Start the function's zygote: probe its imports (cached by code digest) and pre-import them."""
        if self._base is None:
            raise SandboxUnavailable("node not started")
        spec = self._stage(spec)
        cached = preload if preload is not None else self._probe_cache.get(spec.key) if spec.code_sha256 else None
        fn = await self._start_zygote(spec, cached, spec.snapshot)
        rep = fn.report
        if rep.get("threads", 1) > 1 or rep.get("init_error"):
            why = (
                f"{rep['threads']} threads after pre-import" if rep.get("threads", 1) > 1
                else f"snapshot init failed: {rep['init_error'].get('errorType')}"
            )  # fmt: skip
            log.warning(
                "function %s: %s; forking from it is unsafe, using a zygote that pre-imports nothing",
                spec.name,
                why,
            )
            await self.unload(fn)
            fn = await self._start_zygote(spec, [], False, probe=False)
            fn.report.setdefault("warnings", []).append(f"fell back to a zygote without pre-imports: {why}")
        if rep.get("probe") is not None and spec.code_sha256:
            self._probe_cache[spec.key] = list(rep["probe"])
        for w in fn.report.get("warnings", []):
            log.warning("function %s: %s", spec.name, w)
        self.functions[spec.key] = fn
        return fn

    def _stage(self, spec: FunctionSpec) -> FunctionSpec:
        """Code must live under the data directory, which every sandbox masks: otherwise its host path stays
        readable by other functions.  Code from elsewhere is copied in (the platform's code store is already
        there)."""
        data = self.config.data_dir.resolve()
        src = spec.code_dir.resolve()
        if src == data or data in src.parents:
            return spec
        staged = data / "staged" / f"{spec.name}-{uuid.uuid4().hex[:12]}"
        shutil.copytree(src, staged, symlinks=True)
        for root, _dirs, files in os.walk(staged):
            os.chmod(root, 0o755)
            for f in files:
                p = os.path.join(root, f)
                if not os.path.islink(p):
                    os.chmod(p, os.stat(p).st_mode | 0o444)
        for d in (staged.parent, staged.parent.parent):
            os.chmod(d, 0o755)
        self._staged.add(staged)
        return dataclasses.replace(spec, code_dir=staged)

    async def _start_zygote(
        self, spec: FunctionSpec, preload: list[str] | None, snapshot: bool, probe: bool = True
    ) -> LoadedFunction:
        assert self._base is not None
        slot = self._free_fn_slots.pop() if self._free_fn_slots else next(self._slots)
        sandbox = self._sandbox_for(slot, spec.memory_mb)
        sd = asdict(spec)
        sd["code_dir"] = str(spec.code_dir)
        sd["preload"] = preload
        sd["snapshot"] = snapshot
        sd["probe"] = probe
        tmp = None
        if self._ephemeral and sandbox["namespaces"]:
            tmp = EphemeralStorage(self.config.data_dir, spec.tmp_mb)
            tmp.prefetch(1)  # the first cold start's /tmp, made while the zygote loads
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            reply = await self._base.request({"op": "function", "spec": sd, "sandbox": sandbox}, [child.fileno()])
        finally:
            child.close()
        if "error" in reply:
            if tmp is not None:
                tmp.close()
            parent.close()
            self._release_slot(slot)
            raise SandboxUnavailable(f"could not start a zygote for {spec.name}: {reply['error']}")
        fn_holder: dict[str, LoadedFunction] = {}

        def on_exit(msg: dict[str, Any]) -> None:
            f = fn_holder.get("fn")
            if f is None:
                return
            fut = f.exits.pop(int(msg["pid"]), None)
            if fut is not None and not fut.done():
                fut.set_result(int(msg["status"]))

        link = ZygoteLink(parent, on_exit)
        report = await link.next_unsolicited(self.config.init_timeout_s + 60)
        if report is None or report.get("fatal"):
            if tmp is not None:
                tmp.close()
            link.close()
            self._release_slot(slot)
            why = report.get("fatal") if report else "the function zygote exited during load"
            raise SandboxUnavailable(f"could not load {spec.name}: {why}")
        fn = LoadedFunction(spec, slot, link, int(reply["pid"]), report, sandbox["cgroups"])
        fn.tmp = tmp
        fn_holder["fn"] = fn
        return fn

    def _release_slot(self, slot: int) -> None:
        self.cgroups.remove_function(slot)
        self._free_fn_slots.append(slot)

    async def unload(self, fn: LoadedFunction) -> None:
        await asyncio.gather(*(self.stop_instance(i) for i in list(fn.instances.values())), return_exceptions=True)
        fn.link.send({"op": "exit"})
        fn.link.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(fn.pid, 9)
        self.functions.pop(fn.spec.key, None)
        if fn.tmp is not None:
            fn.tmp.close()
        # the zygote must have left its cgroups before they can be removed: wait (bounded) for it to be gone
        for _ in range(200):
            if not _alive(fn.pid):
                break
            await asyncio.sleep(0.005)
        self._release_slot(fn.slot)

    # -- instances ----------------------------------------------------------------------------------------
    async def start_instance(self, fn: LoadedFunction, init_type: str | None = None) -> Instance:
        """Fork a sandboxed instance and wait for its init.  Raises InitFailed with Lambda's error document."""
        itype = init_type or ("snap-start" if fn.snapshot else "on-demand")
        slot = fn.take_slot()
        tmp_fd = await self._tmp_mount(fn, slot)
        node_end, inst_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe()
        fds = [inst_end.fileno(), log_w] + ([tmp_fd] if tmp_fd >= 0 else [])
        try:
            reply = await fn.link.request({"op": "spawn", "slot": slot, "init_type": itype}, fds)
        except (TimeoutError, ConnectionError) as e:
            fn.free_slots.append(slot)
            for s in (node_end, inst_end):
                s.close()
            os.close(log_r)  # (log_w: closed below, once)
            raise SandboxUnavailable(f"function zygote for {fn.spec.name} is gone: {e}")
        finally:
            inst_end.close()
            with contextlib.suppress(OSError):
                os.close(log_w)
            if tmp_fd >= 0:
                os.close(tmp_fd)
        if "error" in reply:
            fn.free_slots.append(slot)
            node_end.close()
            os.close(log_r)
            raise SandboxUnavailable(f"could not start an instance of {fn.spec.name}: {reply['error']}")
        pid = int(reply["pid"])
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[int] = loop.create_future()
        fn.exits[pid] = exited
        _, conn = await loop.create_connection(_Conn, sock=node_end)
        mem_dir = Path(fn.cgroups["memory"]) / f"i{slot}" if "memory" in fn.cgroups else None
        inst = Instance(
            instance_id=uuid.uuid4().hex[:12], pid=pid, slot=slot, function=fn.spec.name, version=fn.spec.version,
            memory_mb=fn.spec.memory_mb, timeout_s=fn.spec.timeout_s, init_type=itype, conn=conn, log_fd=log_r,
            memory_cgroup=mem_dir, exited=exited, log_max_bytes=self.config.log_max_bytes_per_invocation,
        )  # fmt: skip
        fn.instances[pid] = inst
        exited.add_done_callback(lambda _f: self._forget(fn, inst))
        try:
            await inst.wait_ready(self.config.init_timeout_s)
        except BaseException:
            inst.kill()
            raise
        return inst

    async def _tmp_mount(self, fn: LoadedFunction, slot: int) -> int:
        """A detached mount of ``slot``'s /tmp filesystem for one instance, or -1 (the instance mounts a tmpfs)."""
        tmp = fn.tmp
        if tmp is None:
            return -1
        loop = asyncio.get_running_loop()
        try:
            # even the clone of an existing slot's mount waits for the kernel's mount lock, which a burst of
            # instances setting up and tearing down their mount namespaces keeps busy: never in the event loop.
            # The slot's next clone is made ahead, so a reused slot costs no system call here
            fd = tmp.take_spare(slot)
            if fd < 0:
                fd = await loop.run_in_executor(ephemeral.EXECUTOR, tmp.instance_mount, slot)
            loop.run_in_executor(ephemeral.EXECUTOR, tmp.make_spare, slot)
            return fd
        except OSError as e:
            if fn.tmp is tmp and not tmp.closed:
                log.warning("function %s: /tmp on disk unavailable (%s): instances use a tmpfs", fn.spec.name, e)
                fn.tmp = None
                tmp.close()
            return -1

    def _forget(self, fn: LoadedFunction, inst: Instance) -> None:
        inst.alive = False
        if fn.instances.pop(inst.pid, None) is not None:
            fn.free_slots.append(inst.slot)
        inst.close()

    async def stop_instance(self, inst: Instance) -> None:
        with contextlib.suppress(InstanceDied):
            await inst.stop()
