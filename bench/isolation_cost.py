"""What the isolation work of issue 10 costs: the current tree against a baseline tree, same run, alternated.

Two real servers (``squall up``) on the same interpreter and virtualenv, one importing Squall from the baseline
source tree (``--baseline-src``, e.g. a worktree of the commit before the work) and one from this tree; they are
measured in alternating rounds (which one goes first alternates too), only one active at a time:

  cold_start_hello_ms       function deployed, zygote warm, no instance: first Invoke, end to end (median)
  cold_start_pillow_ms      a function importing Pillow (vendored in its zip), never run: first Invoke after
                            CreateFunction (zygote start, import probe, pre-import, instance) (one per round)
  warm_invoke_p50_ms        sequential Invokes of a warm hello instance
  burst_wall_s              N concurrent Invokes of a sleep(1) function from zero instances (zygote warm)

Each line: the current tree's median over rounds, ``ratio`` = current / baseline, and ``baseline`` with the
baseline's median.  (The issue's budget: at most +10% on each.)

    git -C /work/main worktree add /work/wt/baseline fcfeb43
    python bench/isolation_cost.py --baseline-src /work/wt/baseline/src --patch-baseline [--quick] [--rounds N]

``--patch-baseline``: the baseline (fcfeb43) closes an instance's log pipe twice; under a 1000-request burst that
closes descriptors other instances reuse and its server hangs requests or dies, so the burst cannot be compared.
The option compares against a temporary copy with only that fixed (two lines, as on this branch).

``--only cold_start_pillow_ms,burst_wall_s`` measures only those; ``--quick``: 2 rounds, 5 cold starts per round, burst N = 200 (under a minute and a half here); full: 3 rounds,
15 cold starts, burst N = 1000.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, pct
from _http import Conn, Signer
from _server import KEY_ID, SECRET, Server, deploy

HELLO = "def handler(event, context):\n    return {'ok': True}\n"
SLEEPY = "import time\ndef handler(event, context):\n    time.sleep(1)\n    return {'ok': True}\n"
PILLOW = "from PIL import Image\ndef handler(event, context):\n    return {'size': Image.new('RGB', (8, 8)).size}\n"
UNITS = {"cold_start_hello_ms": "ms", "cold_start_pillow_ms": "ms", "warm_invoke_p50_ms": "ms", "burst_wall_s": "s"}
BURST_REQUEST_TIMEOUT_S = 90.0  # a request of the burst that takes longer counts as an error
KEEP_ALIVE_S = 0.3  # idle instances go quickly: every cold sample finds the zygote but no instance


def pillow_zip() -> bytes:
    """The function's zip: app.py plus Pillow vendored from this environment (PIL, pillow.libs, dist-info)."""
    dist = metadata.distribution("pillow")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("app.py", PILLOW)
        for rel in dist.files or []:
            if ".." in Path(rel).parts or "__pycache__" in Path(rel).parts:
                continue
            src = Path(str(dist.locate_file(rel)))
            if src.is_file():
                zf.write(src, str(rel))
    return buf.getvalue()


async def invoke(conn: Conn, signer: Signer, port: int, name: str) -> float:
    path = f"/2015-03-31/functions/{name}/invocations"
    body = b"{}"
    t0 = time.perf_counter()
    status, out = await conn.request("POST", path, body, signer.headers("POST", f"127.0.0.1:{port}", path, body))
    if status != 200 or b"errorType" in out:
        raise RuntimeError(f"{name}: {status} {out[:300]!r}")
    return (time.perf_counter() - t0) * 1000


async def sequential(port: int, name: str, n: int, gap_s: float = 0.0) -> list[float]:
    signer = Signer(KEY_ID, SECRET)
    out = []
    for _ in range(n):
        if gap_s:
            await asyncio.sleep(gap_s)
        conn = Conn("127.0.0.1", port)
        try:
            out.append(await invoke(conn, signer, port, name))
        finally:
            conn.close()
    return out


async def burst(port: int, name: str, n: int) -> tuple[float, int]:
    signer = Signer(KEY_ID, SECRET)
    errors = 0

    async def one() -> None:
        nonlocal errors
        conn = Conn("127.0.0.1", port)
        try:
            await asyncio.wait_for(invoke(conn, signer, port, name), BURST_REQUEST_TIMEOUT_S)
        except Exception:
            errors += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0, errors


class Side:
    def __init__(self, label: str, src: Path) -> None:
        self.label = label
        self.server = Server(
            PYTHONPATH=str(src), SQUALL_KEEP_ALIVE_S=str(KEEP_ALIVE_S), SQUALL_REAP_INTERVAL_S="0.05",
            SQUALL_THROTTLE_WAIT_S="20",
        )  # fmt: skip
        self.client = self.server.lambda_client()
        deploy(self.client, "hello", HELLO)
        deploy(self.client, "sleepy", SLEEPY, Timeout=30)
        self.results: dict[str, list[float]] = {}
        self.n_pillow = 0
        self.burst_errors = 0

    def add(self, metric: str, value: float) -> None:
        self.results.setdefault(metric, []).append(value)

    def round(self, colds: int, warm_n: int, burst_n: int, pillow: bytes, only: set[str]) -> None:
        port = self.server.port
        asyncio.run(sequential(port, "hello", 1))  # the zygote is loaded (and stays: zygote keep-alive 600 s)
        if "cold_start_hello_ms" in only:
            self.add("cold_start_hello_ms", statistics.median(asyncio.run(sequential(port, "hello", colds, 0.5))))
        if "warm_invoke_p50_ms" in only:
            warm = asyncio.run(sequential(port, "hello", warm_n))
            self.add("warm_invoke_p50_ms", pct(warm[10:], 50))
        if "cold_start_pillow_ms" in only:
            self.pillow(pillow)
        if "burst_wall_s" in only:
            self.burst(burst_n)
        print(f"# {self.label}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in self.results.items()), file=sys.stderr)

    def pillow(self, pillow: bytes) -> None:
        port = self.server.port
        self.n_pillow += 1
        name = f"pillow{self.n_pillow}"
        self.client.create_function(
            FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::000000000000:role/x", Handler="app.handler",
            Code={"ZipFile": pillow}, MemorySize=512, Timeout=60,
        )  # fmt: skip
        self.client.get_waiter("function_active_v2").wait(FunctionName=name)
        self.add("cold_start_pillow_ms", asyncio.run(sequential(port, name, 1))[0])

    def burst(self, burst_n: int) -> None:
        port = self.server.port
        self.client.invoke(FunctionName="sleepy", InvocationType="DryRun")  # its zygote loaded, no instance
        time.sleep(1.0)  # earlier instances reaped
        wall, errors = asyncio.run(burst(port, "sleepy", burst_n))
        self.burst_errors += errors
        self.add("burst_wall_s", wall)
        time.sleep(2.0)  # the burst's instances go before the other side runs


def patched_baseline(src: Path) -> Path:
    """A copy of the baseline tree with its double close of an instance's log pipe fixed (two lines; this branch
    fixes it too): unpatched, a 1000-request burst closes descriptors that other instances' pipes and sockets have
    reused, and the baseline server hangs requests or dies ("File exists", "Bad file descriptor")."""
    import shutil
    import tempfile

    dst = Path(tempfile.mkdtemp(prefix="squall-baseline-src-")) / "src"
    shutil.copytree(src, dst)
    inst = dst / "squall/sandbox/node/instance.py"
    text = inst.read_text()
    old = (
        "        self.alive = False\n        with contextlib.suppress(Exception):\n"
        "            self._loop.remove_reader(self.log_fd)\n        with contextlib.suppress(OSError):\n"
        "            os.close(self.log_fd)\n"
    )
    new = (
        "        self.alive = False\n        if self.log_fd >= 0:\n            with contextlib.suppress(Exception):\n"
        "                self._loop.remove_reader(self.log_fd)\n            with contextlib.suppress(OSError):\n"
        "                os.close(self.log_fd)\n            self.log_fd = -1\n"
    )
    node = dst / "squall/sandbox/node/node.py"
    ntext = node.read_text()
    nold = "            for fd in (log_r, log_w):\n                os.close(fd)\n"
    if old not in text or nold not in ntext:
        raise SystemExit(f"--patch-baseline: {src} does not have the expected code; run without it")
    inst.write_text(text.replace(old, new))
    node.write_text(ntext.replace(nold, "            os.close(log_r)\n"))
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-src", required=True, type=Path, help="the baseline tree's src/ directory")
    ap.add_argument("--current-src", type=Path, default=Path(__file__).resolve().parent.parent / "src")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--only", help="comma-separated metrics to measure (default: all)")
    ap.add_argument("--patch-baseline", action="store_true", help="fix the baseline's double close first (see above)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else set(UNITS)
    rounds = args.rounds or (2 if args.quick else 3)
    colds, warm_n, burst_n = (5, 300, 200) if args.quick else (15, 1000, 1000)
    pillow = pillow_zip()
    base_src = patched_baseline(args.baseline_src.resolve()) if args.patch_baseline else args.baseline_src.resolve()
    sides = [Side("baseline", base_src), Side("current", args.current_src.resolve())]
    try:
        for r in range(rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                side.round(colds, warm_n, burst_n, pillow, only)
    finally:
        for side in sides:
            side.server.stop()
    base, cur = sides
    for metric, unit in UNITS.items():
        if metric not in only:
            continue
        c, b = statistics.median(cur.results[metric]), statistics.median(base.results[metric])
        extra: dict[str, Any] = {"rounds": rounds, "samples": [round(x, 3) for x in cur.results[metric]]}
        if metric == "burst_wall_s":
            extra.update(n=burst_n, errors=cur.burst_errors)
        emit(
            metric, c, unit, ratio=round(c / b, 3), **extra,
            baseline={"value": round(b, 4), "samples": [round(x, 3) for x in base.results[metric]],
                      **({"errors": base.burst_errors} if metric == "burst_wall_s" else {})},
        )  # fmt: skip


if __name__ == "__main__":
    main()
