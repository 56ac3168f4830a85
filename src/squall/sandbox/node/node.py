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
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squall.core.config import NodeConfig
from squall.core.errors import SandboxUnavailable
from squall.core.model import FunctionSpec
from squall.sandbox.node import ephemeral, isolation, runtime_site
from squall.sandbox.node.cgroups import CgroupLayout, FunctionCgroups, OwnedCgroup, oom_kills, wait_empty
from squall.sandbox.node.ephemeral import EphemeralStorage
from squall.sandbox.node.instance import Instance, InstanceDied, _Conn
from squall.sandbox.node.layers import merge_layers
from squall.sandbox.node.link import ZygoteLink
from squall.sandbox.node.network import NetworkUnavailable, NodeNetwork
from squall.sandbox.node.preimport import PreimportBook, candidates, clean_names
from squall.sandbox.node.preimport import preload as preload_names
from squall.sandbox.protocol import Kind, encode

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
    #: the node's own kill switch and freezer (cgroup v2 cgroup.kill / cgroup.freeze); known after Node.start
    killable: bool = False

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
        if self.root and not self.killable:
            out.append(
                "no cgroup v2 cgroup.kill/cgroup.freeze: instances are stopped through their zygote and never frozen"
            )
        return out


@dataclass
class LoadedFunction:
    spec: FunctionSpec
    slot: int
    link: ZygoteLink
    #: the function zygote's host pid, as the base zygote (the platform's own process) reported it: informational
    pid: int
    report: dict[str, Any]
    #: controller (memory, cpu, pids, unified) -> the function's fn-<slot> directory
    cgroups: dict[str, str]
    cg: FunctionCgroups | None = None
    #: a pidfd for the zygote, from the base zygote: how the node stops it where it has no cgroup.kill
    pidfd: int = -1
    #: instance slot -> instance
    instances: dict[int, Instance] = field(default_factory=dict)
    free_slots: list[int] = field(default_factory=list)
    next_slot: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    #: the node's token for an instance (unique per start, unlike slots and pids) -> the zygote's exit report (a hint)
    exits: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    #: the network mode the zygote runs ("nat" falls back to "none" when the node cannot wire namespaces)
    network: str = "none"
    #: the function's user namespace, from the base zygote (what namespaces sent by the zygote are checked against)
    userns_fd: int = -1
    #: network "nat": wired namespaces ready for instances, namespaces asked of the zygote, instances waiting
    netns_ready: list[int] = field(default_factory=list)
    netns_asked: int = 0
    #: the first instance's namespace, sent early by the zygote and still being wired after the load: not in
    #: netns_asked (another namespace the zygote sends must not be taken for it), but counted as coming
    netns_early_wiring: int = 0
    netns_waiters: list[asyncio.Future[int]] = field(default_factory=list)
    #: the namespace each live instance joined (slot -> fd): back to the pool when the instance is gone
    netns_in_use: dict[int, int] = field(default_factory=dict)
    unloaded: bool = False
    unloading: asyncio.Task[None] | None = None
    #: tokens of instances whose exit the zygote may still report (once each)
    reportable: set[int] = field(default_factory=set)
    #: the pinned + learned names of the import probe answer its pre-imports came from (None: none yet)
    probed_for: tuple[str, ...] | None = None
    #: the import probe running in its zygote's background (squall.node.preimport), and whether one is due after it
    probe_task: asyncio.Task[None] | None = None
    probe_again: bool = False
    #: unloaded on purpose (Node.unload), not because its zygote died
    stopped: bool = False
    #: per-slot /tmp filesystems (on disk, not charged to memory); None: instances use a tmpfs
    tmp: EphemeralStorage | None = None
    #: instances made ahead of need, parked in their sandbox before any of the function's code (also in instances)
    spares: list[Instance] = field(default_factory=list)
    spare_task: asyncio.Task[None] | None = None
    #: start_instance calls in flight (spares are made only when none is)
    starting: int = 0

    @property
    def preloaded(self) -> list[str]:
        return list(self.report.get("preloaded", []))

    @property
    def snapshot(self) -> bool:
        return bool(self.report.get("snapshot"))

    @property
    def kill_cgroup(self) -> str | None:
        """The function's cgroup v2 directory: ``cgroup.kill`` there stops its zygote and every instance."""
        return self.cgroups.get("unified")

    def take_slot(self) -> int:
        return self.free_slots.pop() if self.free_slots else next(self.next_slot)


#: a function's spare instances are topped up this long after its last instance start (seconds)
SPARE_DELAY_S = 0.05

#: largest control message a function zygote may send (its load report carries warnings and an init error document)
ZYGOTE_MAX_MESSAGE = 256 * 1024


def _strs(v: Any, limit: int = 1000) -> list[str]:
    return [str(x)[:limit] for x in v][:1000] if isinstance(v, list) else []


def _sanitize_report(rep: dict[str, Any] | None) -> dict[str, Any] | None:
    """A function zygote's load report, in the types the node relies on (the zygote runs the function's code)."""
    if rep is None:
        return None
    out: dict[str, Any] = {
        k: rep.get(k) for k in ("probe_ms", "preload_ms", "load_ms") if isinstance(rep.get(k), float)
    }
    if rep.get("fatal"):
        out["fatal"] = str(rep["fatal"])[:2000]
    phases = rep.get("phases")
    if isinstance(phases, dict):
        out["phases"] = {
            str(k)[:40]: float(v) for k, v in list(phases.items())[:20] if isinstance(v, (int, float)) and v == v
        }
    out["op"] = str(rep.get("op", ""))
    out["warnings"] = _strs(rep.get("warnings"))
    out["preloaded"] = _strs(rep.get("preloaded"), 200)
    out["snapshot"] = rep.get("snapshot") is True
    out["netns_early"] = rep.get("netns_early") is True
    threads = rep.get("threads", 1)
    out["threads"] = threads if isinstance(threads, int) and not isinstance(threads, bool) else 2
    if "probe" in rep:
        out["probe"] = _strs(rep["probe"], 200) if isinstance(rep["probe"], list) else None
    if rep.get("probe_error"):
        out["probe_error"] = str(rep["probe_error"])[:2000]
    if rep.get("init_error") is not None:
        err = rep["init_error"]
        out["init_error"] = err if isinstance(err, dict) else {"errorType": "Runtime.Unknown", "errorMessage": str(err)}
    return out


def _code_id(spec: FunctionSpec) -> str:
    """The code part of a spec's digest ("CodeSha256:RevisionId"): a configuration change keeps what was learned."""
    return spec.code_sha256.split(":", 1)[0]


class _ZygoteFailed(Exception):
    """A function zygote died or hung while loading."""


#: the only variables of the node's environment the zygotes inherit.  Everything else (keys, tokens) stays out:
#: a process's initial environment block remains readable in its memory (/proc/self/environ) even after
#: os.environ.clear(), and every instance is a fork of the base zygote.
_ZYGOTE_ENV_KEEP = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV")


def _zygote_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _ZYGOTE_ENV_KEEP if k in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _raise_nofile() -> None:
    """Each instance holds two fds in the node (socket, log pipe): lift the soft limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@dataclass
class _EarlyNetns:
    """The first instance's network namespace ("nat"): how many the zygote may still send (``left``), how many are
    being wired, those wired before the load finished."""

    left: int
    wiring: int = 0
    ready: list[int] = field(default_factory=list)
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        for fd in self.ready:
            os.close(fd)
        self.ready.clear()


class Node:
    """One machine's zygotes and instances."""

    def __init__(self, config: NodeConfig | None = None) -> None:
        self.config = config or NodeConfig()
        self.cgroups = CgroupLayout(self.config.cgroup_name)
        self.caps = Capabilities.detect(self.cgroups)
        self._base: ZygoteLink | None = None
        self._base_proc: subprocess.Popen[bytes] | None = None
        self._slots = itertools.count(1)
        self._tokens = itertools.count(1)
        self._free_fn_slots: list[int] = []
        #: the import probe's last answer per loaded version: (the pinned/learned names it was given, its answer)
        #: what each function version's code was seen importing: its next zygote's probe tries those names
        self.preimport = PreimportBook(self.config.data_dir / "preimport")
        #: function versions (by code digest) whose zygote died or hung while loading: later zygotes pre-import nothing
        self._bare: set[str] = set()
        #: why, where known (a zygote that died while pre-importing in place)
        self._bare_why: dict[str, str] = {}
        self.functions: dict[str, LoadedFunction] = {}
        #: every function zygote this node runs (a version loaded twice has two), by id: close() stops them all
        self._running: dict[int, LoadedFunction] = {}
        self._staged: set[Path] = set()
        c = self.config
        self.network = NodeNetwork(c.cgroup_name, c.network_cidr, c.network_slice_prefix)
        #: one thread wires namespaces (netlink; it briefly enters each namespace) and sets the network up
        self._net_exec = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="squall-network")
        self._net_watch: asyncio.Task[None] | None = None
        #: /tmp of instances on disk (ephemeral.py) where loop devices can be used
        self._ephemeral = self.caps.root and ephemeral.available()
        #: spare instances per warm function zygote (SQUALL_SPARE_INSTANCES; a bench alternates it)
        self.spare_instances = self.config.spare_instances
        #: a per-phase breakdown of every instance creation (Instance.spawn_phases): for bench/sandbox_start.py
        #: --phases only (set before loading functions), never in production
        self.spawn_phases = False

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        _raise_nofile()
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.caps.namespaces:
            with contextlib.suppress(OSError):
                Path("/var/task").mkdir(parents=True, exist_ok=True)
        self.cgroups.setup()
        # the runtime site-packages functions see (/var/runtime): built now, not by the first zygote (which may
        # start when the disk is already full)
        await asyncio.to_thread(runtime_site.ensure, self.config.data_dir)
        if self._ephemeral:  # the default /tmp size's template, formatted before any first cold start needs it
            fut = ephemeral.EXECUTOR.submit(EphemeralStorage.make_template, self.config.data_dir, 512)
            fut.add_done_callback(lambda f: f.exception())  # (an error is first use's to report)
        self.caps = dataclasses.replace(self.caps, killable=self.cgroups.killable)
        for why in self.caps.missing():
            log.warning("sandbox degraded: %s", why)
        await self._setup_network()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._base_proc = subprocess.Popen(
            [sys.executable, "-m", "squall.sandbox.node.zygote", str(child.fileno())],
            pass_fds=[child.fileno()],
            env=_zygote_env(),
        )
        child.close()
        self._base = ZygoteLink(parent)
        ready = await self._base.next_unsolicited(60)
        if not ready or ready.get("op") != "ready":
            raise SandboxUnavailable("the base zygote did not start; see the server log")

    async def close(self) -> None:
        every = {id(fn): fn for fn in [*self.functions.values(), *self._running.values()]}
        await asyncio.gather(*(self.unload(fn) for fn in every.values()), return_exceptions=True)
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
        self._hand_netns(fn, fd)

    @staticmethod
    def _hand_netns(fn: LoadedFunction, fd: int) -> None:
        """A wired namespace to the first start waiting for one, else into ``fn``'s pool."""
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

    async def _wire_early(self, early: _EarlyNetns, holder: dict[str, LoadedFunction], fd: int, userns_fd: int) -> None:
        """The first instance's namespace, sent by the zygote during its load: wired now, kept until the load
        finishes (then it counts as the first of the function's pool), handed over if the load finished meanwhile,
        or closed if the load failed or the function is gone."""
        userns = os.dup(userns_fd) if userns_fd >= 0 else -1
        ok = False
        try:
            if userns < 0:
                raise PermissionError("the function has no user namespace")
            await asyncio.get_running_loop().run_in_executor(self._net_exec, self.network.wire, fd, userns)
            ok = True
        except Exception as e:
            log.warning("could not wire a network namespace during a zygote's load: %s", e)
        finally:
            if userns >= 0:
                with contextlib.suppress(OSError):
                    os.close(userns)
        early.wiring -= 1
        fn = holder.get("fn")
        if fn is None:  # still loading (or the load failed: close() closes what is kept)
            if ok and not early.closed:
                early.ready.append(fd)
            else:
                os.close(fd)
            return
        fn.netns_early_wiring -= 1
        if not ok or fn.unloaded:
            os.close(fd)
            if not ok:
                self._ask_netns(fn)
            return
        self._hand_netns(fn, fd)

    def _netns_failed(self, fn: LoadedFunction, why: str) -> None:
        log.warning("function %s: %s", fn.spec.name, why)
        while fn.netns_waiters:
            waiter = fn.netns_waiters.pop(0)
            if not waiter.done():
                waiter.set_exception(SandboxUnavailable(f"{fn.spec.name}: {why}"))
                return

    def _ask_netns(self, fn: LoadedFunction, fill: bool = False) -> None:
        """Top the pool up to netns_pool_size wired namespaces (plus one per waiting instance) once it is below
        half of that (``fill``: at all, as after a load): namespaces of instances that are gone come back (see
        _return_netns), so a steady trickle of cold starts makes none.  The zygote makes them when it has nothing
        else to do."""
        size, waiting, have = self.config.netns_pool_size, len(fn.netns_waiters), len(fn.netns_ready) + fn.netns_asked
        have += fn.netns_early_wiring
        want = size + waiting - have
        low = size if fill else max(1, size // 2)
        if waiting + low - have > 0 and want > 0 and not fn.link.closed.is_set():
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
    def _sandbox_for(self, slot: int, memory_mb: int) -> tuple[dict[str, Any], FunctionCgroups | None]:
        c = self.config
        host_base = c.uid_base + slot * 65536
        fc = None
        if self.caps.cgroups or self.caps.killable:
            fc = self.cgroups.create_function(
                slot, host_base, zygote_memory_mb=memory_mb + c.zygote_memory_mb, zygote_pids_max=c.pids_max
            )
        sandbox = {
            "userns": self.caps.userns,
            "namespaces": self.caps.namespaces,
            "drop_privileges": self.caps.root,
            "seccomp": self.caps.seccomp,
            "cgroups": {"fn": fc.dirs, "zygote": fc.zygote_dirs()} if fc is not None else {},
            "unified_mount": str(self.cgroups.unified) if fc is not None and "unified" in fc.dirs else None,
            "uid_base": host_base,
            "instance_uid_first": c.instance_uid_first,
            "pids_max": c.pids_max,
            "cpu_shares": self._cpu_shares(memory_mb),
            "nofile_max": c.nofile_max,
            "sched_batch": c.instance_sched == "batch",
            "init_timeout_s": c.init_timeout_s,
            "netns_pool_size": c.netns_pool_size,
            "data_dir": str(c.data_dir),
        }
        if self.spawn_phases:
            sandbox["phases"] = True
        return sandbox, fc

    def _cpu_shares(self, memory_mb: int) -> int:
        c = self.config
        return max(2, memory_mb * c.cpu_shares_per_vcpu // c.mb_per_vcpu)

    async def load(self, spec: FunctionSpec, *, preload: list[str] | None = None) -> LoadedFunction:
        """Start the function's zygote: probe its imports (cached by code digest) and pre-import them.

        A zygote that does not come up (it died: out of memory, a crash in import-time code; or it hung past the
        load timeout) is stopped and replaced by one that pre-imports nothing: the function's instances then import
        its code themselves, under their own limits and init timeout."""
        if self._base is None:
            raise SandboxUnavailable("node not started")
        spec = self._stage(spec)
        bare = spec.key in self._bare
        names, probed_for = self._preload_for(spec)
        if preload is not None:
            names, probed_for = list(preload), None
        try:
            fn = await self._start_zygote(spec, [] if bare else names, spec.snapshot and not bare)
            fn.probed_for = probed_for
            note = self.preimport.get(spec.name, spec.version).note if probed_for is not None else ""
            if note:
                fn.report.setdefault("warnings", []).append(f"import probe: {note}")
            if bare:
                fn.report.setdefault("warnings", []).append(
                    "a zygote without pre-imports: this code's zygote died or hung while loading before"
                    + (f" ({self._bare_why[spec.key]})" if spec.key in self._bare_why else "")
                )
        except _ZygoteFailed as e:
            log.warning("function %s: %s; using a zygote that pre-imports nothing", spec.name, e)
            if spec.code_sha256:  # the same code would do the same again: its next zygotes skip it
                self._bare.add(spec.key)
            try:
                fn = await self._start_zygote(spec, [], False)
            except _ZygoteFailed as e2:
                raise SandboxUnavailable(f"could not load {spec.name}: {e2}") from None
            fn.report.setdefault("warnings", []).append(f"fell back to a zygote without pre-imports: {e}")
            self.functions[spec.key] = fn
            return fn
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
            if spec.code_sha256:
                self._bare.add(spec.key)
            try:
                fn = await self._start_zygote(spec, [], False)
            except _ZygoteFailed as e2:
                raise SandboxUnavailable(f"could not load {spec.name}: {e2}") from None
            fn.report.setdefault("warnings", []).append(f"fell back to a zygote without pre-imports: {why}")
        for w in fn.report.get("warnings", []):
            log.warning("function %s: %s", spec.name, w)
        self.functions[spec.key] = fn
        self._maybe_probe(fn)
        self._want_spares(fn)
        return fn

    def _preload_for(self, spec: FunctionSpec) -> tuple[list[str], tuple[str, ...] | None]:
        """(what a new zygote of ``spec`` pre-imports, the candidates the probe answer it uses was given)."""
        if spec.runtime.startswith("provided"):  # a custom runtime's bootstrap imports nothing in the zygote
            return [], None
        pinned = clean_names(list(spec.preimport))
        if not spec.code_sha256:
            return pinned, None
        state = self.preimport.get(spec.name, spec.version)
        if state.code != _code_id(spec) or state.probed_for is None:
            return pinned, None
        return preload_names(pinned, state, _code_id(spec)), state.probed_for

    def _maybe_probe(self, fn: LoadedFunction) -> None:
        """Have ``fn``'s zygote run the import probe in the background when the pinned and learned names changed
        since the answer its pre-imports came from; it then pre-imports the answer in place, and the answer is kept
        for the next zygotes (PreimportBook).  Never on a request's path."""
        spec = fn.spec
        if (
            not spec.code_sha256 or spec.snapshot or spec.runtime.startswith("provided") or spec.key in self._bare
            or fn.unloading is not None or fn.link.closed.is_set()
        ):  # fmt: skip
            return
        cands = tuple(self.preimport_candidates(spec))
        if cands == fn.probed_for or (not cands and fn.probed_for is None and not spec.preimport):
            return
        if fn.probe_task is not None and not fn.probe_task.done():
            fn.probe_again = True
            return
        fn.probe_task = asyncio.get_running_loop().create_task(self._probe(fn, cands))

    async def _probe(self, fn: LoadedFunction, cands: tuple[str, ...]) -> None:
        spec = fn.spec
        timeout_s = self.config.init_timeout_s + self.config.zygote_timeout_s
        if fn.cg is not None and 0 not in fn.cg.limits:  # slot 0, the probe's: made on first use, not at load
            try:
                await asyncio.to_thread(
                    self.cgroups.prepare_instance, fn.cg, 0, spec.memory_mb, self._cpu_shares(spec.memory_mb),
                    self.config.pids_max,
                )  # fmt: skip
            except OSError as e:
                log.warning("function %s: no cgroups for the import probe (%s): not probing", spec.name, e)
                return
        try:
            reply = await fn.link.request({"op": "probe", "candidates": list(cands)}, timeout_s=timeout_s)
        except TimeoutError:
            log.warning("function %s: its zygote did not finish the import probe in %g s; stopping it",
                        spec.name, timeout_s)  # fmt: skip
            self._bare.add(spec.key)
            if fn.unloading is None:
                fn.unloading = asyncio.ensure_future(self._unload(fn))
            return
        except ConnectionError:
            if fn.stopped:  # unloaded on purpose (scale to zero, a deploy): the next zygote probes again
                return
            # the zygote died while probing or pre-importing in place (out of memory, a crash in import-time code):
            # the same code would do it again, so its next zygotes pre-import nothing
            self._bare.add(spec.key)
            why = "the function zygote exited while pre-importing what the import probe found"
            if fn.cg is not None and fn.cg.dirs.get("memory") and oom_kills(Path(fn.cg.dirs["memory"]) / "zygote"):
                why = (
                    "the function zygote ran out of memory during pre-import (limit "
                    f"{spec.memory_mb + self.config.zygote_memory_mb} MB: MemorySize + SQUALL_ZYGOTE_MEMORY_MB)"
                )
            self._bare_why[spec.key] = why
            log.warning("function %s: %s; its next zygote pre-imports nothing", spec.name, why)
            return
        if reply.get("error"):
            why = str(reply["error"])[:500]
            log.warning("function %s: import probe: %s", spec.name, why)
            fn.report.setdefault("warnings", []).append(f"import probe: {why}")
            self.preimport.record_probe(spec.name, spec.version, _code_id(spec), cands, [], note=why)
            fn.probed_for = cands
        else:
            state = self.preimport.record_probe(spec.name, spec.version, _code_id(spec), cands, reply.get("probe"))
            fn.probed_for = cands
            done = clean_names(reply.get("preloaded"))
            fn.report["preloaded"] = clean_names([*fn.report.get("preloaded", []), *done])
            if done:  # the spares were forked before these: later ones have them
                await self.drop_spares(fn)
            fn.report["probe"] = list(state.deps)
            for w in _strs(reply.get("warnings"))[:20]:
                log.warning("function %s: %s", spec.name, w)
            threads = reply.get("threads", 1)
            if not isinstance(threads, int) or threads > 1:
                log.warning("function %s: %s threads after pre-import; forking from its zygote is unsafe: stopping "
                            "it (its next zygote pre-imports nothing)", spec.name, threads)  # fmt: skip
                self._bare.add(spec.key)
                if fn.unloading is None:
                    fn.unloading = asyncio.ensure_future(self._unload(fn))
                return
        if fn.probe_again:
            fn.probe_again = False
            # this task is ending but not done yet: without forgetting it, _maybe_probe would see a probe running,
            # set probe_again and return, and names learned during this probe would never be probed
            fn.probe_task = None
            self._maybe_probe(fn)

    async def preimports_settled(self, fn: LoadedFunction, timeout_s: float = 60.0) -> None:
        """Wait (bounded) until no import probe of ``fn``'s zygote is running or due (tests and benchmarks)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while fn.probe_task is not None and not fn.probe_task.done():
            await asyncio.wait_for(
                asyncio.shield(fn.probe_task), max(0.0, deadline - asyncio.get_running_loop().time())
            )

    def preimport_candidates(self, spec: FunctionSpec) -> list[str]:
        """Names the next zygote of ``spec`` hands its import probe: pinned ones, then what its code was seen
        importing (nothing learned without a code digest: what was learned must belong to this code)."""
        if not spec.code_sha256:
            return clean_names(list(spec.preimport))
        learned = self.preimport.get(spec.name, spec.version)
        return candidates(spec.preimport, learned, _code_id(spec))

    def learned_imports(self, name: str, version: str, code_sha256: str) -> dict[str, Any]:
        """What the node learned for a version whose code is ``code_sha256`` (nothing for other code), for the API:
        ``learned`` (what its instances were seen importing), ``preloaded`` (what the import probe imported: the
        next zygote pre-imports it, after the pinned names), ``note`` (why the probe pre-imports nothing)."""
        got = self.preimport.get(name, version)
        if got.code != code_sha256.split(":", 1)[0]:
            return {"learned": [], "preloaded": [], "probed": False, "truncated": False, "note": ""}
        return {
            "learned": list(got.modules), "preloaded": list(got.deps), "probed": got.probed_for is not None,
            "truncated": got.truncated, "note": got.note,
        }  # fmt: skip

    def _learn(self, fn: LoadedFunction, names: Any) -> None:
        """An instance of ``fn`` reported imports (hostile input: squall.node.preimport.learn validates it)."""
        spec = fn.spec
        before = self.preimport.get(spec.name, spec.version)
        if self.preimport.learn(spec.name, spec.version, _code_id(spec), names) != before:
            self._maybe_probe(fn)

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

    def _load_timeout_s(self) -> float:
        """A zygote's load: the import probe (init timeout), the pre-imports or snapshot init (another), a margin."""
        return 2 * self.config.init_timeout_s + self.config.zygote_timeout_s

    async def _start_zygote(self, spec: FunctionSpec, preload: list[str], snapshot: bool) -> LoadedFunction:
        assert self._base is not None
        t0 = time.perf_counter()
        node_ms: dict[str, float] = {}
        slot = self._free_fn_slots.pop() if self._free_fn_slots else next(self._slots)
        try:
            sandbox, fc = self._sandbox_for(slot, spec.memory_mb)
        except OSError as e:
            self._free_fn_slots.append(slot)
            raise SandboxUnavailable(f"could not create the cgroups of {spec.name}: {e}") from None
        node_ms["cgroups"] = (time.perf_counter() - t0) * 1000
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
        sd["candidates"] = []
        if spec.network == "nat" and not self.network.available:
            sd["network"] = "none"
        # the first instance's network namespace ("nat": wired here while the zygote loads; "none": pooled in the
        # zygote), made by the zygote's namespace factory before any function code runs
        sd["netns_early"] = (
            1 if sd["network"] in ("nat", "none") and sandbox["namespaces"] and self.config.netns_pool_size > 0 else 0
        )
        tmp = None
        if self._ephemeral and sandbox["namespaces"]:
            tmp = EphemeralStorage(self.config.data_dir, spec.tmp_mb)
            tmp.prefetch(1)  # the first cold start's /tmp, made while the zygote loads
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        t_clone = time.perf_counter()
        node_ms["before_clone"] = (t_clone - t0) * 1000
        try:
            reply = await self._base.request(
                {"op": "function", "spec": sd, "sandbox": sandbox}, [child.fileno()], keep_fds=True
            )
        finally:
            child.close()
        node_ms["clone"] = (time.perf_counter() - t_clone) * 1000
        # the base zygote's side of it (the platform's own process): clone, the child's set-up until its user
        # namespace exists (cgroups, mounts), the ID maps; the rest is messaging
        for k, v in (reply.get("ms") or {}).items():
            node_ms[f"base_{k}"] = float(v)
        got_fds: list[int] = reply.pop("_fds", None) or []
        pidfd = got_fds.pop(0) if got_fds else -1
        userns_fd = got_fds.pop(0) if got_fds and reply.get("userns") else -1
        for extra in got_fds:
            os.close(extra)
        if "error" in reply:
            if tmp is not None:
                tmp.close()
            parent.close()
            if userns_fd >= 0:
                os.close(userns_fd)
            await self._release_function(slot, fc, pidfd)
            raise SandboxUnavailable(f"could not start a zygote for {spec.name}: {reply['error']}")
        fn_holder: dict[str, LoadedFunction] = {}
        link_holder: list[ZygoteLink] = []
        own_netns = {"asked": sd["network"] == "nat"}  # the zygote's own namespace may be wired once, at load
        # "nat": the first instance's namespace, made while the zygote loads: at most one, the first of its pool
        early: _EarlyNetns = _EarlyNetns(1 if sd["network"] == "nat" and sd["netns_early"] else 0)
        # the first instance's slot: its cgroups are made while the zygote loads (fn.take_slot() gives 1 first)
        first_slot: asyncio.Future[Any] | None = None
        if fc is not None:
            first_slot = asyncio.ensure_future(asyncio.to_thread(
                self.cgroups.prepare_instance, fc, 1, spec.memory_mb, self._cpu_shares(spec.memory_mb),
                self.config.pids_max,
            ))  # fmt: skip

        def on_netns(msg: dict[str, Any], fds: list[int]) -> None:
            fn = fn_holder.get("fn")
            if fn is None and msg.get("self") and own_netns.pop("asked", False) and len(fds) == 1 and link_holder:
                asyncio.get_running_loop().create_task(self._wire_zygote(link_holder[0], fds[0], userns_fd))
                return
            if msg.get("early") and early.left > 0 and len(fds) <= 1:
                early.left -= 1
                if fn is not None:  # after the load: counted in fn.netns_asked then, as if asked for
                    if fds:
                        self._on_netns(fn, msg, fds)
                    else:
                        fn.netns_asked -= 1
                        self._ask_netns(fn)
                    return
                if fds:
                    early.wiring += 1
                    asyncio.get_running_loop().create_task(self._wire_early(early, fn_holder, fds[0], userns_fd))
                return
            self._on_netns(fn, msg, fds)

        def on_exit(msg: dict[str, Any]) -> None:
            f = fn_holder.get("fn")
            if f is None:
                return
            token, status = int(msg["token"]), int(msg["status"])
            if token not in f.reportable:  # no instance of ours: the zygote is not following the protocol
                raise ValueError(f"exit report for unknown instance {token}")
            f.reportable.discard(token)
            fut = f.exits.pop(token, None)
            if fut is not None and not fut.done():
                fut.set_result(status)

        def on_close() -> None:
            f = fn_holder.get("fn")
            if f is None or f.unloading is not None:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # the node's loop is shutting down
                return
            log.warning("function %s: its zygote exited; it is stopped and the next invocation starts a new one",
                        f.spec.name)  # fmt: skip
            f.unloading = loop.create_task(self._unload(f))

        link = ZygoteLink(parent, on_exit, on_close, max_bytes=ZYGOTE_MAX_MESSAGE, on_fds=on_netns, fd_ops=("netns",))
        link_holder.append(link)
        try:
            report = _sanitize_report(await link.next_unsolicited(self._load_timeout_s()))
        except TimeoutError:
            report = {"fatal": f"the function zygote did not finish loading within {self._load_timeout_s():.0f} s"}
            failed = True
        else:
            failed = report is None
            if report is None:
                report = {"fatal": "the function zygote exited during load"}
                if fc is not None and fc.dirs.get("memory") and oom_kills(Path(fc.dirs["memory"]) / "zygote"):
                    report["fatal"] = (
                        "the function zygote ran out of memory during pre-import or init (limit "
                        f"{spec.memory_mb + self.config.zygote_memory_mb} MB: MemorySize + SQUALL_ZYGOTE_MEMORY_MB)"
                    )
        if first_slot is not None:
            with contextlib.suppress(OSError):  # (else the first instance makes them: start_instance)
                await first_slot
        if report.get("fatal"):
            early.close()
            if tmp is not None:
                tmp.close()
            link.close()
            if userns_fd >= 0:
                os.close(userns_fd)
            if fc is not None and fc.function is not None:
                fc.function.kill()
            await self._release_function(slot, fc, pidfd)
            if failed:
                raise _ZygoteFailed(report["fatal"])
            raise SandboxUnavailable(f"could not load {spec.name}: {report['fatal']}")
        node_ms["total"] = (time.perf_counter() - t0) * 1000
        report["node_ms"] = {k: round(v, 3) for k, v in node_ms.items()}
        fn = LoadedFunction(
            spec, slot, link, int(reply["pid"]), report, dict(fc.dirs) if fc else {}, cg=fc, pidfd=pidfd
        )
        fn.network, fn.userns_fd = sd["network"], userns_fd
        fn.tmp = tmp
        fn_holder["fn"] = fn
        # the first instance's namespace counts as the first of the pool's: wired already, being wired (_wire_early
        # hands it over) or still to come (if the zygote says it asked its factory for one)
        fn.netns_ready.extend(early.ready)
        early.ready.clear()
        if not report.get("netns_early"):
            early.left = 0
        fn.netns_asked += early.left
        fn.netns_early_wiring = early.wiring
        self._running[id(fn)] = fn
        if fn.network == "nat":
            self._ask_netns(fn, fill=True)
        if link.closed.is_set():  # it died right after its report
            on_close()
        return fn

    async def _release_function(self, slot: int, fc: FunctionCgroups | None, pidfd: int) -> None:
        """Stop whatever is left of a function (through its cgroup, or the zygote's pidfd), remove its cgroups and
        free its slot once they are gone."""
        if pidfd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        empty = True
        if fc is not None:
            if fc.function is not None:
                fc.function.kill()
                empty = await wait_empty(fc.function, 10.0)
            elif pidfd >= 0:
                await _wait_pidfd(pidfd, 5.0)
            removed = await asyncio.to_thread(self.cgroups.remove_function, fc)  # ~0.7 ms per slot: off the loop
            empty = empty and removed
        if pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(pidfd)
        if empty:
            self._free_fn_slots.append(slot)
        else:
            log.warning("function slot %d: processes or cgroups left behind; the slot is not reused", slot)

    async def unload(self, fn: LoadedFunction) -> None:
        """Stop the function's zygote and every instance (one ``cgroup.kill`` of the function's cgroup), remove its
        cgroups.  Idempotent."""
        fn.stopped = True
        if fn.unloading is None:
            fn.unloading = asyncio.ensure_future(self._unload(fn))
        await asyncio.shield(fn.unloading)

    async def _unload(self, fn: LoadedFunction) -> None:
        if self.functions.get(fn.spec.key) is fn:
            self.functions.pop(fn.spec.key, None)
        self._running.pop(id(fn), None)
        fn.link.send({"op": "exit"})
        fn.link.close()
        insts = list(fn.instances.values())
        for inst in insts:
            inst.alive = False
        if fn.cg is not None and fn.cg.function is not None:
            fn.cg.function.kill()  # the zygote and every instance, frozen or not
        elif fn.pidfd >= 0:
            # no cgroup.kill here: the zygote asked to exit took its instances (PID 1 of their namespaces' parent,
            # or it killed them itself); make sure it is gone through the node's pidfd, then no report will come
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fn.pidfd, signal.SIGKILL)
            await _wait_pidfd(fn.pidfd, 5.0)
            for fut in fn.exits.values():
                fut.cancel()
        await asyncio.gather(*(self.stop_instance(i) for i in insts), return_exceptions=True)
        fn.instances.clear()
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
        if fn.tmp is not None:
            fn.tmp.close()
        await self._release_function(fn.slot, fn.cg, fn.pidfd)
        fn.pidfd = -1

    # -- instances ----------------------------------------------------------------------------------------
    async def start_instance(self, fn: LoadedFunction, init_type: str | None = None) -> Instance:
        """Fork a sandboxed instance (or take a spare one: made ahead, parked before any of the function's code)
        and wait for its init.  Raises InitFailed with Lambda's error document."""
        if fn.unloading is not None or fn.link.closed.is_set():
            raise SandboxUnavailable(
                f"the function zygote of {fn.spec.name} is gone; the next invocation starts a new one"
            )
        marks = [["start", *_now()]] if self.spawn_phases else None
        itype = init_type or ("snap-start" if fn.snapshot else "on-demand")
        fn.starting += 1
        try:
            inst = self._take_spare(fn)
            if inst is not None:
                inst.init_type = itype
                try:
                    inst.conn.send(encode(Kind.START, {"init_type": itype}))
                except InstanceDied:  # gone since it parked: fork one on demand instead
                    inst.ensure_gone()
                    inst = None
                if marks is not None:
                    marks.append(["spare", *_now()])
            if inst is None:
                inst = await self._spawn(fn, itype, marks)
            try:
                await inst.wait_ready(self.config.init_timeout_s)
            except BaseException:
                inst.ensure_gone()
                raise
        finally:
            fn.starting -= 1
            self._want_spares(fn)
        if marks is not None:
            marks.append(["ready", *_now()])
            # what the zygote and the instance say about themselves: display only (a bench's breakdown)
            inst.spawn_phases = {"node": marks, "zygote": inst.zygote_marks, "instance": inst.ready_marks}
        return inst

    def _spares_wanted(self, fn: LoadedFunction) -> int:
        """Spare instances ``fn`` should have: none for a custom runtime (its bootstrap speaks the Runtime API)."""
        if fn.unloading is not None or fn.unloaded or fn.spec.runtime.startswith("provided"):
            return 0
        return self.spare_instances

    def _take_spare(self, fn: LoadedFunction) -> Instance | None:
        while fn.spares:
            inst = fn.spares.pop(0)
            if inst.alive and not inst.conn.lost:
                inst.spare = False
                return inst
        return None

    def _want_spares(self, fn: LoadedFunction) -> None:
        """Top up ``fn``'s spare instances in the background, SPARE_DELAY_S after the last start of it (a burst's
        starts, and the first invocation of the instance just started, never compete with making one)."""
        if fn.starting or len(fn.spares) >= self._spares_wanted(fn):
            return
        if fn.spare_task is None or fn.spare_task.done():
            fn.spare_task = asyncio.get_running_loop().create_task(self._fill_spares(fn))

    async def _fill_spares(self, fn: LoadedFunction) -> None:
        await asyncio.sleep(SPARE_DELAY_S)
        while not fn.starting and len(fn.spares) < self._spares_wanted(fn) and not fn.link.closed.is_set():
            try:
                inst = await self._spawn(fn, "on-demand", None, spare=True)
            except (SandboxUnavailable, OSError) as e:
                log.debug("function %s: no spare instance: %s", fn.spec.name, e)
                return
            inst.spare = True
            fn.spares.append(inst)

    async def drop_spares(self, fn: LoadedFunction) -> None:
        """Stop ``fn``'s spare instances (e.g. forked before the zygote pre-imported more), then make new ones."""
        task = fn.spare_task
        if task is not None and not task.done():  # one being made (never cancelled mid-spawn): stopped too
            await asyncio.wait({task}, timeout=self.config.zygote_timeout_s + self.config.init_timeout_s)
        spares, fn.spares = fn.spares, []
        await asyncio.gather(*(inst.ensure_gone() for inst in spares), return_exceptions=True)
        self._want_spares(fn)

    async def spares_parked(self, fn: LoadedFunction, timeout_s: float = 10.0) -> int:
        """Wait (bounded) until ``fn`` has its spare instances, each parked; returns how many (benchmarks, tests)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            want = self._spares_wanted(fn)
            if len(fn.spares) >= want and all(i.parked.is_set() for i in fn.spares):
                return len(fn.spares)
            self._want_spares(fn)
            await asyncio.sleep(0.002)
        return sum(1 for i in fn.spares if i.parked.is_set())

    async def _spawn(
        self, fn: LoadedFunction, itype: str, marks: list[list[Any]] | None, spare: bool = False
    ) -> Instance:
        """Fork an instance into a free slot (a spare one parks, sandboxed, until START); returns it before its init."""
        netns_fd = await self._take_netns(fn) if fn.network == "nat" else -1
        if marks is not None:
            marks.append(["netns", *_now()])
        slot = fn.take_slot()
        inst_cg: OwnedCgroup | None = None
        if fn.cg is not None:
            fn.cg.fit_zygote(len(fn.instances) + 1)
            args = (fn.cg, slot, fn.spec.memory_mb, self._cpu_shares(fn.spec.memory_mb), self.config.pids_max)
            try:
                if slot in fn.cg.limits:  # a reused slot: one write
                    inst_cg = self.cgroups.prepare_instance(*args)
                else:  # a new slot: mkdir in four hierarchies (~0.6 ms of kernel work), off the event loop
                    inst_cg = await asyncio.to_thread(self.cgroups.prepare_instance, *args)
            except OSError as e:
                fn.free_slots.append(slot)
                raise SandboxUnavailable(f"could not prepare the cgroups of an instance of {fn.spec.name}: {e}")
        if marks is not None:
            marks.append(["cgroups", *_now()])
        tmp_fd = await self._tmp_mount(fn, slot)
        if marks is not None:
            marks.append(["tmp", *_now()])
        node_end, inst_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe()
        timeout_s = self.config.zygote_timeout_s
        token = next(self._tokens)
        fds = [inst_end.fileno(), log_w] + ([netns_fd] if netns_fd >= 0 else []) + ([tmp_fd] if tmp_fd >= 0 else [])
        spawn = {"op": "spawn", "slot": slot, "token": token, "init_type": itype, "netns": netns_fd >= 0}
        spawn["tmp"] = tmp_fd >= 0
        if spare:
            spawn["spare"] = True
        if marks is not None:
            marks.append(["request", *_now()])
        try:
            reply = await fn.link.request(spawn, fds, timeout_s=timeout_s)
        except (TimeoutError, ConnectionError) as e:
            node_end.close()
            os.close(log_r)  # inst_end and log_w: closed once, below (a second close could hit a reused number)
            if netns_fd >= 0:
                os.close(netns_fd)
            hung = isinstance(e, TimeoutError)
            if fn.unloading is None:
                fn.unloading = asyncio.ensure_future(self._unload(fn))
            why = f"did not answer within {timeout_s:g} s" if hung else "exited"
            log.warning("function %s: its zygote %s; stopping it", fn.spec.name, why)
            raise SandboxUnavailable(
                f"the function zygote of {fn.spec.name} {why}; it was stopped and the next invocation starts a new one"
            ) from None
        finally:
            inst_end.close()
            os.close(log_w)
            if tmp_fd >= 0:
                os.close(tmp_fd)
        if "error" in reply:
            node_end.close()
            os.close(log_r)
            # the zygote may lie: the slot (and its network namespace) is reused only once its cgroup is empty
            if inst_cg is not None:
                inst_cg.kill()
                empty = await wait_empty(inst_cg, 2.0)
            else:
                empty = True
            if empty:
                fn.free_slots.append(slot)
            if netns_fd >= 0:
                if empty:
                    self._return_netns(fn, netns_fd)
                else:
                    os.close(netns_fd)
            raise SandboxUnavailable(f"could not start an instance of {fn.spec.name}: {reply['error']}")
        if marks is not None:
            marks.append(["spawned", *_now()])
        try:
            pid = int(reply.get("pid", 0))
        except (TypeError, ValueError):
            pid = 0
        if netns_fd >= 0:
            fn.netns_in_use[slot] = netns_fd
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[int] = loop.create_future()
        fn.exits[token] = exited
        fn.reportable.add(token)
        _, conn = await loop.create_connection(_Conn, sock=node_end)
        mem_dir = Path(fn.cgroups["memory"]) / f"i{slot}" if "memory" in fn.cgroups else None
        freeze_after_s = self.config.freeze_after_ms / 1000 if self.config.freeze_after_ms >= 0 else -1.0
        inst = Instance(
            instance_id=uuid.uuid4().hex[:12], pid=pid, slot=slot, function=fn.spec.name, version=fn.spec.version,
            memory_mb=fn.spec.memory_mb, timeout_s=fn.spec.timeout_s, init_type=itype, conn=conn, log_fd=log_r,
            memory_cgroup=mem_dir, exited=exited, log_max_bytes=self.config.log_max_bytes_per_invocation,
            cgroup=inst_cg, kill_fallback=lambda: fn.link.send({"op": "kill", "token": token}),
            on_gone=lambda i, empty: self._forget(fn, i, empty), freeze_after_s=freeze_after_s,
            on_imports=(lambda names: self._learn(fn, names)) if fn.spec.code_sha256 else None,
        )  # fmt: skip
        fn.instances[slot] = inst  # (a spare too: it holds its slot, and unload stops it with the rest)
        # the zygote says it exited: make sure (kill through its cgroup, wait until the cgroup is empty)
        exited.add_done_callback(lambda f: None if f.cancelled() else inst.ensure_gone())
        if marks is not None:
            marks.append(["instance", *_now()])
            inst.zygote_marks = reply.get("marks")
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

    def _forget(self, fn: LoadedFunction, inst: Instance, empty: bool) -> None:
        inst.alive = False  # (its exits entry stays until the zygote's report: the status may still come)
        if inst in fn.spares:
            fn.spares.remove(inst)
        if fn.instances.get(inst.slot) is inst:
            del fn.instances[inst.slot]
            if empty and fn.unloading is None:
                fn.free_slots.append(inst.slot)
            elif not empty:
                log.warning("function %s: instance slot %d not empty after kill; not reused", fn.spec.name, inst.slot)
            netns_fd = fn.netns_in_use.pop(inst.slot, None)
            if netns_fd is not None:
                if empty:  # nothing of the instance is left in it: the next instance may have it
                    self._return_netns(fn, netns_fd)
                else:
                    os.close(netns_fd)
        inst.close()

    def _return_netns(self, fn: LoadedFunction, fd: int) -> None:
        """An instance is gone (its PID namespace, hence every process it started, with it): its wired namespace
        goes back to the function's pool for the next instance, as Lambda reuses an execution environment, instead
        of being torn down and another made and wired.  Only within one function; the idle pool keeps at most
        max(netns_pool_size, live instances) namespaces."""
        if fn.unloaded or len(fn.netns_ready) >= max(self.config.netns_pool_size, len(fn.instances)):
            os.close(fd)
            return
        self._hand_netns(fn, fd)

    async def stop_instance(self, inst: Instance) -> None:
        with contextlib.suppress(InstanceDied):
            await inst.stop()


def _now() -> tuple[int, int]:
    """(CLOCK_MONOTONIC, this thread's CPU time) in ns: a stamp of a per-phase breakdown (Node.spawn_phases)."""
    return time.monotonic_ns(), time.thread_time_ns()


async def _wait_pidfd(pidfd: int, timeout_s: float) -> None:
    """Wait (bounded) until the process behind ``pidfd`` has exited (a pidfd polls readable then)."""
    import select

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if select.select([pidfd], [], [], 0)[0]:
            return
        await asyncio.sleep(0.005)
