"""cgroup v1 layout (v2 where the controllers live there): memory, CPU share and pids per instance.

Layout, per controller ``C`` in (memory, cpu, pids)::

    /sys/fs/cgroup/C/squall/                 created by the node (root)
    /sys/fs/cgroup/C/squall/fn-<slot>/       per function zygote; dir, cgroup.procs and tasks chowned to the
                                             function's user-namespace root, so the zygote can make children
    /sys/fs/cgroup/C/squall/fn-<slot>/i<k>/  per instance slot k, made and limited by the function zygote,
                                             reused by the next instance that gets slot k (the pool)

Migration cost: on cgroup v1 every write to ``cgroup.procs`` takes the global ``cgroup_threadgroup_rwsem`` for
writing, which waits for an RCU grace period unless the rwsem is already in its slow mode: 10-18 ms per instance
on this machine after an idle gap.  Mounting any hierarchy with ``favordynmods`` (Linux >= 6.1) switches the rwsem
for good; we mount a tiny named hierarchy for that and the write drops to ~0.04 ms (see docs/design.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from squall.node import syscalls

__all__ = ["CONTROLLERS", "CgroupLayout", "instance_stats", "oom_kills"]

log = logging.getLogger("squall.node")

CONTROLLERS = ("memory", "cpu", "pids")
#: CPU weight of a function zygote's own group (a 1 vCPU instance has 1024)
ZYGOTE_CPU_SHARES = 16384
ROOT = Path("/sys/fs/cgroup")
_FAVOR_MOUNT = Path("/run/squall/cgroup-favordynmods")


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


class CgroupLayout:
    """The node's (root's) side: create and hand over per-function cgroups."""

    def __init__(self, name: str = "squall") -> None:
        self.name = name
        self.available = all((ROOT / c / "cgroup.procs").exists() for c in CONTROLLERS) and os.geteuid() == 0

    def base(self, controller: str) -> Path:
        return ROOT / controller / self.name

    def function_dir(self, controller: str, slot: int) -> Path:
        return self.base(controller) / f"fn-{slot}"

    def setup(self) -> None:
        if not self.available:
            log.warning(
                "cgroup v1 controllers %s not writable: instances run without memory/CPU/pids limits",
                CONTROLLERS,
            )
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
        """Kill what a previous server left behind (it was SIGKILLed) and remove its cgroups."""
        for c in CONTROLLERS:
            base = self.base(c)
            if not base.exists():
                continue
            for d in sorted(base.glob("fn-*/**/"), key=lambda p: -len(p.parts)):
                for pid in _procs(d):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            for d in sorted(base.glob("fn-*/**/"), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    d.rmdir()

    def create_function(self, slot: int, owner_uid: int) -> dict[str, str]:
        """Make ``fn-<slot>`` under each controller, delegated to ``owner_uid``; return controller -> path."""
        if not self.available:
            return {}
        paths = {}
        for c in CONTROLLERS:
            d = self.function_dir(c, slot)
            d.mkdir(exist_ok=True)
            for f in (d, d / "cgroup.procs", d / "tasks"):
                os.chown(f, owner_uid, owner_uid)
            paths[c] = str(d)
        # the zygote gets its own CPU group with a large weight: in cgroup v1 a task in a parent group competes
        # with each child group as one group of 1024 shares, so 1000 starting instances (~74 shares each at
        # 128 MB) would leave the zygote ~1.4% of the CPU exactly when it must fork fastest
        z = self.function_dir("cpu", slot) / "zygote"
        z.mkdir(exist_ok=True)
        (z / "cpu.shares").write_text(str(ZYGOTE_CPU_SHARES))
        paths["cpu-zygote"] = str(z)
        return paths

    def remove_function(self, slot: int) -> None:
        if not self.available:
            return
        for c in CONTROLLERS:
            d = self.function_dir(c, slot)
            if not d.exists():
                continue
            for sub in sorted(d.glob("**/"), key=lambda p: -len(p.parts)):
                for pid in _procs(sub):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            for sub in sorted(d.glob("**/"), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()

    def teardown(self) -> None:
        """Remove this node's (now empty) cgroups at shutdown, so servers that come and go leave nothing behind."""
        if not self.available:
            return
        self.kill_stale()
        for c in CONTROLLERS:
            with contextlib.suppress(OSError):
                self.base(c).rmdir()

    def node_memory_in_use(self) -> int:
        try:
            return int((self.base("memory") / "memory.usage_in_bytes").read_text())
        except (OSError, ValueError):
            return 0


def _procs(d: Path) -> list[int]:
    try:
        return [int(x) for x in (d / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
