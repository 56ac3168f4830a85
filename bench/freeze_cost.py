"""What freezing instances between invocations costs (cgroup v2 freezer; node API, no HTTP).

Two nodes in one run, alternated round by round: one with freezing off (``freeze_after_ms=-1``), one with the
default ``SQUALL_FREEZE_AFTER_MS`` (or ``--after``).  Prints JSON lines:
  warm_invoke_ms        back-to-back invocations on one warm instance (no idle gap: never frozen), p50 per mode
  idle_invoke_ms        an invocation after an idle gap longer than the freeze delay (frozen, so thawed first when
                        freezing is on), p50 per mode; the difference is what a freeze/thaw cycle costs the caller
  freeze_write_us       the node's write of "1" to cgroup.freeze (p50); thaw_write_us: the write of "0"
  frozen_after_ms       how long until cgroup.events says "frozen 1" after the write (the tasks reach the trap)
  idle_invoke_switches  voluntary context switches of the instance's tasks (all threads of its cgroup,
                        /proc/<tid>/status) per invocation after the idle gap, per mode: the times it went to sleep,
                        i.e. the wake-ups a frozen invocation costs it (load does not change them, unlike timings)

    python bench/freeze_cost.py [--quick] [--after MS] [--gap MS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, pct, quick

from squall.core.config import NodeConfig
from squall.core.model import FunctionSpec, InvokeRequest
from squall.sandbox.node.instance import Instance
from squall.sandbox.node.node import Node

HANDLER = "def handler(event, context):\n    return {'ok': True, 'n': event.get('n', 0)}\n"


def _code(tmp: Path) -> Path:
    code = tmp / "code"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    os.chmod(tmp, 0o755)
    os.chmod(code, 0o755)
    os.chmod(code / "app.py", 0o644)
    return code


def _switches(inst: Instance) -> int:
    """Voluntary context switches so far of every task in the instance's cgroup (a read of /proc, for this benchmark)."""
    if inst.cgroup is None:
        return 0
    total = 0
    for tid in (inst.cgroup.path / "cgroup.threads").read_text().split():
        try:
            for line in Path(f"/proc/{tid}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):  # the times it slept: its wake-ups
                    total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


async def _invoke(inst: Instance, i: int) -> float:
    t0 = time.perf_counter()
    out = await inst.invoke(InvokeRequest(b'{"n": 1}', request_id=f"r{i}"))
    dt = (time.perf_counter() - t0) * 1000
    assert out.ok, out.payload
    return dt


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--after", type=float, default=None, help="freeze delay in ms (default: the node's default)")
    ap.add_argument("--gap", type=float, default=None, help="idle gap before an idle invocation, ms")
    args = ap.parse_args()
    rounds = 4 if quick() else 10
    n_warm = 300 if quick() else 2000
    n_idle = 8 if quick() else 25
    after = args.after if args.after is not None else NodeConfig().freeze_after_ms
    gap_ms = args.gap if args.gap is not None else max(3 * after, after + 50)
    tmp = Path(tempfile.mkdtemp(prefix="squall-bench-"))
    code = _code(tmp)
    nodes, insts = {}, {}
    for mode, ms in (("off", -1.0), ("on", after)):
        node = Node(
            NodeConfig(
                data_dir=tmp / f"data-{mode}", freeze_after_ms=ms, cgroup_name=f"squall-bench-{uuid.uuid4().hex[:8]}"
            )
        )
        await node.start()
        if mode == "on" and not node.caps.killable:
            emit("freeze_supported", 0, "bool", note="no cgroup v2 freezer here")
            await node.close()
            return
        fn = await node.load(FunctionSpec(name=f"freeze-{mode}", code_dir=code, handler="app.handler"))
        nodes[mode], insts[mode] = node, await node.start_instance(fn)
    warm: dict[str, list[float]] = {"off": [], "on": []}
    idle: dict[str, list[float]] = {"off": [], "on": []}
    switches: dict[str, list[int]] = {"off": [], "on": []}
    i = 0
    for rnd in range(rounds):
        order = ("off", "on") if rnd % 2 == 0 else ("on", "off")
        for mode in order:
            inst = insts[mode]
            for _ in range(50):  # warm up this mode's path
                await _invoke(inst, i)
                i += 1
            for _ in range(n_warm // rounds):
                warm[mode].append(await _invoke(inst, i))
                i += 1
        for _ in range(max(1, n_idle // rounds)):
            for mode in order:
                await asyncio.sleep(gap_ms / 1000)  # idle for the same gap in both modes
                s0 = _switches(insts[mode])
                idle[mode].append(await _invoke(insts[mode], i))
                switches[mode].append(_switches(insts[mode]) - s0)
                i += 1
    frozen_seen = insts["on"].freezes
    # the node's own writes, and how long the kernel takes to report the cgroup frozen
    cg = insts["on"].cgroup
    assert cg is not None
    fw, tw, settle = [], [], []
    for _ in range(20 if quick() else 100):
        await asyncio.sleep(after / 1000 + 0.01)
        if cg.frozen:
            cg.thaw()
        t0 = time.perf_counter()
        cg.freeze()
        t1 = time.perf_counter()
        while cg.events().get("frozen") != 1:
            await asyncio.sleep(0)
        t2 = time.perf_counter()
        cg.thaw()
        t3 = time.perf_counter()
        fw.append((t1 - t0) * 1e6)
        settle.append((t2 - t0) * 1000)
        tw.append((t3 - t2) * 1e6)
        await _invoke(insts["on"], i)
        i += 1
    for node in nodes.values():
        await node.close()
    base = {"warm_invoke_ms_p50_freeze_off": round(pct(warm["off"], 50), 4)}
    emit(
        "warm_invoke_ms", pct(warm["on"], 50), "ms", p99=round(pct(warm["on"], 99), 3), n=len(warm["on"]),
        freeze_after_ms=after, delta_ms=round(pct(warm["on"], 50) - pct(warm["off"], 50), 4), baseline=base,
    )  # fmt: skip
    emit(
        "idle_invoke_ms", pct(idle["on"], 50), "ms", p99=round(pct(idle["on"], 99), 3), n=len(idle["on"]),
        gap_ms=gap_ms, freeze_after_ms=after, freezes=frozen_seen,
        delta_ms=round(pct(idle["on"], 50) - pct(idle["off"], 50), 4),
        baseline={"idle_invoke_ms_p50_freeze_off": round(pct(idle["off"], 50), 4)},
    )  # fmt: skip
    emit(
        "idle_invoke_switches", pct(switches["on"], 50), "switches", mean=round(sum(switches["on"]) / len(idle["on"]), 2),
        n=len(switches["on"]), baseline={"idle_invoke_switches_p50_freeze_off": pct(switches["off"], 50),
                                         "mean_freeze_off": round(sum(switches["off"]) / len(switches["off"]), 2)},
    )  # fmt: skip
    emit("freeze_write_us", pct(fw, 50), "us", p99=round(pct(fw, 99), 2), n=len(fw), baseline={})
    emit("thaw_write_us", pct(tw, 50), "us", p99=round(pct(tw, 99), 2), n=len(tw), baseline={})
    emit("frozen_after_ms", pct(settle, 50), "ms", p99=round(pct(settle, 99), 3), n=len(settle), baseline={})


if __name__ == "__main__":
    asyncio.run(main())
