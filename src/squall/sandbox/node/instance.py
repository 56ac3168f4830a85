"""The node's handle on one running instance: frames over its socket, its log pipe, its limits, and its own cgroup.

The node stops an instance through the instance's cgroup (``cgroup.kill``), never by the pid its zygote reported;
the zygote's exit report is a hint (for the exit status in error messages): the instance is gone when its cgroup says
so (``cgroup.events``: ``populated 0``).  Between invocations the instance is frozen (``cgroup.freeze``) after
``freeze_after_s`` idle, and thawed before the next INVOKE frame is sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squall.core.model import InvokeOutcome, InvokeRequest
from squall.core.report import billed_ms, end_line, report_line, start_line
from squall.core.tick_writes import tick_writer
from squall.sandbox.node.cgroups import OwnedCgroup, oom_kills, wait_empty
from squall.sandbox.node.preimport import LEARN_INVOCATIONS
from squall.sandbox.protocol import Frame, FrameDecoder, Kind, ProtocolError, encode, encode_raw

__all__ = ["InitFailed", "Instance", "InstanceDied", "exit_reason"]


class InstanceDied(Exception):
    pass


@dataclass
class InitFailed(Exception):
    document: dict[str, Any]
    logs: str
    init_ms: float


def exit_reason(status: int | None, oom: bool, pids_limit: int | None = None) -> tuple[str, str]:
    """(errorType, message tail) for an instance that died, the way Lambda words it.

    ``oom``: its memory cgroup's OOM killer fired.  ``pids_limit``: the limit of processes and threads it reached
    (a fork failed on it), if it did.  A fork bomb usually also exhausts memory (every process it forks
    copies pages), but its cause is the process limit: it is reported as ``Runtime.ExitError`` naming that limit,
    never as ``Runtime.OutOfMemory`` (Lambda has no error type of its own for it)."""
    type_, tail = _exit_reason(status, oom)
    if pids_limit is not None:
        return "Runtime.ExitError", f"{tail} (the function reached its limit of {pids_limit} processes and threads)"
    return type_, tail


def _exit_reason(status: int | None, oom: bool) -> tuple[str, str]:
    if status is None:
        return "Runtime.ExitError", "Runtime exited without providing a reason"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        names = {
            signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted",
            signal.SIGBUS: "bus error", signal.SIGTERM: "terminated", signal.SIGFPE: "floating point exception",
            signal.SIGILL: "illegal instruction",
        }  # fmt: skip
        msg = f"Runtime exited with error: signal: {names.get(signal.Signals(sig), str(sig))}"
        return ("Runtime.OutOfMemory" if oom else "Runtime.ExitError"), msg
    return "Runtime.ExitError", f"Runtime exited with error: exit status {os.waitstatus_to_exitcode(status)}"


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.frames: deque[Frame] = deque()
        self.waiter: asyncio.Future[Frame] | None = None
        self.lost = False
        self.protocol_error = False
        self.transport: asyncio.Transport | None = None
        #: a spare instance said PARKED (sandboxed, waiting for START)
        self.parked = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            for frame in self.decoder.feed(data):
                if frame.kind == Kind.PARKED:
                    self.parked.set()
                else:
                    self.frames.append(frame)
        except ProtocolError:
            self.protocol_error = True
            self.connection_lost(None)
            if self.transport:
                self.transport.abort()
            return
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is None or w.done():
            return
        if self.frames:
            w.set_result(self.frames.popleft())
        elif self.lost:
            w.set_exception(InstanceDied())

    def next_frame(self) -> asyncio.Future[Frame]:
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.waiter = fut
        self._wake()
        return fut

    def send(self, data: bytes) -> None:
        """Write at the end of this event-loop pass, with the other writes of the pass (squall.core.tick_writes)."""
        if self.transport is None or self.lost:
            raise InstanceDied()
        tick_writer(asyncio.get_running_loop()).write(self.transport, data)


class Instance:
    """One sandboxed instance, seen from the node.  Serves one invocation at a time."""

    def __init__(
        self,
        *,
        instance_id: str,
        pid: int,
        slot: int,
        function: str,
        version: str,
        memory_mb: int,
        timeout_s: float,
        init_type: str,
        conn: _Conn,
        log_fd: int,
        memory_cgroup: Path | None,
        exited: asyncio.Future[int],
        log_max_bytes: int = 256 * 1024,
        cgroup: OwnedCgroup | None = None,
        kill_fallback: Callable[[], None] | None = None,
        on_gone: Callable[[Instance, bool], None] | None = None,
        freeze_after_s: float = -1.0,
        pids_cgroup: Path | None = None,
        on_imports: Callable[[Any], None] | None = None,
    ) -> None:
        self.id = instance_id
        #: the instance's pid as its zygote reported it (in the zygote's PID namespace): informational only
        self.pid = pid
        self.slot = slot
        self.function = function
        self.version = version
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.init_type = init_type
        self.conn = conn
        self.log_fd = log_fd
        self.memory_cgroup = memory_cgroup
        #: the zygote's exit report (a hint: status for the error message)
        self.exited = exited
        self.log_max_bytes = log_max_bytes
        #: the node's own kill switch and freezer for this instance (cgroup v2), if the kernel has them
        self.cgroup = cgroup
        self._kill_fallback = kill_fallback
        self._on_gone = on_gone
        #: the instance reports the modules its init and first invocations imported (untrusted: the node validates)
        self._on_imports = on_imports
        self._gone: asyncio.Task[bool] | None = None
        self.freeze_after_s = freeze_after_s if cgroup is not None else -1.0
        self._freeze_timer: asyncio.TimerHandle | None = None
        self.busy = False
        self.freezes = 0
        self.init_ms: float | None = None
        #: a per-phase breakdown of its creation (Node.spawn_phases; the zygote's and its own stamps are
        #: untrusted: a bench's display only)
        self.spawn_phases: dict[str, Any] | None = None
        self.ready_marks: Any = None
        self.zygote_marks: Any = None
        self.invocations = 0
        #: started ahead of an expected invocation by the adaptive keep-alive: its first invocation is not cold
        self.prewarmed = False
        #: made ahead of need and parked (SQUALL_SPARE_INSTANCES) until a start takes it: not in use
        self.spare = False
        self._peak_fd = -1
        #: peak of the instance's cgroup (memory charged to it): what the platform trusts (the pool's estimates)
        self.last_max_memory_mb = 0
        #: peak resident memory the instance reports about itself (shared pages included): display only
        self.reported_rss_mb = 0
        self.alive = True
        self.last_used = time.monotonic()
        self._log = bytearray()
        self._log_truncated = False
        self._init_logs = ""
        self._oom_base = oom_kills(memory_cgroup) if memory_cgroup else 0
        self.pids_cgroup = pids_cgroup if pids_cgroup is not None else _sibling_cgroup(memory_cgroup, "pids")
        self._pids_base = _pids_limit_hits(self.pids_cgroup)
        self._loop = asyncio.get_running_loop()
        os.set_blocking(log_fd, False)
        self._loop.add_reader(log_fd, self._drain_logs)

    @property
    def parked(self) -> asyncio.Event:
        """Set once a spare instance is parked in its sandbox, waiting for START."""
        return self.conn.parked

    # -- logs -------------------------------------------------------------------------------------------------
    def _drain_logs(self) -> None:
        while True:
            try:
                chunk = os.read(self.log_fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self.log_fd)
                return
            room = self.log_max_bytes - len(self._log)
            if room > 0:
                self._log += chunk[:room]
            if len(chunk) > room and not self._log_truncated:
                self._log_truncated = True
                self._log += f"\n[squall: log truncated: more than {self.log_max_bytes} bytes]\n".encode()

    def _take_logs(self) -> str:
        self._drain_logs()
        text = self._log.decode(errors="replace")
        self._log.clear()
        self._log_truncated = False
        return text

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def wait_ready(self, timeout_s: float) -> None:
        t0 = time.perf_counter()
        try:
            frame = await asyncio.wait_for(self.conn.next_frame(), timeout_s)
        except TimeoutError:
            self.ensure_gone()
            raise InitFailed(
                {"errorType": "Runtime.InitTimeout", "errorMessage": f"Init timed out after {timeout_s:.2f} seconds",
                 "requestId": "", "stackTrace": []},
                self._take_logs(), timeout_s * 1000,
            )  # fmt: skip
        except InstanceDied:
            status = await self._exit_status()
            etype, msg = self._death(status)
            raise InitFailed(
                {"errorType": etype, "errorMessage": msg, "requestId": "", "stackTrace": []},
                self._take_logs(), (time.perf_counter() - t0) * 1000,
            )  # fmt: skip
        if frame.kind == Kind.READY:
            self.init_ms = float(frame.header.get("init_ms", 0.0))
            if "marks" in frame.header:  # only when the node asked (Node.spawn_phases): display only
                self.ready_marks = frame.header["marks"]
            if self._on_imports is not None and "imports" in frame.header:
                self._on_imports(frame.header["imports"])
            self._init_logs = self._take_logs()
            self.last_used = time.monotonic()
            self._schedule_freeze()
            return
        self.ensure_gone()
        try:
            doc = json.loads(frame.body)
        except ValueError:
            doc = {"errorType": "Runtime.Unknown", "errorMessage": frame.body.decode(errors="replace")}
        raise InitFailed(doc, self._take_logs(), (time.perf_counter() - t0) * 1000)

    def kill(self) -> None:
        """SIGKILL everything in the instance's cgroup (frozen or not).  Without a cgroup of its own (no cgroup
        v2 here) the node asks the zygote, which only reaches its own PID namespace."""
        if self._gone is not None and self._gone.done():
            return  # confirmed gone: the slot (and its cgroup) may already hold the next instance
        if self.cgroup is not None:
            self.cgroup.kill()
        elif self._kill_fallback is not None:
            self._kill_fallback()

    def ensure_gone(self) -> asyncio.Task[bool]:
        """Kill the instance and confirm it is gone (its cgroup empty); True if confirmed.  Idempotent."""
        if self._gone is None:
            self._gone = self._loop.create_task(self._confirm_gone())
        return self._gone

    async def _confirm_gone(self) -> bool:
        self.alive = False
        self._cancel_freeze()
        self.kill()
        if self.cgroup is not None:
            empty = await wait_empty(self.cgroup, 5.0)
            if self.cgroup.frozen:
                with contextlib.suppress(OSError):
                    self.cgroup.thaw()  # the slot's next instance must not be born frozen
        else:  # no cgroup of its own: the zygote's report (or the zygote's own end: the future is cancelled)
            await asyncio.wait({self.exited}, timeout=5.0)
            empty = self.exited.done()
        if self._on_gone is not None:
            self._on_gone(self, empty)
        return empty

    async def stop(self) -> None:
        if self.alive:
            with contextlib.suppress(InstanceDied):
                self.conn.send(encode(Kind.SHUTDOWN))
        await self.ensure_gone()
        self.close()

    def close(self) -> None:
        """Idempotent (stop() and the exit callback both call it): a descriptor closed twice may by then be
        another's (the node creates descriptors in worker threads too, e.g. for /tmp filesystems)."""
        self.alive = False
        self._cancel_freeze()
        if self.log_fd >= 0:  # close() runs twice (stop, then the exit callback): never close a reused number
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.log_fd)
            with contextlib.suppress(OSError):
                os.close(self.log_fd)
            self.log_fd = -1
        if self._peak_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._peak_fd)
            self._peak_fd = -1
        if self.conn.transport is not None:
            self.conn.transport.close()

    async def _exit_status(self, timeout_s: float = 5.0) -> int | None:
        """Make sure the instance is gone, then the exit status its zygote reported, if it did (a hint)."""
        await asyncio.wait_for(asyncio.shield(self.ensure_gone()), timeout_s + 1)
        if not self.exited.done():
            await asyncio.wait({self.exited}, timeout=1.0)
        if self.exited.done() and not self.exited.cancelled():
            return self.exited.result()
        return None

    # -- freezer -------------------------------------------------------------------------------------------
    def _schedule_freeze(self) -> None:
        if self.freeze_after_s >= 0 and self._freeze_timer is None and self.alive:
            self._freeze_timer = self._loop.call_later(self.freeze_after_s, self._freeze_if_idle)

    def _cancel_freeze(self) -> None:
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None

    def _freeze_if_idle(self) -> None:
        self._freeze_timer = None
        if not self.alive or self.busy or self.cgroup is None or self.cgroup.frozen:
            return
        idle = time.monotonic() - self.last_used
        if idle < self.freeze_after_s:
            self._freeze_timer = self._loop.call_later(self.freeze_after_s - idle, self._freeze_if_idle)
            return
        try:
            self.cgroup.freeze()
            self.freezes += 1
        except OSError:
            self.freeze_after_s = -1.0

    def thaw(self) -> None:
        if self.cgroup is not None and self.cgroup.frozen:
            try:
                self.cgroup.thaw()
            except OSError:
                pass

    def host_pid(self) -> int | None:
        """The instance's PID 1 as the host sees it (from its cgroup, for diagnostics: never signalled)."""
        if self.cgroup is None:
            return self.pid
        try:
            pids = [int(x) for x in (self.cgroup.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return None
        for p in pids:
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("NSpid:") and line.split()[-1] == "1":
                        return p
            except OSError:
                continue
        return None

    def _oom_happened(self) -> bool:
        return self.memory_cgroup is not None and oom_kills(self.memory_cgroup) > self._oom_base

    def _pids_limit_reached(self) -> int | None:
        """The instance's limit of processes and threads if a fork failed on it during this instance's life
        (the pids cgroup's own counter: ``pids.events`` ``max``, read from the platform's cgroup files)."""
        if self.pids_cgroup is None or _pids_limit_hits(self.pids_cgroup) <= self._pids_base:
            return None
        try:
            return int((self.pids_cgroup / "pids.max").read_text())
        except (OSError, ValueError):
            return 0

    def _death(self, status: int | None) -> tuple[str, str]:
        return exit_reason(status, self._oom_happened(), self._pids_limit_reached())

    def max_memory_mb(self) -> int:
        """Peak memory of this instance from its cgroup (one pread on a kept fd: this is on every invocation)."""
        if self.memory_cgroup is None:
            return 0
        try:
            if self._peak_fd < 0:
                self._peak_fd = os.open(self.memory_cgroup / "memory.max_usage_in_bytes", os.O_RDONLY | os.O_CLOEXEC)
            self.last_max_memory_mb = math.ceil(int(os.pread(self._peak_fd, 32, 0)) / (1024 * 1024))
        except (OSError, ValueError):
            pass
        return self.last_max_memory_mb

    def _note_reported_rss(self, value: Any) -> None:
        """Keep the instance's own peak-RSS figure, bounded to [0, MemorySize]: the instance is hostile, and this
        number only ever reaches its own REPORT line and records, never a limit, a budget or billing."""
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            self.reported_rss_mb = max(self.reported_rss_mb, min(math.ceil(value / 1024), self.memory_mb))

    def max_memory_used_mb(self) -> int:
        """REPORT's "Max Memory Used", as Lambda users size MemorySize by it: the instance's peak resident memory,
        pages it shares with its zygote included (its own getrusage peak), or its cgroup's peak if larger (children
        and page cache are charged there).  See docs/design.md."""
        return max(self.max_memory_mb(), self.reported_rss_mb)

    # -- invocation ----------------------------------------------------------------------------------------
    async def invoke(self, req: InvokeRequest) -> InvokeOutcome:
        first = self.invocations == 0
        # a provisioned instance initialised ahead of any request: its first invocation is not a cold start and
        # its REPORT has no Init Duration (as on Lambda); the init's logs still come with that first invocation
        cold = first and self.init_type != "provisioned-concurrency" and not self.prewarmed
        self.invocations += 1
        deadline_ms = int((time.time() + self.timeout_s) * 1000)
        header = _invoke_header(req, deadline_ms)
        t0 = time.perf_counter()
        error_type: str | None = None
        status_word = ""
        self.busy = True
        fut = self.conn.next_frame()
        # a timer on the future, not asyncio.wait_for (which wraps it and adds callbacks: ~10 % of this method)
        timer = self._loop.call_later(self.timeout_s, _time_out, fut)
        try:
            self.conn.send(encode_raw(Kind.INVOKE, header, req.payload))
            if self.cgroup is not None and self.cgroup.frozen:
                # thawed right after the frame is written (same end-of-pass callback): the runtime leaves the freezer
                # with the frame already waiting, one wake-up; thawed first, it woke, found nothing, slept in recv
                # again and was woken a second time by the frame
                tick_writer(self._loop).later(self.thaw)
            frame = await fut
            timer.cancel()
            if frame.kind != Kind.RESULT or frame.header.get("request_id") != req.request_id:
                # a forged or out-of-order frame: the instance cannot be trusted any more
                self.conn.protocol_error = True
                raise InstanceDied()
            duration_ms = float(frame.header.get("duration_ms", (time.perf_counter() - t0) * 1000))
            self._note_reported_rss(frame.header.get("max_rss_kb"))
            # (only what the runtime reports for: a flood after that is ignored, not parsed)
            if self._on_imports is not None and self.invocations <= LEARN_INVOCATIONS and "imports" in frame.header:
                self._on_imports(frame.header["imports"])
            body = frame.body
            if not frame.header.get("ok", False):
                error_type = str(frame.header.get("error_type") or "Unhandled")
        except TimeoutError:
            timer.cancel()
            duration_ms = self.timeout_s * 1000
            await self._exit_status()
            self.alive = False
            error_type = "Sandbox.Timedout"
            status_word = "timeout"
            msg = f"RequestId: {req.request_id} Error: Task timed out after {self.timeout_s:.2f} seconds"
            body = json.dumps({"errorType": error_type, "errorMessage": msg}).encode()
            self._log += f"{_iso_now()} {req.request_id} Task timed out after {self.timeout_s:.2f} seconds\n".encode()
        except InstanceDied:
            timer.cancel()
            duration_ms = (time.perf_counter() - t0) * 1000
            # the connection broke or the runtime broke the protocol: make sure it is gone (_exit_status kills it
            # through its cgroup and waits until the cgroup is empty)
            status = await self._exit_status()
            self.alive = False
            error_type, tail = self._death(status)
            if self.conn.protocol_error:
                error_type, tail = (
                    "Runtime.InvalidResponse",
                    "Runtime broke the protocol (malformed or unexpected frame)",
                )
            status_word = "error"
            body = json.dumps(
                {"errorType": error_type, "errorMessage": f"RequestId: {req.request_id} Error: {tail}"}
            ).encode()
            self._log += f"{tail}\n".encode()
        except BaseException:  # cancelled: the timer must not outlive the wait
            timer.cancel()
            raise
        self.last_used = time.monotonic()
        self.busy = False
        self._schedule_freeze()
        billed = billed_ms(duration_ms)
        max_mem = self.max_memory_used_mb()
        init_ms = self.init_ms if cold else None
        text = self._take_logs()
        report = report_line(
            req.request_id, duration_ms, self.memory_mb, max_mem, init_ms=init_ms, status=status_word or None,
            error_type=error_type,
        )  # fmt: skip
        logs = (
            (self._init_logs if first else "")
            + start_line(req.request_id, self.version)
            + text
            + ("" if not text or text.endswith("\n") else "\n")
            + end_line(req.request_id)
            + report
            + "\n"
        )
        return InvokeOutcome(
            request_id=req.request_id, payload=body, error_type=error_type, duration_ms=duration_ms,
            billed_ms=billed, init_ms=init_ms, max_memory_mb=max_mem, memory_mb=self.memory_mb, logs=logs,
            cold=cold, instance_id=self.id,
        )  # fmt: skip


_str = json.encoder.encode_basestring_ascii  # the C escaper json.dumps uses


def _invoke_header(req: InvokeRequest, deadline_ms: int) -> bytes:
    """The INVOKE frame's header, ``json.dumps`` of the documented object, written out (on every invocation: a
    third of the cost of building the dict and encoding it)."""
    cc = "null" if req.client_context is None else json.dumps(req.client_context, separators=(",", ":"))
    ident = "null" if req.identity is None else json.dumps(req.identity, separators=(",", ":"))
    return (
        f'{{"request_id":{_str(req.request_id)},"deadline_ms":{deadline_ms:d},"invoked_arn":{_str(req.invoked_arn)},'
        f'"trace_id":{_str(req.trace_id)},"client_context":{cc},"identity":{ident},'
        f'"traceparent":{_str(req.traceparent)}}}'
    ).encode()


def _time_out(fut: asyncio.Future[Frame]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _sibling_cgroup(memory_dir: Path | None, controller: str) -> Path | None:
    """The instance's cgroup of ``controller`` next to its memory cgroup (v1: /sys/fs/cgroup/<controller>/...)."""
    if memory_dir is None:
        return None
    parts = memory_dir.parts
    if len(parts) > 4 and parts[:4] == ("/", "sys", "fs", "cgroup") and parts[4] == "memory":
        return Path("/sys/fs/cgroup", controller, *parts[5:])
    return memory_dir  # cgroup v2: one directory for every controller


def _pids_limit_hits(pids_dir: Path | None) -> int:
    """How many forks the pids controller refused in this cgroup (cumulative; compare with a baseline)."""
    if pids_dir is None:
        return 0
    try:
        fd = os.open(os.path.join(pids_dir, "pids.events"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 256)
        finally:
            os.close(fd)
        for line in text.splitlines():
            if line.startswith(b"max "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _iso_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
