"""The ceiling: a plain Starlette + uvicorn app that calls the same handler in-process at the Invoke path."""

from __future__ import annotations

import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.aws.http_protocol import CoalescingHttpProtocol


def handler(event: dict, context: object) -> dict:
    return {"ok": True, "n": event.get("n", 0)}


async def invoke(request: Request) -> Response:
    body = await request.body()
    result = handler(json.loads(body) if body else {}, None)
    return Response(json.dumps(result).encode(), media_type="application/json")


app = Starlette(routes=[Route("/2015-03-31/functions/{function:path}/invocations", invoke, methods=["POST"])])

if __name__ == "__main__":
    # the same one-write-per-response transport as Squall's edge, so the ratio compares like with like
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, http=CoalescingHttpProtocol
    )
