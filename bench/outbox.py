"""The event outbox (cluster mode on PostgreSQL) against the path it replaced, on a real PostgreSQL and nats-server:

outbox_put_p50_ms             an object store PUT (1 KiB) to a bucket notifying one function, the event written as
                              an outbox row in the object's transaction (what the S3 API waits for); baseline: the
                              same PUT publishing the event to JetStream after the commit (before the outbox)
outbox_put_to_stream_p50_ms   PUT start → the event fetched from the stream by a consumer (the kicked drain's
                              hop included); baseline: the same with the publish inside the PUT
outbox_drain_events_s         rows/s one drain moves from PostgreSQL to JetStream (claim, publish, delete), and two
                              drains on one backlog

  python bench/outbox.py [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import emit, median, pct, quick

from pg_helpers import PgServer
from squall.cluster.bus import EventBus, connect
from squall.cluster.natsd import NatsCluster
from squall.cluster.outbox import OutboxDrain
from squall.s3.notifications import StorageEvents
from squall.s3.store.objects import ObjectStore
from squall.store.db import PgTarget, open_connection
from squall.store.outbox import EventOutbox, write_outbox

ARN = "arn:aws:lambda:us-east-1:000000000000:function:thumbs"


class Loop:
    """An event loop in a thread (the server's), for the bus and the drain; the stores run in the caller's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def _store(root: Path, url: str, events: StorageEvents, outbox: bool) -> ObjectStore:
    store = ObjectStore(
        root, database=PgTarget(url, "s3"), on_event=events, tx_events=events.in_transaction if outbox else None
    )
    store.create_bucket("inbox")
    store.put_bucket_notification(
        "inbox", {"LambdaFunctionConfigurations": [{"LambdaFunctionArn": ARN, "Events": ["s3:ObjectCreated:*"]}]}
    )
    return store


def puts(url: str, nats_url: str, outbox: bool, n: int, root: Path) -> tuple[list[float], list[float]]:
    loop = Loop()
    bus: EventBus = loop.run(_bus(nats_url))
    reader: EventBus = loop.run(_bus(nats_url))
    drain = None
    if outbox:
        drain = OutboxDrain(EventOutbox(PgTarget(url, "outbox")), bus, "bench")
        loop.loop.call_soon_threadsafe(lambda: loop.loop.create_task(drain.run_forever()))
        kick: Any = drain.kick
    else:
        kick = None
    events = StorageEvents(_NoQueues(), "us-east-1", bus.publish_threadsafe, lambda e: store.notification_targets(e),
                           outbox_kick=kick)  # fmt: skip
    store = _store(root, url, events, outbox)
    put_ms, e2e_ms = [], []
    body = b"x" * 1024
    for i in range(n):
        t0 = time.perf_counter()
        store.put_object("inbox", f"k{i}", body)
        put_ms.append((time.perf_counter() - t0) * 1000)
        got: list[Any] = []
        while not got:
            got = loop.run(reader.fetch(1, wait_s=5))
        e2e_ms.append((time.perf_counter() - t0) * 1000)
        loop.run(got[0].ack())
    store.close()
    loop.run(bus.nc.close())
    loop.run(reader.nc.close())
    return put_ms, e2e_ms


class _NoQueues:
    def send_to_queue_arn(self, arn: str, body: str) -> None:
        raise AssertionError("no SQS target in this bench")


async def _bus(url: str) -> EventBus:
    bus = EventBus(await connect(url))
    await bus.setup()
    bus.loop = asyncio.get_running_loop()
    return bus


async def drain_rate(url: str, nats_url: str, rows: int, drains: int) -> float:
    writer = open_connection(PgTarget(url, "writer"))
    EventOutbox(PgTarget(url, "outbox")).close()
    writer.execute("BEGIN")
    write_outbox(writer, [{"function": "thumbs", "payload": b'{"n": 1}', "request_id": f"r{i}"} for i in range(rows)],
                 time.time())  # fmt: skip
    writer.execute("COMMIT")
    writer.close()
    stores = [EventOutbox(PgTarget(url, "outbox")) for _ in range(drains)]
    buses = [await _bus(nats_url) for _ in range(drains)]
    ds = [OutboxDrain(s, b, f"n{i}") for i, (s, b) in enumerate(zip(stores, buses, strict=True))]
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(d.run_forever()) for d in ds]
    while stores[0].count():
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    assert sum(d.published for d in ds) == rows
    await buses[0].js.purge_stream(buses[0].stream)
    for b in buses:
        await b.nc.close()
    for s in stores:
        s.close()
    return rows / elapsed


def main() -> None:
    n = 100 if quick() else 500
    rows = 2000 if quick() else 10000
    pg = PgServer().start()
    nats = NatsCluster.start(1, root=Path(tempfile.mkdtemp(prefix="squall-bench-nats-")))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {}
            for outbox in (False, True, False, True):  # alternated: the machine's load drifts
                put, e2e = puts(pg.database("put"), nats.url, outbox, n, Path(tmp) / f"o{outbox}{time.time_ns()}")
                prev = results.setdefault(outbox, ([], []))
                prev[0].extend(put)
                prev[1].extend(e2e)
        base, new = results[False], results[True]
        note = "1 KiB PUT, one Lambda target, PostgreSQL + 1 nats-server (R1) on loopback, fsync off"
        emit("outbox_put_p50_ms", median(new[0]), "ms", p99=pct(new[0], 99), n=len(new[0]), note=note,
             baseline={"publish_after_commit_p50_ms": median(base[0]), "p99": pct(base[0], 99)})  # fmt: skip
        emit("outbox_put_to_stream_p50_ms", median(new[1]), "ms", p99=pct(new[1], 99), n=len(new[1]), note=note,
             baseline={"publish_after_commit_p50_ms": median(base[1]), "p99": pct(base[1], 99)})  # fmt: skip
        for drains in (1, 2):
            rate = asyncio.run(drain_rate(pg.database("drain"), nats.url, rows, drains))
            emit("outbox_drain_events_s", rate, "events/s", drains=drains, rows=rows, batch=256)
    finally:
        nats.stop()
        pg.close()


if __name__ == "__main__":
    main()
