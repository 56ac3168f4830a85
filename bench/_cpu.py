"""CPU accounting for benchmarks: a process's own CPU, this process's, and the whole machine's busy time."""

from __future__ import annotations

import os
import resource

TICK = os.sysconf("SC_CLK_TCK")


def proc_times_ms(pid: int) -> tuple[float, float, float, float]:
    """(utime, stime, cutime, cstime) of ``pid`` in ms (all its threads; 0s once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except OSError:
        return (0.0, 0.0, 0.0, 0.0)
    return tuple(int(x) * 1000 / TICK for x in fields[11:15])  # type: ignore[return-value]


def proc_cpu_ms(pid: int) -> float:
    """CPU ``pid`` itself used so far (user + system, its threads, not its children), in ms."""
    u, s, _, _ = proc_times_ms(pid)
    return u + s


def busy_ms() -> float:
    """Busy CPU time of the whole machine so far (all CPUs, excluding idle and iowait), in ms."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) * 1000 / TICK


def self_ms() -> float:
    """CPU this process used so far, in ms."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1000


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class CpuSplit:
    """CPU used between construction and :meth:`split`: by the server process, by this process (the load
    generator), by the server's sandboxes (zygotes and instances) and by everything else on the machine."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.t0 = (proc_cpu_ms(server_pid), self_ms(), busy_ms())
        self.below0 = sum(proc_cpu_ms(p) for p in descendants(server_pid))

    def split(self) -> dict[str, float]:
        """CPU ms since construction.  "sandboxes" is what the server's descendants (zygotes, instances) used, as
        far as they are still running (an instance that already stopped is only in "rest"); "rest" is everything
        else the machine did: kernel threads (disk journal, network), stopped instances, other processes."""
        server, me, busy = (proc_cpu_ms(self.pid), self_ms(), busy_ms())
        d_server, d_me, d_busy = server - self.t0[0], me - self.t0[1], busy - self.t0[2]
        below = sum(proc_cpu_ms(p) for p in descendants(self.pid)) - self.below0
        return {"server": d_server, "load_generator": d_me, "sandboxes": below,
                "rest": max(0.0, d_busy - d_server - d_me - below), "machine": d_busy}  # fmt: skip
