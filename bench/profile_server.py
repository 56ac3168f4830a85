"""Where the server's time goes at concurrency 32: py-spy samples of a real server under load (not a timing bench).

Starts a Squall server, deploys the Invoke bench function and a squall.yaml ``GET /hello`` route, drives one of them
at concurrency 32 and samples the server process (all threads, ``py-spy record --format raw``, idle samples
dropped) meanwhile.  Prints the top functions by self samples and by inclusive samples, as shares of all samples,
and writes the collapsed stacks next to the server log (open them with any flame-graph viewer).  py-spy is in the
``test`` extra (``pip install py-spy``); it needs ptrace on the server (root, or ptrace_scope 0).

    python bench/profile_server.py [--route invoke|http] [--seconds 15] [--top 30] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import CODE, deploy_hello, drive
from _server import Server, deploy


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` → ``func (file.py)``: one row per function, not per line."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"


#: (category, substrings of a frame): a sample goes to the category of its innermost frame that matches one
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("freezer (cgroup.freeze writes)", ("OwnedCgroup.thaw", "OwnedCgroup.freeze")),
    (
        "records + logs writer (SQLite, thread)",
        ("store/invocations.py", "sqlite_conn.py", "RecordWriter", "_flush_forever"),
    ),
    ("socket writes (responses, INVOKE frames)", ("CoalescingTransport.flush", "tick_writes.py")),
    ("SigV4 (parse, canonical request, HMAC)", ("aws/sigv4/", "hmac.py", "aws/credentials.py")),
    ("JSON", ("json/", "jsonlimits.py")),
    ("metrics + traces", ("telemetry/", "prometheus_client/")),
    ("instance link (frames, logs, REPORT)", ("node/instance.py", "sandbox/protocol.py", "core/report.py")),
    ("pool + scheduler + keep-alive", ("functions/pool.py", "scheduler/")),
    ("invoker", ("functions/invoker.py",)),
    ("HTTP route (API GW event)", ("function_urls/",)),
    ("Invoke endpoint + router", ("invoke_api.py", "squall/router.py", "aws/auth.py")),
    ("uvicorn (HTTP parsing, ASGI cycle)", ("uvicorn/", "aws/http_protocol.py")),
    ("event loop (uvloop: epoll, socket reads, tasks)", ("Runner.run", "uvloop/")),
]


def category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, keys in CATEGORIES:
            if any(k in frame for k in keys):
                return name
    return "other"


def summarize(raw: Path, top: int) -> None:
    self_n: collections.Counter[str] = collections.Counter()
    incl_n: collections.Counter[str] = collections.Counter()
    thread_n: collections.Counter[str] = collections.Counter()
    cat_n: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        thread_n[frames[0].split(": ", 1)[-1] if frames[0].startswith("thread") else "?"] += n
        names = [frame_name(f) for f in frames if not f.startswith(("thread ", "process "))]
        cat_n[category(frames)] += n
        if names:
            self_n[names[-1]] += n
        for name in set(names):
            incl_n[name] += n
    print(f"# {total} samples (idle dropped)")
    print("# threads:", ", ".join(f"{k} {v * 100 / total:.1f}%" for k, v in thread_n.most_common(6)))
    print("## by part of the hot path (innermost matching frame)")
    for name, n in cat_n.most_common():
        print(f"{n * 100 / total:6.1f}%  {name}")
    for title, counter in (("self", self_n), ("inclusive", incl_n)):
        print(f"## top {top} by {title} samples")
        for name, n in counter.most_common(top):
            print(f"{n * 100 / total:6.1f}%  {name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--route", choices=("invoke", "http"), default="invoke")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    server = Server()
    try:
        deploy(server.lambda_client(), "bench", CODE)
        deploy_hello(server.url)
        asyncio.run(drive(server.port, args.route, 32, 1.0))  # instances up, caches warm
        raw = server.log.with_suffix(f".{args.route}.collapsed")
        spy_proc = subprocess.Popen(
            [spy, "record", "--pid", str(server.proc.pid), "--format", "raw", "--rate", "200", "--threads",
             "--nonblocking", "--output", str(raw), "--duration", str(int(seconds) + 1)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
        done = asyncio.run(drive(server.port, args.route, 32, seconds))
        spy_proc.wait(60)
        print(f"# {args.route}: {done / seconds:.0f} req/s at c=32 during the sample; stacks: {raw}")
        summarize(raw, args.top)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
