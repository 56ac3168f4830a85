"""Cluster mode end to end on this machine, in one run: one embedded node vs one cluster-mode node (PostgreSQL + one
NATS server) vs three nodes (one PostgreSQL, three clustered NATS servers), measured in alternated rounds.

  machine_load                      load average (1 min) at the start and the end: the figures mean little without it
  cluster_warm_invoke_p50_ms        sequential signed Invoke of a warm function, per path: ``embedded``,
                                    ``cluster_1node`` (placement runs, no other node), ``three_local`` (received by
                                    the node holding the warm instance), ``three_forwarded`` (received by another
                                    node: placement, NATS request/reply, run there); ``delta_ms`` vs embedded
  cluster_cpu_per_request_ms        CPU of the platform's processes per request on each path: the Squall servers
                                    (receiving and running node apart), the NATS servers and PostgreSQL (its
                                    backends); the function instance's own CPU is the same on every path, not counted
  cluster_async_events_per_s        async invokes (202 after the publish ack) spread over the setup's nodes, from
                                    the first send to the last invocation record written; ``lost`` = accepted
                                    events without a record (must be 0), ``duplicates`` = extra records
  cluster_async_cpu_per_event_ms    platform CPU per async event, per setup
  cluster_thumbnails_*              the thumbnails showcase (bench/thumbnails.py's pieces) with uploads spread over the
                                    three nodes: achieved rate, latency, exactly-once, CPU per photo
  cluster_failover_s                kill -9 of the node holding the warm instance: until another node served the
                                    function (``served_s``) and until the others took the node out of placement
                                    (``out_of_placement_s``)

    PYTHONPATH=src python bench/cluster.py [--quick] [--rounds N] [--requests N] [--events N]
                                           [--thumbnail-rate R] [--thumbnail-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import thumbnails as showcase
from _common import emit, median, pct, quick
from _cpu import busy_ms, descendants, proc_cpu_ms
from _http import Conn, Signer
from _server import KEY_ID, SECRET, Server, deploy
from cluster_forward import sequential

from pg_helpers import PgServer
from squall.cluster.natsd import NatsCluster
from squall.scheduler.placement import rank

CODE = "def handler(event, context):\n    return {'ok': True}\n"
NODE_IDS = ["n1", "n2", "n3"]


def signed_get(url: str, path: str) -> Any:
    return showcase.signed_get(url, path)


def start_servers(envs: list[dict[str, str]]) -> list[Server]:
    with ThreadPoolExecutor(len(envs)) as ex:
        return list(ex.map(lambda env: Server(**env), envs))


def pg_pids(pg: PgServer) -> list[int]:
    assert pg.proc is not None
    return [pg.proc.pid, *descendants(pg.proc.pid)]


class Cpu:
    """CPU (ms) of named groups of processes between ``start`` and ``stop``: Squall servers (their own threads,
    not their sandboxes), NATS servers, PostgreSQL (postmaster and backends, listed at each reading)."""

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups = groups  # name -> callable returning pids

    def read(self) -> dict[str, float]:
        return {k: sum(proc_cpu_ms(p) for p in pids()) for k, pids in self.groups.items()} | {"machine": busy_ms()}

    def start(self) -> None:
        self.t0 = self.read()

    def stop(self) -> dict[str, float]:
        t1 = self.read()
        return {k: t1[k] - self.t0.get(k, 0.0) for k in t1}


async def send_async(ports: list[int], fn: str, n: int, concurrency: int = 24) -> tuple[int, float]:
    """``n`` async invokes over ``ports`` (round-robin connections); (accepted, seconds)."""
    signer = Signer(KEY_ID, SECRET)
    path = f"/2015-03-31/functions/{fn}/invocations"
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    for w in range(concurrency):
        idle.put_nowait(Conn("127.0.0.1", ports[w % len(ports)]))
    accepted = 0

    async def one(i: int) -> None:
        nonlocal accepted
        body = json.dumps({"i": i}).encode()
        conn = await idle.get()
        try:
            h = signer.headers("POST", f"127.0.0.1:{conn.port}", path, body, {"x-amz-invocation-type": "Event"})
            status, _ = await conn.request("POST", path, body, h)
            if status == 202:
                accepted += 1
        except Exception:
            conn.close()
        finally:
            idle.put_nowait(conn)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    while not idle.empty():
        idle.get_nowait().close()
    return accepted, time.perf_counter() - t0


def records(url: str, fn: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = signed_get(url, f"/_squall/api/invocations?function={fn}&limit=1000{cursor}")
        out += page["invocations"]
        if not page.get("next_cursor"):
            return out
        cursor = "&cursor=" + urllib.parse.quote(page["next_cursor"], safe="")


def usage_requests(url: str, fn: str, since: float) -> int:
    body = signed_get(url, f"/_squall/api/usage?since={since}")
    return sum(int(f["requests"]) for f in body["functions"] if f["function"] == fn)


def cluster_view(url: str) -> dict[str, Any]:
    return dict(signed_get(url, "/_squall/api/cluster"))


def main() -> None:
    q = quick()
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=2 if q else 4)
    ap.add_argument("--requests", type=int, default=50 if q else 400, help="sequential invokes per path and round")
    ap.add_argument("--events", type=int, default=100 if q else 1000, help="async invokes per setup and round")
    ap.add_argument("--thumbnail-rate", type=float, default=10.0 if q else 167.0)
    ap.add_argument("--thumbnail-seconds", type=float, default=3.0 if q else 60.0)
    ap.add_argument("--thumbnail-concurrency", type=int, default=2 * (os.cpu_count() or 1))
    args = ap.parse_args()
    t_start = time.monotonic()
    last = [t_start]

    def phase(name: str) -> None:
        now = time.monotonic()
        print(f"# {name}: {now - last[0]:.1f} s", file=sys.stderr)
        last[0] = now

    emit("machine_load", os.getloadavg()[0], "load1", when="start", cpus=os.cpu_count())

    pg = PgServer().start()
    nats3 = NatsCluster.start(3)
    nats1 = NatsCluster.start(1)
    servers: list[Server] = []
    try:
        env_key = base64.b64encode(os.urandom(32)).decode()
        envs = [
            {},  # embedded
            {"SQUALL_DATABASE_URL": pg.database("one"), "SQUALL_NATS_URL": nats1.url, "SQUALL_NODE_ID": "solo"},
        ]
        three_db = pg.database("three")
        envs += [
            {
                "SQUALL_DATABASE_URL": three_db,
                "SQUALL_NATS_URL": nats3.url,
                "SQUALL_NODE_ID": n,
                "SQUALL_ENV_KEY": env_key,
            }
            for n in NODE_IDS
        ]
        servers = start_servers(envs)
        embedded, solo, three = servers[0], servers[1], servers[2:]
        phase("start")
        fn = next(f"fn{i}" for i in range(100) if rank(f"fn{i}", NODE_IDS)[0] == "n1")  # home: n1
        for s in (embedded, solo, three[0]):
            deploy(s.lambda_client(), fn, CODE)
            deploy(s.lambda_client(), "sink", CODE)
        deadline = time.monotonic() + 60
        while len([n for n in cluster_view(three[1].url)["nodes"] if n["live"]]) < 3:
            assert time.monotonic() < deadline, "the three nodes did not see each other"
            time.sleep(0.2)
        sequential_warm = [(embedded.port, 3), (solo.port, 3), (three[0].port, 3), (three[1].port, 3)]
        for port, k in sequential_warm:
            asyncio.run(sequential(port, fn, k))  # warm: one instance each setup, on n1 for the three nodes

        squall = {"embedded": [embedded.proc.pid], "solo": [solo.proc.pid]}
        squall |= {n: [s.proc.pid] for n, s in zip(NODE_IDS, three, strict=True)}
        groups: dict[str, Any] = {k: (lambda v=v: v) for k, v in squall.items()}
        nats_pids = {"nats3": [s.proc.pid for s in nats3.servers if s.proc], "nats1": [nats1.servers[0].proc.pid]}
        groups |= {k: (lambda v=v: v) for k, v in nats_pids.items()}  # type: ignore[misc]
        groups["postgres"] = lambda: pg_pids(pg)
        cpu = Cpu(groups)

        # -- warm invoke, alternated ----------------------------------------------------------------------------
        paths = {"embedded": embedded.port, "cluster_1node": solo.port, "three_local": three[0].port,
                 "three_forwarded": three[1].port}  # fmt: skip
        lat: dict[str, list[float]] = {p: [] for p in paths}
        cpu_by: dict[str, dict[str, float]] = {p: {} for p in paths}
        for _ in range(args.rounds):
            for p, port in paths.items():
                cpu.start()
                lat[p] += asyncio.run(sequential(port, fn, args.requests))
                for k, v in cpu.stop().items():
                    cpu_by[p][k] = cpu_by[p].get(k, 0.0) + v
        emb = median(lat["embedded"])
        for p in paths:
            m = median(lat[p])
            emit("cluster_warm_invoke_p50_ms", m, "ms", path=p, delta_ms=round(m - emb, 3), p99=round(pct(lat[p], 99), 3),
                 n=len(lat[p]), baseline={"embedded_p50_ms": round(emb, 3)})  # fmt: skip
        relevant = {"embedded": ["embedded"], "cluster_1node": ["solo", "nats1", "postgres"],
                    "three_local": ["n1", "n2", "n3", "nats3", "postgres"],
                    "three_forwarded": ["n1", "n2", "n3", "nats3", "postgres"]}  # fmt: skip
        for p in paths:
            n = len(lat[p])
            per = {k: round(cpu_by[p][k] / n, 3) for k in relevant[p]}
            emit("cluster_cpu_per_request_ms", sum(per.values()), "ms", path=p, by_process=per,
                 machine_ms=round(cpu_by[p]["machine"] / n, 3),
                 note="Squall servers (not their instances) + NATS + PostgreSQL; n1 runs, n2 receives when forwarded")  # fmt: skip

        phase("warm invokes")
        # -- async events/s, alternated -----------------------------------------------------------------------
        setups = {"embedded": [embedded], "cluster_1node": [solo], "three_nodes": three}
        own = {"embedded": ["embedded"], "cluster_1node": ["solo", "nats1", "postgres"],
               "three_nodes": ["n1", "n2", "n3", "nats3", "postgres"]}  # fmt: skip
        rates: dict[str, list[float]] = {k: [] for k in setups}
        accept_rates: dict[str, list[float]] = {k: [] for k in setups}
        accepted_total = dict.fromkeys(setups, 0)
        sent_total = dict.fromkeys(setups, 0)
        cpu_events: dict[str, float] = dict.fromkeys(setups, 0.0)
        for _ in range(max(1, args.rounds // 2)):
            for name, nodes in setups.items():
                before = usage_requests(nodes[0].url, "sink", 0)
                cpu.start()
                t0 = time.perf_counter()
                accepted, send_s = asyncio.run(send_async([s.port for s in nodes], "sink", args.events))
                accept_rates[name].append(accepted / send_s)
                deadline = time.monotonic() + 300
                while usage_requests(nodes[-1].url, "sink", 0) < before + accepted and time.monotonic() < deadline:
                    time.sleep(0.1)
                elapsed = time.perf_counter() - t0
                c = cpu.stop()
                cpu_events[name] += sum(c[k] for k in own[name])
                rates[name].append(accepted / elapsed)
                accepted_total[name] += accepted
                sent_total[name] += args.events
        time.sleep(0.5)
        for name, nodes in setups.items():
            recs = records(nodes[0].url, "sink")
            ids = [r["request_id"] for r in recs if r.get("status") == "ok"]
            lost = max(0, accepted_total[name] - len(set(ids)))
            emit("cluster_async_events_per_s", median(rates[name]), "events/s", setup=name, rounds=rates[name],
                 sent=sent_total[name], accepted=accepted_total[name], lost=lost,
                 accepted_per_s=round(median(accept_rates[name]), 1), duplicates=len(ids) - len(set(ids)),
                 note="first 202 to the last invocation record written (usage API polled every 0.1 s)")  # fmt: skip
            emit("cluster_async_cpu_per_event_ms", cpu_events[name] / max(1, accepted_total[name]), "ms", setup=name,
                 processes=own[name])  # fmt: skip

        phase("async events")
        # -- the thumbnails showcase through three nodes --------------------------------------------------------
        showcase.deploy(three[0], args.thumbnail_concurrency)
        cpu.start()
        sandboxes0 = sum(proc_cpu_ms(p) for s in three for p in descendants(s.proc.pid))
        started, upload_ms, achieved = showcase.upload(
            three[0], args.thumbnail_rate, args.thumbnail_seconds, 48, ports=[s.port for s in three]
        )
        thumbs = showcase.wait_thumbnails(three[1], len(started), timeout_s=max(120.0, args.thumbnail_seconds * 6))
        c = cpu.stop()
        sandboxes = sum(proc_cpu_ms(p) for s in three for p in descendants(s.proc.pid)) - sandboxes0
        time.sleep(0.5)
        latencies = [(thumbs[k] - t0) * 1000 for k, t0 in started.items() if k in thumbs]
        recs = showcase.invocation_records(three[2])
        ok = [r for r in recs if r.get("status") == "ok"]
        throttled = sum(1 for r in recs if r.get("status") == "throttled")
        missing = sorted(set(started) - set(thumbs))
        exactly_once = not missing and len(recs) - throttled == len(ok) == len(started)
        for rid, k in Counter(r["request_id"] for r in ok).items():
            if k > 1:  # at-least-once: say which ran twice, and when, for whoever reads the run
                runs = [
                    (round(r["start"], 3), r.get("duration_ms"), r.get("status")) for r in ok if r["request_id"] == rid
                ]
                print(f"# ran {k} times: {rid} {runs}", file=sys.stderr)
        n = max(1, len(started))
        emit("cluster_thumbnails_upload_rate", achieved, "uploads/s", target=args.thumbnail_rate, uploads=len(started),
             concurrency=args.thumbnail_concurrency, upload_p50_ms=round(pct(upload_ms, 50), 2),
             upload_p99_ms=round(pct(upload_ms, 99), 2))  # fmt: skip
        emit("cluster_thumbnails_latency_p50_ms", pct(latencies, 50), "ms", p99=round(pct(latencies, 99), 1),
             n=len(latencies))  # fmt: skip
        emit("cluster_thumbnails_exactly_once", 1.0 if exactly_once else 0.0, "bool", uploads=len(started),
             thumbnails=len(thumbs), ok=len(ok), throttled=throttled, lost=len(missing),
             statuses=dict(Counter(str(r.get("status")) for r in recs)))  # fmt: skip
        platform = sum(c[k] for k in own["three_nodes"])
        emit("cluster_thumbnails_cpu_ms_per_photo", c["machine"] / n, "ms", platform=round(platform / n, 2),
             sandboxes=round(sandboxes / n, 2), rest=round((c["machine"] - platform - sandboxes) / n, 2))  # fmt: skip

        phase("thumbnails")
        # -- failover: kill -9 the node holding the warm instance ---------------------------------------------
        asyncio.run(sequential(three[0].port, fn, 3))  # its warm instance is on n1, its home
        victim = three[0]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        killed = time.monotonic()
        served = out = None
        while time.monotonic() - killed < 60 and (served is None or out is None):
            if served is None:
                try:
                    asyncio.run(sequential(three[1].port, fn, 1))
                    served = time.monotonic() - killed
                except Exception:
                    pass
            if out is None and "n1" not in {x["node_id"] for x in cluster_view(three[2].url)["nodes"] if x["live"]}:
                out = time.monotonic() - killed
            time.sleep(0.01)
        emit("cluster_failover_s", served if served is not None else float("nan"), "s", served_s=served,
             out_of_placement_s=out, note="kill -9 of the node with the warm instance; probes through another node")  # fmt: skip
        emit("machine_load", os.getloadavg()[0], "load1", when="end", run_s=round(time.monotonic() - t_start, 1))
    finally:
        with ThreadPoolExecutor(max(1, len(servers))) as ex:
            list(ex.map(lambda s: s.stop() if s.proc.poll() is None else None, servers))
        nats1.stop()
        nats3.stop()
        pg.close()


if __name__ == "__main__":
    main()
