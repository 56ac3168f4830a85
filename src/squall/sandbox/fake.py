"""An in-process Node for fast, deterministic tests of the shells around the sandbox (pool, invoker, async delivery).

``FakeNode`` offers what the real :class:`~squall.sandbox.node.node.Node` offers them, with the same method names and
signatures (``load``, ``start_instance``, ``stop_instance``, ``unload``), and returns functions and instances with the
attributes they read (``spec``, ``link.closed``, ``instances``; ``id``, ``function``, ``version``, ``alive``,
``init_type``, ``prewarmed``, ``last_max_memory_mb``, ``invoke``).  No process is forked, no socket opened, nothing
sleeps: a function's behaviour is a Python callable (:class:`FakeCode`), and time is a
:class:`~squall.core.clock.FakeClock` that an invocation advances by the duration its handler says it took.

What it reproduces of the real node, because the shells depend on it:

- an init that fails raises :class:`~squall.sandbox.node.instance.InitFailed` from ``start_instance`` (Lambda's error
  document, the init's logs and duration);
- an invocation longer than the function's timeout ends as ``Sandbox.Timedout`` and the instance is dead afterwards
  (``alive`` false), as the real node kills it; a handler that crashes (:class:`Crash`) ends as
  ``Runtime.ExitError`` with a dead instance;
- the first invocation of an instance is a cold start (``Init Duration`` in its REPORT) unless the instance was
  started for provisioned concurrency or pre-warmed; logs are START / handler lines / END / REPORT (one formatter:
  :mod:`squall.core.report`);
- a function whose zygote dies (:meth:`FakeNode.kill_function`) has ``link.closed`` set and its instances dead.

Every action is recorded (``loads``, ``starts``, ``stops``, ``unloads``) for the tests to assert on.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from squall.core.clock import FakeClock
from squall.core.model import FunctionSpec, InvokeOutcome, InvokeRequest
from squall.core.report import billed_ms, end_line, report_line, start_line
from squall.sandbox.node.instance import InitFailed

__all__ = ["Call", "Crash", "FakeCode", "FakeFunction", "FakeInstance", "FakeNode", "Reply"]


@dataclass(frozen=True)
class Reply:
    """What a fake handler returns: the response (or, with ``error_type``, the error document) and how long the
    invocation took on the fake clock."""

    payload: bytes = b"null"
    duration_ms: float = 1.0
    error_type: str | None = None
    #: lines the handler "printed"
    logs: str = ""


class Crash(Exception):
    """Raised by a fake handler: the runtime process dies mid-invocation (the real node reports
    ``Runtime.ExitError``)."""


@dataclass(frozen=True)
class Call:
    """One invocation as the fake handler sees it."""

    request: InvokeRequest
    event: Any
    instance: FakeInstance
    #: 1 for the instance's first invocation
    number: int


Handler = Callable[[Call], "Reply | Awaitable[Reply]"]


def _echo(call: Call) -> Reply:
    return Reply(json.dumps({"event": call.event, "instance": call.instance.id}).encode())


@dataclass
class FakeCode:
    """A function's behaviour: its handler, its init (duration, or the error document it fails with) and the
    memory its instances use."""

    handler: Handler = _echo
    init_ms: float = 50.0
    #: Lambda's init error document (``errorType``, ``errorMessage``): every start of an instance fails with it
    init_error: dict[str, Any] | None = None
    max_memory_mb: int = 20


@dataclass
class FakeLink:
    """The part of the zygote link the shells look at: set when the function's zygote is gone."""

    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class FakeFunction:
    """A loaded function (the real node's ``LoadedFunction``): its spec, its zygote link, its live instances."""

    spec: FunctionSpec
    link: FakeLink = field(default_factory=FakeLink)
    #: instance slot -> instance
    instances: dict[int, FakeInstance] = field(default_factory=dict)
    unloaded: bool = False
    #: the background import probe of the real node (never runs here: the fake pre-imports nothing)
    probe_task: asyncio.Task[None] | None = None


class FakeInstance:
    """One instance: serves one invocation at a time, like the real :class:`~squall.sandbox.node.instance.Instance`."""

    def __init__(self, node: FakeNode, fn: FakeFunction, slot: int, init_type: str, code: FakeCode) -> None:
        self.node = node
        self.fn = fn
        self.slot = slot
        self.id = f"fake-{fn.spec.name}-{slot}-{next(node._ids)}"
        self.function = fn.spec.name
        self.version = fn.spec.version
        self.memory_mb = fn.spec.memory_mb
        self.timeout_s = fn.spec.timeout_s
        self.init_type = init_type
        self.code = code
        self.init_ms: float | None = code.init_ms
        self.alive = True
        self.busy = False
        self.prewarmed = False
        #: a spare instance not taken yet (the real node's SQUALL_SPARE_INSTANCES; the fake makes none)
        self.spare = False
        self.invocations = 0
        self.last_max_memory_mb = 0

    async def invoke(self, req: InvokeRequest) -> InvokeOutcome:
        if not self.alive:
            raise RuntimeError(f"invoke on a dead instance {self.id}")  # the shells must never do this
        if self.busy:
            raise RuntimeError(f"instance {self.id} handed a second concurrent invocation")
        first = self.invocations == 0
        cold = first and self.init_type != "provisioned-concurrency" and not self.prewarmed
        self.invocations += 1
        self.busy = True
        try:
            event = json.loads(req.payload) if req.payload else {}
            call = Call(req, event, self, self.invocations)
            error_type: str | None = None
            status: str | None = None
            timeout_ms = self.timeout_s * 1000
            try:
                got = self.code.handler(call)
                reply = await got if inspect.isawaitable(got) else got
            except Crash as e:
                self.alive = False
                error_type, status = "Runtime.ExitError", "error"
                message = f"RequestId: {req.request_id} Error: Runtime exited with error: {e or 'signal: killed'}"
                reply = Reply(json.dumps({"errorType": error_type, "errorMessage": message}).encode())
            assert isinstance(reply, Reply), f"a fake handler returns a Reply, not {reply!r}"
            duration_ms = reply.duration_ms
            payload, logs = reply.payload, reply.logs
            if status is None:
                error_type = reply.error_type
            if duration_ms > timeout_ms:  # the real node kills it at its deadline
                self.alive = False
                duration_ms = timeout_ms
                error_type, status = "Sandbox.Timedout", "timeout"
                msg = f"RequestId: {req.request_id} Error: Task timed out after {self.timeout_s:.2f} seconds"
                payload = json.dumps({"errorType": error_type, "errorMessage": msg}).encode()
                logs += f"{req.request_id} Task timed out after {self.timeout_s:.2f} seconds\n"
            self.node.clock.advance(duration_ms / 1000)
        finally:
            self.busy = False
        self.last_max_memory_mb = self.code.max_memory_mb
        init_ms = self.init_ms if cold else None
        text = (
            start_line(req.request_id, self.version) + logs + ("" if not logs or logs.endswith("\n") else "\n")
            + end_line(req.request_id)
            + report_line(req.request_id, duration_ms, self.memory_mb, self.code.max_memory_mb, init_ms=init_ms,
                          status=status, error_type=error_type)
            + "\n"
        )  # fmt: skip
        return InvokeOutcome(
            request_id=req.request_id, payload=payload, error_type=error_type, duration_ms=duration_ms,
            billed_ms=billed_ms(duration_ms), init_ms=init_ms, max_memory_mb=self.code.max_memory_mb,
            memory_mb=self.memory_mb, logs=text, cold=cold, instance_id=self.id,
        )  # fmt: skip


class FakeNode:
    """The in-process node.  ``code`` maps a function name to its behaviour (unknown names echo their event)."""

    def __init__(self, clock: FakeClock | None = None, code: dict[str, FakeCode] | None = None) -> None:
        self.clock = clock or FakeClock()
        self.code: dict[str, FakeCode] = dict(code or {})
        self._ids = itertools.count(1)
        self._slots = itertools.count(1)
        #: spec keys loaded, in order (a reload after an unload appears again)
        self.loads: list[str] = []
        self.unloads: list[str] = []
        #: every instance started (failed inits are not instances), and the ids of those stopped by the caller
        self.starts: list[FakeInstance] = []
        self.stops: list[str] = []
        #: init failures raised, as (function, init_type)
        self.init_failures: list[tuple[str, str]] = []

    # -- what the pool calls (the real Node's signatures) ------------------------------------------------------
    async def load(self, spec: FunctionSpec, *, preload: list[str] | None = None) -> FakeFunction:
        self.loads.append(spec.key)
        return FakeFunction(spec)

    async def start_instance(self, fn: FakeFunction, init_type: str | None = None) -> FakeInstance:
        if fn.unloaded or fn.link.closed.is_set():
            raise RuntimeError(f"start_instance on an unloaded function {fn.spec.key}")
        code = self.code.get(fn.spec.name, FakeCode())
        init_type = init_type or ("snapshot-start" if fn.spec.snapshot else "on-demand")
        self.clock.advance(code.init_ms / 1000)
        if code.init_error is not None:
            self.init_failures.append((fn.spec.name, init_type))
            raise InitFailed(dict(code.init_error), f"init of {fn.spec.name} failed\n", code.init_ms)
        inst = FakeInstance(self, fn, next(self._slots), init_type, code)
        fn.instances[inst.slot] = inst
        self.starts.append(inst)
        return inst

    async def stop_instance(self, inst: FakeInstance) -> None:
        if inst.busy:
            raise RuntimeError(f"stop_instance on a busy instance {inst.id}")  # the pool stops idle ones only
        self.stops.append(inst.id)
        self._gone(inst)

    async def unload(self, fn: FakeFunction) -> None:
        self.unloads.append(fn.spec.key)
        fn.unloaded = True
        for inst in list(fn.instances.values()):
            if not inst.busy:
                self._gone(inst)
        fn.link.closed.set()

    # -- what a test does to it ----------------------------------------------------------------------------------
    def kill_function(self, fn: FakeFunction) -> None:
        """The function's zygote died: the real node stops the whole function (its instances go with it)."""
        for inst in list(fn.instances.values()):
            self._gone(inst)
        fn.link.closed.set()

    def live(self, function: str | None = None) -> list[FakeInstance]:
        """Instances started and not gone, oldest first."""
        return [i for i in self.starts if i.alive and function in (None, i.function)]

    def _gone(self, inst: FakeInstance) -> None:
        inst.alive = False
        inst.fn.instances.pop(inst.slot, None)
