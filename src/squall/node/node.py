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
import concurrent.futures
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
from squall.node import isolation
from squall.node.cgroups import CgroupLayout
from squall.node.instance import Instance, InstanceDied, _Conn
from squall.node.layers import merge_layers
from squall.node.link import ZygoteLink
from squall.node.network import NetworkUnavailable, NodeNetwork

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
    #: the network mode the zygote runs ("nat" falls back to "none" when the node cannot wire namespaces)
    network: str = "none"
    #: the function's user namespace, from the base zygote (what namespaces sent by the zygote are checked against)
    userns_fd: int = -1
    #: network "nat": wired namespaces ready for instances, namespaces asked of the zygote, instances waiting
    netns_ready: list[int] = field(default_factory=list)
    netns_asked: int = 0
    netns_waiters: list[asyncio.Future[int]] = field(default_factory=list)
    #: the namespace each live instance joined (pid -> fd): back to the pool when the instance is gone
    netns_in_use: dict[int, int] = field(default_factory=dict)
    unloaded: bool = False

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


def _has_procs(cgroup_dir: str) -> bool:
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
            return bool(f.read().strip())
    except OSError:
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
        c = self.config
        self.network = NodeNetwork(c.cgroup_name, c.network_cidr, c.network_slice_prefix)
        #: one thread wires namespaces (netlink; it briefly enters each namespace) and sets the network up
        self._net_exec = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="squall-network")
        self._net_watch: asyncio.Task[None] | None = None

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
        await self._setup_network()
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
        if self._net_watch is not None:
            self._net_watch.cancel()
        if self.network.available:
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(self._net_exec, self.network.teardown)
        self._net_exec.shutdown(wait=False)
        for staged in self._staged:
            shutil.rmtree(staged, ignore_errors=True)
        self._staged.clear()

    # -- network "nat" ---------------------------------------------------------------------------------------
    async def _setup_network(self) -> None:
        why = ""
        if not self.caps.userns:
            why = "needs root and user namespaces"
        else:
            try:
                await asyncio.get_running_loop().run_in_executor(self._net_exec, self.network.setup)
                log.info(
                    "network nat: gateway %s, instances in %s, firewall table inet %s",
                    self.network.gateway, self.network.subnet, self.network.table,
                )  # fmt: skip
                self._net_watch = asyncio.get_running_loop().create_task(self._watch_firewall())
                return
            except (NetworkUnavailable, OSError) as e:
                why = str(e)
        self.network.why = why
        log.warning(
            "sandbox degraded: network mode nat unavailable (%s): functions with network nat run with none", why
        )

    async def _watch_firewall(self) -> None:
        """Every few seconds: is the firewall table still there?  (A firewall manager reloading its rules flushes
        everyone's; without ours, instances would reach the host.)"""
        loop = asyncio.get_running_loop()
        while self.network.available:
            await asyncio.sleep(self.config.network_check_s)
            try:
                if not await loop.run_in_executor(self._net_exec, self.network.ensure_table):
                    log.error("network nat: firewall table inet %s was removed by something else; reloaded",
                              self.network.table)  # fmt: skip
            except Exception as e:
                log.error("network nat: cannot check the firewall table: %s", e)

    def allow_endpoint(self, port: int) -> None:
        """Let instances with network "nat" reach the platform at the gateway address on ``port``."""
        if self.network.available:
            self.network.allow_endpoint(port)

    def _on_netns(self, fn: LoadedFunction | None, msg: dict[str, Any], fds: list[int]) -> None:
        """A namespace the zygote made: wired only if the node asked for one (and if it is that function's)."""
        if fn is None or fn.unloaded or fn.network != "nat" or fn.netns_asked <= 0 or len(fds) > 1:
            for fd in fds:
                os.close(fd)
            log.warning("function %s: zygote sent a network namespace that was not asked for; ignored",
                        fn.spec.name if fn else "?")  # fmt: skip
            return
        fn.netns_asked -= 1
        if not fds:
            self._netns_failed(fn, f"the zygote could not create a network namespace: {msg.get('error')}")
            return
        asyncio.get_running_loop().create_task(self._wire(fn, fds[0]))

    async def _wire(self, fn: LoadedFunction, fd: int) -> None:
        userns = os.dup(fn.userns_fd) if fn.userns_fd >= 0 else -1
        try:
            if userns < 0:
                raise PermissionError("the function has no user namespace")
            await asyncio.get_running_loop().run_in_executor(self._net_exec, self.network.wire, fd, userns)
        except Exception as e:
            os.close(fd)
            self._netns_failed(fn, f"could not wire a network namespace: {e}")
            return
        finally:
            if userns >= 0:
                with contextlib.suppress(OSError):
                    os.close(userns)
        if fn.unloaded:
            os.close(fd)
            return
        while fn.netns_waiters:
            waiter = fn.netns_waiters.pop(0)
            if not waiter.done():
                waiter.set_result(fd)
                return
        fn.netns_ready.append(fd)

    async def _wire_zygote(self, link: ZygoteLink, fd: int, userns_fd: int) -> None:
        """The function zygote's own namespace (where pre-imports and snapshot init run), once, during load."""
        userns = os.dup(userns_fd) if userns_fd >= 0 else -1
        try:
            if userns < 0:
                raise PermissionError("the function has no user namespace")
            addr = await asyncio.get_running_loop().run_in_executor(self._net_exec, self.network.wire, fd, userns)
            link.send({"op": "netns-wired", "address": addr})
        except Exception as e:
            link.send({"op": "netns-wired", "error": str(e)})
        finally:
            os.close(fd)
            if userns >= 0:
                os.close(userns)

    def _netns_failed(self, fn: LoadedFunction, why: str) -> None:
        log.warning("function %s: %s", fn.spec.name, why)
        while fn.netns_waiters:
            waiter = fn.netns_waiters.pop(0)
            if not waiter.done():
                waiter.set_exception(SandboxUnavailable(f"{fn.spec.name}: {why}"))
                return

    def _ask_netns(self, fn: LoadedFunction) -> None:
        """Top the pool up to netns_pool_size wired namespaces (plus one per waiting instance) once it is below
        half of that: namespaces of instances that are gone come back (see _return_netns), so a steady trickle of
        cold starts makes none.  The zygote makes them when it has nothing else to do."""
        size, waiting, have = self.config.netns_pool_size, len(fn.netns_waiters), len(fn.netns_ready) + fn.netns_asked
        want = size + waiting - have
        if waiting + max(1, size // 2) - have > 0 and want > 0 and not fn.link.closed.is_set():
            fn.netns_asked += want
            fn.link.send({"op": "netns-want", "count": want})

    async def _take_netns(self, fn: LoadedFunction) -> int:
        if fn.netns_ready:
            fd = fn.netns_ready.pop()
        elif fn.link.closed.is_set():
            raise SandboxUnavailable(f"function zygote for {fn.spec.name} is gone")
        else:
            waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            fn.netns_waiters.append(waiter)
            self._ask_netns(fn)
            try:
                fd = await asyncio.wait_for(waiter, self.config.init_timeout_s)
            except TimeoutError:
                raise SandboxUnavailable(f"no network namespace for {fn.spec.name} in time") from None
        self._ask_netns(fn)
        return fd

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
        os.chmod(staged.parent, 0o755)
        if not self.caps.namespaces:
            # no bind mount: instances read the host path as another uid, so the data dir must let them through
            # (with namespaces the zygote mounts the code as root and the data dir stays 0700)
            os.chmod(staged.parent.parent, 0o711)
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
        sd["layers"] = [str(p) for p in spec.layers]
        sd["opt_dir"] = (
            str(await asyncio.to_thread(merge_layers, spec.layers, self.config.data_dir / "opt"))
            if spec.layers
            else None
        )
        sd["preload"] = preload
        sd["snapshot"] = snapshot
        sd["probe"] = probe
        if spec.network == "nat" and not self.network.available:
            sd["network"] = "none"
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            reply = await self._base.request(
                {"op": "function", "spec": sd, "sandbox": sandbox}, [child.fileno()], keep_fds=True
            )
        finally:
            child.close()
        got_fds: list[int] = reply.pop("_fds", [])
        userns_fd = got_fds.pop(0) if got_fds else -1
        for fd in got_fds:
            os.close(fd)
        if "error" in reply:
            parent.close()
            if userns_fd >= 0:
                os.close(userns_fd)
            self._release_slot(slot)
            raise SandboxUnavailable(f"could not start a zygote for {spec.name}: {reply['error']}")
        fn_holder: dict[str, LoadedFunction] = {}
        link_holder: list[ZygoteLink] = []
        own_netns = {"asked": sd["network"] == "nat"}  # the zygote's own namespace may be wired once, at load

        def on_netns(msg: dict[str, Any], fds: list[int]) -> None:
            fn = fn_holder.get("fn")
            if fn is None and msg.get("self") and own_netns.pop("asked", False) and len(fds) == 1 and link_holder:
                asyncio.get_running_loop().create_task(self._wire_zygote(link_holder[0], fds[0], userns_fd))
                return
            self._on_netns(fn, msg, fds)

        def on_exit(msg: dict[str, Any]) -> None:
            f = fn_holder.get("fn")
            if f is None:
                return
            fut = f.exits.pop(int(msg["pid"]), None)
            if fut is not None and not fut.done():
                fut.set_result(int(msg["status"]))

        link = ZygoteLink(parent, on_exit, on_fds=on_netns, fd_ops=("netns",))
        link_holder.append(link)
        report = await link.next_unsolicited(self.config.init_timeout_s + 60)
        if report is None or report.get("fatal"):
            link.close()
            if userns_fd >= 0:
                os.close(userns_fd)
            self._release_slot(slot)
            why = report.get("fatal") if report else "the function zygote exited during load"
            raise SandboxUnavailable(f"could not load {spec.name}: {why}")
        fn = LoadedFunction(spec, slot, link, int(reply["pid"]), report, sandbox["cgroups"])
        fn.network, fn.userns_fd = sd["network"], userns_fd
        fn_holder["fn"] = fn
        if fn.network == "nat":
            self._ask_netns(fn)
        return fn

    def _release_slot(self, slot: int) -> None:
        self.cgroups.remove_function(slot)
        self._free_fn_slots.append(slot)

    async def unload(self, fn: LoadedFunction) -> None:
        await asyncio.gather(*(self.stop_instance(i) for i in list(fn.instances.values())), return_exceptions=True)
        fn.unloaded = True
        for fd in fn.netns_ready:
            os.close(fd)
        fn.netns_ready.clear()
        for waiter in fn.netns_waiters:
            if not waiter.done():
                waiter.set_exception(SandboxUnavailable(f"{fn.spec.name} was unloaded"))
        fn.netns_waiters.clear()
        for fd in fn.netns_in_use.values():
            os.close(fd)
        fn.netns_in_use.clear()
        if fn.userns_fd >= 0:
            os.close(fn.userns_fd)
            fn.userns_fd = -1
        fn.link.send({"op": "exit"})
        fn.link.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(fn.pid, 9)
        self.functions.pop(fn.spec.key, None)
        # the zygote (and its namespace factory, which dies with it) must have left its cgroups before they can be
        # removed: wait (bounded) for them to be gone
        for _ in range(200):
            if not _alive(fn.pid) and not any(_has_procs(d) for d in fn.cgroups.values()):
                break
            await asyncio.sleep(0.005)
        self._release_slot(fn.slot)

    # -- instances ----------------------------------------------------------------------------------------
    async def start_instance(self, fn: LoadedFunction, init_type: str | None = None) -> Instance:
        """Fork a sandboxed instance and wait for its init.  Raises InitFailed with Lambda's error document."""
        itype = init_type or ("snap-start" if fn.snapshot else "on-demand")
        netns_fd = await self._take_netns(fn) if fn.network == "nat" else -1
        slot = fn.take_slot()
        node_end, inst_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe()
        fds = [inst_end.fileno(), log_w] + ([netns_fd] if netns_fd >= 0 else [])
        try:
            reply = await fn.link.request({"op": "spawn", "slot": slot, "init_type": itype}, fds)
        except (TimeoutError, ConnectionError) as e:
            fn.free_slots.append(slot)
            node_end.close()
            os.close(log_r)  # inst_end and log_w: closed once, below (a second close could hit a reused number)
            if netns_fd >= 0:
                os.close(netns_fd)
            raise SandboxUnavailable(f"function zygote for {fn.spec.name} is gone: {e}")
        finally:
            inst_end.close()
            os.close(log_w)
        if "error" in reply:
            fn.free_slots.append(slot)
            node_end.close()
            os.close(log_r)
            if netns_fd >= 0:
                self._return_netns(fn, netns_fd)
            raise SandboxUnavailable(f"could not start an instance of {fn.spec.name}: {reply['error']}")
        pid = int(reply["pid"])
        if netns_fd >= 0:
            fn.netns_in_use[pid] = netns_fd
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

    def _forget(self, fn: LoadedFunction, inst: Instance) -> None:
        inst.alive = False
        if fn.instances.pop(inst.pid, None) is not None:
            fn.free_slots.append(inst.slot)
        netns_fd = fn.netns_in_use.pop(inst.pid, None)
        if netns_fd is not None:
            self._return_netns(fn, netns_fd)
        inst.close()

    def _return_netns(self, fn: LoadedFunction, fd: int) -> None:
        """An instance is gone (its PID namespace, hence every process it started, with it): its wired namespace
        goes back to the function's pool for the next instance, as Lambda reuses an execution environment, instead
        of being torn down and another made and wired.  Only within one function; the idle pool keeps at most
        max(netns_pool_size, live instances) namespaces."""
        if fn.unloaded or len(fn.netns_ready) >= max(self.config.netns_pool_size, len(fn.instances)):
            os.close(fd)
            return
        while fn.netns_waiters:
            waiter = fn.netns_waiters.pop(0)
            if not waiter.done():
                waiter.set_result(fd)
                return
        fn.netns_ready.append(fd)

    async def stop_instance(self, inst: Instance) -> None:
        with contextlib.suppress(InstanceDied):
            await inst.stop()
