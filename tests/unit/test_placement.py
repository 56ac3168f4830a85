"""Cluster placement, pure, table-driven, with a fake clock for liveness."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from squall.core.clock import FakeClock
from squall.scheduler.placement import NodeView, live_nodes, place, rank, share_of, shares

NODES = ["a", "b", "c"]


def _views(**over: Mapping[str, object]) -> dict[str, NodeView]:
    out = {}
    for n in NODES:
        kw: dict[str, object] = {"node_id": n, "in_flight": 0, "capacity": 10}
        kw.update(over.get(n, {}))
        out[n] = NodeView(**kw)  # type: ignore[arg-type]
    return out


HOME = rank("fn", NODES)  # the order every node computes for "fn"


def test_rank_is_the_same_everywhere_and_moves_only_the_departed_nodes_functions() -> None:
    assert rank("fn", NODES) == rank("fn", list(reversed(NODES)))
    keys = [f"f{i}" for i in range(300)]
    before = {k: rank(k, NODES)[0] for k in keys}
    after = {k: rank(k, ["a", "b"])[0] for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert moved == {k for k in keys if before[k] == "c"}  # only c's functions get a new home
    homes = [before[k] for k in keys]
    assert all(homes.count(n) > 60 for n in NODES)  # spread over all nodes (300 keys: about 100 each)


@pytest.mark.parametrize(
    ("case", "views", "live", "local", "reserved", "want"),
    [
        ("cold: home node", _views(), set(NODES), HOME[2], None, (HOME[0], "home")),
        (
            "warm elsewhere beats home",
            _views(**{HOME[1]: {"idle": {"fn:3": 1}}}),
            set(NODES),
            HOME[2],
            None,
            (HOME[1], "warm"),
        ),
        (
            "warm locally: no hop",
            _views(**{HOME[1]: {"idle": {"fn:3": 2}}, HOME[2]: {"idle": {"fn:3": 1}}}),
            set(NODES),
            HOME[2],
            None,
            (HOME[2], "warm"),
        ),
        (
            "most idle wins among remote",
            _views(**{HOME[1]: {"idle": {"fn:3": 1}}, HOME[2]: {"idle": {"fn:3": 4}}}),
            set(NODES),
            HOME[0],
            None,
            (HOME[2], "warm"),
        ),
        (
            "warm but another version",
            _views(**{HOME[1]: {"idle": {"fn:2": 1}}}),
            set(NODES),
            HOME[1],
            None,
            (HOME[0], "home"),
        ),
        (
            "warm node full",
            _views(**{HOME[1]: {"idle": {"fn:3": 1}, "in_flight": 10}}),
            set(NODES),
            HOME[2],
            None,
            (HOME[0], "home"),
        ),
        (
            "home full: overflow to next",
            _views(**{HOME[0]: {"in_flight": 10}}),
            set(NODES),
            HOME[0],
            None,
            (HOME[1], "overflow"),
        ),
        (
            "home and next full",
            _views(**{HOME[0]: {"in_flight": 10}, HOME[1]: {"in_flight": 10}}),
            set(NODES),
            HOME[0],
            None,
            (HOME[2], "overflow"),
        ),
        (
            "all full: stays local",
            _views(**{n: {"in_flight": 10} for n in NODES}),
            set(NODES),
            HOME[1],
            None,
            (HOME[1], "overloaded"),
        ),
        ("home dead: next is home", _views(), set(NODES) - {HOME[0]}, HOME[2], None, (HOME[1], "home")),
        (
            "dead warm node ignored",
            _views(**{HOME[2]: {"idle": {"fn:3": 5}}}),
            set(NODES) - {HOME[2]},
            HOME[0],
            None,
            (HOME[0], "home"),
        ),
        ("no live node", _views(), set(), "a", None, (None, "none")),
        # reserved concurrency 1 over three nodes: the share is on the home node only
        ("reserved 1: home has it", _views(), set(NODES), HOME[2], 1, (HOME[0], "home")),
        (
            "reserved 1 used: overloaded",
            _views(**{HOME[0]: {"running": {"fn": 1}}}),
            set(NODES),
            HOME[2],
            1,
            (HOME[2], "overloaded"),
        ),
        (
            "reserved 1: warm node without a share",
            _views(**{HOME[1]: {"idle": {"fn:3": 1}}}),
            set(NODES),
            HOME[1],
            1,
            (HOME[0], "home"),
        ),
        (
            "reserved 4: home 2, others 1",
            _views(**{HOME[0]: {"running": {"fn": 2}}}),
            set(NODES),
            HOME[0],
            4,
            (HOME[1], "overflow"),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_place(
    case: str,
    views: dict[str, NodeView],
    live: set[str],
    local: str,
    reserved: int | None,
    want: tuple[str | None, str],
) -> None:
    p = place("fn", "3", views, live, local, reserved=reserved)
    assert (p.node_id, p.reason) == want, case


@pytest.mark.parametrize(
    ("limit", "n", "want"),
    [(10, 3, [4, 3, 3]), (1, 3, [1, 0, 0]), (0, 3, [0, 0, 0]), (3, 3, [1, 1, 1]), (1000, 1, [1000]), (5, 2, [3, 2])],
)
def test_shares_add_up_to_the_limit(limit: int, n: int, want: list[int]) -> None:
    order = [f"n{i}" for i in range(n)]
    got = shares(limit, order)
    assert [got[x] for x in order] == want
    assert sum(got.values()) == limit


def test_share_of_the_account_limit_and_after_a_node_leaves() -> None:
    assert sum(share_of(n, 1000, "", NODES) for n in NODES) == 1000
    assert sum(share_of(n, 1000, "", ["a", "b"]) for n in ["a", "b"]) == 1000
    assert share_of("c", 1000, "", ["a", "b"]) == 0


def test_liveness_with_a_fake_clock() -> None:
    clock = FakeClock()
    seen = {n: clock.monotonic() for n in NODES}
    assert live_nodes(seen, clock.monotonic(), 2.0) == set(NODES)
    clock.advance(1.5)
    seen["a"] = seen["b"] = clock.monotonic()  # c stopped heartbeating
    clock.advance(0.5)
    assert live_nodes(seen, clock.monotonic(), 2.0) == set(NODES)  # exactly 2 s: still in
    clock.advance(0.01)
    assert live_nodes(seen, clock.monotonic(), 2.0) == {"a", "b"}
