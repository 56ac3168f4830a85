"""A cluster node's view, read through its API (``/_squall/api/cluster``, what ``squall cluster status`` prints)."""

from __future__ import annotations

from typing import Any

from tests.e2e._platform import SquallProcess, signed_get

__all__ = ["cluster_status", "live_nodes"]


def cluster_status(node: SquallProcess) -> dict[str, Any]:
    code, body = signed_get(node.url, "/_squall/api/cluster")
    assert code == 200, body
    return dict(body)


def live_nodes(node: SquallProcess) -> list[str]:
    """The node ids this node sees live."""
    return [n["node_id"] for n in cluster_status(node)["nodes"] if n["live"]]
