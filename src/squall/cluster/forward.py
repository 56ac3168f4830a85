"""Forwarding: an invocation accepted by one node and placed on another crosses over NATS request/reply.

Node A (which received the request, authenticated the caller and checked its permissions: once, there) resolved
the function version (alias weights applied on A) and asked placement; when placement names node B, A sends the
invocation to B's subject ``squall.sandbox.node.<B>.invoke`` and waits for the reply.  B runs the version A chose on its
own pool and answers with the result.  B never forwards again: a forwarded request carries a hop count
(``Squall-Hops``), and B's handler runs locally whatever placement would now say (loop-safe even when the nodes'
views of the membership disagree for a moment).

Why NATS and not node-to-node HTTP: the nodes already hold a connection to NATS (no second connection pool, no
node URLs to publish and keep reachable), NATS carries the reply on the same connection, and only cluster members
can publish to ``squall.sandbox.node.*`` (the NATS account is the trust boundary), so B needs no second authentication
of A.  The cost is one more network hop through the NATS server each way; measured in docs/design.md.  Sync
payloads (6 MB) fit because the servers are configured with ``max_payload`` 8 MB (docs/cluster.md).

Results that must be durable before the caller goes on (an async event's delivery: its record is written before
the event is acked) ask B to flush its invocation records before replying (``Squall-Durable``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from squall.cluster.membership import node_key
from squall.core.errors import SquallError, TooManyRequests
from squall.core.model import FunctionSpec
from squall.functions.invoker import InvocationResult

__all__ = ["Forwarder", "RemoteError", "invoke_subject"]

log = logging.getLogger("squall.cluster.forward")

_H = "Squall-"
#: the log tail a forwarded result brings back (X-Amz-Log-Result shows the last 4 KB)
_LOG_TAIL = 4096
#: room left in a message for the headers
_HEADROOM = 64 * 1024


def invoke_subject(node_id: str) -> str:
    return f"squall.sandbox.node.{node_key(node_id)}.invoke"


class RemoteError(SquallError):
    """An error the node that ran the invocation answered with, re-raised on the node that forwarded it."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


#: B's local run: (spec, payload, request_id, trigger, client_context, trace_id, traceparent, wait_s, sync)
LocalRun = Callable[..., Awaitable[InvocationResult]]


class Forwarder:
    def __init__(
        self,
        nc: Client,
        node_id: str,
        *,
        resolve: Callable[[str, str], FunctionSpec],
        run_local: LocalRun,
        flush_records: Callable[[], Awaitable[object]],
        reply_slack_s: float = 30.0,
    ) -> None:
        self.nc = nc
        self.node_id = node_id
        self.resolve = resolve
        self.run_local = run_local
        self.flush_records = flush_records
        self.reply_slack_s = reply_slack_s
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.forwarded = 0  # sent to another node
        self.served = 0  # run here for another node

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(invoke_subject(self.node_id), cb=self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        for t in list(self._tasks):
            t.cancel()

    # -- node A: send -----------------------------------------------------------------------------------------
    def fits(self, payload: bytes) -> bool:
        """Whether ``payload`` can be forwarded (the NATS servers' max_payload; 8 MB recommended)."""
        return len(payload) <= self.nc.max_payload - _HEADROOM

    async def forward(
        self,
        target: str,
        spec: FunctionSpec,
        payload: bytes,
        request_id: str,
        trigger: str,
        client_context: dict[str, Any] | None = None,
        trace_id: str = "",
        traceparent: str = "",
        wait_s: float | None = None,
        sync: bool = False,
        durable: bool = False,
    ) -> InvocationResult:
        headers = {
            _H + "Hops": "1",
            _H + "Origin": self.node_id,
            _H + "Function": spec.name,
            _H + "Version": spec.version,
            _H + "Request-Id": request_id,
            _H + "Trigger": trigger,
            _H + "Trace-Id": trace_id,
            _H + "Traceparent": traceparent,
            _H + "Sync": "1" if sync else "0",
            _H + "Durable": "1" if durable else "0",
        }
        if client_context is not None:
            headers[_H + "Client-Context"] = json.dumps(client_context, separators=(",", ":"))
        if wait_s is not None:
            headers[_H + "Wait-S"] = repr(wait_s)
        timeout = float(spec.timeout_s) + (wait_s or 0.0) + self.reply_slack_s
        reply = await self.nc.request(invoke_subject(target), payload, timeout=timeout, headers=headers)
        self.forwarded += 1
        h = reply.headers or {}
        if h.get(_H + "Error"):
            code, status = h[_H + "Error"], int(h.get(_H + "Status", "500"))
            message = reply.data.decode(errors="replace")
            if code == "TooManyRequestsException":
                raise TooManyRequests(
                    message, h.get(_H + "Reason", "ReservedFunctionConcurrentInvocationLimitExceeded")
                )
            raise RemoteError(code, status, message)
        return InvocationResult(
            status=int(h.get(_H + "Status", "200")),
            payload=bytes(reply.data),
            function_error=h.get(_H + "Function-Error") or None,
            executed_version=h.get(_H + "Executed-Version", spec.version),
            request_id=request_id,
            logs=base64.b64decode(h.get(_H + "Logs", "")).decode(errors="replace"),
            traceparent=h.get(_H + "Traceparent", ""),
        )

    # -- node B: serve ----------------------------------------------------------------------------------------
    async def _on_request(self, msg: Msg) -> None:
        # NATS calls back one message at a time per subscription: run each in its own task, so they overlap
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        h = msg.headers or {}
        out: dict[str, str] = {}
        body = b""
        try:
            if int(h.get(_H + "Hops", "0")) < 1:
                raise SquallError("a forwarded invocation without its hop marker")
            # as the Invoke endpoint does: on the loop (a cached lookup; the first one of a version reads the store)
            spec = self.resolve(h[_H + "Function"], h[_H + "Version"])
            cc = h.get(_H + "Client-Context")
            wait = h.get(_H + "Wait-S")
            result = await self.run_local(
                spec,
                bytes(msg.data),
                h.get(_H + "Request-Id", ""),
                h.get(_H + "Trigger", "forwarded"),
                json.loads(cc) if cc else None,
                h.get(_H + "Trace-Id", ""),
                h.get(_H + "Traceparent", ""),
                float(wait) if wait else None,
                h.get(_H + "Sync") == "1",
            )
            if h.get(_H + "Durable") == "1":
                await self.flush_records()
            self.served += 1
            body = result.payload
            out = {
                _H + "Status": str(result.status),
                _H + "Executed-Version": result.executed_version,
                _H + "Logs": base64.b64encode(result.logs.encode()[-_LOG_TAIL:]).decode(),
            }
            if result.function_error:
                out[_H + "Function-Error"] = result.function_error
            if result.traceparent:
                out[_H + "Traceparent"] = result.traceparent
        except SquallError as e:
            out = {_H + "Error": e.code, _H + "Status": str(e.status)}
            reason = getattr(e, "reason", None)
            if reason:
                out[_H + "Reason"] = str(reason)
            body = str(e).encode()
        except Exception as e:
            log.exception("serving a forwarded invocation")
            out = {_H + "Error": "ServiceException", _H + "Status": "500"}
            body = f"the node that ran the invocation failed: {type(e).__name__}: {e}".encode()
        if len(body) > self.nc.max_payload - _HEADROOM:  # it ran, but its answer cannot cross: say why
            out = {_H + "Error": "ServiceException", _H + "Status": "502"}
            body = (
                f"the response ({len(body)} bytes) ran on node {self.node_id} but is larger than the NATS servers' "
                f"max_payload ({self.nc.max_payload} bytes); set max_payload to 8MB (docs/cluster.md)"
            ).encode()
        if msg.reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, body, headers=out)
