"""An event that ran is acked even when the server does not confirm the ack in time: it must not go back to the
stream (before: the ack's timeout reached the dispatcher, which nak'ed the event, and it ran a second time; seen
in bench/cluster.py on a loaded machine)."""

from __future__ import annotations

import asyncio
import signal

from squall.cluster.bus import EventBus, connect
from squall.cluster.natsd import NatsCluster


def test_an_ack_not_confirmed_in_time_still_acks(nats1: NatsCluster) -> None:
    proc = nats1.servers[0].proc
    assert proc is not None

    async def main() -> None:
        bus = EventBus(await connect(nats1.url), ack_wait_s=5.0)  # well past the 1 s pause: no redelivery race
        await bus.setup()
        await bus.publish([{"function": "fn", "payload": b"{}", "request_id": "r1"}])
        (d,) = await bus.fetch(1, wait_s=10)
        proc.send_signal(signal.SIGSTOP)  # the server takes the ack but cannot confirm it
        try:
            ack = asyncio.create_task(d.ack(timeout_s=0.5))
            await asyncio.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGCONT)
        await ack  # returned instead of raising a timeout (which made the dispatcher nak the event)
        assert await bus.fetch(1, wait_s=7.0) == []  # not handed out again once the ack wait passed
        assert await bus.pending() == 0
        await bus.nc.close()

    asyncio.run(main())
