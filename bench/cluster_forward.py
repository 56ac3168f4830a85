"""Cluster mode's cost on the warm invoke path, measured alternately in one run:

  warm_invoke_p50_ms            embedded node (no NATS): the baseline
  cluster_local_invoke_p50_ms   a cluster-mode node (one NATS server, two nodes up) invoking a function whose warm
                                instance is on itself: placement runs, no hop; "delta_ms" vs embedded
  cluster_forwarded_invoke_p50_ms  the same function invoked through the other node: placement, NATS
                                request/reply to the warm node and back; "delta_ms" vs local
  nats_request_reply_p50_ms     a bare NATS request/reply round trip between two processes, through the NATS
                                server (what forwarding over NATS adds at least)
  cpu_per_request_ms            CPU of the Squall server processes and the NATS server per request, per path
                                (the function instance's own CPU is the same on every path and not counted)
  tcp_round_trip_p50_ms         a bare round trip on a direct TCP connection to another process (what
                                node-to-node HTTP would add at least): the difference is NATS's extra hop

Each node keeps its own embedded state (the function is deployed to both); only the cluster path is measured.

    python bench/cluster_forward.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, median, pct, quick
from _cpu import proc_cpu_ms
from _http import Conn, Signer
from _server import KEY_ID, SECRET, Server, deploy

from squall.cluster.natsd import NatsCluster
from squall.scheduler.placement import rank

CODE = "def handler(event, context):\n    return {'ok': True}\n"


async def sequential(port: int, fn: str, n: int) -> list[float]:
    signer = Signer(KEY_ID, SECRET)
    conn = Conn("127.0.0.1", port)
    path = f"/2015-03-31/functions/{fn}/invocations"
    out = []
    for _ in range(n):
        h = signer.headers("POST", f"127.0.0.1:{port}", path, b"{}")
        t0 = time.perf_counter()
        status, body = await conn.request("POST", path, b"{}", h)
        out.append((time.perf_counter() - t0) * 1000)
        assert status == 200, (status, body)
    conn.close()
    return out


async def nats_rtt(url: str, n: int) -> list[float]:
    from squall.cluster.bus import connect

    a, b = await connect(url), await connect(url)

    async def echo(msg: object) -> None:
        await b.publish(msg.reply, msg.data)  # type: ignore[attr-defined]

    await b.subscribe("bench.echo", cb=echo)
    await b.flush()
    for _ in range(100):  # until the subscription is known to the server a's request goes through
        try:
            await a.request("bench.echo", b"{}", timeout=5)
            break
        except Exception:
            await asyncio.sleep(0.05)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await a.request("bench.echo", b"{}", timeout=5)
        out.append((time.perf_counter() - t0) * 1000)
    await a.close()
    await b.close()
    return out


_ECHO = """
import asyncio, sys
async def serve(r, w):
    while True:
        line = await r.readline()
        if not line:
            return
        w.write(line)
        await w.drain()
async def main():
    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""


async def tcp_rtt(n: int) -> list[float]:
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", _ECHO], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        r, w = await asyncio.open_connection("127.0.0.1", port)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            w.write(b"{}\n")
            await w.drain()
            await r.readline()
            out.append((time.perf_counter() - t0) * 1000)
        w.close()
        return out
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    n = 200 if quick() else 1000
    rounds = 3 if quick() else 5
    nats = NatsCluster.start(1)
    servers: list[Server] = []
    try:
        embedded = Server()
        servers.append(embedded)
        a = Server(SQUALL_NATS_URL=nats.url, SQUALL_NODE_ID="a")
        servers.append(a)
        b = Server(SQUALL_NATS_URL=nats.url, SQUALL_NODE_ID="b")
        servers.append(b)
        fn = next(f"fn{i}" for i in range(100) if rank(f"fn{i}", ["a", "b"])[0] == "a")  # home: a
        for s in servers:
            deploy(s.lambda_client(), fn, CODE)
        time.sleep(2.0)  # both nodes in each other's membership (heartbeats every 0.3 s)
        results: dict[str, list[float]] = {"embedded": [], "local": [], "forwarded": [], "nats": [], "tcp": []}
        pids = [s.proc.pid for s in servers] + [x.proc.pid for x in nats.servers if x.proc is not None]
        cpu: dict[str, float] = {"embedded": 0.0, "local": 0.0, "forwarded": 0.0}
        roles = ["embedded", "a", "b", *(f"nats{i}" for i in range(len(pids) - 3))]
        split: dict[str, dict[str, float]] = {k: dict.fromkeys(roles, 0.0) for k in cpu}

        def run(path: str, port: int) -> None:
            before = [proc_cpu_ms(p) for p in pids]
            results[path] += asyncio.run(sequential(port, fn, n))
            after = [proc_cpu_ms(p) for p in pids]
            cpu[path] += sum(after) - sum(before)
            for role, x, y in zip(roles, before, after, strict=True):
                split[path][role] += y - x

        for _ in range(rounds):  # alternated, so drift in machine load hits every path alike
            run("embedded", embedded.port)
            run("local", a.port)  # warm on a, received by a
            run("forwarded", b.port)  # received by b, a is warm
            results["nats"] += asyncio.run(nats_rtt(nats.url, n))
            results["tcp"] += asyncio.run(tcp_rtt(n))
        emb, loc, fwd = (median(results[k]) for k in ("embedded", "local", "forwarded"))
        cpus = os.cpu_count()
        emit("warm_invoke_p50_ms", emb, "ms", p99=pct(results["embedded"], 99), n=len(results["embedded"]))
        emit("cluster_local_invoke_p50_ms", loc, "ms", delta_ms=round(loc - emb, 4),
             p99=pct(results["local"], 99), baseline={"embedded_p50_ms": round(emb, 4)}, cpus=cpus)  # fmt: skip
        emit("cluster_forwarded_invoke_p50_ms", fwd, "ms", delta_ms=round(fwd - loc, 4),
             p99=pct(results["forwarded"], 99), baseline={"local_p50_ms": round(loc, 4)}, cpus=cpus)  # fmt: skip
        for path in ("embedded", "local", "forwarded"):
            per = {k: round(v / len(results[path]), 3) for k, v in split[path].items()}
            emit("cpu_per_request_ms", cpu[path] / len(results[path]), "ms", path=path, by_process=per,
                 note="Squall server processes + NATS server (all of them, idle ones' heartbeats included)")  # fmt: skip
        emit("nats_request_reply_p50_ms", median(results["nats"]), "ms", p99=pct(results["nats"], 99))
        emit("tcp_round_trip_p50_ms", median(results["tcp"]), "ms", p99=pct(results["tcp"], 99))
    finally:
        for s in servers:
            s.stop()
        nats.stop()


if __name__ == "__main__":
    main()
