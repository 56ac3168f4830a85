"""Placement and forwarding between two real ``squall up`` processes on one NATS server.

Each node keeps its own embedded state here (two live servers must not share an SQLite data dir; the shared
PostgreSQL state comes with the pg backend), so the same function is deployed to both, with an environment
variable saying which node's copy ran.  What is tested is the cluster part: membership between real servers,
placement (home node by rendezvous hashing, then the warm node), forwarding over NATS request/reply, one hop.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from squall.cluster.natsd import NatsCluster
from squall.scheduler.placement import rank
from tests.cluster.status import cluster_status, live_nodes
from tests.e2e._platform import SquallProcess, create, eventually, signed_get

#: real servers (two Squall processes, NATS); slow on a loaded machine, bounded by eventually() waits
pytestmark = pytest.mark.timeout(600)

WHERE = """
import os
def handler(event, context):
    return {"node": os.environ["NODE"], "version": context.function_version}
"""


@pytest.fixture
def two_nodes(nats1: NatsCluster, tmp_path: Path) -> Iterator[dict[str, SquallProcess]]:
    nodes: dict[str, SquallProcess] = {}
    try:
        for name in ("a", "b"):
            nodes[name] = SquallProcess(
                tmp_path / name / "data", SQUALL_NATS_URL=nats1.url, SQUALL_NODE_ID=name
            ).start()
        yield nodes
    finally:
        for p in nodes.values():
            p.stop()


def _invoke(node: SquallProcess, fn: str) -> dict[str, Any]:
    r = node.client("lambda").invoke(FunctionName=fn, Payload=b"{}")
    assert r["StatusCode"] == 200 and "FunctionError" not in r, r
    return dict(json.loads(r["Payload"].read()))


def test_request_runs_on_the_home_node_then_where_it_is_warm(two_nodes: dict[str, SquallProcess]) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    eventually(lambda: len(live_nodes(a)) == 2 and len(live_nodes(b)) == 2, timeout_s=30, what="membership")
    # one function whose home is b, one whose home is a (rendezvous order over {a, b})
    fn_b = next(f"fn{i}" for i in range(100) if rank(f"fn{i}", ["a", "b"])[0] == "b")
    fn_a = next(f"fn{i}" for i in range(100) if rank(f"fn{i}", ["a", "b"])[0] == "a")
    for fn in (fn_a, fn_b):
        for name, proc in two_nodes.items():
            create(proc.client("lambda"), fn, WHERE, Environment={"Variables": {"NODE": name}})

    # received by a, placed on its home b (cold there), forwarded; the caller's answer comes back through a
    assert _invoke(a, fn_b) == {"node": "b", "version": "$LATEST"}
    assert cluster_status(a)["forwarded"] == 1
    assert cluster_status(b)["served_for_others"] == 1
    # received by b for fn_a: home is a
    assert _invoke(b, fn_a) == {"node": "a", "version": "$LATEST"}
    # the home node itself runs its own function without a hop
    assert _invoke(b, fn_b) == {"node": "b", "version": "$LATEST"}
    assert cluster_status(b)["forwarded"] == 1

    # b now holds an idle instance of fn_b and a none: once a has heard so (b's next heartbeat), placement picks the
    # warm node (b) for requests via a
    def b_warm_as_a_sees_it() -> bool:
        views = {n["node_id"]: n for n in cluster_status(a)["nodes"]}
        return views.get("b", {}).get("warm_idle", {}).get(f"{fn_b}:$LATEST", 0) > 0

    eventually(b_warm_as_a_sees_it, timeout_s=30, what="b's idle instance in a's view")
    for _ in range(5):
        assert _invoke(a, fn_b)["node"] == "b"
    info = cluster_status(a)
    assert info["placements"].get("warm", 0) >= 1, info["placements"]
    assert info["forwarded"] == 6
    # b never forwards what it was sent (one hop): every forwarded request ran on b
    assert cluster_status(b)["served_for_others"] == 6


def test_a_stopped_node_is_out_of_placement_and_its_functions_run_elsewhere(
    two_nodes: dict[str, SquallProcess],
) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    eventually(lambda: len(live_nodes(a)) == 2, timeout_s=30, what="membership")
    fn_b = next(f"fn{i}" for i in range(100) if rank(f"fn{i}", ["a", "b"])[0] == "b")
    for name, proc in two_nodes.items():
        create(proc.client("lambda"), fn_b, WHERE, Environment={"Variables": {"NODE": name}})
    assert _invoke(a, fn_b)["node"] == "b"
    b.stop(signal.SIGKILL)
    killed = time.monotonic()
    eventually(
        lambda: [n["node_id"] for n in cluster_status(a)["nodes"] if n["live"]] == ["a"], timeout_s=30, what="b out"
    )
    print(f"b out of a's placement {time.monotonic() - killed:.2f} s after kill -9")
    out = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "cluster", "status", "--endpoint", a.url], env=a.env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(ln.split()[:3] == ["a", "(this)", "up"] for ln in lines), out.stdout
    assert any(ln.split()[:2] == ["b", "gone"] for ln in lines), out.stdout
    assert _invoke(a, fn_b)["node"] == "a"  # served by the node left


SLEEPY = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"node": os.environ["NODE"]}
"""


def test_account_limit_holds_across_the_cluster_not_per_node(nats1: NatsCluster, tmp_path: Path) -> None:
    """SQUALL_ACCOUNT_CONCURRENCY=2 for a cluster of two nodes: two invocations at a time in the whole cluster,
    not two per node.  The third, with both nodes' shares in use, is throttled (without shares it would overflow to
    the other node and run: three at once)."""
    import concurrent.futures

    nodes = {
        name: SquallProcess(
            tmp_path / name / "data", SQUALL_NATS_URL=nats1.url, SQUALL_NODE_ID=name,
            SQUALL_ACCOUNT_CONCURRENCY="2", SQUALL_THROTTLE_WAIT_S="0.5",
        ).start()
        for name in ("a", "b")
    }  # fmt: skip
    try:
        a = nodes["a"]
        # the limit split over the nodes, not copied to each (each applies its share once it sees the other)
        eventually(
            lambda: sorted(n["capacity"] for n in cluster_status(a)["nodes"]) == [1, 1], timeout_s=30, what="shares"
        )
        for name, proc in nodes.items():
            create(proc.client("lambda"), "slow", SLEEPY, Environment={"Variables": {"NODE": name}}, Timeout=30)

        def call(_: int) -> str:
            lam = a.client("lambda")
            try:
                r = lam.invoke(FunctionName="slow", Payload=b'{"sleep": 6}')
                return "ok:" + json.loads(r["Payload"].read())["node"]
            except lam.exceptions.TooManyRequestsException:
                return "throttled"

        def running() -> int:
            return sum(n["in_flight"] for n in cluster_status(a)["nodes"])

        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            first = ex.submit(call, 1)
            eventually(lambda: running() == 1, timeout_s=30, what="first running")
            second = ex.submit(call, 2)
            eventually(lambda: running() == 2, timeout_s=30, what="second running")
            third = ex.submit(call, 3)
            results = sorted([first.result(), second.result(), third.result()])
        assert results == ["ok:a", "ok:b", "throttled"], results  # one on each node's share, the third refused
    finally:
        for p in nodes.values():
            p.stop()


def test_reserved_concurrency_one_runs_on_the_home_node_only(two_nodes: dict[str, SquallProcess]) -> None:
    """Reserved concurrency 1 on a function served by two nodes: its share is on its home node, one invocation at a
    time in the whole cluster, whichever node receives the requests."""
    import concurrent.futures

    a, b = two_nodes["a"], two_nodes["b"]
    eventually(lambda: len(live_nodes(a)) == 2 and len(live_nodes(b)) == 2, timeout_s=30, what="membership")
    for name, proc in two_nodes.items():
        lam = proc.client("lambda")
        create(lam, "one", SLEEPY, Environment={"Variables": {"NODE": name}})
        lam.put_function_concurrency(FunctionName="one", ReservedConcurrentExecutions=1)

    def call(proc: SquallProcess) -> str:
        lam = proc.client("lambda")
        try:
            r = lam.invoke(FunctionName="one", Payload=b'{"sleep": 4}')
            return "ok:" + json.loads(r["Payload"].read())["node"]
        except lam.exceptions.TooManyRequestsException:
            return "throttled"

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        results = sorted(ex.map(call, [a, b]))
    home = rank("one", ["a", "b"])[0]
    assert results == [f"ok:{home}", "throttled"], results


def test_a_change_through_one_node_reaches_the_others(two_nodes: dict[str, SquallProcess]) -> None:
    """Updating a function through node a makes node b drop its idle instances of it (old code/configuration)."""
    a, b = two_nodes["a"], two_nodes["b"]
    eventually(lambda: len(live_nodes(a)) == 2 and len(live_nodes(b)) == 2, timeout_s=30, what="membership")
    fn_b = next(f"fn{i}" for i in range(100) if rank(f"fn{i}", ["a", "b"])[0] == "b")
    for name, proc in two_nodes.items():
        create(proc.client("lambda"), fn_b, WHERE, Environment={"Variables": {"NODE": name}})
    assert _invoke(b, fn_b)["node"] == "b"  # runs on b, its home: an idle instance stays there

    def idle_on_b() -> int:
        status, body = signed_get(b.url, "/_squall/api/pool")
        assert status == 200
        return sum(1 for i in body["instances"] if i["function"] == fn_b and i["state"] == "idle")

    assert idle_on_b() == 1
    a.client("lambda").update_function_configuration(FunctionName=fn_b, Description="changed on a")
    eventually(lambda: idle_on_b() == 0, timeout_s=30, what="b dropped its idle instance")
    assert cluster_status(b)["changes_received"] >= 1
