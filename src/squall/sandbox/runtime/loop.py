"""The instance's main loop: initialise once, then serve one invocation at a time over the node's socket."""

from __future__ import annotations

import asyncio
import decimal
import inspect
import json
import os
import resource
import socket
import time
from collections.abc import Callable
from typing import Any, NoReturn

from squall.sandbox.protocol import Frame, FrameDecoder, Kind, ProtocolError, encode
from squall.sandbox.runtime import init, logs
from squall.sandbox.runtime.context import LambdaContext
from squall.sandbox.runtime.errors import InitError, error_document, exception_document, format_for_log
from squall.sandbox.runtime.handler import load_handler
from squall.sandbox.runtime.imports import ImportTracker

__all__ = ["run_after_restore_hooks", "run_before_snapshot_hooks", "serve"]


def _json_default(o: Any) -> Any:
    if isinstance(o, decimal.Decimal):
        return int(o) if o == o.to_integral_value() else float(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def run_before_snapshot_hooks() -> None:
    """SnapStart's before-snapshot hooks, in reverse order of registration."""
    import snapshot_restore_py  # type: ignore[import-not-found,unused-ignore]

    hooks = snapshot_restore_py.get_before_snapshot()
    while hooks:
        func, args, kwargs = hooks.pop()
        func(*args, **kwargs)


def run_after_restore_hooks() -> None:
    import snapshot_restore_py

    for func, args, kwargs in snapshot_restore_py.get_after_restore():
        func(*args, **kwargs)


def _max_rss_kb() -> int:
    """Peak resident memory of this instance, shared pages included: the larger of this process's and of its
    largest waited-for descendant's (two getrusage calls: ~1 µs, unlike reading /proc/self/status)."""
    return max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder()
        self.pending: list[Frame] = []

    def send(self, kind: Kind, header: dict[str, Any] | None = None, body: bytes = b"") -> None:
        self.sock.sendall(encode(kind, header, body))

    def recv(self) -> Frame | None:
        while not self.pending:
            data = self.sock.recv(1 << 16)
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)


def _invoke(
    handler: Callable[..., Any], frame: Frame, loop: asyncio.AbstractEventLoop | None
) -> tuple[bytes, str | None]:
    h = frame.header
    request_id = str(h.get("request_id", ""))
    logs.set_request_id(request_id)
    os.environ["_X_AMZN_TRACE_ID"] = str(h.get("trace_id", ""))
    if h.get("traceparent"):
        os.environ["TRACEPARENT"] = str(h["traceparent"])
    else:
        os.environ.pop("TRACEPARENT", None)
    ctx = LambdaContext(
        request_id,
        int(h.get("deadline_ms", 0)),
        str(h.get("invoked_arn", "")),
        h.get("client_context"),
        h.get("identity"),
    )
    try:
        event = json.loads(frame.body) if frame.body else {}
        result = handler(event, ctx)
        if inspect.isawaitable(result):
            if loop is None:
                loop = asyncio.new_event_loop()
            result = loop.run_until_complete(result)
    except SystemExit as exc:  # the handler asked the runtime to exit: Lambda reports "exit status N"
        logs.flush()
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        os._exit(code)
    except Exception as exc:
        doc = exception_document(exc, request_id)
        logs.flush()
        os.write(2, format_for_log(doc).encode(errors="replace"))
        return json.dumps(doc).encode(), doc["errorType"]
    try:
        return json.dumps(result, default=_json_default).encode(), None
    except (TypeError, ValueError) as exc:
        doc = error_document("Runtime.MarshalError", f"Unable to marshal response: {exc}", request_id)
        os.write(2, format_for_log(doc).encode(errors="replace"))
        return json.dumps(doc).encode(), doc["errorType"]


def serve(
    sock: socket.socket,
    handler_name: str,
    init_type: str,
    preloaded: Callable[..., Any] | None = None,
    marks: Any = None,
    park: Callable[[], str] | None = None,
) -> NoReturn:
    """Initialise (unless ``preloaded``: snapshot mode) and serve invocations until the node says stop.

    ``marks``: the instance's creation stamps (squall.sandbox.node.zygote._Marks), only when the node asked for a
    per-phase breakdown (a bench): they go out with READY.  ``park``: a spare instance (made ahead of need) waits
    there, its runtime set up and none of the function's code run, until the node assigns it; returns the init
    type."""
    conn = _Conn(sock)
    logs.install()
    init.install()  # PID 1 reaps orphans (before any user code can create processes)
    if marks is not None:
        marks.mark("runtime")
    if park is not None:
        init_type = park()
    t0 = time.perf_counter()
    # what init and the first invocations import: the node learns it for the next zygote (squall.node.preimport)
    tracker = None if preloaded is not None else ImportTracker(handler_name.rsplit(".", 1)[0].replace("/", ".")
                                                               .split(".")[0])  # fmt: skip
    try:
        if preloaded is not None:
            handler = preloaded
            run_after_restore_hooks()
        else:
            handler = load_handler(handler_name)
    except InitError as e:
        doc = e.document()
        os.write(2, format_for_log(doc).encode(errors="replace"))
        conn.send(Kind.INIT_ERROR, {"error_type": e.error_type}, json.dumps(doc).encode())
        os._exit(0)
    except BaseException as e:  # after-restore hooks may raise anything
        doc = exception_document(e, "")
        os.write(2, format_for_log(doc).encode(errors="replace"))
        conn.send(Kind.INIT_ERROR, {"error_type": doc["errorType"]}, json.dumps(doc).encode())
        os._exit(0)
    init_ms = (time.perf_counter() - t0) * 1000
    logs.flush()
    ready: dict[str, Any] = {"init_ms": init_ms, "init_type": init_type}
    if tracker is not None and (imported := tracker.new()):
        ready["imports"] = imported
    if marks is not None:
        marks.mark("handler")
        ready["marks"] = marks.stamps
    conn.send(Kind.READY, ready)
    loop: asyncio.AbstractEventLoop | None = None
    if inspect.iscoroutinefunction(handler):
        loop = asyncio.new_event_loop()
    while True:
        try:
            frame = conn.recv()
        except (ProtocolError, OSError):
            os._exit(2)
        if frame is None or frame.kind == Kind.SHUTDOWN:
            logs.flush()
            os._exit(0)
        if frame.kind != Kind.INVOKE:
            os._exit(2)
        t = time.perf_counter()
        body, error_type = _invoke(handler, frame, loop)
        duration_ms = (time.perf_counter() - t) * 1000
        logs.flush()
        header = {
            "request_id": frame.header.get("request_id", ""), "ok": error_type is None, "error_type": error_type,
            "duration_ms": duration_ms, "max_rss_kb": _max_rss_kb(),
        }  # fmt: skip
        if tracker is not None:
            more = tracker.after_invoke()
            if more:
                header["imports"] = more
            elif more is None:
                tracker = None
        conn.send(Kind.RESULT, header, body)
        init.after_invoke()
