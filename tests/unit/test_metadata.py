"""Tests of the SQLite metadata store: functions, versions, aliases, configs, the durable queue, records, logs."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from squall.core.clock import FakeClock
from squall.core.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound, ServiceError
from squall.functions.store.invocations import RecordWriter
from squall.functions.store.metadata import MetadataStore, RevisionMismatch, SqliteMetadataStore, open_store
from squall.functions.store.records import InvocationRecord, NewEvent
from squall.functions.store.sqlite import MIGRATIONS
from tests.pg_helpers import backend, store_target

ARN = "arn:aws:lambda:us-east-1:000000000000:function"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "metadata.db"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[SqliteMetadataStore]:
    s = SqliteMetadataStore(store_target(db_path, "metadata"), clock=clock)  # SQUALL_TEST_BACKEND=postgres: on it
    yield s
    s.close()


def config(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": name,
        "FunctionArn": f"{ARN}:{name}",
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "CodeSize": 123,
        "CodeSha256": "abc",
        "Description": "",
        "Timeout": 3,
        "MemorySize": 128,
        "LastModified": "2024-01-01T00:00:00.000+0000",
        "Environment": {"Variables": {"A": "1"}},
        "EphemeralStorage": {"Size": 512},
        "State": "Active",
        **extra,
    }


def make(store: SqliteMetadataStore, name: str, **extra: Any) -> None:
    store.create_function(name, config(name, **extra), f"/code/{name}/latest", {"network": "host"})


def record(request_id: str, function: str = "f", start: float = 1000.0, **kw: Any) -> InvocationRecord:
    fields: dict[str, Any] = dict(
        request_id=request_id,
        function=function,
        version="$LATEST",
        trigger="api",
        start=start,
        duration_ms=10.0,
        billed_ms=10,
        init_ms=None,
        memory_mb=128,
        max_memory_mb=40,
        status="ok",
    )
    fields.update(kw)
    return InvocationRecord(**fields)


# -- schema -----------------------------------------------------------------------------------------------------


def test_schema_is_migrated_once_and_reopen_keeps_data(db_path: Path, clock: FakeClock) -> None:
    with SqliteMetadataStore(db_path, clock=clock) as s:
        assert s.schema_version() == len(MIGRATIONS)
        make(s, "f")
    with SqliteMetadataStore(db_path, clock=clock) as s:
        assert s.schema_version() == len(MIGRATIONS)
        assert s.get_function("f").config["Handler"] == "app.handler"
        mode = s._conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_refuses_a_newer_schema(db_path: Path) -> None:
    SqliteMetadataStore(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE schema_version SET version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(ServiceError, match="newer"):
        SqliteMetadataStore(db_path)


@pytest.mark.skipif(backend() == "postgres", reason="SQLite's catalogue (sqlite_master)")
def test_indexes_exist(store: SqliteMetadataStore) -> None:
    names = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"invocations_function_start", "invocations_request_id", "logs_request_id", "event_queue_due"} <= names


def test_open_store_is_durable_and_keeps_region_and_account(db_path: Path, clock: FakeClock) -> None:
    """What one opening writes through the interface, the next opening of the same file reads back; the region and
    account given to open_store are the ones the store works with."""
    first: MetadataStore = open_store(db_path, region="eu-west-1", account_id="123456789012", clock=clock)
    created = first.create_function("f", config("f"), "/code/f", {"network": "none"})
    first.close()
    again: MetadataStore = open_store(db_path, region="eu-west-1", account_id="123456789012", clock=clock)
    try:
        assert again.get_function("f") == created
        with pytest.raises(ResourceNotFound, match="arn:aws:lambda:eu-west-1:123456789012:function:nope"):
            again.get_function("nope")
    finally:
        again.close()


# -- functions --------------------------------------------------------------------------------------------------


def test_create_get_function(store: SqliteMetadataStore) -> None:
    created = store.create_function("f", config("f"), "/code/f", {"network": "none", "snapshot": True})
    assert created.version == "$LATEST"
    assert created.config["Version"] == "$LATEST"
    assert created.revision_id
    got = store.get_function("f")
    assert got == created
    assert store.get_function("f", "$LATEST") == created
    assert got.squall == {"network": "none", "snapshot": True}
    assert got.code_path == "/code/f"
    assert got.config["Environment"] == {"Variables": {"A": "1"}}


def test_create_fills_name_and_arn(store: SqliteMetadataStore) -> None:
    f = store.create_function("g", {"Handler": "x.y"}, "/code/g")
    assert f.config["FunctionName"] == "g"
    assert f.config["FunctionArn"] == f"{ARN}:g"


def test_returned_config_is_a_copy(store: SqliteMetadataStore) -> None:
    make(store, "f")
    store.get_function("f").config["Handler"] = "changed"
    assert store.get_function("f").config["Handler"] == "app.handler"


def test_create_existing_conflicts(store: SqliteMetadataStore) -> None:
    make(store, "f")
    with pytest.raises(ResourceConflict, match=r"^Function already exist: f$"):
        make(store, "f")


def test_get_missing_function(store: SqliteMetadataStore) -> None:
    with pytest.raises(ResourceNotFound) as err:
        store.get_function("nope")
    assert err.value.message == f"Function not found: {ARN}:nope"
    with pytest.raises(ResourceNotFound, match=f"Function not found: {ARN}:nope:3"):
        store.get_function("nope", "3")


def test_list_functions_pagination(store: SqliteMetadataStore) -> None:
    for name in ["delta", "alpha", "echo", "charlie", "bravo"]:
        make(store, name)
    seen: list[str] = []
    marker: str | None = None
    pages = 0
    while True:
        items, marker = store.list_functions(marker, max_items=2)
        pages += 1
        seen += [f.name for f in items]
        if marker is None:
            break
    assert seen == ["alpha", "bravo", "charlie", "delta", "echo"]
    assert pages == 3
    items, marker = store.list_functions(max_items=5)
    assert len(items) == 5 and marker is None
    assert store.list_functions(max_items=50) == (items, None)
    with pytest.raises(InvalidParameterValue):
        store.list_functions(max_items=0)


def test_list_functions_empty(store: SqliteMetadataStore) -> None:
    assert store.list_functions() == ([], None)


def test_update_function_cas(store: SqliteMetadataStore) -> None:
    make(store, "f")
    first = store.get_function("f")
    updated = store.update_function("f", {**first.config, "MemorySize": 512}, expected_revision=first.revision_id)
    assert updated.config["MemorySize"] == 512
    assert updated.revision_id != first.revision_id
    assert updated.code_path == first.code_path and updated.squall == first.squall
    # a stale revision id loses
    with pytest.raises(ResourceConflict) as err:
        store.update_function("f", {**first.config, "MemorySize": 256}, expected_revision=first.revision_id)
    assert isinstance(err.value, RevisionMismatch)
    assert err.value.message.startswith("The Revision Id provided does not match the latest Revision Id")
    assert store.get_function("f").config["MemorySize"] == 512
    # without an expected revision, the update is unconditional; code path and extras can change
    last = store.update_function("f", updated.config, code_path="/code/f/v2", squall={"network": "none"})
    assert last.code_path == "/code/f/v2" and last.squall == {"network": "none"}
    assert store.get_function("f") == last


def test_update_missing_function(store: SqliteMetadataStore) -> None:
    with pytest.raises(ResourceNotFound):
        store.update_function("nope", {})


def test_concurrent_cas_only_one_wins(store: SqliteMetadataStore) -> None:
    make(store, "f")
    rev = store.get_function("f").revision_id
    results: list[str] = []

    def attempt(i: int) -> None:
        try:
            store.update_function("f", config("f", Description=str(i)), expected_revision=rev)
            results.append("ok")
        except ResourceConflict:
            results.append("conflict")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["ok"]


# -- versions ---------------------------------------------------------------------------------------------------


def test_publish_versions_numbering_never_reused(store: SqliteMetadataStore) -> None:
    make(store, "f")
    v1 = store.publish_version("f")
    v2 = store.publish_version("f", {**store.get_function("f").config, "Description": "two"})
    assert (v1.version, v2.version) == ("1", "2")
    assert v1.config["Version"] == "1"
    assert v1.config["FunctionArn"] == f"{ARN}:f:1"
    assert v2.config["Description"] == "two"
    assert v1.code_path == "/code/f/latest"
    store.delete_version("f", "2")
    with pytest.raises(ResourceNotFound):
        store.get_version("f", "2")
    assert store.publish_version("f").version == "3"
    store.delete_version("f", "3")
    store.delete_version("f", "1")
    assert store.publish_version("f").version == "4"
    # a function deleted and created again starts over, like Lambda
    store.delete_function("f")
    make(store, "f")
    assert store.publish_version("f").version == "1"


def test_version_is_a_snapshot(store: SqliteMetadataStore) -> None:
    make(store, "f")
    v1 = store.publish_version("f", code_path="/code/f/sha-1")
    store.update_function("f", config("f", MemorySize=1024), code_path="/code/f/sha-2")
    got = store.get_version("f", "1")
    assert got.config["MemorySize"] == 128
    assert got.code_path == "/code/f/sha-1"
    assert got == v1
    assert store.get_function("f", "1") == v1
    assert store.get_version("f", "$LATEST").config["MemorySize"] == 1024


def test_publish_version_cas(store: SqliteMetadataStore) -> None:
    make(store, "f")
    with pytest.raises(ResourceConflict):
        store.publish_version("f", expected_revision="stale")
    rev = store.get_function("f").revision_id
    assert store.publish_version("f", expected_revision=rev).version == "1"
    with pytest.raises(ResourceNotFound):
        store.publish_version("nope")


def test_list_versions_latest_first_paginated(store: SqliteMetadataStore) -> None:
    make(store, "f")
    for _ in range(4):
        store.publish_version("f")
    store.delete_version("f", "2")
    seen: list[str] = []
    marker: str | None = None
    while True:
        items, marker = store.list_versions("f", marker, max_items=1)
        seen += [v.version for v in items]
        if marker is None:
            break
    assert seen == ["$LATEST", "1", "3", "4"]
    items, marker = store.list_versions("f", max_items=3)
    assert [v.version for v in items] == ["$LATEST", "1", "3"] and marker == "3"
    items, marker = store.list_versions("f", marker, max_items=3)
    assert [v.version for v in items] == ["4"] and marker is None
    with pytest.raises(InvalidParameterValue):
        store.list_versions("f", "bogus")
    with pytest.raises(ResourceNotFound):
        store.list_versions("nope")


def test_delete_version_rules(store: SqliteMetadataStore) -> None:
    make(store, "f")
    store.publish_version("f")
    store.publish_version("f")
    store.create_alias("f", "live", "1", routing_config={"AdditionalVersionWeights": {"2": 0.1}})
    with pytest.raises(ResourceConflict, match="live"):
        store.delete_version("f", "1")
    with pytest.raises(ResourceConflict, match="live"):
        store.delete_version("f", "2")  # referenced by the routing weights
    with pytest.raises(InvalidParameterValue):
        store.delete_version("f", "$LATEST")
    with pytest.raises(ResourceNotFound):
        store.delete_version("f", "9")
    store.update_alias("f", "live", routing_config={})
    store.delete_version("f", "2")


# -- aliases ----------------------------------------------------------------------------------------------------


def test_alias_routing_round_trip(store: SqliteMetadataStore) -> None:
    make(store, "f")
    store.publish_version("f")
    store.publish_version("f")
    routing = {"AdditionalVersionWeights": {"2": 0.1}}
    created = store.create_alias("f", "live", "1", description="prod", routing_config=routing)
    assert created == {
        "AliasArn": f"{ARN}:f:live",
        "Name": "live",
        "FunctionVersion": "1",
        "Description": "prod",
        "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1}},
        "RevisionId": created["RevisionId"],
    }
    assert store.get_alias("f", "live") == created
    # an alias qualifier resolves to its primary version
    assert store.get_function("f", "live").version == "1"
    # shift: all traffic to 2, routing removed
    updated = store.update_alias(
        "f", "live", function_version="2", routing_config={}, expected_revision=created["RevisionId"]
    )
    assert updated["FunctionVersion"] == "2" and "RoutingConfig" not in updated
    assert updated["Description"] == "prod"
    assert updated["RevisionId"] != created["RevisionId"]
    with pytest.raises(ResourceConflict):
        store.update_alias("f", "live", description="x", expected_revision=created["RevisionId"])
    assert store.get_alias("f", "live") == updated


def test_alias_errors(store: SqliteMetadataStore) -> None:
    make(store, "f")
    store.publish_version("f")
    store.create_alias("f", "live", "1")
    with pytest.raises(ResourceConflict, match=f"Alias already exists: {ARN}:f:live"):
        store.create_alias("f", "live", "1")
    with pytest.raises(ResourceNotFound, match=f"Cannot find alias arn: {ARN}:f:nope"):
        store.get_alias("f", "nope")
    with pytest.raises(ResourceNotFound, match="Function not found"):
        store.get_alias("g", "live")
    with pytest.raises(ResourceNotFound, match=f"{ARN}:f:7"):
        store.create_alias("f", "other", "7")
    with pytest.raises(ResourceNotFound):
        store.create_alias("f", "other", "1", routing_config={"AdditionalVersionWeights": {"7": 0.5}})
    with pytest.raises(ResourceNotFound):
        store.update_alias("f", "live", function_version="7")
    assert store.get_alias("f", "live")["FunctionVersion"] == "1"
    with pytest.raises(ResourceNotFound):
        store.get_function("f", "nope")
    assert store.create_alias("f", "dev", "$LATEST")["FunctionVersion"] == "$LATEST"
    assert store.get_function("f", "dev").version == "$LATEST"


def test_list_and_delete_aliases(store: SqliteMetadataStore) -> None:
    make(store, "f")
    store.publish_version("f")
    store.publish_version("f")
    for name, version in [("c", "1"), ("a", "2"), ("b", "1"), ("d", "1")]:
        store.create_alias("f", name, version)
    items, marker = store.list_aliases("f", max_items=3)
    assert [a["Name"] for a in items] == ["a", "b", "c"] and marker == "c"
    items, marker = store.list_aliases("f", marker=marker, max_items=3)
    assert [a["Name"] for a in items] == ["d"] and marker is None
    items, marker = store.list_aliases("f", function_version="1", max_items=2)
    assert [a["Name"] for a in items] == ["b", "c"] and marker == "c"
    items, marker = store.list_aliases("f", function_version="1", marker=marker, max_items=2)
    assert [a["Name"] for a in items] == ["d"] and marker is None
    assert store.delete_alias("f", "a") is True
    assert store.delete_alias("f", "a") is False
    assert [a["Name"] for a in store.list_aliases("f")[0]] == ["b", "c", "d"]


# -- concurrency and per-qualifier configs ----------------------------------------------------------------------


def test_function_concurrency(store: SqliteMetadataStore) -> None:
    make(store, "f")
    make(store, "g")
    assert store.get_function_concurrency("f") is None
    assert store.put_function_concurrency("f", 10) == 10
    store.put_function_concurrency("f", 20)
    store.put_function_concurrency("g", 5)
    assert store.get_function_concurrency("f") == 20
    assert store.total_reserved_concurrency() == 25
    assert store.total_reserved_concurrency(exclude="f") == 5
    store.delete_function_concurrency("f")
    assert store.get_function_concurrency("f") is None
    with pytest.raises(ResourceNotFound):
        store.put_function_concurrency("nope", 1)


def test_provisioned_concurrency(store: SqliteMetadataStore) -> None:
    make(store, "f")
    make(store, "g")
    store.publish_version("f")
    store.create_alias("f", "live", "1")
    store.publish_version("g")
    pc = {
        "RequestedProvisionedConcurrentExecutions": 5,
        "AllocatedProvisionedConcurrentExecutions": 0,
        "AvailableProvisionedConcurrentExecutions": 0,
        "Status": "IN_PROGRESS",
        "LastModified": "2024-01-01T00:00:00+0000",
    }
    assert store.get_provisioned_concurrency("f", "live") is None
    store.put_provisioned_concurrency("f", "live", pc)
    store.put_provisioned_concurrency("f", "1", pc)
    store.put_provisioned_concurrency("g", "1", pc)
    with pytest.raises(ResourceNotFound):
        store.put_provisioned_concurrency("f", "9", pc)
    ready = store.update_provisioned_concurrency(
        "f", "live", {"AllocatedProvisionedConcurrentExecutions": 5, "Status": "READY"}
    )
    assert ready is not None and ready["Status"] == "READY"
    assert ready["RequestedProvisionedConcurrentExecutions"] == 5
    assert store.get_provisioned_concurrency("f", "live") == ready
    assert store.update_provisioned_concurrency("f", "other", {"Status": "READY"}) is None
    items, marker = store.list_provisioned_concurrency("f")
    assert [(c.function, c.qualifier) for c in items] == [("f", "1"), ("f", "live")] and marker is None
    # across all functions, paginated
    seen = []
    marker = None
    while True:
        items, marker = store.list_provisioned_concurrency(None, marker, max_items=2)
        seen += [(c.function, c.qualifier) for c in items]
        if marker is None:
            break
    assert seen == [("f", "1"), ("f", "live"), ("g", "1")]
    assert store.delete_provisioned_concurrency("f", "1") is True
    assert store.delete_provisioned_concurrency("f", "1") is False
    # deleting an alias drops its config
    store.delete_alias("f", "live")
    assert store.get_provisioned_concurrency("f", "live") is None


def test_event_invoke_configs(store: SqliteMetadataStore) -> None:
    make(store, "f")
    store.publish_version("f")
    eic = {
        "FunctionArn": f"{ARN}:f:$LATEST",
        "MaximumRetryAttempts": 1,
        "MaximumEventAgeInSeconds": 600,
        "DestinationConfig": {"OnSuccess": {"Destination": "q1"}, "OnFailure": {"Destination": "q2"}},
        "LastModified": 1700000000.0,
    }
    assert store.get_event_invoke_config("f", "$LATEST") is None
    store.put_event_invoke_config("f", "$LATEST", eic)
    store.put_event_invoke_config("f", "1", {**eic, "MaximumRetryAttempts": 0})
    assert store.get_event_invoke_config("f", "$LATEST") == eic
    items, marker = store.list_event_invoke_configs("f", max_items=1)
    assert [c.qualifier for c in items] == ["$LATEST"] and marker == "$LATEST"
    items, marker = store.list_event_invoke_configs("f", marker, max_items=1)
    assert [c.qualifier for c in items] == ["1"] and marker is None
    assert items[0].config["MaximumRetryAttempts"] == 0
    # deleting a version drops its config
    store.delete_version("f", "1")
    assert store.get_event_invoke_config("f", "1") is None
    assert store.delete_event_invoke_config("f", "$LATEST") is True
    assert store.get_event_invoke_config("f", "$LATEST") is None
    with pytest.raises(ResourceNotFound):
        store.get_event_invoke_config("nope", "$LATEST")


def test_delete_function_cascades_but_keeps_records(store: SqliteMetadataStore, clock: FakeClock) -> None:
    make(store, "f")
    make(store, "g")
    store.publish_version("f")
    store.create_alias("f", "live", "1")
    store.put_function_concurrency("f", 3)
    store.put_provisioned_concurrency("f", "live", {"RequestedProvisionedConcurrentExecutions": 1})
    store.put_event_invoke_config("f", "$LATEST", {"MaximumRetryAttempts": 0})
    store.enqueue({"function": "f", "payload": b"{}", "request_id": "r1"})
    store.enqueue({"function": "g", "payload": b"{}", "request_id": "r2"})
    writer = store.record_writer()
    writer.add(record("r0", "f"))
    writer.add_log("r0", "f", 1000.0, "hello")
    writer.flush()

    store.delete_function("f")

    with pytest.raises(ResourceNotFound):
        store.get_function("f")
    with pytest.raises(ResourceNotFound):
        store.delete_function("f")
    for table in ("versions", "aliases", "provisioned_concurrency", "event_invoke_configs", "event_queue"):
        assert store._conn.execute(f"SELECT COUNT(*) FROM {table} WHERE function = 'f'").fetchone()[0] == 0
    assert store.total_reserved_concurrency() == 0
    assert store.depth() == 1 and store.depth("g") == 1
    assert store.get_invocation("r0") is not None
    assert [line.text for line in store.get_logs("r0")] == ["hello"]
    # a new function of the same name has none of the old settings
    make(store, "f")
    assert store.get_function_concurrency("f") is None
    assert store.list_aliases("f") == ([], None)


# -- event queue ------------------------------------------------------------------------------------------------


def event(request_id: str, **kw: Any) -> NewEvent:
    ev: NewEvent = {"function": "f", "payload": b'{"k": 1}', "request_id": request_id}
    ev.update(kw)  # type: ignore[typeddict-item]
    return ev


def test_enqueue_defaults(store: SqliteMetadataStore, clock: FakeClock) -> None:
    event_id = store.enqueue(event("r1", extra={"trace": "x"}))
    got = store.get_event(event_id)
    assert got is not None
    assert got.function == "f" and got.qualifier == "$LATEST" and got.payload == b'{"k": 1}'
    assert got.enqueued_at == clock.now() == got.next_attempt_at
    assert got.attempt == 0 and got.source == "lambda-invoke" and got.extra == {"trace": "x"}
    assert got.leased_until is None
    ids = store.enqueue_many([event("r2", source="s3", qualifier="live"), event("r3", id="fixed")])
    assert ids[1] == "fixed" and store.depth() == 3
    s3 = store.get_event(ids[0])
    assert s3 is not None and s3.source == "s3" and s3.qualifier == "live"


def test_lease_ack(store: SqliteMetadataStore, clock: FakeClock) -> None:
    now = clock.now()
    a = store.enqueue(event("a", enqueued_at=now - 2))
    b = store.enqueue(event("b", enqueued_at=now - 1))
    c = store.enqueue(event("c", next_attempt_at=now + 60))  # not due yet
    leased = store.lease(now, limit=10, lease_s=30)
    assert [e.id for e in leased] == [a, b]
    assert all(e.leased_until == now + 30 for e in leased)
    assert store.lease(now, limit=10, lease_s=30) == []  # leased events are hidden
    assert store.depth() == 3
    assert store.oldest_age(now) == pytest.approx(2)
    assert store.ack(a) is True
    assert store.ack(a) is False
    assert store.oldest_age(now) == pytest.approx(1)
    clock.advance(60)
    # b's lease expired and c became due: both are handed out again, oldest due first
    assert [e.id for e in store.lease(clock.now(), limit=10, lease_s=30)] == [b, c]


def test_ack_many_deletes_in_one_go_and_counts_what_was_there(store: SqliteMetadataStore, clock: FakeClock) -> None:
    ids = [store.enqueue(event(f"m{i}", enqueued_at=clock.now())) for i in range(4)]
    assert store.ack_many([ids[0], ids[2], "no-such-event"]) == 2
    assert store.depth() == 2
    assert store.ack_many([ids[0]]) == 0
    assert {e.id for e in store.lease(clock.now(), limit=10, lease_s=30)} == {ids[1], ids[3]}


def test_enqueue_leased_hands_out_events_already_leased(store: SqliteMetadataStore, clock: FakeClock) -> None:
    now = clock.now()
    [ev] = store.enqueue_leased([event("direct", extra={"trace_id": "t"})], lease_s=30)
    assert (ev.request_id, ev.function, ev.attempt, ev.extra, ev.leased_until) == (
        "direct",
        "f",
        0,
        {"trace_id": "t"},
        now + 30,
    )
    assert store.get_event(ev.id) == ev
    assert store.lease(now, limit=10, lease_s=30) == []  # it is the caller's until the lease ends
    assert store.release_leases() == 1  # a restart makes it due at once
    assert [e.id for e in store.lease(now, limit=10, lease_s=30)] == [ev.id]


def test_lease_limit(store: SqliteMetadataStore, clock: FakeClock) -> None:
    for i in range(5):
        store.enqueue(event(f"r{i}", enqueued_at=clock.now() + i * 0.001, next_attempt_at=clock.now()))
    first = store.lease(clock.now(), limit=2, lease_s=30)
    second = store.lease(clock.now(), limit=10, lease_s=30)
    assert len(first) == 2 and len(second) == 3
    assert {e.id for e in first}.isdisjoint(e.id for e in second)


def test_crash_loses_nothing(db_path: Path, clock: FakeClock) -> None:
    s = SqliteMetadataStore(db_path, clock=clock)
    ids = [s.enqueue(event(f"r{i}")) for i in range(3)]
    leased = s.lease(clock.now(), limit=2, lease_s=30)
    assert len(leased) == 2
    # "crash": the process dies without acking and without closing cleanly
    del s
    reopened = SqliteMetadataStore(db_path, clock=clock)
    assert reopened.depth() == 3
    # the un-leased event is due at once; the leased ones only once their lease expires
    assert [e.id for e in reopened.lease(clock.now(), 10, 30)] == [ids[2]]
    reopened.ack(ids[2])
    clock.advance(29)
    assert reopened.lease(clock.now(), 10, 30) == []
    clock.advance(1)
    again = reopened.lease(clock.now(), 10, 30)
    assert sorted(e.id for e in again) == sorted(e.id for e in leased)
    assert all(e.attempt == 0 for e in again)
    reopened.close()


def test_retry_scheduling(store: SqliteMetadataStore, clock: FakeClock) -> None:
    event_id = store.enqueue(event("r1"))
    (ev,) = store.lease(clock.now(), 10, 300)
    assert store.retry(ev.id, clock.now() + 60, attempt=1, last_error="Unhandled") is True
    assert store.lease(clock.now(), 10, 300) == []
    clock.advance(59)
    assert store.lease(clock.now(), 10, 300) == []
    clock.advance(1)
    (again,) = store.lease(clock.now(), 10, 300)
    assert again.id == event_id and again.attempt == 1 and again.last_error == "Unhandled"
    assert again.next_attempt_at == clock.now()
    assert again.request_id == "r1"  # retries keep the request id
    # a retry earlier than the lease end makes the event due at the retry time
    assert store.retry(event_id, clock.now(), attempt=2) is True
    (third,) = store.lease(clock.now(), 10, 300)
    assert third.attempt == 2 and third.last_error is None
    store.ack(event_id)
    assert store.retry(event_id, clock.now(), attempt=3) is False
    assert store.depth() == 0 and store.oldest_age(clock.now()) == 0.0


@pytest.mark.skipif(backend() == "postgres", reason="SQLite's synchronous pragma")
def test_enqueue_is_fsynced(store: SqliteMetadataStore) -> None:
    """Enqueue commits with synchronous=FULL, and the connection goes back to NORMAL afterwards."""
    seen: list[int] = []
    original = store._tx

    def spy(durable: bool = True) -> Any:
        cm = original(durable)

        class Wrapper:
            def __enter__(self) -> sqlite3.Connection:
                conn = cm.__enter__()
                seen.append(conn.execute("PRAGMA synchronous").fetchone()[0])
                return conn

            def __exit__(self, *exc: Any) -> Any:
                return cm.__exit__(*exc)

        return Wrapper()

    store._tx = spy  # type: ignore[method-assign,assignment]
    store.enqueue(event("r1"))
    store.lease(0.0, 1, 1)
    assert seen == [2, 1]  # FULL for enqueue, NORMAL for lease
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1


# -- records ----------------------------------------------------------------------------------------------------


def test_records_invisible_until_flush(store: SqliteMetadataStore) -> None:
    writer = store.record_writer()
    writer.add(record("r1"))
    writer.add_log("r1", "f", 1000.0, "START RequestId: r1")
    writer.add_log("r1", "f", 1000.1, "END RequestId: r1")
    assert writer.pending() == 3
    assert store.get_invocation("r1") is None
    assert store.get_logs("r1") == []
    assert writer.flush() == 3
    assert writer.pending() == 0
    assert store.get_invocation("r1") == record("r1")
    assert [line.text for line in store.get_logs("r1")] == ["START RequestId: r1", "END RequestId: r1"]
    assert writer.flush() == 0


def test_failed_flush_keeps_the_batch(store: SqliteMetadataStore) -> None:
    class Flaky:
        fail = True

        def write_batch(self, records: Any, logs: Any) -> None:
            if self.fail:
                raise sqlite3.OperationalError("disk I/O error")
            store.write_batch(records, logs)

    sink = Flaky()
    writer = RecordWriter(sink)
    writer.add(record("r1"))
    with pytest.raises(sqlite3.OperationalError):
        writer.flush()
    writer.add(record("r2"))
    assert writer.pending() == 2
    sink.fail = False
    assert writer.flush() == 2
    assert store.get_invocation("r1") is not None and store.get_invocation("r2") is not None


def test_writer_drops_oldest_past_max_pending(store: SqliteMetadataStore) -> None:
    writer = store.record_writer(max_pending=3)
    for i in range(5):
        writer.add(record(f"r{i}"))
    assert writer.dropped == 2 and writer.pending() == 3
    writer.flush()
    assert store.get_invocation("r0") is None and store.get_invocation("r4") is not None


def test_records_round_trip_all_fields(store: SqliteMetadataStore) -> None:
    rec = record(
        "r1",
        version="3",
        trigger="s3",
        init_ms=250.5,
        status="error",
        error_type="Runtime.ExitError",
        cold=True,
        provisioned=True,
    )
    store.write_batch([rec], [])
    assert store.get_invocation("r1") == rec


def test_get_invocation_returns_latest_attempt(store: SqliteMetadataStore) -> None:
    store.write_batch([record("r1", status="error"), record("r1", start=1060.0)], [])
    got = store.get_invocation("r1")
    assert got is not None and got.status == "ok"


def test_list_invocations_filters_and_cursor(store: SqliteMetadataStore) -> None:
    recs = [record(f"r{i}", "f" if i % 2 else "g", start=1000.0 + i // 2) for i in range(10)]
    recs.append(record("e1", "f", start=1003.0, status="error"))
    store.write_batch(recs, [])
    page, cursor = store.list_invocations(limit=4)
    assert [r.start for r in page] == sorted((r.start for r in page), reverse=True)
    assert [r.request_id for r in page] == ["r9", "r8", "e1", "r7"]  # same start: newest written first
    rest: list[str] = []
    while cursor is not None:
        more, cursor = store.list_invocations(limit=4, before_cursor=cursor)
        rest += [r.request_id for r in more]
    assert len(rest) == 7 and not set(rest) & {"r9", "r8", "e1", "r7"}
    f_only, _ = store.list_invocations(function="f", limit=100)
    assert {r.function for r in f_only} == {"f"} and len(f_only) == 6
    window, _ = store.list_invocations(since=1001.0, until=1003.0, limit=100)
    assert {r.start for r in window} == {1001.0, 1002.0}
    errors, cursor = store.list_invocations(function="f", status="error")
    assert [r.request_id for r in errors] == ["e1"] and cursor is None
    with pytest.raises(InvalidParameterValue):
        store.list_invocations(before_cursor="garbage")


def test_usage_gb_seconds(store: SqliteMetadataStore) -> None:
    recs = [record(f"a{i}", "a", start=1000.0, billed_ms=100, memory_mb=512, duration_ms=float(i + 1))
            for i in range(1000)]  # fmt: skip
    recs += [
        record("b1", "b", start=1000.0, billed_ms=1000, memory_mb=1024, cold=True, duration_ms=900.0),
        record("b2", "b", start=1000.0, billed_ms=50, memory_mb=1024, status="timeout", duration_ms=50.0),
        record("b3", "b", start=1000.0, billed_ms=0, memory_mb=1024, status="throttled", duration_ms=0.0),
        record("b4", "b", start=1000.0, billed_ms=10, memory_mb=1024, status="error", duration_ms=9.0),
        record("late", "b", start=2000.0, billed_ms=10_000, memory_mb=1024),
    ]
    store.write_batch(recs, [])
    rows = {u.function: u for u in store.usage(since=0.0, until=2000.0)}
    a, b = rows["a"], rows["b"]
    assert a.requests == 1000 and a.errors == 0 and a.throttles == 0 and a.cold_starts == 0
    assert a.gb_seconds == pytest.approx(50.0)
    assert a.billed_ms == 100_000
    assert (a.p50_ms, a.p99_ms) == (500.0, 990.0)
    assert b.requests == 3 and b.errors == 2 and b.throttles == 1 and b.cold_starts == 1
    assert b.gb_seconds == pytest.approx(1.06)
    assert (b.p50_ms, b.p99_ms) == (50.0, 900.0)
    assert store.usage(since=3000.0, until=4000.0) == []


def test_usage_all_throttled(store: SqliteMetadataStore) -> None:
    store.write_batch([record("t", status="throttled", billed_ms=0)], [])
    (row,) = store.usage(0.0, 5000.0)
    assert row.requests == 0 and row.throttles == 1 and row.p50_ms == 0.0 and row.gb_seconds == 0.0


# -- logs -------------------------------------------------------------------------------------------------------


def test_tail_logs_follow(store: SqliteMetadataStore) -> None:
    writer = store.record_writer()
    for i in range(5):
        writer.add_log(f"r{i}", "f" if i != 2 else "g", 1000.0 + i, f"line {i}")
    writer.flush()
    first = store.tail_logs("f", since_id=0, limit=2)
    assert [line.text for line in first] == ["line 0", "line 1"]
    assert first[0].request_id == "r0" and first[0].ts == 1000.0 and first[0].function == "f"
    more = store.tail_logs("f", since_id=first[-1].id, limit=100)
    assert [line.text for line in more] == ["line 3", "line 4"]
    assert store.tail_logs("f", since_id=more[-1].id) == []
    writer.add_log("r5", "f", 1005.0, "line 5")
    writer.flush()
    assert [line.text for line in store.tail_logs("f", since_id=more[-1].id)] == ["line 5"]
    assert len(store.tail_logs(None, since_id=0)) == 6


def test_search_logs(store: SqliteMetadataStore) -> None:
    store.write_batch(
        [],
        [
            ("r1", "f", 1000.0, "ERROR boom"),
            ("r2", "f", 1001.0, "all good"),
            ("r3", "f", 1002.0, "error: 100% done_ok"),
            ("r4", "g", 1003.0, "ERROR elsewhere"),
        ],
    )
    assert [line.request_id for line in store.search_logs("f", "error")] == ["r3", "r1"]
    assert [line.request_id for line in store.search_logs(None, "error", since=1001.0)] == ["r4", "r3"]
    assert [line.request_id for line in store.search_logs("f", "error", until=1002.0)] == ["r1"]
    assert [line.request_id for line in store.search_logs("f", "100%")] == ["r3"]
    assert store.search_logs("f", "0%d") == []  # % and _ are literal
    assert store.search_logs("f", "1_0") == []
    assert [line.request_id for line in store.search_logs("f", "e_ok")] == ["r3"]
    assert len(store.search_logs(None, "e", limit=2)) == 2


# -- pruning ----------------------------------------------------------------------------------------------------


def test_prune_in_batches(store: SqliteMetadataStore) -> None:
    recs = [record(f"r{i}", start=1000.0 + i) for i in range(25)]
    logs = [(f"r{i}", "f", 1000.0 + i, f"line {i}") for i in range(25)]
    store.write_batch(recs, logs)
    # bounded: at most 2 batches of 4 rows
    assert store.prune(before=1010.0, batch_size=4, max_batches=2) == 8
    assert store.get_invocation("r7") is None and store.get_invocation("r8") is not None
    assert store.prune(before=1010.0, batch_size=4) == 2 + 10
    assert store.get_invocation("r9") is None and store.get_invocation("r10") is not None
    assert [line.request_id for line in store.tail_logs("f", 0, 1)] == ["r10"]
    assert store.prune(before=1010.0, batch_size=4) == 0
    remaining, _ = store.list_invocations(limit=100)
    assert len(remaining) == 15


def test_log_ids_keep_growing_after_prune(store: SqliteMetadataStore) -> None:
    store.write_batch([], [("r1", "f", 1.0, "a"), ("r2", "f", 2.0, "b")])
    last = store.tail_logs("f", 0)[-1].id
    store.prune(before=10.0)
    store.write_batch([], [("r3", "f", 20.0, "c")])
    (line,) = store.tail_logs("f", since_id=last)
    assert line.text == "c" and line.id > last
