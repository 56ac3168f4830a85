"""The showcase under load: JPEG uploads to s3://photos/originals/ at a fixed rate, each turned into a thumbnail by
examples/thumbnails (Pillow vendored from PyPI) through S3 event notifications -> durable async queue -> Lambda.

Prints JSON lines:
  thumbnails_upload_rate          uploads/s achieved (target: --rate), with the upload p50/p99 in ms
  thumbnails_latency_p50_ms       upload start -> thumbnail written (its LastModified, ms resolution)
  thumbnails_latency_p99_ms
  thumbnails_drain_s              last upload -> last thumbnail
  thumbnails_cpu_ms_per_photo     machine CPU per upload, split: server process / load generator (this process) /
                                  sandboxes (zygotes + instances, their imports at cold start included) / rest
                                  (kernel threads: disk journal, network; anything else running)
  thumbnails_instances            instances started (pool cold_starts; "cold_records" = records with cold=true)
  thumbnails_exactly_once         1 when every upload produced exactly one thumbnail and exactly one invocation that
                                  ran (all "ok"; "throttled" attempts never ran and are retried), else 0

    python bench/thumbnails.py [--quick] [--rate N] [--seconds S] [--concurrency N] [--warm]
      default 167 uploads/s for 60 s; --quick: 50/s for 10 s; --concurrency: reserved concurrency of the
      function (default 2 x CPUs; the async queue absorbs the backlog, as on Lambda); --warm: that many instances
      provisioned (started and imported) before the first upload, the notification targeting the alias
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, pct, quick
from _cpu import CpuSplit
from _http import Conn, Signer
from _server import KEY_ID, SECRET, Server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "thumbnails"
BUCKET = "photos"


def signed_get(base_url: str, path: str) -> Any:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="GET", url=base_url + path)
    SigV4Auth(Credentials(KEY_ID, SECRET), "lambda", "us-east-1").add_auth(req)
    r = urllib.request.Request(base_url + path, headers=dict(req.headers.items()))
    with urllib.request.urlopen(r, timeout=60) as resp:
        return json.loads(resp.read())


def s3_client(url: str, pool: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}, max_pool_connections=pool,
                      read_timeout=60),
    )  # fmt: skip


def photos() -> list[bytes]:
    from PIL import Image

    out = []
    for i, (w, h) in enumerate([(640, 480), (480, 640), (800, 450), (512, 512), (1024, 300), (320, 240)]):
        buf = io.BytesIO()
        img = Image.new("RGB", (w, h), (40 * i % 256, 90, 200 - 30 * i))
        img.paste((250, 250, 250), (w // 4, h // 4, w // 2, h // 2))
        img.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def deploy(server: Server, concurrency: int, warm: bool = False) -> None:
    from squall.cli.packaging import build_package

    cache = Path(tempfile.gettempdir()) / "squall-bench-build-cache"
    package, info = build_package(EXAMPLE, EXAMPLE / "requirements.txt", cache)
    print(f"# package: {info.size / 1e6:.1f} MB, pip ran: {info.pip_ran}", file=sys.stderr)
    lam = server.lambda_client()
    from squall.cli.project import load_project
    from squall.iam.roles import ensure_role

    policies = load_project(EXAMPLE / "squall.yaml").function("thumbnails").policies
    role, _ = ensure_role(server.client("iam"), "thumbnails", policies)  # what the example's squall.yaml declares
    fn = lam.create_function(
        FunctionName="thumbnails", Runtime="python3.11", Role=role,
        Handler="app.handler", Code={"ZipFile": package}, MemorySize=512, Timeout=30,
    )  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="thumbnails")
    if concurrency > 0:  # cap instances: a burst of concurrent cold starts (boto3 + Pillow imports) starves the CPU
        lam.put_function_concurrency(FunctionName="thumbnails", ReservedConcurrentExecutions=concurrency)
    target = fn["FunctionArn"]
    if warm:  # provisioned concurrency on an alias: the instances are started (imports done) before the first upload
        version = lam.publish_version(FunctionName="thumbnails")["Version"]
        target = lam.create_alias(FunctionName="thumbnails", Name="live", FunctionVersion=version)["AliasArn"]
        lam.put_provisioned_concurrency_config(
            FunctionName="thumbnails", Qualifier="live", ProvisionedConcurrentExecutions=max(1, concurrency)
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            cfg = lam.get_provisioned_concurrency_config(FunctionName="thumbnails", Qualifier="live")
            if cfg["Status"] == "READY":
                break
            time.sleep(0.2)
    s3 = s3_client(server.url, 4)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {"LambdaFunctionArn": target, "Events": ["s3:ObjectCreated:*"],
                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "originals/"}]}}}
            ]
        },
    )  # fmt: skip


def upload(
    server: Server, rate: float, seconds: float, workers: int, ports: list[int] | None = None
) -> tuple[dict[str, float], list[float], float]:
    """Open-loop uploads at ``rate``/s; returns (thumbnail key -> upload start epoch, upload latencies ms, rate).

    The load generator is a lean signed HTTP client (bench/_http.py), not boto3: it shares the 2 cores with the
    platform, and boto3 would spend ~1.2 ms of CPU per PUT that a real deployment spends on the uploaders'
    machines.  The function itself uses boto3 unchanged.  ``ports``: the nodes of a cluster to spread the uploads
    over (the connections go round-robin to them); default the server's own."""
    return asyncio.run(_upload(server, rate, seconds, workers, ports or [server.port]))


async def _upload(
    server: Server, rate: float, seconds: float, workers: int, ports: list[int]
) -> tuple[dict[str, float], list[float], float]:
    images = photos()
    n = int(rate * seconds)
    started: dict[str, float] = {}
    upload_ms: list[float] = []
    errors: list[str] = []
    signer = Signer(KEY_ID, SECRET, service="s3")
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    for w in range(workers):
        idle.put_nowait(Conn("127.0.0.1", ports[w % len(ports)]))

    async def put(i: int) -> None:
        key = f"{i:06d}.jpg"
        path = f"/{BUCKET}/originals/{key}"
        body = images[i % len(images)]
        t_wall, t0 = time.time(), time.perf_counter()
        conn = await idle.get()
        try:
            host = f"127.0.0.1:{conn.port}"
            status, out = await conn.request(
                "PUT", path, body, signer.headers("PUT", host, path, body, {"content-type": "image/jpeg"})
            )
            if status != 200:
                errors.append(f"{status} {out[:200]!r}")
                return
        except Exception as e:
            conn.close()
            errors.append(repr(e))
            return
        finally:
            idle.put_nowait(conn)
        started[f"thumbnails/{key}"] = t_wall
        upload_ms.append((time.perf_counter() - t0) * 1000)

    tasks = []
    t_start = time.perf_counter()
    for i in range(n):
        delay = t_start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(put(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t_start
    while not idle.empty():
        idle.get_nowait().close()
    if errors:
        print(f"# {len(errors)} uploads failed, e.g. {errors[0]}", file=sys.stderr)
    return started, upload_ms, len(started) / elapsed


def wait_thumbnails(server: Server, want: int, timeout_s: float) -> dict[str, float]:
    """Poll ListObjectsV2 on thumbnails/ until ``want`` exist (bounded); key -> LastModified epoch."""
    s3 = s3_client(server.url, 2)
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="thumbnails/"):
            for obj in page.get("Contents", []):
                seen[obj["Key"]] = obj["LastModified"].timestamp()
        if len(seen) >= want:
            break
        time.sleep(0.5)
    return seen


def invocation_records(server: Server) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = signed_get(server.url, f"/_squall/api/invocations?function=thumbnails&limit=1000{cursor}")
        out += page["invocations"]
        if not page.get("next_cursor"):
            return out
        cursor = "&cursor=" + urllib.parse.quote(page["next_cursor"], safe="")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rate", type=float, default=50.0 if quick() else 167.0)
    ap.add_argument("--seconds", type=float, default=10.0 if quick() else 60.0)
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=2 * (os.cpu_count() or 1), help="reserved concurrency, 0: none")
    ap.add_argument("--warm", action="store_true", help="provisioned concurrency (= --concurrency) on an alias")
    args = ap.parse_args()

    server = Server()
    try:
        deploy(server, args.concurrency, args.warm)
        cpu = CpuSplit(server.proc.pid)
        started, upload_ms, achieved = upload(server, args.rate, args.seconds, args.workers)
        t_uploaded = time.time()
        thumbs = wait_thumbnails(server, len(started), timeout_s=max(120.0, args.seconds * 6))
        cpu_ms = cpu.split()  # includes the polling of thumbnails/ at 2/s (small against the run)
        time.sleep(0.5)  # let the record flusher (every 0.1 s) write the last invocation records
        latencies = [(thumbs[k] - t0) * 1000 for k, t0 in started.items() if k in thumbs]
        records = invocation_records(server)
        pool = signed_get(server.url, "/_squall/api/pool")

        emit("thumbnails_upload_rate", achieved, "uploads/s", target=args.rate, concurrency=args.concurrency, warm=args.warm, uploads=len(started),
             upload_p50_ms=round(pct(upload_ms, 50), 2), upload_p99_ms=round(pct(upload_ms, 99), 2))  # fmt: skip
        emit("thumbnails_latency_p50_ms", pct(latencies, 50), "ms", n=len(latencies))
        emit("thumbnails_latency_p99_ms", pct(latencies, 99), "ms", max_ms=round(max(latencies, default=0), 1))
        drain = (max(thumbs.values()) - t_uploaded) if thumbs else float("nan")
        emit("thumbnails_drain_s", max(drain, 0.0), "s")
        cold = sum(1 for r in records if r.get("cold"))
        emit("thumbnails_instances", pool.get("cold_starts", cold), "instances", cold_records=cold,
             async_queue_depth=pool.get("async_queue_depth"))  # fmt: skip
        n = max(1, len(started))
        emit("thumbnails_cpu_ms_per_photo", cpu_ms["machine"] / n, "ms", **{k: round(v / n, 2) for k, v in cpu_ms.items()},
             photos_per_s_cpu_bound=round(1000 * (os.cpu_count() or 1) / (cpu_ms["machine"] / n), 1))  # fmt: skip
        ok = [r for r in records if r.get("status") == "ok"]
        missing = sorted(set(started) - set(thumbs))
        throttled = sum(1 for r in records if r.get("status") == "throttled")  # refused before running: retried
        exactly_once = (
            len(thumbs) == len(started) and not missing and len(records) - throttled == len(ok) == len(started)
        )
        emit("thumbnails_exactly_once", 1.0 if exactly_once else 0.0, "bool", uploads=len(started),
             thumbnails=len(thumbs), invocations=len(records), ok=len(ok), throttled=throttled, missing=missing[:5],
             statuses=sorted({r.get("status") for r in records}))  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    main()
