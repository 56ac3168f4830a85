"""What must hold cluster-wide, on two real ``squall up`` nodes sharing one PostgreSQL database and one NATS server:
an event source mapping is polled by exactly one node and moves when that node stops; provisioned concurrency N
means N initialised instances in the cluster (not N per node) and is reported so; a change made while a node is cut
off from NATS reaches it; an IAM policy changed through one node takes effect on the other; a request at a node
whose share is full runs on the node with room instead of being throttled."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from squall.cluster.natsd import NatsCluster
from squall.scheduler.placement import rank
from tests.cluster.relay import NatsRelay
from tests.cluster.status import cluster_status, live_nodes
from tests.e2e._platform import SquallProcess, create, eventually, signed_get
from tests.pg_helpers import find_pg_bin, shared_server

#: real servers (two Squall processes, NATS, PostgreSQL); slow on a loaded machine, bounded by eventually() waits
pytestmark = pytest.mark.timeout(600)

TRUST = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
})  # fmt: skip


@pytest.fixture
def database() -> str:
    if find_pg_bin() is None:
        pytest.fail("PostgreSQL is not installed (scripts/_prereqs.sh installs Debian's postgresql)")
    return shared_server().database("spread")


def start_nodes(tmp_path: Path, database: str, nats_urls: dict[str, str], **env: str) -> dict[str, SquallProcess]:
    """One ``squall up`` per entry of ``nats_urls`` (node id → its NATS URL), all on ``database``; each sees the
    others live before this returns."""
    nodes: dict[str, SquallProcess] = {}
    env.setdefault("SQUALL_ENV_KEY", base64.b64encode(os.urandom(32)).decode())  # one key for every node
    try:
        for name, url in nats_urls.items():
            node_env = {"SQUALL_DATABASE_URL": database, "SQUALL_NATS_URL": url, "SQUALL_NODE_ID": name, **env}
            nodes[name] = SquallProcess(tmp_path / name / "data", None, (), **node_env).start()
        for p in nodes.values():
            eventually(lambda p=p: sorted(live_nodes(p)) == sorted(nodes), timeout_s=60, what="membership")
    except BaseException:
        for p in nodes.values():
            p.stop()
        raise
    return nodes


@pytest.fixture
def two_nodes(nats1: NatsCluster, database: str, tmp_path: Path) -> Iterator[dict[str, SquallProcess]]:
    nodes = start_nodes(tmp_path, database, {"a": nats1.url, "b": nats1.url})
    try:
        yield nodes
    finally:
        for p in nodes.values():
            p.stop()


def pool(node: SquallProcess) -> list[dict[str, Any]]:
    code, body = signed_get(node.url, "/_squall/api/pool")
    assert code == 200, body
    return list(body["instances"])


def homed_on(node: str, nodes: list[str], prefix: str) -> str:
    """A function name whose home (first in its rendezvous order over ``nodes``) is ``node``."""
    return next(f"{prefix}{i}" for i in range(1000) if rank(f"{prefix}{i}", nodes)[0] == node)


# -- event source mappings -------------------------------------------------------------------------------------

CONSUMER = """
import json
def handler(event, context):
    for r in event["Records"]:
        print("GOT", r["body"])
    return {}
"""


def _consumed(node: SquallProcess, fn: str) -> set[str]:
    code, body = signed_get(node.url, f"/_squall/api/logs?function={fn}&q=GOT&limit=200")
    got = set()
    for line in body.get("lines", []) if code == 200 else []:
        text = line["text"]
        got.add(text[text.index("GOT ") + 4 :].split()[0])
    return got


def _pollers(nodes: dict[str, SquallProcess], uid: str) -> list[str]:
    return [name for name, p in nodes.items() if uid in cluster_status(p).get("esm_pollers", [])]


def test_a_mapping_is_polled_by_one_node_and_moves_when_it_stops(two_nodes: dict[str, SquallProcess]) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    lam, sqs = a.client("lambda"), b.client("sqs")
    create(lam, "consume", CONSUMER)
    url = sqs.create_queue(QueueName="work", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    uid = lam.create_event_source_mapping(
        FunctionName="consume", EventSourceArn=arn, BatchSize=1, ScalingConfig={"MaximumConcurrency": 2}
    )["UUID"]
    owner = rank(uid, ["a", "b"])[0]
    # exactly one node polls it, the first in its order, whichever node it was created through
    eventually(lambda: _pollers(two_nodes, uid) == [owner], timeout_s=60, what="one poller")
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    eventually(lambda: _consumed(a, "consume") >= {"m0", "m1", "m2"}, timeout_s=60, what="consumed")
    assert _pollers(two_nodes, uid) == [owner]  # still one

    # the owner stops: the other node takes the mapping over and consumes what is sent next
    other = "b" if owner == "a" else "a"
    two_nodes[owner].stop()
    survivor = two_nodes[other]
    eventually(lambda: uid in cluster_status(survivor).get("esm_pollers", []), timeout_s=60, what="the poller moved")
    survivor.client("sqs").send_message(QueueUrl=url, MessageBody="after")
    eventually(lambda: "after" in _consumed(survivor, "consume"), timeout_s=60, what="consumed after the move")


def test_a_mapping_created_through_another_node_is_polled_and_an_update_reaches_its_poller(
    two_nodes: dict[str, SquallProcess],
) -> None:
    """Created and disabled through the node that does not poll it: the owner starts and stops its poller."""
    lam = two_nodes["a"].client("lambda")
    create(lam, "consume", CONSUMER)
    sqs = two_nodes["a"].client("sqs")
    url = sqs.create_queue(QueueName="work2")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # a UUID is random: create until one is owned by the node it is not created through
    uid = ""
    for _ in range(40):
        candidate = lam.create_event_source_mapping(FunctionName="consume", EventSourceArn=arn)["UUID"]
        if rank(candidate, ["a", "b"])[0] == "b":
            uid = candidate
            break
        lam.delete_event_source_mapping(UUID=candidate)
    assert uid, "no mapping owned by b in 40 tries"
    eventually(lambda: _pollers(two_nodes, uid) == ["b"], timeout_s=60, what="b polls it")
    lam.update_event_source_mapping(UUID=uid, Enabled=False)
    eventually(lambda: _pollers(two_nodes, uid) == [], timeout_s=60, what="disabled everywhere")


# -- provisioned concurrency --------------------------------------------------------------------------------------

HELLO = """
def handler(event, context):
    return {"ok": True}
"""


def _provisioned(node: SquallProcess, fn: str) -> int:
    return sum(1 for i in pool(node) if i["function"] == fn and i["provisioned"] and i["state"] in ("idle", "busy"))


def test_provisioned_concurrency_is_counted_cluster_wide(two_nodes: dict[str, SquallProcess]) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    lam = a.client("lambda")
    create(lam, "warm", HELLO)
    version = lam.publish_version(FunctionName="warm")["Version"]
    lam.put_provisioned_concurrency_config(FunctionName="warm", Qualifier=version, ProvisionedConcurrentExecutions=2)

    def ready() -> bool:
        cfg = b.client("lambda").get_provisioned_concurrency_config(FunctionName="warm", Qualifier=version)
        return bool(cfg["Status"] == "READY" and cfg["AllocatedProvisionedConcurrentExecutions"] == 2)

    eventually(ready, timeout_s=120, what="READY with 2 allocated")
    counts = {name: _provisioned(p, "warm") for name, p in two_nodes.items()}
    assert counts == {"a": 1, "b": 1}, counts  # 2 in the cluster, one on each node (not 2 on each)
    cfg = a.client("lambda").get_provisioned_concurrency_config(FunctionName="warm", Qualifier=version)
    assert cfg["AvailableProvisionedConcurrentExecutions"] == 2

    # one node leaves: the one left holds the whole count
    b.stop()
    eventually(lambda: _provisioned(a, "warm") == 2, timeout_s=120, what="a holds both")
    assert (
        a.client("lambda").get_provisioned_concurrency_config(FunctionName="warm", Qualifier=version)[
            "RequestedProvisionedConcurrentExecutions"
        ]
        == 2
    )


# -- changes missed on NATS ---------------------------------------------------------------------------------------

WHERE = """
import os
def handler(event, context):
    return {"v": os.environ.get("VAL")}
"""


def test_a_change_made_while_a_node_is_cut_off_from_nats_reaches_it(
    nats1: NatsCluster, database: str, tmp_path: Path
) -> None:
    port = int(nats1.url.rsplit(":", 1)[1])
    proxy = NatsRelay(port)
    nodes = start_nodes(tmp_path, database, {"a": nats1.url, "b": proxy.url})
    a, b = nodes["a"], nodes["b"]
    try:
        fn = homed_on("b", ["a", "b"], "where")  # runs on b when invoked through b: b's caches are what count
        create(a.client("lambda"), fn, WHERE, Environment={"Variables": {"VAL": "old"}})

        def through_b() -> Any:
            r = b.client("lambda").invoke(FunctionName=fn, Payload=b"{}")
            return json.loads(r["Payload"].read())["v"]

        assert through_b() == "old"  # b caches the spec and keeps an idle instance with VAL=old
        assert any(i["function"] == fn for i in pool(b))
        proxy.cut()
        eventually(lambda: live_nodes(a) == ["a"], timeout_s=60, what="a sees b gone")
        a.client("lambda").update_function_configuration(FunctionName=fn, Environment={"Variables": {"VAL": "new"}})
        a.client("lambda").get_waiter("function_updated_v2").wait(FunctionName=fn)
        proxy.restore()
        eventually(lambda: sorted(live_nodes(b)) == ["a", "b"] and sorted(live_nodes(a)) == ["a", "b"], timeout_s=60,
                   what="b back on NATS")  # fmt: skip
        eventually(lambda: through_b() == "new", timeout_s=30, what="b runs the new configuration")
    finally:
        for p in nodes.values():
            p.stop()
        proxy.close()


# -- IAM ------------------------------------------------------------------------------------------------------------

READER = """
import boto3
from botocore.config import Config
def handler(event, context):
    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}))
    try:
        return {"ok": True, "body": s3.get_object(Bucket="docs", Key="k")["Body"].read().decode()}
    except Exception as e:
        return {"ok": False, "code": getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__)}
"""


def test_an_iam_policy_change_through_one_node_takes_effect_on_the_other(two_nodes: dict[str, SquallProcess]) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    iam = a.client("iam")
    role = iam.create_role(RoleName="reader", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    allow = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::docs/*"}]}  # fmt: skip
    iam.put_role_policy(RoleName="reader", PolicyName="read", PolicyDocument=json.dumps(allow))
    s3 = a.client("s3")
    s3.create_bucket(Bucket="docs")
    s3.put_object(Bucket="docs", Key="k", Body=b"secret")
    fn = homed_on("b", ["a", "b"], "reader")  # runs on b: b's authorizer decides its calls
    create(a.client("lambda"), fn, READER, Role=role)

    def through_b() -> dict[str, Any]:
        r = b.client("lambda").invoke(FunctionName=fn, Payload=b"{}")
        return dict(json.loads(r["Payload"].read()))

    assert through_b() == {"ok": True, "body": "secret"}  # b has parsed and cached the role's policies
    # through a: the role loses the permission; b must not keep allowing from its cache
    iam.delete_role_policy(RoleName="reader", PolicyName="read")
    eventually(lambda: through_b() == {"ok": False, "code": "AccessDenied"}, timeout_s=30, what="denied on b")
    iam.put_role_policy(RoleName="reader", PolicyName="read", PolicyDocument=json.dumps(allow))
    eventually(lambda: through_b().get("ok") is True, timeout_s=30, what="allowed again on b")


# -- overflow -------------------------------------------------------------------------------------------------------

SLOW = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"""


def test_a_request_at_a_full_node_runs_on_the_node_with_room(nats1: NatsCluster, database: str, tmp_path: Path) -> None:
    """Reserved concurrency 2 over two nodes is a share of 1 on each; no waiting for capacity (throttle wait 0).
    Two concurrent requests through the node that is not the function's home both run, one on each node, none
    throttled (the first goes home; the second must not follow it there before b's heartbeat shows it busy)."""
    nodes = start_nodes(tmp_path, database, {"a": nats1.url, "b": nats1.url}, SQUALL_THROTTLE_WAIT_S="0")
    a = nodes["a"]
    try:
        lam = a.client("lambda")
        fn = homed_on("b", ["a", "b"], "slow")
        create(lam, fn, SLOW, Timeout=60)
        lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=2)
        for p in nodes.values():  # both nodes have the function's concurrency (their shares) before the requests
            eventually(lambda p=p: p.client("lambda").get_function_concurrency(FunctionName=fn).get(
                "ReservedConcurrentExecutions") == 2, timeout_s=30, what="reserved concurrency")  # fmt: skip

        def invoke(_: int) -> dict[str, Any]:
            r = a.client("lambda").invoke(FunctionName=fn, Payload=json.dumps({"sleep": 4}).encode())
            return {"status": r["StatusCode"], "error": r.get("FunctionError"), "body": json.loads(r["Payload"].read())}

        def b_idle_as_a_sees_it() -> bool:  # b's heartbeat, as a has it, shows the first round done
            view = next(n for n in cluster_status(a)["nodes"] if n["node_id"] == "b")
            return bool(view["live"] and not view["running"].get(fn) and view["warm_idle"].get(f"{fn}:$LATEST"))

        for round_ in range(2):  # twice: cold, then with an idle instance on each node
            if round_:
                eventually(b_idle_as_a_sees_it, timeout_s=60, what="b idle in a's view")
            with ThreadPoolExecutor(2) as ex:
                results = list(ex.map(invoke, range(2)))
            assert results == [{"status": 200, "error": None, "body": {"ok": True}}] * 2, results
        ran = {name: sum(1 for i in pool(p) if i["function"] == fn) for name, p in nodes.items()}
        assert ran == {"a": 1, "b": 1}, ran
    finally:
        for p in nodes.values():
            p.stop()
