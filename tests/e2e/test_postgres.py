"""The PostgreSQL backend's own promises (cluster mode's state layer), on a real PostgreSQL started for this module:
concurrent migrations, SKIP LOCKED receives, NOTIFY wake-ups across nodes, a 50 MB object streamed through a real
server, and a server that outlives a PostgreSQL stopped for 10 s."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from squall.functions.store.metadata import SqliteMetadataStore
from squall.s3.store.objects import ObjectStore
from squall.sqs.store.queues import QueueStore
from squall.sqs.store.wait import QueueWaiter
from squall.store.db import PgTarget
from squall.store.pg import PgConnection
from tests.e2e._platform import SquallProcess, create
from tests.pg_helpers import PgServer, find_pg_bin

pytestmark = pytest.mark.skipif(
    find_pg_bin() is None, reason="PostgreSQL is not installed (apt-get install postgresql)"
)


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    """A PostgreSQL of this module's own (the fault test stops and restarts it)."""
    server = PgServer().start()
    try:
        yield server
    finally:
        server.close()


_MIGRATE = """
import sys
from squall.store.db import PgTarget
from squall.store.pg import PgConnection
from squall.functions.store.metadata import SqliteMetadataStore
from squall.s3.store.objects import ObjectStore
from squall.sqs.store.queues import QueueStore
from squall.iam.store import IamStore
sys.stdin.readline()  # start together
url = sys.argv[1]
stores = [SqliteMetadataStore(PgTarget(url, "metadata")), QueueStore(PgTarget(url, "sqs")), IamStore(PgTarget(url, "iam"))]
print(stores[0].schema_version())
"""


def test_two_nodes_migrating_at_once_apply_each_migration_once(pg: PgServer, tmp_path: Path) -> None:
    url = pg.database("migrate")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:  # imports done or not, they all start migrating as soon as they read the line
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "1"
    store = SqliteMetadataStore(PgTarget(url, "metadata"))
    try:
        rows = store._conn.execute("SELECT store, version FROM squall_schema ORDER BY store").fetchall()
        assert rows == [("iam", 1), ("metadata", 1), ("sqs", 1)]
    finally:
        store.close()


def test_concurrent_receivers_never_get_the_same_message(pg: PgServer) -> None:
    url = pg.database("skip")
    nodes = [QueueStore(PgTarget(url, "sqs")) for _ in range(4)]  # four connections: four nodes
    try:
        nodes[0].create_queue("work", {"VisibilityTimeout": "300"})
        sent = {nodes[i % 4].send("work", f"m{i}").message_id for i in range(200)}
        start = threading.Barrier(4)

        def drain(store: QueueStore) -> list[str]:
            start.wait()
            got: list[str] = []
            while batch := store.receive("work", 10):
                got += [m.message_id for m in batch]
            return got

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(drain, nodes))
        received = [m for got in results for m in got]
        assert len(received) == len(set(received)), "a message was handed to two receivers"
        assert set(received) == sent
        assert sum(1 for got in results if got) >= 2, "the receivers did not overlap at all"
    finally:
        for s in nodes:
            s.close()


def test_long_poll_on_one_node_wakes_on_a_send_through_another(pg: PgServer) -> None:
    url = pg.database("notify")
    a, b = QueueStore(PgTarget(url, "sqs")), QueueStore(PgTarget(url, "sqs"))
    heard = threading.Event()
    a.add_listener(lambda name: heard.set() if name == "inbox" else None)  # node a hears node b's NOTIFY
    waiter = QueueWaiter(a)
    try:
        a.create_queue("inbox", {})

        async def poll() -> list[Any]:
            task = asyncio.create_task(waiter.receive("inbox", 1, wait_seconds=60))
            await asyncio.sleep(0)  # the poll has looked at the store and is waiting
            await asyncio.to_thread(b.send, "inbox", "hello")
            return await asyncio.wait_for(task, 120)

        t0 = time.monotonic()
        (message,) = asyncio.run(poll())
        assert message.body == "hello"
        assert heard.wait(30), "node a never heard node b's NOTIFY"
        assert time.monotonic() - t0 < 60, "the long poll ran to its end instead of being woken by the send"
    finally:
        waiter.close()
        a.close()
        b.close()


def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _reset_hwm(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak RSS to the current RSS


@pytest.fixture(scope="module")
def server(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(
        tmp_path_factory.mktemp("pgserver") / "data", SQUALL_DATABASE_URL=pg.database("server")
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def _fifty_mb(path: Path) -> Path:
    with open(path, "wb") as f:
        for i in range(50):
            f.write(hashlib.sha256(str(i).encode()).digest() * (1 << 15))  # 1 MiB each, not all alike
    return path


def test_a_50mb_object_round_trips_through_the_server(server: SquallProcess, tmp_path: Path) -> None:
    """Multipart and single PUTs of 50 MB, read back whole and as a stream; the GET streams from the chunks (the
    server's peak RSS grows by far less than the object).  The PUT side of the HTTP API buffers the request body
    before the store sees it (squall.s3.api), so the store's own write is measured in the next test."""
    s3 = server.client("s3")
    s3.create_bucket(Bucket="big")
    src = _fifty_mb(tmp_path / "big.bin")
    s3.upload_file(str(src), "big", "blob.bin")  # multipart (8 MiB parts) from the file
    got = tmp_path / "got.bin"
    s3.download_file("big", "blob.bin", str(got))
    assert hashlib.md5(got.read_bytes()).digest() == hashlib.md5(src.read_bytes()).digest()
    with src.open("rb") as f:
        one_put = s3.put_object(Bucket="big", Key="one.bin", Body=f)
    assert server.proc is not None
    pid = server.proc.pid
    _reset_hwm(pid)
    before = _hwm_kib(pid)
    body = s3.get_object(Bucket="big", Key="one.bin")["Body"]
    md5 = hashlib.md5()
    while chunk := body.read(1 << 20):
        md5.update(chunk)
    assert f'"{md5.hexdigest()}"' == one_put["ETag"]
    grown_mib = (_hwm_kib(pid) - before) / 1024
    assert grown_mib < 25, f"the server's peak RSS grew by {grown_mib:.0f} MiB sending a 50 MB object"
    rows = s3.list_objects_v2(Bucket="big")["Contents"]
    assert sorted((o["Key"], o["Size"]) for o in rows) == [("blob.bin", 50 << 20), ("one.bin", 50 << 20)]


def test_the_store_streams_50mb_in_and_out_in_bounded_memory(pg: PgServer, tmp_path: Path) -> None:
    src = _fifty_mb(tmp_path / "big.bin")
    with ObjectStore(tmp_path / "objects", database=PgTarget(pg.database("stream"), "s3")) as store:
        store.create_bucket("big")
        tracemalloc.start()
        try:
            with src.open("rb") as f:
                meta = store.put_object("big", "k", f)
            _, put_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            md5 = hashlib.md5()
            body = store.get_object("big", "k")
            try:
                for chunk in body.chunks():
                    md5.update(chunk)
            finally:
                body.close()
            _, get_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert meta.size == 50 << 20 and meta.etag == f'"{md5.hexdigest()}"'
    assert md5.digest() == hashlib.md5(src.read_bytes()).digest()
    assert put_peak < 16 << 20, f"writing 50 MB held {put_peak >> 20} MiB at once"
    assert get_peak < 16 << 20, f"reading 50 MB held {get_peak >> 20} MiB at once"


def _error(e: ClientError) -> tuple[str, int]:
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def test_postgres_stopped_for_10_s_then_back(server: SquallProcess, pg: PgServer) -> None:
    s3, sqs, lam = server.client("s3"), server.client("sqs"), server.client("lambda")
    s3.create_bucket(Bucket="kept")
    queue = sqs.create_queue(QueueName="kept")["QueueUrl"]
    accepted_objects = []
    accepted_messages = []
    for i in range(5):
        s3.put_object(Bucket="kept", Key=f"k{i}", Body=f"v{i}".encode())
        accepted_objects.append(f"k{i}")
        accepted_messages.append(sqs.send_message(QueueUrl=queue, MessageBody=f"m{i}")["MessageId"])
    pg.stop()
    seen: dict[str, set[tuple[str, int]]] = {"s3": set(), "sqs": set(), "lambda": set()}
    stopped_at = time.monotonic()
    while time.monotonic() - stopped_at < 10:  # the outage: every service refuses clearly, none hangs
        for service, call in (
            ("s3", lambda: s3.put_object(Bucket="kept", Key="during", Body=b"x")),
            ("sqs", lambda: sqs.send_message(QueueUrl=queue, MessageBody="during")),
            ("lambda", lambda: lam.list_functions()),
        ):
            with pytest.raises(ClientError) as info:
                call()
            seen[service].add(_error(info.value))
        assert server.proc is not None and server.proc.poll() is None, "the server exited"
    assert seen == {
        "s3": {("ServiceUnavailable", 503)},
        "sqs": {("ServiceUnavailable", 503)},
        "lambda": {("ServiceException", 503)},
    }
    pg.start()
    assert lam.list_functions()["Functions"] == []  # back at the first request
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="kept")["Contents"]]
    assert keys == accepted_objects  # every accepted object, none of the refused ones
    got = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        got += [m["MessageId"] for m in batch]
    assert sorted(got) == sorted(accepted_messages)
    s3.put_object(Bucket="kept", Key="after", Body=b"y")
    assert s3.get_object(Bucket="kept", Key="after")["Body"].read() == b"y"
    assert json.loads(json.dumps(sqs.send_message(QueueUrl=queue, MessageBody="after")))["MessageId"]


def test_deployed_through_one_node_invoked_through_another(pg: PgServer, tmp_path: Path) -> None:
    """Two servers on one database: the second has never seen the package, fetches it from PostgreSQL and runs it;
    both see the same records."""
    url = pg.database("two")
    one = SquallProcess(tmp_path / "one" / "data", SQUALL_DATABASE_URL=url).start()
    try:
        two = SquallProcess(tmp_path / "two" / "data", SQUALL_DATABASE_URL=url).start()
        try:
            code = (
                "import os\n"
                "def handler(event, context):\n"
                "    leaked = [k for k, v in os.environ.items() if 'postgresql' in v or 'DATABASE' in k]\n"
                "    return {'got': event, 'leaked': leaked}\n"
            )
            create(one.client("lambda"), "hello", code)
            out = two.client("lambda").invoke(FunctionName="hello", Payload=b'{"n": 2}')
            # the function runs, and its environment holds nothing of the database's URL (it may carry a password)
            assert json.loads(out["Payload"].read()) == {"got": {"n": 2}, "leaked": []}
            assert not (tmp_path / "one" / "data" / "code" / "code").samefile(
                tmp_path / "two" / "data" / "code" / "code"
            )
            assert list((tmp_path / "two" / "data" / "code" / "code").iterdir()), "node two extracted nothing"
            assert one.client("lambda").get_function(FunctionName="hello")["Configuration"]["State"] == "Active"
        finally:
            two.stop()
    finally:
        one.stop()


def test_the_account_concurrency_lock_holds_across_nodes(pg: PgServer) -> None:
    """The reserved-concurrency check and its write (two store calls) run under one lock on every node."""
    url = pg.database("account")
    a, b = SqliteMetadataStore(PgTarget(url, "metadata")), SqliteMetadataStore(PgTarget(url, "metadata"))
    got = threading.Event()
    try:
        a.hold("account-concurrency")

        def take() -> None:
            b.hold("account-concurrency")
            got.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        deadline = time.monotonic() + 60
        while not a._conn.execute(  # node b's backend is waiting for the advisory lock node a holds
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
        ).fetchone():
            assert time.monotonic() < deadline, "node b never waited for the lock"
            assert not got.is_set(), "node b took a lock node a holds"
            time.sleep(0.02)
        assert not got.is_set()
        a.release("account-concurrency")
        assert got.wait(60), "node b did not get the lock once node a released it"
        b.release("account-concurrency")
        waiter.join(10)
    finally:
        a.close()
        b.close()


def test_a_connection_idle_through_a_restart_serves_the_next_transaction(pg: PgServer) -> None:
    """A store connection that sat idle while PostgreSQL restarted is stale: its next transaction reconnects at
    BEGIN, and its next plain read before running (nothing done yet in either case) instead of refusing that
    request with a 503."""
    url = pg.database("idle")
    conn, reader = PgConnection(url, "idle"), PgConnection(url, "idle")
    try:
        conn.begin(None)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("COMMIT")
        assert reader.execute("SELECT 1").fetchone() == (1,)  # a read outside a transaction (autocommit)
        pg.restart()  # the server closes every client connection; these notice at their next statement
        conn.begin(None)  # DatabaseUnavailable before: the first request on each idle connection failed once
        assert conn.execute("SELECT 2").fetchone() == (2,)
        conn.execute("COMMIT")
        assert reader.execute("SELECT 3").fetchone() == (3,)  # a read is retried as well: nothing was done
    finally:
        conn.close()
        reader.close()
