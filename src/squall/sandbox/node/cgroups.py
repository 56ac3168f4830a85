"""Cgroups, owned by the node: limits (cgroup v1 controllers) and a kill switch and freezer (cgroup v2 core files).

The node (host root) creates every directory and writes every limit; a function's processes can only move
themselves between the directories of their own function (the ``cgroup.procs`` files chowned to the function's
user-namespace root) and can change no limit.  Per controller ``C`` in (memory, cpu, pids)::

    /sys/fs/cgroup/C/<name>/                  the node's
    /sys/fs/cgroup/C/<name>/fn-<slot>/        one function: root-owned, nothing delegated
    /sys/fs/cgroup/C/<name>/fn-<slot>/zygote  its function zygote (memory: MemorySize + zygote_memory_mb + 1 MB per
                                              running instance, see ZYGOTE_MB_PER_INSTANCE; pids: pids_max)
    /sys/fs/cgroup/C/<name>/fn-<slot>/i<k>/   instance slot k (limits of the function), reused by the next instance
                                              that gets slot k

and the same tree in the cgroup v2 hierarchy (``/sys/fs/cgroup/unified`` in hybrid mode) with no controller: its core
files ``cgroup.kill`` and ``cgroup.freeze`` are the node's kill switch and freezer for a zygote, an instance, or the
whole function (``fn-<slot>``: killing it takes everything the function ever started).  Migrating a process in v2 needs
write access to ``cgroup.procs`` of the common ancestor: ``fn-<slot>/cgroup.procs`` is delegated, the node's
``<name>/cgroup.procs`` is not, so a function moves its own processes (the only ones its PID namespace shows)
within its own subtree and nowhere else.  The node never kills a pid it was told or read: it writes ``cgroup.kill``.

Migration cost: on cgroup v1 every write to ``cgroup.procs`` takes the global ``cgroup_threadgroup_rwsem`` for
writing, which waits for an RCU grace period unless the rwsem is already in its slow mode: 10-18 ms per instance
on this machine after an idle gap.  Mounting any hierarchy with ``favordynmods`` (Linux >= 6.1) switches the rwsem
for good; we mount a tiny named hierarchy for that and the write drops to ~0.04 ms (see docs/design.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from squall.sandbox.node import syscalls

__all__ = [
    "CONTROLLERS",
    "CgroupLayout",
    "FunctionCgroups",
    "OwnedCgroup",
    "find_unified",
    "instance_stats",
    "oom_kills",
    "wait_empty",
]

log = logging.getLogger("squall.node")

CONTROLLERS = ("memory", "cpu", "pids")
#: CPU weight of a function zygote's own group (a 1 vCPU instance has 1024)
ZYGOTE_CPU_SHARES = 16384
#: memory a function zygote may hold per running instance, MB.  After each clone the zygote's own writes copy the
#: pages it touches (copy-on-write); the originals stay mapped by the instance but charged to the zygote's cgroup:
#: ~0.35 MB per live instance measured (bench: 300 instances -> +105 MB).  The node raises the zygote's limit with
#: the instances it runs, in steps of ZYGOTE_LIMIT_STEP instances
ZYGOTE_MB_PER_INSTANCE = 1
ZYGOTE_LIMIT_STEP = 16
ROOT = Path("/sys/fs/cgroup")
_FAVOR_MOUNT = Path("/run/squall/cgroup-favordynmods")
_UNIFIED_MOUNT = Path("/run/squall/cgroup2")


@dataclass(frozen=True)
class InstanceStats:
    max_memory_bytes: int
    oom_kills: int


def oom_kills(memory_dir: Path) -> int:
    """How many times the OOM killer fired in this cgroup (cumulative; compare with a baseline)."""
    try:
        fd = os.open(os.path.join(memory_dir, "memory.oom_control"), os.O_RDONLY)
        try:
            text = os.read(fd, 256).decode()
        finally:
            os.close(fd)
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def instance_stats(memory_dir: Path) -> InstanceStats:
    try:
        peak = int((memory_dir / "memory.max_usage_in_bytes").read_text())
    except (OSError, ValueError):
        peak = 0
    ooms = 0
    with contextlib.suppress(OSError, ValueError):
        for line in (memory_dir / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                ooms = int(line.split()[1])
    return InstanceStats(peak, ooms)


def find_unified() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (hybrid: ``/sys/fs/cgroup/unified``), if it is."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    found = [Path(parts[1]) for parts in (line.split() for line in lines) if len(parts) > 2 and parts[2] == "cgroup2"]
    for p in found:
        if (p / "cgroup.procs").exists():
            return p
    return None


def _mount_unified() -> Path | None:
    """Mount the v2 hierarchy (no controller: they stay with v1) where none is mounted; root only."""
    try:
        _UNIFIED_MOUNT.mkdir(parents=True, exist_ok=True)
        syscalls.mount("cgroup2", str(_UNIFIED_MOUNT), "cgroup2", syscalls.MS_NOSUID | syscalls.MS_NODEV, None)
        return _UNIFIED_MOUNT
    except OSError as e:
        log.warning("could not mount the cgroup v2 hierarchy (%s)", e)
        return None


class OwnedCgroup:
    """The node's handles on one of its cgroup v2 directories: kill switch, freezer and ``cgroup.events``.

    Files are opened once (a kill or a thaw is then one ``pwrite``) and stay root-owned: the function cannot write
    them.  ``cgroup.kill`` works on a frozen cgroup."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frozen = False
        d = str(path)
        self._kill = os.open(f"{d}/cgroup.kill", os.O_WRONLY | os.O_CLOEXEC)
        self._freeze = os.open(f"{d}/cgroup.freeze", os.O_WRONLY | os.O_CLOEXEC)
        self._events = os.open(f"{d}/cgroup.events", os.O_RDONLY | os.O_CLOEXEC)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.pwrite(self._kill, b"1", 0)

    def freeze(self) -> None:
        os.pwrite(self._freeze, b"1", 0)
        self.frozen = True

    def thaw(self) -> None:
        os.pwrite(self._freeze, b"0", 0)
        self.frozen = False

    def events(self) -> dict[str, int]:
        try:
            text = os.pread(self._events, 256, 0).decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[k] = int(v)
        return out

    def populated(self) -> bool:
        """Whether any process is in this cgroup or below (what the kernel says, not what a zygote reported)."""
        return self.events().get("populated", 0) == 1

    def close(self) -> None:
        for fd in (self._kill, self._freeze, self._events):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._kill = self._freeze = self._events = -1


async def wait_empty(cg: OwnedCgroup, timeout_s: float) -> bool:
    """Wait (bounded) until no process is left in ``cg``; True if it is empty."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.0005
    while cg.populated():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def wait_empty_sync(path: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            populated = "populated 1" in (path / "cgroup.events").read_text()
        except OSError:
            return True
        if not populated:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


@dataclass
class FunctionCgroups:
    """One function's cgroups (``fn-<slot>`` in every hierarchy) and the instance slots prepared in them."""

    slot: int
    owner_uid: int
    #: controller (memory, cpu, pids, unified) -> fn-<slot> directory
    dirs: dict[str, str]
    #: the whole function (zygote and instances): unload kills it
    function: OwnedCgroup | None = None
    #: the zygote alone
    zygote: OwnedCgroup | None = None
    instances: dict[int, OwnedCgroup] = field(default_factory=dict)
    limits: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    #: the zygote's memory limit without instances, MB, and the instance count its current limit allows for
    zygote_base_mb: int = 0
    zygote_allows: int = 0

    def fit_zygote(self, running: int) -> None:
        """Raise the zygote's memory limit to cover ``running`` instances (see ZYGOTE_MB_PER_INSTANCE); a write
        only when a step is crossed.  Never lowered: pages charged to the zygote live as long as old instances."""
        if running <= self.zygote_allows or "memory" not in self.dirs:
            return
        allows = -(-running // ZYGOTE_LIMIT_STEP) * ZYGOTE_LIMIT_STEP
        limit_mb = self.zygote_base_mb + allows * ZYGOTE_MB_PER_INSTANCE
        with contextlib.suppress(OSError):
            _write(f"{self.dirs['memory']}/zygote/memory.limit_in_bytes", str(limit_mb * 1024 * 1024))
            self.zygote_allows = allows

    def zygote_dirs(self) -> dict[str, str]:
        return {c: os.path.join(d, "zygote") for c, d in self.dirs.items()}

    def close(self) -> None:
        for cg in (self.function, self.zygote, *self.instances.values()):
            if cg is not None:
                cg.close()
        self.instances.clear()


def _write(path: Path | str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _rmtree(root: Path) -> bool:
    """rmdir a cgroup directory and its sub-directories bottom-up; True if it is gone."""
    if not root.is_dir():
        return True
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -len(Path(t[0]).parts)):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
    return not root.exists()


class CgroupLayout:
    """The node's (root's) side: create, limit, kill, freeze and remove the cgroups of functions and instances."""

    def __init__(self, name: str = "squall") -> None:
        self.name = name
        root = os.geteuid() == 0
        self.available = all((ROOT / c / "cgroup.procs").exists() for c in CONTROLLERS) and root
        self.unified = find_unified() if root else None
        #: whether the node has its own kill switch and freezer (cgroup v2 ``cgroup.kill``, Linux >= 5.14); known
        #: after :meth:`setup`
        self.killable = False

    def base(self, controller: str) -> Path:
        if controller == "unified":
            assert self.unified is not None
            return self.unified / self.name
        return ROOT / controller / self.name

    def hierarchies(self) -> list[str]:
        return ([*CONTROLLERS] if self.available else []) + (["unified"] if self.unified is not None else [])

    def function_dir(self, controller: str, slot: int) -> Path:
        return self.base(controller) / f"fn-{slot}"

    def setup(self) -> None:
        if os.geteuid() == 0 and self.unified is None:
            self.unified = _mount_unified()
        if not self.available:
            log.warning(
                "cgroup v1 controllers %s not writable: instances run without memory/CPU/pids limits",
                CONTROLLERS,
            )
        if self.unified is not None:
            self.base("unified").mkdir(exist_ok=True)
            self.killable = (self.base("unified") / "cgroup.kill").exists()
            if not self.killable:
                log.warning("cgroup.kill missing (Linux < 5.14): the node cannot stop instances through cgroups")
        if not self.available:
            self.kill_stale()
            return
        for c in CONTROLLERS:
            self.base(c).mkdir(exist_ok=True)
        mem = self.base("memory")
        with contextlib.suppress(OSError):
            (mem / "memory.use_hierarchy").write_text("1")
        self._favor_dynmods()
        self.kill_stale()

    def _favor_dynmods(self) -> None:
        if any("favordynmods" in line for line in Path("/proc/self/mounts").read_text().splitlines()):
            return
        try:
            _FAVOR_MOUNT.mkdir(parents=True, exist_ok=True)
            syscalls.mount("cgroup", str(_FAVOR_MOUNT), "cgroup", 0, "none,name=squall-favordynmods,favordynmods")
        except OSError as e:
            log.warning("could not enable cgroup favordynmods (%s): each cold start may wait ~15 ms for RCU", e)

    def kill_stale(self) -> None:
        """Stop what a previous server of this name left behind (it was SIGKILLed) and remove its cgroups: through
        ``cgroup.kill`` of the v2 tree, never by pids read from a list a function could write to."""
        if self.unified is not None and self.base("unified").exists():
            for d in sorted(self.base("unified").glob("fn-*")):
                with contextlib.suppress(OSError):
                    _write(d / "cgroup.kill", "1")
            for d in sorted(self.base("unified").glob("fn-*")):
                if not wait_empty_sync(d, 5.0):
                    log.warning("stale cgroup %s still has processes after cgroup.kill", d)
                _rmtree(d)
        for c in CONTROLLERS if self.available else ():
            base = self.base(c)
            if not base.exists():
                continue
            for d in sorted(base.glob("fn-*")):
                if not _rmtree(d):
                    log.warning("stale cgroup %s could not be removed (processes of an older server?)", d)

    def create_function(
        self, slot: int, owner_uid: int, *, zygote_memory_mb: int, zygote_pids_max: int
    ) -> FunctionCgroups:
        """Make ``fn-<slot>`` and ``fn-<slot>/zygote`` in every hierarchy, with the zygote's limits written by the
        node; delegate to ``owner_uid`` only the ``cgroup.procs`` files the zygote must write."""
        fc = FunctionCgroups(slot, owner_uid, {}, zygote_base_mb=zygote_memory_mb)
        for c in self.hierarchies():
            d = self.function_dir(c, slot)
            if d.exists():  # a leftover of this slot (should not happen): start clean
                if c == "unified":
                    with contextlib.suppress(OSError):
                        _write(d / "cgroup.kill", "1")
                    wait_empty_sync(d, 2.0)
                _rmtree(d)
            d.mkdir()
            (d / "zygote").mkdir()
            fc.dirs[c] = str(d)
        if "memory" in fc.dirs:
            z = Path(fc.dirs["memory"]) / "zygote"
            _write(z / "memory.limit_in_bytes", str(zygote_memory_mb * 1024 * 1024))
            with contextlib.suppress(OSError):
                _write(z / "memory.swappiness", "0")
            os.chown(z / "cgroup.procs", owner_uid, owner_uid)  # the zygote moves back here after each clone
        if "pids" in fc.dirs:
            _write(Path(fc.dirs["pids"]) / "zygote" / "pids.max", str(zygote_pids_max))
        if "cpu" in fc.dirs:
            # the zygote gets a large CPU weight: in cgroup v1 a task in a parent group competes with each child
            # group as one group of 1024 shares, so 1000 starting instances (~74 shares each at 128 MB) would leave
            # the zygote ~1.4% of the CPU exactly when it must fork fastest
            _write(Path(fc.dirs["cpu"]) / "zygote" / "cpu.shares", str(ZYGOTE_CPU_SHARES))
        if "unified" in fc.dirs:
            u = Path(fc.dirs["unified"])
            # the common ancestor of the zygote and its instances: writing it lets the function move its own
            # processes inside fn-<slot>, not out of it (that needs <name>/cgroup.procs, which stays root's)
            for f in (u / "cgroup.procs", u / "zygote" / "cgroup.procs"):
                os.chown(f, owner_uid, owner_uid)
            if self.killable:
                fc.function = OwnedCgroup(u)
                fc.zygote = OwnedCgroup(u / "zygote")
        return fc

    def prepare_instance(
        self, fc: FunctionCgroups, slot: int, memory_mb: int, cpu_shares: int, pids_max: int
    ) -> OwnedCgroup | None:
        """Create (or reuse) instance slot ``slot``'s cgroups and write its limits, before the zygote is asked to
        start an instance there.  Limits are written once per slot (again only if they change); the peak-memory
        counter is reset for every instance."""
        limits = (memory_mb, cpu_shares, pids_max)
        name = f"i{slot}"
        dirs = fc.dirs
        if fc.limits.get(slot) == limits:
            if "memory" in dirs:
                with contextlib.suppress(OSError):
                    _write(f"{dirs['memory']}/{name}/memory.max_usage_in_bytes", "0")
            return fc.instances.get(slot)
        # (plain strings and os calls: this runs on the node's event loop for every new slot of a burst)
        uid = fc.owner_uid
        for d in dirs.values():
            p = f"{d}/{name}"
            with contextlib.suppress(FileExistsError):
                os.mkdir(p)
            # memory and unified: the zygote steps in for the clone (the instance is born there); cpu and pids:
            # the instance joins them itself
            os.chown(f"{p}/cgroup.procs", uid, uid)
        if "memory" in dirs:
            m = f"{dirs['memory']}/{name}"
            _write(f"{m}/memory.limit_in_bytes", str(memory_mb * 1024 * 1024))
            with contextlib.suppress(OSError):
                _write(f"{m}/memory.max_usage_in_bytes", "0")
            with contextlib.suppress(OSError):
                _write(f"{m}/memory.swappiness", "0")
        if "cpu" in dirs:
            _write(f"{dirs['cpu']}/{name}/cpu.shares", str(cpu_shares))
        if "pids" in dirs:
            _write(f"{dirs['pids']}/{name}/pids.max", str(pids_max))
        fc.limits[slot] = limits
        if "unified" in dirs and self.killable and slot not in fc.instances:
            fc.instances[slot] = OwnedCgroup(Path(dirs["unified"]) / name)
        return fc.instances.get(slot)

    def remove_function(self, fc: FunctionCgroups) -> bool:
        """rmdir a function's cgroups (its processes must be gone: see :meth:`OwnedCgroup.kill`); True if all went."""
        fc.close()
        ok = True
        for d in fc.dirs.values():
            ok = _rmtree(Path(d)) and ok
        return ok

    def teardown(self) -> None:
        """Remove this node's (now empty) cgroups at shutdown, so servers that come and go leave nothing behind."""
        self.kill_stale()
        for c in self.hierarchies():
            with contextlib.suppress(OSError):
                self.base(c).rmdir()

    def node_memory_in_use(self) -> int:
        try:
            return int((self.base("memory") / "memory.usage_in_bytes").read_text())
        except (OSError, ValueError):
            return 0
