"""The cluster's event bus on real nats-server processes (Debian's nats-server, JetStream, file storage):

bus_publish_ack_p50_ms        one event published and acknowledged by JetStream (what a 202 waits for), R1 and R3
bus_publish_to_deliver_p50_ms publish → fetched by a consumer on another connection, R1 and R3
bus_publish_batch_events_s    events/s published 100 at a time (acks awaited together), R1 and R3
bus_leader_failover_s         kill -9 the stream's leader (R3): seconds until a publish is acknowledged again
bus_redelivery_after_kill_s   a consumer that holds an event dies: seconds until another gets it (ack wait 2 s)

  python bench/cluster_bus.py [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, median, pct, quick

from squall.cluster.bus import EventBus, connect
from squall.cluster.natsd import NatsCluster


def _ev(i: int) -> dict[str, object]:
    return {"function": "bench", "payload": b'{"n": 1}', "request_id": f"r{i}"}


async def measure(url: str, replicas: int, n: int) -> dict[str, list[float] | float]:
    pub = EventBus(await connect(url), replicas=replicas)
    await pub.setup()
    sub = EventBus(await connect(url), replicas=replicas)
    await sub.setup()
    acks, e2e = [], []
    for i in range(n):
        t0 = time.perf_counter()
        await pub.publish([_ev(i)])  # type: ignore[list-item]
        acks.append((time.perf_counter() - t0) * 1000)
        got = []
        while not got:
            got = await sub.fetch(1, wait_s=5)
        e2e.append((time.perf_counter() - t0) * 1000)
        await got[0].ack()
    total = 20 * 100 if quick() else 100 * 100
    t0 = time.perf_counter()
    for b in range(total // 100):
        await pub.publish([_ev(b * 100 + j) for j in range(100)])  # type: ignore[misc]
    rate = total / (time.perf_counter() - t0)
    await pub.js.purge_stream(pub.stream)
    await pub.nc.close()
    await sub.nc.close()
    return {"ack": acks, "e2e": e2e, "rate": rate}


async def failover(cluster: NatsCluster) -> float:
    bus = EventBus(await connect(cluster.url), replicas=3)
    await bus.setup()
    await bus.publish([_ev(0)])  # type: ignore[list-item]
    info = await bus.js.stream_info(bus.stream)
    leader = info.cluster.leader if info.cluster else None
    victim = next(s for s in cluster.servers if s.name == leader)
    victim.kill()
    t0 = time.perf_counter()
    while True:
        try:
            await bus.publish([_ev(1)])  # type: ignore[list-item]
            break
        except Exception:
            await asyncio.sleep(0.05)
    took = time.perf_counter() - t0
    await bus.nc.close()
    return took


async def redelivery(url: str) -> float:
    holder = EventBus(await connect(url), ack_wait_s=2.0)
    await holder.setup()
    other = EventBus(await connect(url), ack_wait_s=2.0)
    await other.setup()
    await holder.publish([_ev(0)])  # type: ignore[list-item]
    got = []
    while not got:
        got = await holder.fetch(1, wait_s=5)
    await holder.nc.close()  # the node is gone (its connection with it); no nak, no ack
    t0 = time.perf_counter()
    again = []
    while not again:
        again = await other.fetch(1, wait_s=5)
    took = time.perf_counter() - t0
    await again[0].ack()
    await other.nc.close()
    return took


def main() -> None:
    n = 200 if quick() else 1000
    for replicas in (1, 3):
        cluster = NatsCluster.start(replicas)
        try:
            r = asyncio.run(measure(cluster.url, replicas, n))
            ack, e2e = r["ack"], r["e2e"]
            assert isinstance(ack, list) and isinstance(e2e, list)
            emit("bus_publish_ack_p50_ms", median(ack), "ms", replicas=replicas, p99=pct(ack, 99), n=n)
            emit("bus_publish_to_deliver_p50_ms", median(e2e), "ms", replicas=replicas, p99=pct(e2e, 99), n=n)
            emit("bus_publish_batch_events_s", float(r["rate"]), "events/s", replicas=replicas, batch=100)  # type: ignore[arg-type]
            if replicas == 3:
                emit("bus_leader_failover_s", asyncio.run(failover(cluster)), "s", replicas=3)
            else:
                emit("bus_redelivery_after_kill_s", asyncio.run(redelivery(cluster.url)), "s", ack_wait_s=2.0)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
