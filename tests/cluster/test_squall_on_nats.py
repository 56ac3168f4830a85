"""A real ``squall up --nats-url`` (one node, embedded SQLite for state) with its events on a real JetStream:
async invoke → 202 after the publish ack, retries by redelivery with Lambda's backoff then the on-failure
destination, an event older than its maximum age goes to the destination unrun, a node killed mid-delivery has its
event delivered by the next node, ``squall cluster status`` lists the node."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from _platform import SquallProcess, create, eventually, signed_get

from squall.cluster.bus import EventBus, connect
from squall.cluster.natsd import NatsCluster

#: real servers (two Squall processes, NATS); slow on a loaded machine, bounded by eventually() waits
pytestmark = pytest.mark.timeout(600)

FLAKY = """
import json, time
def handler(event, context):
    print("RUN", json.dumps(event))
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"ok": True}
"""

DESTINATION = """
import json
def handler(event, context):
    print("DESTINATION-GOT", json.dumps(event))
    return {"ok": True}
"""


@pytest.fixture
def node(nats1: NatsCluster, tmp_path: Path) -> Iterator[SquallProcess]:
    proc = SquallProcess(
        tmp_path / "data", SQUALL_NATS_URL=nats1.url, SQUALL_NODE_ID="node-1",
        SQUALL_ASYNC_RETRY_BASE_S="0.5", SQUALL_NATS_ACK_WAIT_S="2",
    ).start()  # fmt: skip
    yield proc
    proc.stop()


def _destination_records(node: SquallProcess) -> list[dict[str, Any]]:
    status, body = signed_get(node.url, "/_squall/api/logs?function=dlq&q=DESTINATION-GOT&limit=20")
    out = []
    for line in body.get("lines", []) if status == 200 else []:
        text = line["text"]
        out.append(json.loads(text[text.index("DESTINATION-GOT") + len("DESTINATION-GOT ") :].splitlines()[0]))
    return out


def _records(node: SquallProcess, fn: str) -> list[dict[str, Any]]:
    status, body = signed_get(node.url, f"/_squall/api/invocations?function={fn}&limit=50")
    return list(body["invocations"]) if status == 200 else []


def test_async_retries_by_redelivery_then_destination(node: SquallProcess) -> None:
    lam = node.client("lambda")
    create(lam, "flaky", FLAKY)
    create(lam, "dlq", DESTINATION)
    dlq_arn = lam.get_function_configuration(FunctionName="dlq")["FunctionArn"]
    lam.put_function_event_invoke_config(
        FunctionName="flaky", MaximumRetryAttempts=2, DestinationConfig={"OnFailure": {"Destination": dlq_arn}}
    )
    r = lam.invoke(FunctionName="flaky", InvocationType="Event", Payload=b'{"fail": true, "id": 7}')
    assert r["StatusCode"] == 202
    (rec,) = eventually(lambda: _destination_records(node), timeout_s=60, what="destination record")
    assert rec["requestContext"]["condition"] == "RetriesExhausted"
    assert rec["requestContext"]["approximateInvokeCount"] == 3
    assert rec["requestPayload"] == {"fail": True, "id": 7}
    runs = sorted(eventually(lambda: len(_records(node, "flaky")) >= 3 and _records(node, "flaky")),
                  key=lambda x: x["start"])  # fmt: skip
    assert len(runs) == 3  # three attempts, no more (the destination's record came after the third)
    gaps = [runs[i + 1]["start"] - runs[i]["start"] for i in range(2)]
    # Lambda's backoff with base 0.5 s: the second retry waits twice as long as the first
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0, gaps
    status, body = signed_get(node.url, "/_squall/api/cluster")
    assert status == 200 and body["cluster"] is True
    assert [n["node_id"] for n in body["nodes"]] == ["node-1"]
    assert body["event_stream"]["pending"] == 0  # everything acked


def test_event_past_its_maximum_age_goes_to_the_destination_unrun(node: SquallProcess, nats1: NatsCluster) -> None:
    lam = node.client("lambda")
    create(lam, "aged", FLAKY)
    create(lam, "dlq", DESTINATION)
    dlq_arn = lam.get_function_configuration(FunctionName="dlq")["FunctionArn"]
    lam.put_function_event_invoke_config(
        FunctionName="aged", MaximumEventAgeInSeconds=60, DestinationConfig={"OnFailure": {"Destination": dlq_arn}}
    )

    async def publish_old() -> None:  # an event that waited 10 minutes in the stream (a long outage)
        bus = EventBus(await connect(nats1.url))
        await bus.setup()
        old = time.time() - 600
        await bus.publish([{"function": "aged", "payload": b'{"id": 1}', "request_id": "old-1", "enqueued_at": old}])
        await bus.nc.close()

    asyncio.run(publish_old())
    (rec,) = eventually(lambda: _destination_records(node), timeout_s=60, what="destination record")
    assert rec["requestContext"]["condition"] == "EventAgeExceeded"
    assert rec["requestContext"]["approximateInvokeCount"] == 0
    assert _records(node, "aged") == []  # never ran


def test_node_killed_mid_delivery_its_event_runs_on_the_next(nats1: NatsCluster, tmp_path: Path) -> None:
    env = {"SQUALL_NATS_URL": nats1.url, "SQUALL_NATS_ACK_WAIT_S": "2"}
    first = SquallProcess(tmp_path / "data", SQUALL_NODE_ID="node-1", **env).start()
    try:
        lam = first.client("lambda")
        create(lam, "slow", FLAKY, Timeout=30)
        lam.invoke(FunctionName="slow", InvocationType="Event", Payload=b'{"sleep": 3, "id": 9}')
        eventually(lambda: _running(first), timeout_s=60, what="delivery started")
    finally:
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        killed = time.monotonic()
    # the state (functions) is in the data dir; a second node takes over (a cluster's other node, here on the
    # same embedded state once the first is dead: two live servers must not share an SQLite data dir)
    second = SquallProcess(tmp_path / "data", port=None, SQUALL_NODE_ID="node-2", **env).start()
    try:
        done = eventually(
            lambda: [r for r in _records(second, "slow") if r["status"] == "ok"], timeout_s=60, what="rerun"
        )
        print(f"event re-run to completion {time.monotonic() - killed:.2f} s after kill -9 (ack wait 2 s)")
        assert len(done) == 1
    finally:
        second.stop()


def _running(node: SquallProcess) -> bool:
    status, body = signed_get(node.url, "/_squall/api/pool")
    return status == 200 and any(i["function"] == "slow" and i["state"] == "busy" for i in body["instances"])


def test_one_nats_server_killed_service_continues_nothing_accepted_is_lost(nats3: NatsCluster, tmp_path: Path) -> None:
    """A node on a three-server NATS cluster (R3 stream): kill -9 the stream's leader under async load; every
    event that got its 202 runs (duplicates allowed and counted), and new events are accepted again."""
    import botocore.exceptions

    node = SquallProcess(tmp_path / "data", SQUALL_NATS_URL=nats3.url, SQUALL_NODE_ID="node-1").start()
    try:
        lam = node.client("lambda")
        create(lam, "count", FLAKY)
        accepted: list[int] = []

        def send(i: int) -> None:
            for _ in range(60):  # a client retrying while JetStream elects a new leader
                try:
                    r = lam.invoke(FunctionName="count", InvocationType="Event", Payload=json.dumps({"id": i}).encode())
                    if r["StatusCode"] == 202:
                        accepted.append(i)
                        return
                except botocore.exceptions.ClientError:
                    pass
                except botocore.exceptions.BotoCoreError:
                    pass
                time.sleep(0.25)

        for i in range(20):
            send(i)

        async def leader() -> str:
            bus = EventBus(await connect(nats3.url), replicas=3)
            info = await bus.js.stream_info(bus.stream)
            await bus.nc.close()
            return str(info.cluster.leader) if info.cluster else ""

        name = asyncio.run(leader())
        victim = next(s for s in nats3.servers if s.name == name)
        victim.kill()
        for i in range(20, 40):
            send(i)
        assert accepted == list(range(40))

        def ran() -> set[int]:
            status, body = signed_get(node.url, "/_squall/api/logs?function=count&q=RUN&limit=500")
            ids = []
            for line in body.get("lines", []) if status == 200 else []:
                text = line["text"]
                ids.append(json.loads(text[text.index("RUN ") + 4 :].splitlines()[0])["id"])
            ran.count = len(ids)  # type: ignore[attr-defined]
            return set(ids)

        eventually(lambda: ran() >= set(accepted), timeout_s=120, what="every accepted event ran")
        print(f"{len(accepted)} accepted, {ran.count - len(set(accepted))} duplicates")  # type: ignore[attr-defined]
    finally:
        node.stop()


def test_events_queued_by_an_embedded_node_move_to_the_bus_when_it_joins(nats1: NatsCluster, tmp_path: Path) -> None:
    """A node that ran embedded has accepted events still in its SQLite queue (here: throttled by reserved
    concurrency 0); started with --nats-url, it moves them to the bus, and they run once allowed."""
    embedded = SquallProcess(tmp_path / "data").start()
    try:
        lam = embedded.client("lambda")
        create(lam, "count", FLAKY)
        lam.put_function_concurrency(FunctionName="count", ReservedConcurrentExecutions=0)
        for i in range(5):
            r = lam.invoke(FunctionName="count", InvocationType="Event", Payload=json.dumps({"id": i}).encode())
            assert r["StatusCode"] == 202
    finally:
        assert embedded.stop() == 0
    node = SquallProcess(tmp_path / "data", SQUALL_NATS_URL=nats1.url, SQUALL_NODE_ID="joined").start()
    try:
        status, body = signed_get(node.url, "/_squall/api/cluster")
        assert status == 200 and body["cluster"] is True
        node.client("lambda").delete_function_concurrency(FunctionName="count")

        def ran() -> set[int]:
            status, body = signed_get(node.url, "/_squall/api/logs?function=count&q=RUN&limit=100")
            return {
                json.loads(ln["text"][ln["text"].index("RUN ") + 4 :].splitlines()[0])["id"]
                for ln in (body.get("lines", []) if status == 200 else [])
            }

        eventually(lambda: ran() == set(range(5)), timeout_s=120, what="the queued events ran from the bus")
    finally:
        node.stop()
