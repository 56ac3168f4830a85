"""Cold start and warm invoke of the sandboxed runtime (node API, no HTTP).

Prints JSON lines:
  cold_start_ms        fork from the function zygote + full sandbox + handler import, until READY (p50, p99)
  cold_invoke_ms       cold start + first invocation result
  warm_invoke_ms       one invocation on a warm instance through the frame protocol
  baseline: fresh_interpreter_ms (``python -c 'import json'`` as a subprocess: what a non-zygote cold start
  costs at least) and in_process_call_us (the handler called directly), measured in the same run.

    python bench/sandbox_start.py [--quick]
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
from _common import emit, pct, quick

from squall.core.config import NodeConfig
from squall.core.model import FunctionSpec, InvokeRequest
from squall.sandbox.node.node import Node

HANDLER = "def handler(event, context):\n    return {'ok': True, 'n': event.get('n', 0)}\n"


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
    await node.start()
    fn = await node.load(FunctionSpec(name="bench", code_dir=code, handler="app.handler"))
    cold, cold_invoke = [], []
    for i in range(n_cold):
        t0 = time.perf_counter()
        inst = await node.start_instance(fn)
        t1 = time.perf_counter()
        await inst.invoke(InvokeRequest(b'{"n": 1}', request_id=f"c{i}"))
        t2 = time.perf_counter()
        cold.append((t1 - t0) * 1000)
        cold_invoke.append((t2 - t0) * 1000)
        await node.stop_instance(inst)
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
    emit("cold_start_ms", pct(cold, 50), "ms", p99=round(pct(cold, 99), 3), n=n_cold, baseline=base)
    emit("cold_invoke_ms", pct(cold_invoke, 50), "ms", p99=round(pct(cold_invoke, 99), 3), n=n_cold, baseline=base)
    emit("warm_invoke_ms", pct(warm, 50), "ms", p99=round(pct(warm, 99), 3), n=n_warm, baseline=base)
    emit(
        "cold_start_vs_fresh_interpreter",
        pct(fresh, 50) / pct(cold, 50),
        "x",
        note="how many times faster a zygote fork is than starting a fresh interpreter",
    )


if __name__ == "__main__":
    asyncio.run(main())
