"""The one path every invocation takes: resolve the function, pick an instance, run, record.

Sync (RequestResponse): resolve -> pool.acquire (warm, cold, or wait then 429) -> instance.invoke -> record.
Async (Event): the event is stored durably (fsync) before the caller gets 202; ``AsyncDispatcher`` delivers it with
Lambda's retry policy and sends the outcome to the configured destinations.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from squall.core import jsonlimits
from squall.core.arn import function_arn
from squall.core.errors import InvalidRequestContent, RequestTooLarge, SquallError
from squall.core.ids import random_hex
from squall.core.ids import request_id as new_request_id
from squall.core.model import FunctionSpec, InvokeOutcome, InvokeRequest, NetworkMode
from squall.core.ports import Enqueue, InvocationObserver
from squall.core.report import billed_ms, end_line, report_line, start_line
from squall.functions.pool import InstancePool
from squall.functions.store.invocations import RecordWriter
from squall.functions.store.metadata import SqliteMetadataStore
from squall.functions.store.records import InvocationRecord, StoredFunction
from squall.sandbox.node.instance import InitFailed
from squall.sandbox.node.preimport import parse_pinned
from squall.scheduler import pick_version

if TYPE_CHECKING:
    from squall.telemetry.tracing import Span, Tracer

__all__ = ["ASYNC_PAYLOAD_MAX", "SYNC_PAYLOAD_MAX", "InvocationResult", "Invoker", "network_mode", "spec_from_stored"]

log = logging.getLogger("squall.invoker")

#: Lambda's payload limits: 6 MB for synchronous invocations (request and response), 1 MB for asynchronous ones
SYNC_PAYLOAD_MAX = 6 * 1024 * 1024
ASYNC_PAYLOAD_MAX = 1024 * 1024
LOG_TAIL_BYTES = 4096

InvocationType = Literal["RequestResponse", "Event", "DryRun"]


@dataclass(frozen=True)
class InvocationResult:
    status: int
    payload: bytes
    function_error: str | None
    executed_version: str
    request_id: str
    logs: str = ""
    outcome: InvokeOutcome | None = None
    #: the context of the invocation's entry span when the invoker made it (callers without their own span)
    traceparent: str = ""

    def log_tail_b64(self) -> str:
        tail = self.logs.encode()[-LOG_TAIL_BYTES:]
        return base64.b64encode(tail).decode()


def network_mode(squall: dict[str, Any]) -> NetworkMode:
    """The stored mode; "host" only when the tag asks for it (functions stored when "host" was the default run
    with the new default, "nat")."""
    mode = squall.get("network")
    if mode == "none":
        return "none"
    if mode == "host" and (squall.get("tags") or {}).get("squall:network") == "host":
        return "host"
    return "nat"


def spec_from_stored(
    sf: StoredFunction,
    region: str,
    account: str,
    extra_env: dict[str, str] | None = None,
    code: Callable[[str], Path] = Path,
) -> FunctionSpec:
    """``code`` maps a stored code or layer path to this node's tree (cluster mode: ``CodeStore.materialize``)."""
    c = sf.config
    runtime = str(c.get("Runtime") or "python3.11")
    env = dict((c.get("Environment") or {}).get("Variables") or {})
    if extra_env:
        env = {**extra_env, **env}
    return FunctionSpec(
        name=sf.name,
        code_dir=code(sf.code_path),
        handler=str(c.get("Handler", "")),
        version=sf.version,
        memory_mb=int(c.get("MemorySize", 128)),
        timeout_s=float(c.get("Timeout", 3)),
        environment=env,
        network=network_mode(sf.squall),
        tmp_mb=int((c.get("EphemeralStorage") or {}).get("Size", 512)),
        snapshot=bool(sf.squall.get("snapshot")) and sf.version != "$LATEST" and not runtime.startswith("provided"),
        region=region,
        account_id=account,
        code_sha256=f"{c.get('CodeSha256', '')}:{c.get('RevisionId', '')}",
        runtime=runtime,
        layers=tuple(code(p) for p in sf.squall.get("layers") or ()),
        preimport=_pinned(sf.squall),
    )


def _pinned(squall: dict[str, Any]) -> tuple[str, ...]:
    """The tag squall:preimport (checked when it was set; a stored value that no longer parses pins nothing)."""
    raw = (squall.get("tags") or {}).get("squall:preimport")
    try:
        return tuple(parse_pinned(raw)) if isinstance(raw, str) else ()
    except ValueError:
        return ()


def validate_json_payload(payload: bytes) -> None:
    if not payload:
        return
    try:
        jsonlimits.loads(payload, max_depth=jsonlimits.MAX_PAYLOAD_DEPTH)
    except jsonlimits.JsonTooDeep as e:
        raise InvalidRequestContent(f"Could not parse request body into json: Could not parse payload into json: {e}")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidRequestContent(f"Could not parse request body into json: Could not parse payload into json: {e}")


class Invoker:
    """``enqueue_async``: how async events (InvocationType=Event) enter the durable queue, from a worker thread,
    durable when it returns (the app passes the async dispatcher's hand-over; the store's own insert by default).
    ``observer`` (metrics) and ``tracer`` are told about every invocation; None = off."""

    def __init__(
        self,
        store: SqliteMetadataStore,
        pool: InstancePool,
        records: RecordWriter,
        *,
        region: str = "us-east-1",
        account_id: str = "000000000000",
        function_env: Callable[[str], dict[str, str]] | None = None,
        enqueue_async: Enqueue | None = None,
        observer: InvocationObserver | None = None,
        tracer: Tracer | None = None,
        code: Callable[[str], Path] = Path,
        placer: Callable[..., Awaitable[InvocationResult | None]] | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        self.records = records
        self.region = region
        self.account_id = account_id
        self.function_env = function_env or (lambda name: {})
        #: a stored code path -> this node's tree (cluster mode: fetched from PostgreSQL when missing)
        self.code = code
        self._specs: dict[tuple[str, str], tuple[FunctionSpec, dict[str, float] | None, str]] = {}
        self.enqueue_async: Enqueue = enqueue_async or store.enqueue_many
        self.observer = observer
        self.tracer = tracer
        #: cluster mode (squall.cluster.node): runs an invocation on another node when placement says so and
        #: returns its result, or returns None (run here).  None = one node
        self.placer = placer

    # -- resolution ------------------------------------------------------------------------------------------
    def resolve(self, name: str, qualifier: str | None) -> FunctionSpec:
        """The FunctionSpec of the version that should run (alias weights applied)."""
        q = qualifier or "$LATEST"
        cached = self._specs.get((name, q))
        if cached is None:
            sf = self.store.get_function(name, q)
            routing: dict[str, float] | None = None
            if q != "$LATEST" and not q.isdigit():
                alias = self.store.get_alias(name, q)
                weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
                routing = {str(k): float(v) for k, v in weights.items()} or None
            spec = spec_from_stored(sf, self.region, self.account_id, self.function_env(name), self.code)
            cached = (spec, routing, sf.version)
            self._specs[(name, q)] = cached
        spec, routing, primary = cached
        if routing:
            version = pick_version(routing, primary, random.random())
            if version != primary:
                return self.resolve(name, version)
        return spec

    async def function_changed(self, name: str, qualifier: str = "$LATEST") -> None:
        """Control-plane hook: forget cached specs and drop idle instances of the function."""
        for key in [k for k in self._specs if k[0] == name]:
            del self._specs[key]
        await self.pool.drop(name)

    # -- invocation ------------------------------------------------------------------------------------------
    async def invoke(
        self,
        name: str,
        qualifier: str | None,
        payload: bytes,
        *,
        invocation_type: InvocationType = "RequestResponse",
        client_context: dict[str, Any] | None = None,
        trigger: str = "lambda-api",
        trace_id: str = "",
        traceparent: str = "",
        request_id: str | None = None,
        span: Span | None = None,
        payload_is_json: bool = False,
    ) -> InvocationResult:
        """``span``: the caller's entry span (the Invoke endpoint's), parent of the invocation's spans.
        ``payload_is_json``: the caller made ``payload`` with ``json.dumps`` itself (an HTTP event), so it is not
        parsed again to check it."""
        request_id = request_id or new_request_id()
        if invocation_type == "Event":
            if len(payload) > ASYNC_PAYLOAD_MAX:
                raise RequestTooLarge(
                    f"Request must be smaller than {ASYNC_PAYLOAD_MAX} bytes for the InvokeAsync operation"
                )
        elif len(payload) > SYNC_PAYLOAD_MAX:
            raise RequestTooLarge(f"Request must be smaller than {SYNC_PAYLOAD_MAX} bytes for the Invoke operation")
        if not payload_is_json:
            validate_json_payload(payload)
        spec = self.resolve(name, qualifier)
        if invocation_type == "DryRun":
            return InvocationResult(204, b"", None, spec.version, request_id)
        if invocation_type == "Event":
            # durable (fsync'd) before the 202; in a worker thread, so a slow disk never stalls the event loop
            await asyncio.to_thread(
                self.enqueue_async,
                [{
                    "function": name, "qualifier": qualifier or "$LATEST", "payload": payload,
                    "request_id": request_id, "source": trigger,
                    "extra": {"trace_id": trace_id, "traceparent": span.traceparent() if span else traceparent},
                }],
            )  # fmt: skip
            return InvocationResult(202, b"", None, spec.version, request_id)
        return await self.run(
            spec,
            payload,
            request_id,
            trigger,
            client_context,
            trace_id,
            traceparent,
            wait_s=None,
            parent=span,
            sync=True,
        )

    async def run(
        self,
        spec: FunctionSpec,
        payload: bytes,
        request_id: str,
        trigger: str,
        client_context: dict[str, Any] | None = None,
        trace_id: str = "",
        traceparent: str = "",
        wait_s: float | None = None,
        parent: Span | None = None,
        sync: bool = False,
        forwarded: bool = False,
    ) -> InvocationResult:
        """Run one invocation of ``spec`` now (waiting up to ``wait_s`` for capacity) and record it.

        Traced (``self.tracer``): the spans are children of ``parent``, or of a new entry span continuing
        ``traceparent``/``trace_id`` (a server span when ``sync``: a caller waits; else a consumer span: an event
        is delivered); the function sees the context of its "instance" span.

        In a cluster, placement may run it on another node (``placer``); ``forwarded``: it came from another node
        and runs here, whatever placement says (one hop at most)."""
        if self.placer is not None and not forwarded:
            remote = await self.placer(
                spec, payload, request_id, trigger, client_context, trace_id,
                parent.traceparent() if parent is not None else traceparent, wait_s, sync,
            )  # fmt: skip
            if remote is not None:
                return remote
        start = time.time()
        tracer = self.tracer
        trace = (
            None
            if tracer is None
            else tracer.invocation(spec.name, request_id, trigger, parent, traceparent, trace_id, sync)
        )
        try:
            inst = await self.pool.acquire(spec, wait_s)
        except InitFailed as e:
            if trace is not None:
                err = str(e.document.get("errorType", "Runtime.InitError"))
                trace.finish(spec.version, None, "error", err, init_ms=e.init_ms, cold=True)
            return self._init_failed(spec, request_id, trigger, start, e)
        except SquallError as e:
            throttled = e.code == "TooManyRequestsException"
            if throttled:
                self._record(spec, request_id, trigger, start, None, "throttled", e.code)
            if trace is not None:
                trace.finish(spec.version, None, "throttled" if throttled else "error", e.code)
            raise
        except BaseException as e:
            if trace is not None:
                trace.finish(spec.version, None, "error", type(e).__name__)
            raise
        if trace is not None:
            trace.acquired()
            trace_id, traceparent = trace.instance_context()
        else:
            trace_id = trace_id or _new_trace_id()
        req = InvokeRequest(
            payload=payload,
            request_id=request_id,
            invoked_arn=function_arn(
                self.region, self.account_id, spec.name, None if spec.version == "$LATEST" else spec.version
            ),
            trace_id=trace_id,
            client_context=client_context,
            traceparent=traceparent,
        )
        try:
            outcome = await inst.invoke(req)
        except BaseException as e:
            if trace is not None:
                trace.finish(spec.version, None, "error", type(e).__name__)
            raise
        finally:
            await self.pool.release(inst)
        body = outcome.payload
        error_type = outcome.error_type
        if error_type is None and len(body) > SYNC_PAYLOAD_MAX:
            error_type = "Function.ResponseSizeTooLarge"
            body = json.dumps(
                {
                    "errorMessage": f"Response payload size exceeded maximum allowed payload size ({SYNC_PAYLOAD_MAX} bytes).",
                    "errorType": error_type,
                }
            ).encode()
        status = "ok" if error_type is None else ("timeout" if error_type == "Sandbox.Timedout" else "error")
        self._record(
            spec, request_id, trigger, start, outcome, status, error_type, inst.init_type == "provisioned-concurrency"
        )
        own_traceparent = ""
        if trace is not None:
            trace.finish(spec.version, outcome, status, error_type)
            own_traceparent = trace.parent.traceparent() if trace.owns_parent else ""
        return InvocationResult(
            200, body, None if error_type is None else "Unhandled", spec.version, request_id, outcome.logs, outcome,
            own_traceparent,
        )  # fmt: skip

    def _init_failed(
        self, spec: FunctionSpec, request_id: str, trigger: str, start: float, e: InitFailed
    ) -> InvocationResult:
        doc = dict(e.document)
        doc["requestId"] = request_id
        report = (
            start_line(request_id, spec.version) + e.logs + end_line(request_id)
            + report_line(request_id, e.init_ms, spec.memory_mb, 0, status="error",
                          error_type=str(doc.get("errorType"))) + "\n"
        )  # fmt: skip
        self.records.add(
            InvocationRecord(
                request_id, spec.name, spec.version, trigger, start, e.init_ms, billed_ms(e.init_ms),
                e.init_ms, spec.memory_mb, 0, "error", str(doc.get("errorType")), True, False,
            )
        )  # fmt: skip
        self.records.add_log(request_id, spec.name, start, report)
        if self.observer is not None:
            self.observer.observe(spec.name, trigger, None, "error", init_ms=e.init_ms)
        return InvocationResult(200, json.dumps(doc).encode(), "Unhandled", spec.version, request_id, report)

    def _record(
        self,
        spec: FunctionSpec,
        request_id: str,
        trigger: str,
        start: float,
        outcome: InvokeOutcome | None,
        status: str,
        error_type: str | None,
        provisioned: bool = False,
    ) -> None:
        if outcome is None:
            rec = InvocationRecord(
                request_id, spec.name, spec.version, trigger, start, 0.0, 0, None, spec.memory_mb, 0, status, error_type
            )
        else:
            rec = InvocationRecord(
                request_id, spec.name, spec.version, trigger, start, outcome.duration_ms, outcome.billed_ms,
                outcome.init_ms, outcome.memory_mb, outcome.max_memory_mb, status, error_type, outcome.cold, provisioned,
            )  # fmt: skip
        self.records.add_invocation(rec, None if outcome is None else (request_id, spec.name, start, outcome.logs))
        if self.observer is not None:
            self.observer.observe(spec.name, trigger, outcome, status)


def _new_trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{random_hex(12)};Sampled=0"
