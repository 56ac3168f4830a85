"""Cluster placement, pure: which node runs a request, which nodes are alive, how a limit is split over nodes.

Inputs are what the nodes' heartbeats said (``NodeView``) and when each was last heard of, on one clock; outputs
are decisions.  No asyncio, no NATS: the shell (``squall.cluster``) feeds it.

The anchor is OpenWhisk's ``ShardingContainerPoolBalancer``: every action has a home invoker (a hash of its name)
and, when the home invoker is full, the balancer walks the other invokers in an order fixed by the same hash,
taking the first with capacity; when none has any, it is "overloaded".  Two changes:

* A node that has an idle warm instance of the function version comes first (OpenWhisk only hopes the home
  invoker is warm; our heartbeats say where warm instances are).  The receiving node itself wins a tie: no hop.
* The order is rendezvous hashing (highest ``sha1(node, key)`` first) rather than ``hash % n`` with coprime steps:
  when a node joins or leaves, ``hash % n`` moves almost every function's home (cold starts everywhere), while
  rendezvous moves only the functions whose home the changed node is.  Every node computes the same order from
  the same membership, as OpenWhisk's controllers do.

Cluster-wide limits (reserved concurrency, the account limit, provisioned concurrency) are split into per-node
shares (``shares``): ``limit // n`` each, the remainder to the first nodes in the function's order, so the total
over the cluster is exactly the limit and a small limit (reserved concurrency 1) sits on the home node.  A node
admits a request only while its in-flight count for the function is below its share: no coordination per request,
the limit holds as long as nodes agree on the membership (during the ≤ 2 s a departed node is still counted, the
cluster runs below the limit, never above it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["NodeView", "Placement", "live_nodes", "place", "rank", "share_of", "shares"]


@dataclass(frozen=True)
class NodeView:
    """What a node's last heartbeat said about it."""

    node_id: str
    #: invocations running on the node now, and how many it runs at most (its account share / memory)
    in_flight: int = 0
    capacity: int = 0
    #: idle warm instances per function version ("name:version")
    idle: Mapping[str, int] = field(default_factory=dict)
    #: invocations running per function name (for reserved-concurrency shares)
    running: Mapping[str, int] = field(default_factory=dict)
    #: where the node serves forwarded requests (its NATS subject or URL); opaque here
    address: str = ""
    #: initialised provisioned-concurrency instances per function version ("name:version"), idle or busy (the
    #: cluster-wide Allocated count of GetProvisionedConcurrencyConfig is their sum over the live nodes)
    provisioned: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    node_id: str | None
    #: "warm" (an idle instance there), "home", "overflow" (a later node in the order), "overloaded" (no node has
    #: room: the receiving node keeps the request and it waits or throttles there), "none" (no live node)
    reason: str


def live_nodes(last_seen: Mapping[str, float], now: float, expiry_s: float) -> set[str]:
    """Nodes heard from within ``expiry_s`` (``last_seen``: node id → time of its last heartbeat on this clock)."""
    return {n for n, t in last_seen.items() if now - t <= expiry_s}


def _score(node_id: str, key: str) -> int:
    return int.from_bytes(hashlib.sha1(f"{node_id}\x00{key}".encode()).digest()[:8], "big")


def rank(key: str, nodes: Sequence[str] | set[str]) -> list[str]:
    """The order in which nodes are tried for ``key`` (a function name): its home node first."""
    return sorted(nodes, key=lambda n: (-_score(n, key), n))


def shares(limit: int, ordered: Sequence[str]) -> dict[str, int]:
    """``limit`` split over ``ordered`` nodes: ``limit // n`` each, one more for the first ``limit % n``."""
    n = len(ordered)
    if n == 0:
        return {}
    base, extra = divmod(max(0, limit), n)
    return {node: base + (1 if i < extra else 0) for i, node in enumerate(ordered)}


def share_of(node_id: str, limit: int, key: str, nodes: Sequence[str] | set[str]) -> int:
    """This node's share of a limit that belongs to ``key`` (a function's reserved concurrency: key = its name;
    the account limit: key = "")."""
    return shares(limit, rank(key, nodes)).get(node_id, 0)


def _has_room(view: NodeView, function: str, reserved: int | None, order: Sequence[str]) -> bool:
    if view.capacity and view.in_flight >= view.capacity:
        return False
    if reserved is not None:
        share = shares(reserved, order).get(view.node_id, 0)
        if view.running.get(function, 0) >= share:
            return False
    return True


def place(
    function: str,
    version: str,
    views: Mapping[str, NodeView],
    live: set[str],
    local: str,
    *,
    reserved: int | None = None,
) -> Placement:
    """Where to run an invocation of ``function:version`` received by node ``local``.

    ``views``: the last heartbeat of each node; ``live``: the nodes that count (``live_nodes``); ``reserved``: the
    function's reserved concurrency, if it has one (split over the live nodes in the function's order).
    """
    order = rank(function, [n for n in live if n in views])
    if not order:
        return Placement(local if local in live else None, "none")
    key = f"{function}:{version}"
    warm = [n for n in order if views[n].idle.get(key, 0) > 0 and _has_room(views[n], function, reserved, order)]
    if warm:
        if local in warm:
            return Placement(local, "warm")
        return Placement(max(warm, key=lambda n: views[n].idle.get(key, 0)), "warm")  # max keeps the first on ties
    for i, n in enumerate(order):
        if _has_room(views[n], function, reserved, order):
            return Placement(n, "home" if i == 0 else "overflow")
    return Placement(local if local in order else order[0], "overloaded")
