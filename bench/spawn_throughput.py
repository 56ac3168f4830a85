"""Instance creation throughput: N pipelined cold starts (C at a time) from one function zygote, and where the CPU
goes.  This is the cost that bounds the 1,000-instance burst (bench/burst.py) on a small machine.

Prints two JSON lines per round:
  spawn_ms_per_instance   wall time of the N starts / N
  cpu_ms  per instance: node (this process), zygote (the function zygote itself), zygote_children (children it
          reaped: the intermediates of the two-fork design, if any), instances (its own run time, from
          /proc/<pid>/schedstat before it stops; "instance_minflt": its page faults), total; "machine_busy_ms": /proc/stat busy jiffies / N (includes
          whatever else runs on the machine)
  stop_ms_per_instance    then stopping all N at once (SHUTDOWN, exit, reap): wall / N and machine busy CPU / N

    python bench/spawn_throughput.py [--quick] [--n N] [--concurrency C] [--rounds R] [--off FEATURE]

--off seccomp|namespaces|cgroups switches one sandbox feature off (to measure its cost; never in production).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit
from _cpu import busy_ms, proc_times_ms, self_ms

from squall.core.config import NodeConfig
from squall.core.model import FunctionSpec
from squall.sandbox.node.node import Node

HANDLER = "def handler(event, context):\n    return 1\n"


def _host_pid(inst: object) -> int:
    host = getattr(inst, "host_pid", None)
    pid = host() if callable(host) else getattr(inst, "pid", 0)
    return int(pid or 0)


def _instance(pid: int) -> tuple[float, int]:
    """(CPU ms from /proc/<pid>/schedstat: exact, unlike the tick-rounded stat fields; minor page faults)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            run_ns = int(f.read().split()[0])
        with open(f"/proc/{pid}/stat") as f:
            minflt = int(f.read().rsplit(") ", 1)[1].split()[7])
    except OSError:
        return (0.0, 0)
    return (run_ns / 1e6, minflt)


async def run(n: int, concurrency: int, rounds: int, off: str | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="squall-spawn-"))
    code = tmp / "code"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    for p in (tmp, code):
        os.chmod(p, 0o755)
    node = Node(NodeConfig(data_dir=tmp / "data", cgroup_name=f"squall-spawn-{os.getpid()}"))
    try:
        await node.start()
        if off:
            node.caps = dataclasses.replace(node.caps, **{off: False})
        fn = await node.load(FunctionSpec(name="spawn", code_dir=code, handler="app.handler"))
        for inst in [await node.start_instance(fn) for _ in range(5)]:  # warm up
            await node.stop_instance(inst)
        sem = asyncio.Semaphore(concurrency)

        async def one() -> object:
            async with sem:
                return await node.start_instance(fn)

        for rnd in range(rounds):
            z0, busy0, self0 = proc_times_ms(fn.pid), busy_ms(), self_ms()
            t0 = time.perf_counter()
            insts = await asyncio.gather(*(one() for _ in range(n)))
            wall = time.perf_counter() - t0
            z1, busy1, self1 = proc_times_ms(fn.pid), busy_ms(), self_ms()
            # host pids: the zygote reports pids of its own PID namespace
            per = [_instance(_host_pid(i)) for i in insts]
            cpu = {
                "node": (self1 - self0) / n,
                "zygote": (z1[0] + z1[1] - z0[0] - z0[1]) / n,
                "zygote_children": (z1[2] + z1[3] - z0[2] - z0[3]) / n,
                "instance": sum(p[0] for p in per) / n,
            }
            cpu["total"] = sum(cpu.values())
            emit(
                "spawn_ms_per_instance", wall / n * 1000, "ms", n=n, concurrency=concurrency, round=rnd,
                off=off, instance_minflt=sum(p[1] for p in per) / n, cpu_ms={k: round(v, 3) for k, v in cpu.items()},
                machine_busy_ms=(busy1 - busy0) / n,
            )  # fmt: skip
            busy0, t0 = busy_ms(), time.perf_counter()
            await asyncio.gather(*(node.stop_instance(i) for i in insts))  # type: ignore[arg-type]
            emit(
                "stop_ms_per_instance", (time.perf_counter() - t0) / n * 1000, "ms", n=n, round=rnd,
                machine_busy_ms=(busy_ms() - busy0) / n,
            )  # fmt: skip
    finally:
        await node.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--off", choices=["seccomp", "namespaces", "cgroups"])
    a = ap.parse_args()
    asyncio.run(run(100 if a.quick else a.n, a.concurrency, a.rounds, a.off))


if __name__ == "__main__":
    main()
