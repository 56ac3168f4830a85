"""Custom runtimes through the Lambda Runtime API beside the native protocol, in the same run (node API, no HTTP).

Prints JSON lines, each with the native Python runtime's figure of the same run as its baseline:
  runtime_api_cold_start_ms{client}   fork + sandbox + the bootstrap's start until its first /next (p50, p99)
  runtime_api_warm_invoke_ms{client}  one invocation on a warm instance: INVOKE frame -> /next answer -> the
                                      bootstrap's POST /response -> RESULT frame (p50, p99)
  runtime_api_warm_ratio{client}      warm p50 over the native warm p50 (aim: <= 2)
  runtime_api_cpu_us_per_invoke{client}  CPU time of the instance's processes per warm invocation (PID 1 and the
                                      bootstrap; the native instance as baseline): load-independent
  runtime_api_http_warm_invoke_ms{client}, runtime_api_http_warm_ratio{client}
                                      the same, end to end: signed Invoke requests over HTTP to a real
                                      ``squall up`` (one keep-alive client), native and custom runtimes interleaved
Clients: ``urllib`` (a Python bootstrap, one connection per request, as most hand-written loops do),
``http.client`` (a minimal Python loop on one kept-alive connection: the cost of the bridge itself), ``sh+curl``
(a shell loop running curl twice per invocation: its cold start is the bridge's own, without a Python start-up) and
``awslambdaric`` (AWS's runtime interface client, vendored into the zip from pip-downloaded wheels; skipped with
a note when the wheels cannot be downloaded).  Warm invocations of all runtimes are interleaved round by round so
that machine noise hits them alike.

    python bench/runtime_api.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, pct, quick
from _http import Conn, Signer
from _server import KEY_ID, SECRET, Server

from squall.core.config import NodeConfig
from squall.core.model import FunctionSpec, InvokeRequest
from squall.sandbox.node.node import Node

HANDLER = "def handler(event, context):\n    return {'ok': True, 'n': event.get('n', 0)}\n"
URLLIB_BOOTSTRAP = """#!/usr/bin/env python3
import json, os, urllib.request
base = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation"
while True:
    with urllib.request.urlopen(base + "/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    body = json.dumps({"ok": True, "n": event.get("n", 0)}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{base}/{rid}/response", body, method="POST")).read()
"""
KEEPALIVE_BOOTSTRAP = """#!/usr/bin/env python3
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
base = "/2018-06-01/runtime/invocation"
while True:
    conn.request("GET", base + "/next")
    r = conn.getresponse()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    event = json.loads(r.read())
    conn.request("POST", f"{base}/{rid}/response", json.dumps({"ok": True, "n": event.get("n", 0)}).encode())
    conn.getresponse().read()
"""
SH_BOOTSTRAP = """#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation"
while true; do
  rid=$(curl -sS -D - -o /tmp/event "$api/next" | grep -i '^Lambda-Runtime-Aws-Request-Id:' | cut -d' ' -f2 | tr -d '\\r')
  curl -sS -o /dev/null -X POST "$api/$rid/response" -d '{"ok": true}'
done
"""
RIC_BOOTSTRAP = '#!/bin/sh\nexport PYTHONPATH="$LAMBDA_TASK_ROOT"\nexec python3 -m awslambdaric "$_HANDLER"\n'


def _write(root: Path, files: dict[str, str | bytes], executables: tuple[str, ...] = ()) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(p, 0o755 if rel in executables else 0o644)
    for dirpath, _dirs, _files in os.walk(root):
        os.chmod(dirpath, 0o755)
    return root


def _ric_files() -> dict[str, str | bytes] | None:
    cache = Path(tempfile.gettempdir()) / "squall-test-wheels" / "awslambdaric"
    cache.mkdir(parents=True, exist_ok=True)
    if not list(cache.glob("awslambdaric-*.whl")):
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", str(cache), "awslambdaric"],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return None
    files: dict[str, str | bytes] = {}
    for wheel in cache.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    files[info.filename] = zf.read(info)
    return files


def _zip_dir(root: Path) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                info = zipfile.ZipInfo(p.relative_to(root).as_posix())
                info.external_attr = (0o100755 if os.access(p, os.X_OK) else 0o100644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, p.read_bytes())
    return buf.getvalue()


def _cpu_ms(pid: int) -> float:
    """User + system CPU of an instance and all its descendants that are alive (ms): the instance's PID 1 and,
    for a custom runtime, its bootstrap."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    return total


async def http_round(port: int, names: list[str], n: int) -> dict[str, list[float]]:
    """``n`` sequential signed Invokes of each function, interleaved, on one keep-alive connection."""
    signer = Signer(KEY_ID, SECRET)
    conn = Conn("127.0.0.1", port)
    body = b'{"n": 1}'
    out: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(n):
        for name in names:
            path = f"/2015-03-31/functions/{name}/invocations"
            h = signer.headers("POST", f"127.0.0.1:{port}", path, body)
            t0 = time.perf_counter()
            status, _ = await conn.request("POST", path, body, h)
            out[name].append((time.perf_counter() - t0) * 1000)
            assert status == 200, status
    conn.close()
    return out


def end_to_end(specs: dict[str, FunctionSpec], n: int) -> None:
    server = Server()
    try:
        lam = server.lambda_client()
        for spec in specs.values():
            lam.create_function(
                FunctionName=spec.name, Runtime=spec.runtime, Role="arn:aws:iam::000000000000:role/x",
                Handler=spec.handler, Code={"ZipFile": _zip_dir(spec.code_dir)}, Timeout=30,
            )  # fmt: skip
            lam.get_waiter("function_active_v2").wait(FunctionName=spec.name)
        names = [s.name for s in specs.values()]
        asyncio.run(http_round(server.port, names, 5))  # warm every function up
        got = asyncio.run(http_round(server.port, names, n))
    finally:
        server.stop()
    native = got[specs["native"].name]
    base = {"native_http_warm_invoke_ms_p50": round(pct(native, 50), 3),
            "native_http_warm_invoke_ms_p99": round(pct(native, 99), 3)}  # fmt: skip
    for k, spec in specs.items():
        if k == "native":
            continue
        t = got[spec.name]
        emit(f"runtime_api_http_warm_invoke_ms{{{k}}}", pct(t, 50), "ms", p99=round(pct(t, 99), 3), n=n,
             baseline=base)  # fmt: skip
        emit(f"runtime_api_http_warm_ratio{{{k}}}", pct(t, 50) / pct(native, 50), "x", aim=2.0, baseline=base)


async def main() -> dict[str, FunctionSpec]:
    n_cold = 15 if quick() else 60
    n_warm = 300 if quick() else 2000
    tmp = Path(tempfile.mkdtemp(prefix="squall-bench-"))
    os.chmod(tmp, 0o755)
    data = tmp / "data"
    data.mkdir()
    os.chmod(data, 0o755)
    specs = {"native": FunctionSpec(name="native", code_dir=_write(data / "native", {"app.py": HANDLER}),
                                    handler="app.handler")}  # fmt: skip
    specs["urllib"] = FunctionSpec(
        name="urllib", code_dir=_write(data / "urllib", {"bootstrap": URLLIB_BOOTSTRAP}, ("bootstrap",)),
        handler="app.handler", runtime="provided.al2023",
    )  # fmt: skip
    specs["http.client"] = FunctionSpec(
        name="keepalive", code_dir=_write(data / "keepalive", {"bootstrap": KEEPALIVE_BOOTSTRAP}, ("bootstrap",)),
        handler="app.handler", runtime="provided.al2023",
    )  # fmt: skip
    notes: dict[str, str] = {}
    if shutil.which("curl"):
        specs["sh+curl"] = FunctionSpec(
            name="sh", code_dir=_write(data / "sh", {"bootstrap": SH_BOOTSTRAP}, ("bootstrap",)),
            handler="app.handler", runtime="provided.al2023",
        )  # fmt: skip
    else:
        notes["sh+curl"] = "skipped: curl is not installed"
    ric = _ric_files()
    if ric is None:
        notes["awslambdaric"] = "skipped: the awslambdaric wheels could not be downloaded"
    else:
        files = {**ric, "bootstrap": RIC_BOOTSTRAP, "app.py": HANDLER}
        specs["awslambdaric"] = FunctionSpec(
            name="ric", code_dir=_write(data / "ric", files, ("bootstrap",)), handler="app.handler",
            runtime="provided.al2023",
        )  # fmt: skip
    node = Node(NodeConfig(data_dir=data))
    await node.start()
    cold: dict[str, list[float]] = {k: [] for k in specs}
    warm: dict[str, list[float]] = {k: [] for k in specs}
    try:
        loaded = {k: await node.load(s) for k, s in specs.items()}
        for i in range(n_cold):
            for k, fn in loaded.items():
                t0 = time.perf_counter()
                inst = await node.start_instance(fn)
                cold[k].append((time.perf_counter() - t0) * 1000)
                out = await inst.invoke(InvokeRequest(b'{"n": 1}', request_id=f"c{k}{i}"))
                assert out.ok, out.payload
                await node.stop_instance(inst)
        insts = {k: await node.start_instance(fn) for k, fn in loaded.items()}
        cpu0 = {k: _cpu_ms(inst.pid) for k, inst in insts.items()}
        for i in range(n_warm):
            for k, inst in insts.items():
                t0 = time.perf_counter()
                out = await inst.invoke(InvokeRequest(b'{"n": 1}', request_id=f"w{k}{i}"))
                warm[k].append((time.perf_counter() - t0) * 1000)
                assert out.ok, out.payload
        cpu = {k: (_cpu_ms(inst.pid) - cpu0[k]) * 1000 / n_warm for k, inst in insts.items()}
    finally:
        await node.close()
    base = {
        "native_cold_start_ms_p50": round(pct(cold["native"], 50), 3),
        "native_warm_invoke_ms_p50": round(pct(warm["native"], 50), 3),
        "native_warm_invoke_ms_p99": round(pct(warm["native"], 99), 3),
        "native_cpu_us_per_invoke": round(cpu["native"], 1),
    }
    for k in specs:
        if k == "native":
            continue
        emit(f"runtime_api_cold_start_ms{{{k}}}", pct(cold[k], 50), "ms", p99=round(pct(cold[k], 99), 3), n=n_cold,
             baseline=base)  # fmt: skip
        emit(f"runtime_api_warm_invoke_ms{{{k}}}", pct(warm[k], 50), "ms", p99=round(pct(warm[k], 99), 3),
             n=n_warm, baseline=base)  # fmt: skip
        emit(f"runtime_api_cpu_us_per_invoke{{{k}}}", cpu[k], "us", note="PID 1 + bootstrap, user + system",
             baseline=base)  # fmt: skip
        emit(f"runtime_api_warm_ratio{{{k}}}", pct(warm[k], 50) / pct(warm["native"], 50), "x", aim=2.0,
             baseline=base)  # fmt: skip
    for k, why in notes.items():
        emit(f"runtime_api_warm_invoke_ms{{{k}}}", float("nan"), "ms", note=why)
    return specs


if __name__ == "__main__":
    all_specs = asyncio.run(main())
    end_to_end(all_specs, 200 if quick() else 1000)
