"""Forwarding: an invocation accepted by one node and placed on another crosses over NATS request/reply.

Node A (which received the request, authenticated the caller and checked its permissions: once, there) resolved
the function version (alias weights applied on A) and asked placement; when placement names node B, A sends the
invocation to B's subject ``squall.sandbox.node.<B>.invoke`` and waits for the reply.  B runs the version A chose on its
own pool and answers with the result.  B never forwards again: a forwarded request carries a hop count
(``hops``), and B's handler runs locally whatever placement would now say (loop-safe even when the nodes'
views of the membership disagree for a moment).

Why NATS and not node-to-node HTTP: the nodes already hold a connection to NATS (no second connection pool, no
node URLs to publish and keep reachable), NATS carries the reply on the same connection, and only cluster members
can publish to ``squall.sandbox.node.*`` (the NATS account is the trust boundary), so B needs no second authentication
of A.  A message is ``frame(metadata, payload)``: a length-prefixed JSON head (function, version, request id,
trigger, trace and client context, hop count; in the reply status, function error, executed version, log tail)
and the payload untouched.  The cost is one more network hop through the NATS server each way; measured in docs/design.md.  Sync
payloads (6 MB) fit because the servers are configured with ``max_payload`` 8 MB (docs/cluster.md).

Results that must be durable before the caller goes on (an async event's delivery: its record is written before
the event is acked) ask B to flush its invocation records before replying (``durable``); B retries a flush the
database refuses (PostgreSQL away) for most of A's reply slack rather than have A run the event again.
"""

from __future__ import annotations

import asyncio
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
from squall.store.disk import DiskFull
from squall.store.targets import DatabaseUnavailable

__all__ = ["Forwarder", "RemoteError", "frame", "invoke_subject", "unframe"]

log = logging.getLogger("squall.cluster.forward")

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
        meta = {
            "hops": 1, "origin": self.node_id, "function": spec.name, "version": spec.version,
            "request_id": request_id, "trigger": trigger, "trace_id": trace_id, "traceparent": traceparent,
            "sync": sync, "durable": durable, "client_context": client_context, "wait_s": wait_s,
        }  # fmt: skip
        timeout = float(spec.timeout_s) + (wait_s or 0.0) + self.reply_slack_s
        reply = await self.nc.request(invoke_subject(target), frame(meta, payload), timeout=timeout)
        self.forwarded += 1
        r, body = unframe(reply.data)
        if r.get("error"):
            code, status, message = str(r["error"]), int(r.get("status", 500)), body.decode(errors="replace")
            if code == "TooManyRequestsException":
                raise TooManyRequests(
                    message, str(r.get("reason") or "ReservedFunctionConcurrentInvocationLimitExceeded")
                )
            raise RemoteError(code, status, message)
        return InvocationResult(
            status=int(r.get("status", 200)),
            payload=body,
            function_error=r.get("function_error") or None,
            executed_version=str(r.get("executed_version") or spec.version),
            request_id=request_id,
            logs=str(r.get("logs") or ""),
            traceparent=str(r.get("traceparent") or ""),
        )

    # -- node B: serve ----------------------------------------------------------------------------------------
    async def _on_request(self, msg: Msg) -> None:
        # NATS calls back one message at a time per subscription: run each in its own task, so they overlap
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        out: dict[str, Any]
        body = b""
        try:
            m, payload = unframe(msg.data)
            if int(m.get("hops", 0)) < 1:
                raise SquallError("a forwarded invocation without its hop marker")
            # as the Invoke endpoint does: on the loop (a cached lookup; the first one of a version reads the store)
            spec = self.resolve(str(m["function"]), str(m["version"]))
            wait = m.get("wait_s")
            result = await self.run_local(
                spec, payload, str(m.get("request_id", "")), str(m.get("trigger") or "forwarded"),
                m.get("client_context"), str(m.get("trace_id") or ""), str(m.get("traceparent") or ""),
                float(wait) if wait is not None else None, bool(m.get("sync")),
            )  # fmt: skip
            if m.get("durable"):
                await self._flush_durably()
            self.served += 1
            body = result.payload
            out = {
                "status": result.status,
                "executed_version": result.executed_version,
                "function_error": result.function_error,
                "logs": result.logs.encode()[-_LOG_TAIL:].decode(errors="replace"),
                "traceparent": result.traceparent,
            }
        except SquallError as e:
            out = {"error": e.code, "status": e.status, "reason": getattr(e, "reason", None)}
            body = str(e).encode()
        except Exception as e:
            log.exception("serving a forwarded invocation")
            out = {"error": "ServiceException", "status": 500}
            body = f"the node that ran the invocation failed: {type(e).__name__}: {e}".encode()
        if len(body) > self.nc.max_payload - _HEADROOM:  # it ran, but its answer cannot cross: say why
            out = {"error": "ServiceException", "status": 502}
            body = (
                f"the response ({len(body)} bytes) ran on node {self.node_id} but is larger than the NATS servers' "
                f"max_payload ({self.nc.max_payload} bytes); set max_payload to 8MB (docs/cluster.md)"
            ).encode()
        if msg.reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, frame(out, body))

    async def _flush_durably(self) -> None:
        """The records of a durable delivery, written before the reply.  The invocation has run: while the
        database is away (or the disk full) the flush is retried for up to two thirds of the requester's slack,
        rather than answering with an error that would make the requester run the event again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reply_slack_s * 2 / 3
        delay = 0.2
        while True:
            try:
                await self.flush_records()
                return
            except (DatabaseUnavailable, DiskFull):
                if loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)


def frame(meta: dict[str, Any], payload: bytes) -> bytes:
    """One message: 4 bytes of metadata length, the metadata as JSON, the payload untouched.  (Not NATS headers:
    nats-py parses those with the email package, which cost more CPU per forwarded request than the rest.)"""
    head = json.dumps(meta, separators=(",", ":")).encode()
    return len(head).to_bytes(4, "big") + head + payload


def unframe(data: bytes) -> tuple[dict[str, Any], bytes]:
    if len(data) < 4:
        raise SquallError("a forwarding message without its metadata")
    n = int.from_bytes(data[:4], "big")
    meta = json.loads(data[4 : 4 + n])
    if not isinstance(meta, dict):
        raise SquallError("a forwarding message with bad metadata")
    return meta, bytes(data[4 + n :])
