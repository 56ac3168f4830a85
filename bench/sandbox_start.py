"""Cold start and warm invoke of the sandboxed runtime (node API, no HTTP).

Prints JSON lines:
  cold_start_ms        fork from the function zygote + full sandbox + handler import, until READY (p50, p99)
  cold_invoke_ms       cold start + first invocation result
  warm_invoke_ms       one invocation on a warm instance through the frame protocol
  baseline: fresh_interpreter_ms (``python -c 'import json'`` as a subprocess: what a non-zygote cold start
  costs at least) and in_process_call_us (the handler called directly), measured in the same run.
  cold starts alternate in blocks of 5: a spare instance parked (``cold_start_ms``) / none
  (``cold_start_no_spare_ms``: every spare taken, or SQUALL_SPARE_INSTANCES=0: fork + full sandbox on the request's
  path)
  --phases: also ``cold_start_phases``: where one cold start goes, node, zygote and instance side (medians of wall
  and CPU ms per phase, and the instance's minor page faults per phase: after the fork, mostly copy-on-write copies of
  the zygote's pages; Node.spawn_phases stamps, CLOCK_MONOTONIC shared by the three processes); the stamps cost
  a few µs, so the cold start figures of such a run carry ``"phases": true``.

    python bench/sandbox_start.py [--quick] [--phases]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, median, pct, quick

from squall.core.config import NodeConfig
from squall.core.model import FunctionSpec, InvokeRequest
from squall.sandbox.node.node import Node

HANDLER = "def handler(event, context):\n    return {'ok': True, 'n': event.get('n', 0)}\n"

#: the critical path of a cold start, as (label, from (process, mark), to (process, mark)); CPU only within a process
PATH = (
    ("node: netns", ("node", "start"), ("node", "netns")),
    ("node: slot cgroups", ("node", "netns"), ("node", "cgroups")),
    ("node: slot /tmp mount", ("node", "cgroups"), ("node", "tmp")),
    ("node: socketpair, pipe, message", ("node", "tmp"), ("node", "request")),
    ("hop: node -> zygote (send, wake-up, recvmsg, json)", ("node", "request"), ("zygote", "recv")),
    ("zygote: netns", ("zygote", "recv"), ("zygote", "netns")),
    ("zygote: step into the slot's memory cgroups", ("zygote", "netns"), ("zygote", "born_in")),
    ("clone() until the child runs", ("zygote", "born_in"), ("instance", "instance")),
    ("instance: setns (network)", ("instance", "instance"), ("instance", "setns")),
    ("instance: fds, closerange, signals, sched", ("instance", "setns"), ("instance", "fds")),
    ("instance: join cpu/pids cgroups", ("instance", "fds"), ("instance", "cgroups")),
    ("instance: /tmp, /proc, ro cgroupfs, hostname", ("instance", "cgroups"), ("instance", "mounts")),
    ("instance: rlimits, setresuid", ("instance", "mounts"), ("instance", "uid")),
    ("instance: wipe /tmp", ("instance", "uid"), ("instance", "wipe")),
    ("instance: no_new_privs, seccomp", ("instance", "wipe"), ("instance", "seccomp")),
    ("instance: environment", ("instance", "seccomp"), ("instance", "env")),
    ("instance: runtime (logs, init)", ("instance", "env"), ("instance", "runtime")),
    ("instance: handler import", ("instance", "runtime"), ("instance", "handler")),
    ("hop: READY -> node (send, wake-up, decode)", ("instance", "handler"), ("node", "ready")),
)
#: the critical path when a spare instance was parked (forked and sandboxed ahead)
PATH_SPARE = (
    ("node: take the spare, queue START", ("node", "start"), ("node", "spare")),
    ("hop: START -> instance (write, wake-up, read)", ("node", "spare"), ("instance", "start")),
    ("instance: environment", ("instance", "start"), ("instance", "env")),
    ("instance: handler import", ("instance", "env"), ("instance", "handler")),
    ("hop: READY -> node (send, wake-up, decode)", ("instance", "handler"), ("node", "ready")),
)
#: off the critical path (concurrent with the instance's start)
SIDE = (
    ("zygote: clone() in the parent", ("zygote", "born_in"), ("zygote", "clone")),
    ("zygote: back to its own cgroups", ("zygote", "clone"), ("zygote", "home")),
    ("hop: spawned -> node", ("zygote", "home"), ("node", "spawned")),
    ("node: connection + Instance", ("node", "spawned"), ("node", "instance")),
)


def _phases(sp: dict[str, object]) -> dict[str, tuple[float, float | None]]:
    """{label: (wall ms, CPU ms or None)} of one instance's stamps (Instance.spawn_phases)."""
    at: dict[tuple[str, str], tuple[int, int, int]] = {}
    for proc in ("node", "zygote", "instance"):
        for name, mono, cpu, *faults in sp.get(proc) or []:  # type: ignore[attr-defined]
            at[(proc, str(name))] = (int(mono), int(cpu), int(faults[0]) if faults else -1)
    out: dict[str, tuple[float, float | None]] = {}
    for label, a, b in PATH + SIDE + PATH_SPARE:
        if a in at and b in at:
            cpu = (at[b][1] - at[a][1]) / 1e6 if a[0] == b[0] else None
            if a == ("zygote", "born_in") and b == ("instance", "instance"):
                cpu = at[b][1] / 1e6  # the child's CPU time starts at 0
            out[label] = ((at[b][0] - at[a][0]) / 1e6, cpu)
            if a[0] == b[0] == "instance" and at[b][2] >= 0:
                out[f"{label} [faults]"] = (float(at[b][2] - at[a][2]), None)
    if ("node", "start") in at and ("node", "ready") in at:
        out["total (node: start_instance until READY)"] = ((at[("node", "ready")][0] - at[("node", "start")][0]) / 1e6,
                                                          None)  # fmt: skip
    cpu_total = {
        "node": (("node", "start"), ("node", "ready")),
        "zygote": (("zygote", "recv"), ("zygote", "home")),
        "instance": (("instance", "start") if ("instance", "start") in at else None, ("instance", "handler")),
    }
    for proc, (a2, b2) in cpu_total.items():
        if b2 in at and (a2 is None or a2 in at):
            out[f"CPU total: {proc}"] = (0.0, (at[b2][1] - (at[a2][1] if a2 else 0)) / 1e6)
    return out


async def main() -> None:
    n_cold = 40 if quick() else 200
    n_warm = 500 if quick() else 3000
    tmp = Path(tempfile.mkdtemp(prefix="squall-bench-"))
    code = tmp / "code"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    os.chmod(tmp, 0o755)
    os.chmod(code, 0o755)
    os.chmod(code / "app.py", 0o644)
    # a cgroup name of its own: a node's start stops whatever runs in the cgroups of its name
    node = Node(NodeConfig(data_dir=tmp / "data", cgroup_name=f"squall-bench-{os.getpid()}"))
    phases = "--phases" in sys.argv
    node.spawn_phases = phases
    await node.start()
    fn = await node.load(FunctionSpec(name="bench", code_dir=code, handler="app.handler"))
    spares = node.spare_instances
    # alternated start by start: a spare instance parked and ready / none (SQUALL_SPARE_INSTANCES=0, or all taken)
    cold: dict[str, list[float]] = {"spare": [], "none": []}
    cold_invoke: dict[str, list[float]] = {"spare": [], "none": []}
    breakdown: dict[str, list[dict[str, tuple[float, float | None]]]] = {"spare": [], "none": []}
    mode = ""
    for i in range(2 * n_cold if spares else n_cold):
        # blocks of 5 starts (a switch stops the parked spare: its teardown would weigh on the next start)
        was, mode = mode, "spare" if spares and (i // 5) % 2 == 0 else "none"
        node.spare_instances = spares if mode == "spare" else 0
        if mode == "spare":
            if await node.spares_parked(fn) < 1:
                raise SystemExit("no spare instance parked within 10 s")
        elif was != mode:
            await node.drop_spares(fn)
            await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        inst = await node.start_instance(fn)
        t1 = time.perf_counter()
        await inst.invoke(InvokeRequest(b'{"n": 1}', request_id=f"c{i}"))
        t2 = time.perf_counter()
        cold[mode].append((t1 - t0) * 1000)
        cold_invoke[mode].append((t2 - t0) * 1000)
        if inst.spawn_phases:
            breakdown[mode].append(_phases(inst.spawn_phases))
        await node.stop_instance(inst)
    node.spare_instances = 0
    await node.drop_spares(fn)
    inst = await node.start_instance(fn)
    warm = []
    for i in range(n_warm):
        t0 = time.perf_counter()
        await inst.invoke(InvokeRequest(b'{"n": 1}', request_id=f"w{i}"))
        warm.append((time.perf_counter() - t0) * 1000)
    await node.close()

    fresh = []
    for _ in range(10 if quick() else 30):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import json"], check=True)
        fresh.append((time.perf_counter() - t0) * 1000)
    ns: dict[str, object] = {}
    exec(HANDLER, ns)
    h = ns["handler"]
    calls = []
    for _ in range(n_warm):
        t0 = time.perf_counter()
        h({"n": 1}, None)  # type: ignore[operator]
        calls.append((time.perf_counter() - t0) * 1e6)
    base = {"fresh_interpreter_ms_p50": round(pct(fresh, 50), 3), "in_process_call_us_p50": round(pct(calls, 50), 3)}
    if phases:
        base["phases"] = True
        for mode, rows in breakdown.items():
            if not rows:
                continue
            table = PATH_SPARE if mode == "spare" else PATH + SIDE
            labels = [label for label, _, _ in table] + [k for k in rows[0] if k.startswith(("total", "CPU"))]
            labels += [f"{label} [faults]" for label, _, _ in table if f"{label} [faults]" in rows[0]]
            med = {}
            for label in labels:
                walls = [b[label][0] for b in rows if label in b]
                cpus = [c for b in rows if label in b and (c := b[label][1]) is not None]
                med[label] = {"wall_ms": round(median(walls), 3) if walls else None,
                              "cpu_ms": round(median(cpus), 3) if cpus else None}  # fmt: skip
            emit("cold_start_phases", pct(cold[mode], 50), "ms", spare=mode, n=len(rows), phases=med, baseline=base)
    note = {"spare": "a spare instance parked (SQUALL_SPARE_INSTANCES)", "none": "no spare: fork + full sandbox"}
    for mode in ("spare", "none") if spares else ("none",):
        c, ci = cold[mode], cold_invoke[mode]
        suffix = "" if mode == "spare" or not spares else "_no_spare"
        emit(f"cold_start{suffix}_ms", pct(c, 50), "ms", p99=round(pct(c, 99), 3), n=len(c), note=note[mode],
             baseline=base)  # fmt: skip
        emit(f"cold_invoke{suffix}_ms", pct(ci, 50), "ms", p99=round(pct(ci, 99), 3), n=len(ci), baseline=base)
    emit("warm_invoke_ms", pct(warm, 50), "ms", p99=round(pct(warm, 99), 3), n=n_warm, baseline=base)
    emit(
        "cold_start_vs_fresh_interpreter",
        pct(fresh, 50) / pct(cold["spare" if spares else "none"], 50),
        "x",
        note="how many times faster a zygote fork is than starting a fresh interpreter",
    )


if __name__ == "__main__":
    asyncio.run(main())
