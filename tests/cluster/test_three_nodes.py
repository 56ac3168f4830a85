"""Three real Squall nodes (one PostgreSQL, three clustered NATS servers) driven through real boto3 clients: what is
deployed through one node runs through every node, triggers fire whichever node they reach, limits hold across the
cluster, and every node shows the whole cluster's records, logs and usage (tests/cluster/three.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.cluster.three import NODE_IDS, ThreeNodes, invoke_json, metrics_text
from tests.e2e._platform import SquallProcess, create, eventually, free_port, signed_get
from tests.pg_helpers import find_pg_bin

pytestmark = [
    pytest.mark.skipif(find_pg_bin() is None, reason="PostgreSQL is not installed (apt-get install postgresql)"),
    pytest.mark.timeout(600),  # real servers on a shared 2-core machine: bounded by eventually() waits
]

WHERE = """
import json, os, time
def handler(event, context):
    t0 = time.time()
    if event.get("sleep"):
        time.sleep(event["sleep"])
    print("WHERE " + json.dumps({"id": event.get("id"), "endpoint": os.environ["AWS_ENDPOINT_URL"]}))
    return {"endpoint": os.environ["AWS_ENDPOINT_URL"], "t0": t0, "t1": time.time(),
            "flavour": os.environ.get("FLAVOUR", "one"), "got": event}
"""

RECORDER = """
import json
def handler(event, context):
    for r in event.get("Records", []):
        if r.get("eventSource") == "aws:sqs":
            print("SQSGOT " + r["body"])
        else:
            print("S3GOT " + r["s3"]["object"]["key"])
    return {"n": len(event.get("Records", []))}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreeNodes]:
    c = ThreeNodes.start(tmp_path_factory.mktemp("three"))
    try:
        yield c
    finally:
        c.stop()


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def _log_lines(c: ThreeNodes, node: int, function: str, q: str) -> list[str]:
    status, out = signed_get(c.url(node), f"/_squall/api/logs?function={function}&q={q}&limit=1000")
    if status != 200:
        return []
    return [ln for line in out["lines"] for ln in line["text"].splitlines() if q in ln]


def _records(c: ThreeNodes, node: int, function: str) -> list[dict[str, Any]]:
    status, out = signed_get(c.url(node), f"/_squall/api/invocations?function={function}&limit=1000")
    return list(out["invocations"]) if status == 200 else []


def test_deployed_through_node_1_runs_through_nodes_2_and_3(cluster: ThreeNodes) -> None:
    create(cluster.client(0), "where", WHERE)
    ran_on: set[int] = set()
    for node in (1, 2, 1, 2):
        out, r = invoke_json(cluster.client(node), "where", {"id": node})
        assert r["StatusCode"] == 200 and "FunctionError" not in r, out
        assert out["got"] == {"id": node}
        ran_on.add(_port(out["endpoint"]))
    ports = {n.port for n in cluster.nodes}
    assert ran_on <= ports
    # the node it ran on: its warm instance is where requests go (placement: warm first), whoever received them
    status = cluster.cluster_status(0)
    warm = {n["node_id"]: n["warm_idle"] for n in status["nodes"]}
    print(f"'where' ran on ports {sorted(ran_on)}; warm instances by node: {warm}")
    for node in range(3):  # configuration read through any node is the same
        cfg = cluster.client(node).get_function_configuration(FunctionName="where")
        assert cfg["State"] == "Active" and cfg["Handler"] == "app.handler"


def test_an_upload_through_node_2_triggers_the_function_visible_from_every_node(cluster: ThreeNodes) -> None:
    fn = create(cluster.client(0), "s3sink", RECORDER)
    s3 = cluster.client(0, "s3")
    s3.create_bucket(Bucket="uploads")
    s3.put_bucket_notification_configuration(
        Bucket="uploads",
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": fn["FunctionArn"], "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    cluster.client(1, "s3").put_object(Bucket="uploads", Key="photo-1.jpg", Body=b"jpeg")
    for node in range(3):
        lines = eventually(
            lambda node=node: _log_lines(cluster, node, "s3sink", "S3GOT"), timeout_s=60, what=f"log via n{node + 1}"
        )
        assert lines == ["S3GOT photo-1.jpg"]
        recs = eventually(lambda node=node: _records(cluster, node, "s3sink"), what=f"record via n{node + 1}")
        assert [(r["trigger"], r["status"]) for r in recs] == [("s3", "ok")]
    assert cluster.client(2, "s3").get_object(Bucket="uploads", Key="photo-1.jpg")["Body"].read() == b"jpeg"


def test_a_message_sent_through_node_3_is_consumed_by_an_event_source_mapping(cluster: ThreeNodes) -> None:
    create(cluster.client(0), "sqssink", RECORDER)
    sqs1 = cluster.client(0, "sqs")
    url = sqs1.create_queue(QueueName="jobs")["QueueUrl"]
    arn = sqs1.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    m = cluster.client(0).create_event_source_mapping(FunctionName="sqssink", EventSourceArn=arn, BatchSize=5)
    sqs3 = cluster.client(2, "sqs")
    bodies = [f"job-{i}" for i in range(10)]
    for b in bodies:
        sqs3.send_message(QueueUrl=url, MessageBody=b)
    got = eventually(
        lambda: (lines := _log_lines(cluster, 1, "sqssink", "SQSGOT")) and len(lines) >= 10 and lines,
        timeout_s=90, what="10 messages consumed",
    )  # fmt: skip
    assert sorted(ln.split(" ", 1)[1] for ln in got) == sorted(bodies)  # each once, whichever node polled it

    def empty() -> bool:
        a = sqs3.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return a["ApproximateNumberOfMessages"] == a["ApproximateNumberOfMessagesNotVisible"] == "0"

    eventually(empty, timeout_s=60, what="the queue empty (every batch deleted)")
    cluster.client(1).delete_event_source_mapping(UUID=m["UUID"])


def test_a_weighted_alias_splits_across_the_cluster(cluster: ThreeNodes) -> None:
    lam = cluster.client(0)
    create(lam, "versioned", WHERE)
    v1 = lam.publish_version(FunctionName="versioned")["Version"]
    lam.update_function_configuration(FunctionName="versioned", Environment={"Variables": {"FLAVOUR": "two"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName="versioned")
    v2 = lam.publish_version(FunctionName="versioned")["Version"]
    lam.create_alias(
        FunctionName="versioned", Name="live", FunctionVersion=v1, RoutingConfig={"AdditionalVersionWeights": {v2: 0.5}}
    )
    seen: Counter[tuple[str, str]] = Counter()
    for i in range(40):
        out, r = invoke_json(cluster.client(1 + i % 2), "versioned", {}, Qualifier="live")
        seen[(r["ExecutedVersion"], out["flavour"])] += 1
    # both versions, each with its own configuration (0.5^40 odds of missing one by chance)
    assert set(seen) == {("1", "one"), ("2", "two")}, seen
    out, r = invoke_json(cluster.client(2), "versioned", {}, Qualifier="1")
    assert r["ExecutedVersion"] == "1" and out["flavour"] == "one"


def _try(lam: Any, payload: dict[str, Any]) -> dict[str, Any] | str:
    try:
        out, r = invoke_json(lam, "narrow", payload)
        assert "FunctionError" not in r, out
        return out
    except ClientError as e:
        return str(e.response["Error"]["Code"])


def test_reserved_concurrency_holds_across_the_cluster(cluster: ThreeNodes) -> None:
    """Reserved concurrency 2 on three nodes: at most 2 run at once across the cluster (not 2 per node); the other
    requests are throttled with Lambda's TooManyRequestsException, wherever they arrive."""
    lam = cluster.client(0)
    create(lam, "narrow", WHERE, Timeout=30)
    lam.put_function_concurrency(FunctionName="narrow", ReservedConcurrentExecutions=2)
    # every node has the new limit as its share (the change is broadcast): the warm-up runs one at a time
    for node in range(3):
        assert isinstance(_try(cluster.client(node), {"id": "warm"}), dict)
    clients = [cluster.client(i % 3) for i in range(9)]
    with ThreadPoolExecutor(9) as ex:
        results = list(ex.map(lambda lam: _try(lam, {"sleep": 4}), clients))
    ok = [r for r in results if isinstance(r, dict)]
    refused = Counter(r for r in results if isinstance(r, str))
    assert set(refused) <= {"TooManyRequestsException"}, refused
    windows = sorted((r["t0"], r["t1"]) for r in ok)
    most = max(sum(1 for a, b in windows if a <= t < b) for t, _ in windows)
    print(f"reserved 2 on 3 nodes: {len(ok)} ran (at most {most} at once), {sum(refused.values())} throttled")
    assert most <= 2, windows
    assert len(ok) >= 2, results  # the limit is 2 across the cluster, not split below it
    lam.delete_function_concurrency(FunctionName="narrow")


def test_records_logs_usage_and_metrics_through_every_node(cluster: ThreeNodes) -> None:
    lam = cluster.client(0)
    create(lam, "counted", WHERE)
    for i in range(9):
        out, _ = invoke_json(cluster.client(i % 3), "counted", {"id": i})
        assert out["got"] == {"id": i}

    def same_everywhere() -> list[int] | None:
        counts = [len(_records(cluster, n, "counted")) for n in range(3)]
        return counts if counts == [9, 9, 9] else None

    eventually(same_everywhere, timeout_s=30, what="9 records through each node")
    for node in range(3):
        ids = sorted(json.loads(ln.split(" ", 1)[1])["id"] for ln in _log_lines(cluster, node, "counted", "WHERE"))
        assert ids == list(range(9))
        status, usage = signed_get(cluster.url(node), "/_squall/api/usage")
        assert status == 200
        (row,) = [f for f in usage["functions"] if f["function"] == "counted"]
        assert row["requests"] == 9, row
    # /metrics is each node's own, labelled with its node id; together they count every invocation once
    total = 0.0
    for node, node_id in enumerate(NODE_IDS):
        text = metrics_text(cluster.url(node))
        labels = set(re.findall(r'node="([^"]*)"', text))
        assert labels == {node_id}, labels
        for line in text.splitlines():
            if line.startswith("squall_invocations_total{") and 'function="counted"' in line:
                total += float(line.rsplit(" ", 1)[1])
    assert total == 9


def test_squall_cluster_status_lists_the_three_nodes(cluster: ThreeNodes) -> None:
    cluster.wait_members(3)
    out = cluster.cli(1, "cluster", "status", "--output", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["cluster"] is True and report["node_id"] == "n2"
    assert sorted(n["node_id"] for n in report["nodes"]) == list(NODE_IDS)
    assert all(n["live"] for n in report["nodes"])
    assert report["event_stream"]["replicas"] == 3
    table = cluster.cli(2, "cluster", "status", "--output", "text")
    assert table.returncode == 0, table.stderr
    for node_id in NODE_IDS:
        assert node_id in table.stdout
    assert table.stdout.splitlines()[0].split("\t")[-1] == "PROVISIONED READY", table.stdout
    assert isinstance(report["esm_pollers"], list)  # this node's share of the mappings (the table prints it)


def _doc_block(lang: str) -> str:
    """The ``lang`` code block of docs/cluster.md (the load-balancer configs users copy)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
    m = re.search(rf"```{lang}\n(.*?)```", text, re.S)
    assert m is not None, f"docs/cluster.md has no {lang} block"
    return m.group(1)


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found is None and os.access(f"/usr/sbin/{name}", os.X_OK):
        found = f"/usr/sbin/{name}"
    return found


@pytest.mark.skipif(_binary("haproxy") is None, reason="HAProxy is not installed (apt-get install haproxy)")
def test_behind_haproxy_with_the_documented_config(cluster: ThreeNodes, tmp_path: Path) -> None:
    """docs/cluster.md's HAProxy config, its addresses replaced by the three nodes': SigV4 requests through it work
    (the Host header reaches the nodes unchanged), its health check sees the nodes up."""
    port = free_port()
    servers = iter(cluster.nodes)
    config = re.sub(
        r"server (n\d) \S+ check", lambda m: f"server {m.group(1)} 127.0.0.1:{next(servers).port} check",
        _doc_block("haproxy").replace("bind :9070", f"bind 127.0.0.1:{port}"),
    )  # fmt: skip
    (tmp_path / "haproxy.cfg").write_text(config)
    binary = _binary("haproxy")
    assert binary is not None
    out = subprocess.run([binary, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    with open(tmp_path / "haproxy.log", "wb") as log:
        proc = subprocess.Popen([binary, "-db", "-f", str(tmp_path / "haproxy.cfg")], stdout=log, stderr=log)
    try:
        lb = SquallProcess(tmp_path / "unused", port)  # only its clients: boto3 pointed at the load balancer

        def health() -> bool:
            try:
                with urllib.request.urlopen(f"{lb.url}/_squall/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        eventually(health, 30, 0.1, "the load balancer answers")
        lam, s3 = lb.client("lambda"), lb.client("s3")
        create(lam, "balanced", WHERE)
        ports = {_port(invoke_json(lam, "balanced", {"id": i})[0]["endpoint"]) for i in range(12)}
        assert ports <= {n.port for n in cluster.nodes}
        s3.create_bucket(Bucket="balanced")
        s3.put_object(Bucket="balanced", Key="k", Body=b"through the load balancer")
        assert s3.get_object(Bucket="balanced", Key="k")["Body"].read() == b"through the load balancer"
        status = json.loads(cluster.cli(0, "cluster", "status", "--output", "json").stdout)
        assert len(status["nodes"]) == 3
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(_binary("nginx") is None, reason="nginx is not installed (apt-get install nginx-light)")
def test_the_documented_nginx_config_is_valid(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{_doc_block('nginx')}}}\n"
    )
    binary = _binary("nginx")
    assert binary is not None
    out = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
