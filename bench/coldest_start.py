"""The coldest start, phase by phase: a function never run since the node started (no probe cache, no zygote).

Node API (no HTTP), real sandboxes.  Each round loads every scenario as a new code version (nothing cached), then
forks one instance and invokes it once.  Scenarios:
  hello          a trivial handler ("hello from nothing")
  thumb_lazy     the peers' /thumb handler: Pillow imported inside the handler (nothing for the probe to find)
  thumb_top      Pillow imported at the top of the handler module (the probe finds it, the zygote pre-imports it)
  thumb_pinned   thumb_lazy with ``preimport: [PIL.Image, PIL.ImageOps]`` pinned (squall.yaml)
  thumb_learned  thumb_lazy after one invocation: its next zygote pre-imports what it learned
each with the vendored code as deployed (``.pyc`` compiled at deploy: ``--no-pyc`` for sources only, as before).

Prints JSON lines (medians over the rounds):
  coldest_<scenario>_zygote_ms     node.load(): cgroups, clone, the zygote's sandbox set-up, probe, pre-imports
  coldest_<scenario>_ms            node.load() + fork an instance + first invocation result ("phases" splits it:
                                   node_ms = the node's side of the load, zygote = the zygote's own phases,
                                   start_ms = instance fork + sandbox + handler import, invoke_ms = first result)
  warm_zygote_<scenario>_ms        fork an instance from that (already loaded) zygote + first invocation result
                                   (right after the first instance stopped: no spare parked yet, an on-demand fork)
  warm_zygote_spare_<scenario>_ms  the same once the zygote's spare instance is parked (SQUALL_SPARE_INSTANCES):
                                   a start that takes it + first invocation result
  baseline: fresh ``python3 -c 'import PIL.Image'`` with the same vendored tree (with its .pyc and without),
  a bare ``python3 -c pass`` and ``python3 -S -c pass`` (no site: this host's site runs a .pth that imports certifi),
  measured in the same run.

    python bench/coldest_start.py [--quick] [--no-pyc] [--rounds N] [--only hello,thumb_learned]
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, median, quick

try:
    from squall.core.config import NodeConfig
    from squall.core.model import FunctionSpec, InvokeRequest
    from squall.sandbox.node.node import Node
except ImportError:  # a checkout from before the package re-cut (a before/after run: PYTHONPATH=<old>/src ...)
    from squall.config import NodeConfig  # type: ignore[no-redef]
    from squall.model import FunctionSpec, InvokeRequest  # type: ignore[no-redef]
    from squall.node.node import Node  # type: ignore[no-redef]

try:
    from squall.functions.store.bytecode import compile_tree
except ImportError:  # a checkout without .pyc at deploy

    def compile_tree(root: Path, timeout_s: float = 120.0) -> bool:
        py = getattr(sys, "_base_executable", sys.executable)
        return subprocess.run([py, "-I", "-m", "compileall", "-q", "-q", str(root)], check=False).returncode == 0


HAS_PREIMPORT = "preimport" in getattr(FunctionSpec, "__dataclass_fields__", {})

HELLO = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'hello'}\n"
THUMB_LAZY = """import io
import os
_jpeg = None


def handler(event, context):
    global _jpeg
    from PIL import Image, ImageOps
    if _jpeg is None:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample.jpg"), "rb") as f:
            _jpeg = f.read()
    im = Image.open(io.BytesIO(_jpeg))
    out = ImageOps.fit(im, (300, 300), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=85)
    return {"statusCode": 200, "body": str(len(buf.getvalue()))}
"""
THUMB_TOP = THUMB_LAZY.replace("import io\n", "import io\nfrom PIL import Image, ImageOps\n", 1)
SCENARIOS = ("hello", "thumb_lazy", "thumb_top", "thumb_pinned", "thumb_learned")


def _pillow_dir() -> Path:
    import PIL

    return Path(PIL.__file__).resolve().parents[1]


def make_code(root: Path, pyc: bool) -> Path:
    """A deployed package: the handlers and Pillow vendored beside them (as ``pip install --target`` leaves it)."""
    code = root / ("code-pyc" if pyc else "code-src")
    code.mkdir(parents=True)
    site = _pillow_dir()
    for entry in site.iterdir():
        if entry.name == "PIL" or entry.name.lower().startswith(("pillow-", "pillow.libs")):
            shutil.copytree(entry, code / entry.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (code / "hello.py").write_text(HELLO)
    (code / "thumb_lazy.py").write_text(THUMB_LAZY)
    (code / "thumb_top.py").write_text(THUMB_TOP)
    from PIL import Image

    Image.new("RGB", (1200, 900), (200, 120, 40)).save(code / "sample.jpg", "JPEG", quality=90)
    if pyc:
        compile_tree(code)
    for d, _dirs, files in os.walk(code):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    return code


def _fresh(args: list[str], env: dict[str, str], n: int) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
        out.append((time.perf_counter() - t0) * 1000)
    return median(out)


def _in_process_thumb_ms(code: Path) -> float:
    """The /thumb handler called in this process, Pillow already imported: the work itself (the ceiling)."""
    ns: dict[str, Any] = {"__file__": str(code / "thumb_lazy.py")}
    exec(THUMB_LAZY, ns)
    ns["handler"]({}, None)
    out = []
    for _ in range(5):
        t0 = time.perf_counter()
        ns["handler"]({}, None)
        out.append((time.perf_counter() - t0) * 1000)
    return median(out)


def baselines(code_pyc: Path, code_src: Path, n: int) -> dict[str, float]:
    py = getattr(sys, "_base_executable", sys.executable)
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    return {
        "fresh_python3_ms": round(_fresh([py, "-c", "pass"], env, n), 2),
        # without site: this host's interpreter imports certifi from a .pth in its site-packages (~80 ms, not ours)
        "fresh_python3_no_site_ms": round(_fresh([py, "-S", "-c", "pass"], env, n), 2),
        "fresh_python3_import_PIL_Image_ms": round(
            _fresh([py, "-c", "import PIL.Image"], {**env, "PYTHONPATH": str(code_pyc)}, n), 2
        ),
        "fresh_python3_no_site_import_PIL_Image_ms": round(
            _fresh([py, "-S", "-c", "import PIL.Image"], {**env, "PYTHONPATH": str(code_pyc)}, n), 2
        ),
        "fresh_python3_import_PIL_Image_no_pyc_ms": round(
            _fresh([py, "-c", "import PIL.Image"], {**env, "PYTHONPATH": str(code_src)}, n), 2
        ),
        "in_process_thumb_ms": round(_in_process_thumb_ms(code_pyc), 2),
    }


async def _start_and_invoke(node: Node, fn: Any, scenario: str, request_id: str) -> tuple[float, float]:
    """Start an instance of the loaded ``fn``, invoke it once, stop it: (start ms, first invocation ms)."""
    t0 = time.perf_counter()
    inst = await node.start_instance(fn)
    t1 = time.perf_counter()
    out = await inst.invoke(InvokeRequest(b"{}", request_id=request_id))
    t2 = time.perf_counter()
    if not out.ok:
        raise RuntimeError(f"{scenario} ({request_id}): {out.payload[:300]!r}")
    await node.stop_instance(inst)
    return (t1 - t0) * 1000, (t2 - t1) * 1000


async def one(node: Node, code: Path, scenario: str, memory_mb: int = 512) -> dict[str, Any]:
    handler = {"hello": "hello.handler", "thumb_top": "thumb_top.handler"}.get(scenario, "thumb_lazy.handler")
    extra: dict[str, Any] = {}
    if scenario == "thumb_pinned" and HAS_PREIMPORT:
        extra["preimport"] = ("PIL.Image", "PIL.ImageOps")
    spec = FunctionSpec(
        name=f"{scenario}-{uuid.uuid4().hex[:6]}", code_dir=code, handler=handler, memory_mb=memory_mb,
        code_sha256=uuid.uuid4().hex, timeout_s=30, **extra,
    )  # fmt: skip
    if scenario == "thumb_learned":  # learn first: one zygote, one invocation, its background probe; then it goes
        fn = await node.load(spec)
        inst = await node.start_instance(fn)
        await inst.invoke(InvokeRequest(b"{}", request_id="learn"))
        await node.stop_instance(inst)
        if hasattr(node, "preimports_settled"):
            await node.preimports_settled(fn)
        await node.unload(fn)
    t0 = time.perf_counter()
    fn = await node.load(spec)
    t1 = time.perf_counter()
    start_ms, invoke_ms = await _start_and_invoke(node, fn, scenario, "cold")
    if hasattr(node, "preimports_settled"):  # (what the first instance imported is pre-imported in place by now)
        await node.preimports_settled(fn)
    # the zygote is warm now: a second instance, right away (no spare parked yet: an on-demand fork)
    warm_start_ms, warm_invoke_ms = await _start_and_invoke(node, fn, scenario, "warm-zygote")
    # the zygote warm and its spare parked (SQUALL_SPARE_INSTANCES: made 50 ms after the last start): a third one
    parked = await node.spares_parked(fn) if hasattr(node, "spares_parked") else 0
    spare_start_ms, spare_invoke_ms = await _start_and_invoke(node, fn, scenario, "spare")
    rep = fn.report
    await node.unload(fn)
    return {
        "zygote_ms": (t1 - t0) * 1000,
        "total_ms": (t1 - t0) * 1000 + start_ms + invoke_ms,
        "start_ms": start_ms,
        "invoke_ms": invoke_ms,
        "warm_zygote_ms": warm_start_ms + warm_invoke_ms,
        "warm_start_ms": warm_start_ms,
        "warm_invoke_ms": warm_invoke_ms,
        "spare_ms": spare_start_ms + spare_invoke_ms,
        "spare_start_ms": spare_start_ms,
        "spare_invoke_ms": spare_invoke_ms,
        "spares_parked": parked,
        "node_ms": rep.get("node_ms", {}),
        "zygote": rep.get("phases", {}),
        "preloaded": len(rep.get("preloaded", [])),
        "load_ms": rep.get("load_ms", 0.0),
    }


def _median_dict(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: round(median([r[k] for r in rows if k in r]), 2) for k in keys}


async def main() -> None:
    rounds = 3 if quick() else 7
    if "--rounds" in sys.argv:
        rounds = int(sys.argv[sys.argv.index("--rounds") + 1])
    pyc = "--no-pyc" not in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="squall-coldest-"))
    data = tmp / "data"
    # under the data dir, as the code store keeps deployed code (the node then mounts it without a copy)
    code_pyc = make_code(data / "bench", pyc=True)
    code_src = make_code(data / "bench", pyc=False)
    code = code_pyc if pyc else code_src
    node = Node(NodeConfig(data_dir=data, cgroup_name=f"squall-coldest-{os.getpid()}"))
    await node.start()
    scenarios = SCENARIOS
    if "--only" in sys.argv:  # e.g. many rounds of one scenario for an A/B
        scenarios = tuple(s for s in sys.argv[sys.argv.index("--only") + 1].split(",") if s in SCENARIOS)
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in scenarios}
    base_rows = []
    try:
        for _ in range(rounds):
            base_rows.append(baselines(code_pyc, code_src, 1))
            for s in scenarios:
                results[s].append(await one(node, code, s))
    finally:
        await node.close()
        shutil.rmtree(tmp, ignore_errors=True)
    base = _median_dict(base_rows)
    for s in scenarios:
        rows = results[s]
        pick = {k: round(median([r[k] for r in rows]), 2) for k in ("start_ms", "invoke_ms")}
        phases = {
            "node_ms": _median_dict([r["node_ms"] for r in rows]),
            "zygote": _median_dict([r["zygote"] for r in rows]),
        }
        common = {"rounds": rounds, "pyc": pyc, "preloaded": rows[-1]["preloaded"], "baseline": base}
        emit(f"coldest_{s}_zygote_ms", median([r["zygote_ms"] for r in rows]), "ms", phases=phases, **common)
        emit(f"coldest_{s}_ms", median([r["total_ms"] for r in rows]), "ms", **pick, **common)
        warm = {k: round(median([r[f"warm_{k}"] for r in rows]), 2) for k in ("start_ms", "invoke_ms")}
        emit(f"warm_zygote_{s}_ms", median([r["warm_zygote_ms"] for r in rows]), "ms", **warm, **common)
        spare = {k: round(median([r[f"spare_{k}"] for r in rows]), 2) for k in ("start_ms", "invoke_ms")}
        emit(
            f"warm_zygote_spare_{s}_ms", median([r["spare_ms"] for r in rows]), "ms", **spare,
            spares_parked=min(r["spares_parked"] for r in rows), **common,
        )  # fmt: skip
    print(json.dumps({"raw": results}) if "--raw" in sys.argv else "", end="")


if __name__ == "__main__":
    asyncio.run(main())
