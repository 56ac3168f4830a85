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


class CpuSplit:
    """CPU used between construction and :meth:`split`: by the server process, by this process (the load
    generator), and by everything else on the machine (the sandboxes: zygotes and instances, plus any noise)."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.t0 = (proc_cpu_ms(server_pid), self_ms(), busy_ms())

    def split(self) -> dict[str, float]:
        server, me, busy = (proc_cpu_ms(self.pid), self_ms(), busy_ms())
        d_server, d_me, d_busy = server - self.t0[0], me - self.t0[1], busy - self.t0[2]
        return {"server": d_server, "load_generator": d_me, "sandboxes_and_rest": max(0.0, d_busy - d_server - d_me),
                "machine": d_busy}  # fmt: skip
