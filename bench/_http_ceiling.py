"""The function URL ceiling: plain Starlette + uvicorn mapping a GET to the same handler in-process."""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.aws.http_protocol import CoalescingHttpProtocol

__all__ = ["app", "handler"]


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"ok": True}


async def get(request: Request) -> Response:
    event = {"rawPath": request.url.path, "headers": dict(request.headers)}
    return Response(json.dumps(handler(event, None)).encode(), media_type="application/json")


app = Starlette(routes=[Route("/lambda-url/{rest:path}", get, methods=["GET"])])

if __name__ == "__main__":
    # the same one-write-per-response transport as Squall's edge, so the ratio compares like with like
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, http=CoalescingHttpProtocol
    )
