"""Table tests of the scheduler's pure decisions: time is a parameter (FakeClock), nothing sleeps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from squall.core.clock import FakeClock
from squall.core.errors import InvalidParameterValue, TooManyRequests
from squall.scheduler import (
    Decision,
    Evict,
    InstanceState,
    InstanceView,
    ProvisionPlan,
    SchedulerState,
    Start,
    UseIdle,
    Wait,
    acquire,
    concurrency,
    make_room,
    memory_used_mb,
    next_attempt,
    next_throttled_attempt,
    parse_meminfo_total_mb,
    pick_version,
    provision,
    reap,
    reap_zygotes,
    throttle_error,
    unreserved_in_use,
    unreserved_pool,
    validate_event_invoke_config,
    validate_reserved_concurrency,
    validate_routing,
)

T0 = FakeClock().monotonic()


def inst(
    id: str,
    fn: str = "f",
    ver: str = "1",
    state: InstanceState = "idle",
    mem: int = 128,
    last: float = 0.0,
    prov: bool = False,
) -> InstanceView:
    return InstanceView(id, fn, ver, state, mem, T0 + last, prov, T0)


def st(
    *instances: InstanceView,
    reserved: dict[str, int] | None = None,
    account: int = 1000,
    unreserved_min: int = 100,
    budget: int = 8192,
) -> SchedulerState:
    return SchedulerState(tuple(instances), reserved or {}, account, unreserved_min, budget)


# ---------------------------------------------------------------------------------------------- acquire

ACQUIRE_CASES: list[tuple[str, SchedulerState, tuple[str, str, int], Decision]] = [
    ("empty node starts", st(), ("f", "1", 128), Start()),
    (
        "MRU idle instance first",
        st(inst("old", last=10), inst("new", last=20), inst("mid", last=15)),
        ("f", "1", 128),
        UseIdle("new"),
    ),
    (
        "MRU tie broken by id",
        st(inst("b", last=10), inst("a", last=10)),
        ("f", "1", 128),
        UseIdle("a"),
    ),
    (
        "provisioned idle preferred over a fresher on-demand one",
        st(inst("od", last=50), inst("pc", last=1, prov=True)),
        ("f", "1", 128),
        UseIdle("pc"),
    ),
    (
        "busy, starting and stopping instances are not used",
        st(inst("b", state="busy"), inst("s", state="starting"), inst("x", state="stopping")),
        ("f", "1", 128),
        Start(),
    ),
    ("other version's idle instance is not used", st(inst("v2", ver="2")), ("f", "1", 128), Start()),
    ("other function's idle instance is not used", st(inst("g1", fn="g")), ("f", "1", 128), Start()),
    (
        "reserved limit reached",
        st(inst("a", state="busy"), inst("b", state="busy"), reserved={"f": 2}),
        ("f", "1", 128),
        Wait("reserved-concurrency"),
    ),
    (
        "reserved concurrency is shared by all versions; starting counts",
        st(inst("a", ver="1", state="busy"), inst("b", ver="2", state="starting"), reserved={"f": 2}),
        ("f", "1", 128),
        Wait("reserved-concurrency"),
    ),
    (
        "an idle instance does not bypass the reserved limit",
        st(inst("a", state="busy"), inst("b", state="busy"), inst("c"), reserved={"f": 2}),
        ("f", "1", 128),
        Wait("reserved-concurrency"),
    ),
    ("reserved 0 throttles everything", st(reserved={"f": 0}), ("f", "1", 128), Wait("reserved-concurrency")),
    (
        "under the reserved limit: idle used",
        st(inst("a", state="busy"), inst("b"), reserved={"f": 2}),
        ("f", "1", 128),
        UseIdle("b"),
    ),
    (
        "unreserved pool (account 10 - reserved 5) full",
        st(*(inst(f"h{i}", fn="h", state="busy") for i in range(5)), reserved={"g": 5}, account=10, unreserved_min=0),
        ("f", "1", 128),
        Wait("account-concurrency"),
    ),
    (
        "a reserved function draws from its reservation when the unreserved pool is full",
        st(
            *(inst(f"h{i}", fn="h", state="busy") for i in range(5)),
            reserved={"f": 3, "g": 2},
            account=10,
            unreserved_min=0,
        ),
        ("f", "1", 128),
        Start(),
    ),
    (
        "busy reserved instances do not use the unreserved pool",
        st(
            *(inst(f"g{i}", fn="g", state="busy") for i in range(5)),
            *(inst(f"h{i}", fn="h", state="busy") for i in range(4)),
            reserved={"g": 5},
            account=10,
            unreserved_min=0,
        ),
        ("f", "1", 128),
        Start(),
    ),
    (
        "idle instances do not count as concurrency",
        st(*(inst(f"h{i}", fn="h") for i in range(5)), account=2, unreserved_min=0),
        ("f", "1", 128),
        Start(),
    ),
    (
        "memory full: evict the least recently used idle instance of another function",
        st(
            inst("a", fn="a", last=5),
            inst("b", fn="b", last=1),
            inst("c", fn="c", mem=256, last=3),
            budget=512,
        ),
        ("f", "1", 128),
        Evict(("b",)),
    ),
    (
        "memory full: evict as few as needed, LRU order",
        st(
            inst("a", fn="a", last=5),
            inst("b", fn="b", last=1),
            inst("c", fn="c", mem=256, last=3),
            budget=512,
        ),
        ("f", "1", 256),
        Evict(("b", "c")),
    ),
    (
        "memory full: idle instance of an older version of the same function is evictable",
        st(inst("old", ver="1", mem=512), budget=512),
        ("f", "2", 512),
        Evict(("old",)),
    ),
    (
        "memory fits next to busy instances",
        st(inst("a", fn="a", state="busy", mem=256), budget=512),
        ("f", "1", 256),
        Start(),
    ),
    (
        "never evict busy or provisioned instances",
        st(
            inst("busy", fn="a", state="busy", mem=256, last=0),
            inst("pc", fn="b", mem=256, last=0, prov=True),
            inst("idle", fn="c", mem=128, last=9),
            budget=640,
        ),
        ("f", "1", 256),
        Wait("memory"),
    ),
    (
        "never evict busy or provisioned instances, even when older",
        st(
            inst("busy", fn="a", state="busy", mem=256, last=0),
            inst("pc", fn="b", mem=256, last=0, prov=True),
            inst("idle", fn="c", mem=128, last=9),
            budget=640,
        ),
        ("f", "1", 128),
        Evict(("idle",)),
    ),
    (
        "stopping and starting instances still hold memory",
        st(inst("x", fn="a", state="stopping", mem=256), inst("s", fn="b", state="starting", mem=256), budget=512),
        ("f", "1", 128),
        Wait("memory"),
    ),
    ("bigger than the whole budget", st(budget=512), ("f", "1", 1024), Wait("memory")),
]


def _same(got: Decision, want: Decision) -> bool:
    if isinstance(want, Wait):
        return isinstance(got, Wait) and got.reason == want.reason  # detail is for humans
    return got == want


@pytest.mark.parametrize(("name", "state", "req", "want"), ACQUIRE_CASES, ids=[c[0] for c in ACQUIRE_CASES])
def test_acquire(name: str, state: SchedulerState, req: tuple[str, str, int], want: Decision) -> None:
    clock = FakeClock()
    got = acquire(state, *req, now=clock.monotonic())
    assert _same(got, want), f"{name}: got {got}, want {want}"


def test_evict_then_start() -> None:
    got = acquire(st(inst("a", fn="a", mem=512), budget=512), "f", "1", 128, now=T0)
    assert got == Evict(("a",), then=Start())


@pytest.mark.parametrize(
    ("reason", "wire"),
    [
        ("reserved-concurrency", "ReservedFunctionConcurrentInvocationLimitExceeded"),
        ("account-concurrency", "ConcurrentInvocationLimitExceeded"),
        ("memory", "ConcurrentInvocationLimitExceeded"),
    ],
)
def test_throttle_error(reason: str, wire: str) -> None:
    wait = Wait(reason)  # type: ignore[arg-type]
    err = throttle_error(wait)
    assert isinstance(err, TooManyRequests)
    assert (err.status, err.code, err.reason, err.message) == (429, "TooManyRequestsException", wire, "Rate Exceeded.")


def test_make_room() -> None:
    state = st(inst("a", fn="a", mem=256, last=2), inst("b", fn="b", mem=256, last=1), budget=768)
    assert make_room(state, 256) == ()
    assert make_room(state, 512) == ("b",)
    assert make_room(state, 768) == ("b", "a")
    assert make_room(state, 1024) is None


def test_counters() -> None:
    state = st(
        inst("a", state="busy"),
        inst("b", ver="2", state="starting"),
        inst("c"),
        inst("d", state="stopping", mem=64),
        inst("g", fn="g", state="busy"),
        reserved={"g": 10},
    )
    assert concurrency(state, "f") == 2
    assert concurrency(state, "g") == 1
    assert unreserved_pool(state) == 990
    assert unreserved_in_use(state) == 2
    assert memory_used_mb(state) == 4 * 128 + 64


def test_state_helpers() -> None:
    state = st(inst("a"), inst("b"))
    busy = replace(inst("a"), state="busy")
    s2 = state.upsert(busy)
    assert s2.get("a") == busy and state.get("a") == inst("a")
    assert [i.id for i in s2.without(["a"]).instances] == ["b"]
    assert state.with_reserved("f", 5).reserved == {"f": 5}
    assert state.with_reserved("f", 5).with_reserved("f", None).reserved == {}


# ---------------------------------------------------------------------------------------------- reserved concurrency

MSG_100 = (
    "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
    "below its minimum value of [100]."
)


@pytest.mark.parametrize(
    ("reserved", "function", "value", "ok"),
    [
        ({}, "f", 900, True),
        ({}, "f", 901, False),
        ({"g": 500}, "f", 400, True),
        ({"g": 500}, "f", 401, False),
        ({"f": 500}, "f", 900, True),  # replaces the old reservation
        ({"f": 500, "g": 400}, "f", 501, False),
        ({}, "f", 0, True),
    ],
)
def test_validate_reserved_concurrency(reserved: dict[str, int], function: str, value: int, ok: bool) -> None:
    state = st(reserved=reserved)
    if ok:
        validate_reserved_concurrency(state, function, value)
    else:
        with pytest.raises(InvalidParameterValue) as exc:
            validate_reserved_concurrency(state, function, value)
        assert exc.value.message == MSG_100
        assert exc.value.code == "InvalidParameterValueException"


def test_validate_reserved_concurrency_negative() -> None:
    with pytest.raises(InvalidParameterValue, match="greater than or equal to 0"):
        validate_reserved_concurrency(st(), "f", -1)


# ---------------------------------------------------------------------------------------------- reap


def test_reap_at_exactly_the_keep_alive_boundary() -> None:
    clock = FakeClock()
    state = st(InstanceView("a", "f", "1", "idle", 128, clock.monotonic(), False, clock.monotonic()))
    clock.advance(600)
    assert reap(state, clock.monotonic(), keep_alive_s=600) == []
    clock.advance(0.001)
    assert reap(state, clock.monotonic(), keep_alive_s=600) == ["a"]


REAP_CASES: list[tuple[str, SchedulerState, list[str]]] = [
    (
        "idle past keep-alive, LRU first",
        st(inst("new", last=50), inst("old", last=0), inst("hot", last=500)),
        ["old", "new"],
    ),
    ("provisioned idle never reaped", st(inst("pc", last=0, prov=True)), []),
    ("busy never reaped", st(inst("b", state="busy", last=0)), []),
    ("starting never reaped", st(inst("s", state="starting", last=0)), []),
    ("stopping not reaped again", st(inst("x", state="stopping", last=0)), []),
]


@pytest.mark.parametrize(("name", "state", "want"), REAP_CASES, ids=[c[0] for c in REAP_CASES])
def test_reap(name: str, state: SchedulerState, want: list[str]) -> None:
    assert reap(state, T0 + 700, keep_alive_s=600) == want


def test_reap_zygotes() -> None:
    clock = FakeClock()
    t = clock.monotonic()
    last = {"a": t, "b": t + 100, "c": t}
    clock.advance(300)
    assert reap_zygotes(last, clock.monotonic(), zygote_keep_alive_s=300) == []
    clock.advance(1)
    assert reap_zygotes(last, clock.monotonic(), zygote_keep_alive_s=300) == ["a", "c"]
    assert reap_zygotes(last, clock.monotonic(), zygote_keep_alive_s=300, in_use={"c"}) == ["a"]


def test_mru_lets_the_rest_age_out() -> None:
    """A shell loop in miniature: sequential traffic stays on one instance; the other two scale to zero."""
    clock = FakeClock()
    state = st(*(InstanceView(i, "f", "1", "idle", 128, clock.monotonic(), False, 0.0) for i in ("a", "b", "c")))
    reaped: list[str] = []
    for _ in range(60):  # one request every 10 s for 10 minutes
        clock.advance(10)
        now = clock.monotonic()
        decision = acquire(state, "f", "1", 128, now)
        assert isinstance(decision, UseIdle)
        got = state.get(decision.instance_id)
        assert got is not None
        state = state.upsert(replace(got, state="busy"))
        state = state.upsert(replace(got, state="idle", last_used=now))
        gone = reap(state, now, keep_alive_s=300)
        reaped += gone
        state = state.without(gone)
    assert sorted(reaped) == ["b", "c"]
    assert [i.id for i in state.instances] == ["a"]


# ---------------------------------------------------------------------------------------------- provisioning

F1 = ("f", "1")
PROVISION_CASES: list[tuple[str, SchedulerState, dict[tuple[str, str], int], ProvisionPlan]] = [
    ("scale up from nothing", st(), {F1: 3}, ProvisionPlan(start={F1: 3})),
    (
        "on-demand instances do not count",
        st(inst("pc", prov=True), inst("od")),
        {F1: 3},
        ProvisionPlan(start={F1: 2}),
    ),
    (
        "stopping provisioned instances do not count",
        st(inst("pc", prov=True), inst("x", state="stopping", prov=True)),
        {F1: 2},
        ProvisionPlan(start={F1: 1}),
    ),
    (
        "at target: nothing to do",
        st(inst("a", prov=True), inst("b", prov=True, state="busy")),
        {F1: 2},
        ProvisionPlan(),
    ),
    (
        "lower: idle ones first, LRU first",
        st(inst("i5", prov=True, last=5), inst("b", prov=True, state="busy"), inst("i1", prov=True, last=1)),
        {F1: 1},
        ProvisionPlan(stop=("i1", "i5")),
    ),
    (
        "to zero: stop idle, demote busy and starting",
        st(
            inst("i", prov=True),
            inst("b", prov=True, state="busy"),
            inst("s", prov=True, state="starting"),
        ),
        {F1: 0},
        ProvisionPlan(stop=("i",), demote=("s", "b")),
    ),
    (
        "target removed: release the whole pool, other pools untouched",
        st(inst("a", prov=True), inst("g", fn="g", prov=True)),
        {("g", "1"): 1},
        ProvisionPlan(stop=("a",)),
    ),
    (
        "several pools",
        st(inst("a", prov=True)),
        {F1: 2, ("f", "2"): 1, ("g", "1"): 0},
        ProvisionPlan(start={F1: 1, ("f", "2"): 1}),
    ),
]


@pytest.mark.parametrize(("name", "state", "targets", "want"), PROVISION_CASES, ids=[c[0] for c in PROVISION_CASES])
def test_provision(name: str, state: SchedulerState, targets: dict[tuple[str, str], int], want: ProvisionPlan) -> None:
    got = provision(state, targets, FakeClock().monotonic())
    assert got == want
    assert got.empty == want.empty


# ---------------------------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("routing", "r", "want"),
    [
        ({}, 0.0, "1"),
        ({}, 0.999, "1"),
        ({"2": 0.1}, 0.0, "2"),
        ({"2": 0.1}, 0.0999, "2"),
        ({"2": 0.1}, 0.1, "1"),
        ({"2": 0.1}, 0.9999, "1"),
        ({"2": 1.0}, 0.9999, "2"),
        ({"2": 0.0}, 0.0, "1"),
        ({"3": 0.2, "2": 0.3}, 0.29, "2"),  # sorted version order: "2" takes [0, .3), "3" takes [.3, .5)
        ({"3": 0.2, "2": 0.3}, 0.3, "3"),
        ({"3": 0.2, "2": 0.3}, 0.5, "1"),
    ],
)
def test_pick_version(routing: dict[str, float], r: float, want: str) -> None:
    assert pick_version(routing, "1", r) == want


@pytest.mark.parametrize("weight", [0.05, 0.1, 0.25, 0.5, 0.9])
def test_pick_version_distribution(weight: float) -> None:
    n = 10_000
    draws = [(i + 0.5) / n for i in range(n)]  # evenly spread, deterministic
    picked = sum(1 for r in draws if pick_version({"2": weight}, "1", r) == "2")
    assert picked == round(weight * n)


@pytest.mark.parametrize("r", [-0.1, 1.0, 1.5])
def test_pick_version_rejects_bad_r(r: float) -> None:
    with pytest.raises(ValueError):
        pick_version({"2": 0.5}, "1", r)


@pytest.mark.parametrize(
    ("routing", "ok"),
    [({"2": 0.5}, True), ({}, True), ({"2": 1.5}, False), ({"2": -0.1}, False), ({"2": 0.6, "3": 0.5}, False)],
)
def test_validate_routing(routing: dict[str, float], ok: bool) -> None:
    if ok:
        validate_routing(routing, "1")
    else:
        with pytest.raises(InvalidParameterValue):
            validate_routing(routing, "1")


def test_validate_routing_primary_listed() -> None:
    with pytest.raises(InvalidParameterValue):
        validate_routing({"1": 0.5}, "1")


# ---------------------------------------------------------------------------------------------- async retries

RETRY_CASES: list[tuple[str, int, float, dict[str, float], float | None]] = [
    # name, attempt, now (event enqueued at 0), knobs, want
    ("first retry after 1 minute", 1, 5.0, {}, 65.0),
    ("second retry after 2 minutes", 2, 70.0, {}, 190.0),
    ("two retries then give up", 3, 200.0, {}, None),
    ("max_retries 0: no retry", 1, 5.0, {"max_retries": 0}, None),
    ("max_retries 1: one retry", 1, 5.0, {"max_retries": 1}, 65.0),
    ("max_retries 1: then give up", 2, 70.0, {"max_retries": 1}, None),
    ("short base delay for tests", 1, 5.0, {"base_delay_s": 0.5}, 5.5),
    ("short base delay, second retry", 2, 6.0, {"base_delay_s": 0.5}, 7.0),
    ("retry exactly at max event age runs", 1, 0.0, {"max_event_age_s": 60}, 60.0),
    ("retry past max event age: give up", 1, 0.5, {"max_event_age_s": 60}, None),
    ("second retry past max age", 2, 100.0, {"max_event_age_s": 200}, None),
]


@pytest.mark.parametrize(("name", "attempt", "now", "knobs", "want"), RETRY_CASES, ids=[c[0] for c in RETRY_CASES])
def test_next_attempt(name: str, attempt: int, now: float, knobs: dict[str, float], want: float | None) -> None:
    clock = FakeClock()
    enq = clock.now()
    clock.advance(now)
    got = next_attempt(attempt, enq, clock.now(), **knobs)  # type: ignore[arg-type]
    assert got == (None if want is None else enq + want)


def test_next_attempt_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        next_attempt(0, 0.0, 0.0)


THROTTLE_CASES: list[tuple[int, float, float | None]] = [
    # throttles, now (enqueued at 0, max age 21600), want
    (1, 10.0, 11.0),
    (2, 10.0, 12.0),
    (3, 10.0, 14.0),
    (9, 10.0, 266.0),
    (10, 10.0, 310.0),  # 512 s capped at 5 minutes
    (1000, 10.0, 310.0),
    (5, 21_590.0, 21_600.0),  # clipped to the age limit
    (5, 21_600.0, None),  # too old: give up
]


@pytest.mark.parametrize(("throttles", "now", "want"), THROTTLE_CASES)
def test_next_throttled_attempt(throttles: int, now: float, want: float | None) -> None:
    assert next_throttled_attempt(throttles, 0.0, now) == want


def test_next_throttled_attempt_knobs() -> None:
    assert next_throttled_attempt(3, 0.0, 1.0, base_delay_s=0.1, max_delay_s=0.3) == pytest.approx(1.3)
    assert next_throttled_attempt(1, 0.0, 59.5, max_event_age_s=60) == 60.0


@pytest.mark.parametrize(
    ("retries", "age", "match"),
    [
        (3, 60, "'3' at 'maximumRetryAttempts'.*less than or equal to 2"),
        (-1, 60, "'-1' at 'maximumRetryAttempts'.*greater than or equal to 0"),
        (2, 59, "'59' at 'maximumEventAgeInSeconds'.*greater than or equal to 60"),
        (2, 21601, "'21601' at 'maximumEventAgeInSeconds'.*less than or equal to 21600"),
    ],
)
def test_validate_event_invoke_config(retries: int, age: int, match: str) -> None:
    with pytest.raises(InvalidParameterValue, match=match):
        validate_event_invoke_config(retries, age)
    validate_event_invoke_config(2, 21600)
    validate_event_invoke_config(0, 60)


# ---------------------------------------------------------------------------------------------- host


def test_parse_meminfo() -> None:
    text = "MemTotal:       16318480 kB\nMemFree:         1234 kB\n"
    assert parse_meminfo_total_mb(text) == 15936
    with pytest.raises(ValueError):
        parse_meminfo_total_mb("MemFree: 1 kB\n")
