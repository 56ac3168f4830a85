"""The JetStream event bus against real nats-server processes: publish/ack, nak with delay, redelivery of what a
killed consumer held, deduplication by event id, and an R3 stream that survives the loss of one server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from squall.cluster.bus import Delivery, EventBus, connect
from squall.cluster.natsd import NatsCluster
from squall.core.ports import NewEvent

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _event(i: int, **kw: object) -> NewEvent:
    ev: NewEvent = {"function": "fn", "payload": f'{{"i": {i}}}'.encode(), "request_id": f"req-{i}"}
    ev.update(kw)  # type: ignore[typeddict-item]
    return ev


async def _bus(url: str, **kw: object) -> EventBus:
    bus = EventBus(await connect(url), **kw)  # type: ignore[arg-type]
    await bus.setup()
    return bus


def test_publish_fetch_ack_roundtrip(nats1: NatsCluster) -> None:
    async def main() -> None:
        bus = await _bus(nats1.url)
        ids = await bus.publish([_event(i, extra={"trace_id": f"t{i}"}) for i in range(20)])
        assert len(set(ids)) == 20
        assert await bus.pending() == 20
        got: list[Delivery] = []
        while len(got) < 20:
            got += await bus.fetch(20, wait_s=5)
        evs = sorted((d.event for d in got), key=lambda e: e.request_id)
        assert {e.id for e in evs} == set(ids)
        e0 = next(e for e in evs if e.request_id == "req-3")
        assert (e0.function, e0.qualifier, e0.payload, e0.attempt, e0.extra) == ("fn", "$LATEST", b'{"i": 3}', 0,
                                                                                 {"trace_id": "t3"})  # fmt: skip
        assert all(d.num_delivered == 1 for d in got)
        for d in got:
            await d.ack()
        assert await bus.pending() == 0  # work-queue retention: an acked event is gone
        await bus.nc.close()

    asyncio.run(main())


def test_same_event_id_is_stored_once(nats1: NatsCluster) -> None:
    """An outbox row drained twice, or a publish retried after a lost ack, is one event."""

    async def main() -> None:
        bus = await _bus(nats1.url)
        await bus.publish([_event(1, id="evt-1")])
        await bus.publish([_event(1, id="evt-1"), _event(2, id="evt-2")])
        assert await bus.pending() == 2
        await bus.nc.close()

    asyncio.run(main())


def test_nak_with_delay_redelivers_after_the_delay(nats1: NatsCluster) -> None:
    async def main() -> None:
        bus = await _bus(nats1.url)
        await bus.publish([_event(1)])
        (d,) = await bus.fetch(1, wait_s=5)
        naked = time.monotonic()
        await d.nak(0.8)
        got: list[Delivery] = []
        while not got:
            got = await bus.fetch(1, wait_s=5)
        waited = time.monotonic() - naked
        assert got[0].num_delivered == 2
        assert waited >= 0.75, waited  # never earlier than the delay (JetStream's timer), however slow the machine
        await got[0].ack()
        await bus.nc.close()

    asyncio.run(main())


_HOLDER = """
import asyncio, sys
from squall.cluster.bus import Delivery, EventBus, connect
async def main():
    bus = EventBus(await connect(sys.argv[1]), ack_wait_s=float(sys.argv[2]))
    await bus.setup()
    got: list[Delivery] = []
    while not got:
        got = await bus.fetch(1, wait_s=5)
    print("holding", got[0].event.request_id, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def test_event_held_by_a_killed_consumer_goes_to_another(nats1: NatsCluster, tmp_path: Path) -> None:
    """A node that dies mid-delivery (kill -9, no nak, no ack) leaves its event to the others after the ack wait."""
    ack_wait = 1.0

    async def main() -> None:
        bus = await _bus(nats1.url, ack_wait_s=ack_wait)
        await bus.publish([_event(7)])
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, nats1.url, str(ack_wait)],
            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": SRC},
        )  # fmt: skip
        try:
            assert holder.stdout is not None
            line = await asyncio.to_thread(holder.stdout.readline)
            assert line.decode().split() == ["holding", "req-7"]
            assert await bus.fetch(1, wait_s=0.2) == []  # held: nobody else gets it meanwhile
            os.kill(holder.pid, signal.SIGKILL)
            killed = time.monotonic()
        finally:
            holder.kill()
            holder.wait()
            if holder.stdout is not None:
                holder.stdout.close()
        got: list[Delivery] = []
        while not got:
            got = await bus.fetch(1, wait_s=5)
        took = time.monotonic() - killed
        assert got[0].event.request_id == "req-7"
        assert got[0].num_delivered == 2
        print(f"redelivered {took:.2f} s after kill -9 (ack wait {ack_wait} s)")
        await got[0].ack()
        await bus.nc.close()

    asyncio.run(main())


def test_in_progress_keeps_a_long_delivery(nats1: NatsCluster) -> None:
    """A delivery longer than the ack wait keeps its event while it says it is in progress."""

    async def main() -> None:
        bus = await _bus(nats1.url, ack_wait_s=0.6)
        other = await _bus(nats1.url, ack_wait_s=0.6)
        await bus.publish([_event(1)])
        (d,) = await bus.fetch(1, wait_s=5)
        for _ in range(6):  # 1.2 s in all: twice the ack wait
            await asyncio.sleep(0.2)
            await d.in_progress()
        assert await other.fetch(1, wait_s=0.1) == []
        await d.ack()
        await bus.nc.close()
        await other.nc.close()

    asyncio.run(main())


def test_r3_stream_survives_the_loss_of_one_server(nats3: NatsCluster) -> None:
    async def main() -> None:
        bus = await _bus(nats3.url, replicas=3)
        info = await bus.js.stream_info(bus.stream)
        assert info.config.num_replicas == 3
        await bus.publish([_event(i) for i in range(10)])
        leader = info.cluster.leader if info.cluster else None
        victim = next(s for s in nats3.servers if s.name == leader)
        victim.kill()  # kill -9 the stream's leader
        t0 = time.monotonic()
        while True:  # a new leader is elected among the two left; publishing goes on
            try:
                await bus.publish([_event(100)])
                break
            except Exception:
                await asyncio.sleep(0.1)
        print(f"publish accepted again {time.monotonic() - t0:.2f} s after the stream leader was killed")
        got: list[Delivery] = []
        while len(got) < 11:
            got += await bus.fetch(11, wait_s=5)
        assert sorted(d.event.request_id for d in got) == sorted([f"req-{i}" for i in range(10)] + ["req-100"])
        for d in got:
            await d.ack()
        await bus.nc.close()

    asyncio.run(main())
