"""``/_squall/api/cluster``: the nodes of the cluster this node is in, their load and warm instances (what
``squall cluster status`` prints); one embedded node answers ``{"cluster": false}``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from squall.cluster.node import ClusterNode

__all__ = ["cluster_routes"]


def cluster_routes(cluster: ClusterNode | None) -> list[Route]:
    async def cluster_state(_: Request) -> Response:
        if cluster is None:
            return JSONResponse({"cluster": False, "node_id": None, "nodes": []})
        return JSONResponse({"cluster": True, **(await cluster.status())})

    return [Route("/_squall/api/cluster", cluster_state)]
