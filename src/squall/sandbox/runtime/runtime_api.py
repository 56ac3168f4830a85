"""The Lambda Runtime API inside an instance, for custom runtimes (``provided.al2023``, ``provided.al2``).

The instance's PID 1 (this module; stdlib and ``squall.sandbox.protocol`` only: it runs in every sandbox) starts the
function's ``bootstrap`` executable as its child, with ``AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>``, and serves
Lambda's Runtime API to it over HTTP/1.1, bridging to the node's frames (docs/protocol.md), so the node, the pool
and the invoker see an instance like any other:

====================================================  =========================================================
runtime (bootstrap) -> PID 1                          PID 1 <-> node
====================================================  =========================================================
first ``GET /2018-06-01/runtime/invocation/next``     READY {init_ms} (init is over when the runtime first asks)
``GET .../invocation/next`` (blocks)                  answered with the next INVOKE frame: body = event, headers
                                                      Lambda-Runtime-Aws-Request-Id, -Deadline-Ms,
                                                      -Invoked-Function-Arn, -Trace-Id, -Client-Context,
                                                      -Cognito-Identity
``POST .../invocation/<id>/response`` -> 202          RESULT {ok: true} + the body
``POST .../invocation/<id>/error`` -> 202             RESULT {ok: false, error_type} + the error document
``POST /2018-06-01/runtime/init/error`` -> 202        INIT_ERROR {error_type} + the error document, then exit
bootstrap missing / not executable                    INIT_ERROR Runtime.InvalidEntrypoint
bootstrap exits before its first ``/next``            INIT_ERROR Runtime.ExitError ("exit status N")
bootstrap exits later                                 PID 1 exits with the same status: the node reports it
====================================================  =========================================================

Where the listener lives: an instance with its own network namespace (network mode ``none``, or a per-instance
namespace) listens on Lambda's own ``127.0.0.1:9001``, reachable only from inside that namespace.  An instance that
shares the host's network (mode ``host``) listens on a port the kernel picks (no collision with anything), and
accepts a connection only from a socket owned by its own uid (looked up in ``/proc/net/tcp``): every instance has a
distinct uid, so neither another function nor a host process can take or answer its invocations.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import socket
import struct
import time
from typing import Any, NoReturn

from squall.sandbox.protocol import Frame, FrameDecoder, Kind, ProtocolError, encode

__all__ = ["API_PREFIX", "DEFAULT_PORT", "MAX_RESPONSE_BYTES", "RuntimeApi", "serve_provided"]

API_PREFIX = "/2018-06-01/runtime"
#: Lambda's own port for the Runtime API, used whenever the instance has a network namespace of its own
DEFAULT_PORT = 9001
#: Lambda's limit on a synchronous response (6 MB, as Lambda counts it)
MAX_RESPONSE_BYTES = 6_291_556
#: the largest request body read at all (an error document or a response slightly over the limit)
_MAX_BODY = MAX_RESPONSE_BYTES + 64 * 1024
_MAX_HEAD = 64 * 1024
_RESULT_RE = re.compile(rf"^{re.escape(API_PREFIX)}/invocation/(?P<id>[^/]+)/(?P<what>response|error)$")
_STATUS = {200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error"}  # fmt: skip
_ERROR_TYPE = "lambda-runtime-function-error-type"
#: longest error type passed on (it becomes the invocation record's error type)
_MAX_ERROR_TYPE = 256
_SIGNAL_WORDS: dict[int, str] = {
    signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error", signal.SIGTERM: "terminated", signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction",
}  # fmt: skip


def _error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def _error_doc(body: bytes, error_type: str | None, default_type: str) -> tuple[dict[str, Any], str]:
    """The error document a runtime posted (JSON, as Lambda expects) and its type (the header wins)."""
    try:
        doc = json.loads(body) if body else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        doc = {"errorMessage": body.decode(errors="replace")}
    if not isinstance(doc, dict):
        doc = {"errorMessage": json.dumps(doc)}
    etype = (error_type or str(doc.get("errorType") or default_type))[:_MAX_ERROR_TYPE]
    doc.setdefault("errorType", etype)
    doc.setdefault("errorMessage", "")
    return doc, etype


def _exit_words(status: int) -> tuple[int, str]:
    """(the exit code PID 1 leaves with, Lambda's words) for the bootstrap's wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, f"Runtime exited with error: signal: {_SIGNAL_WORDS.get(sig, str(sig))}"
    code = os.waitstatus_to_exitcode(status)
    return code, f"Runtime exited with error: exit status {code}"


_SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR = 2
_NETLINK_SOCK_DIAG = 4
_LOOPBACK = socket.inet_aton("127.0.0.1")


def _tcp_owner(local_port: int, peer_port: int) -> int | None:
    """The uid owning the loopback TCP socket at ``peer_port`` connected to ``local_port``, as seen from this user
    namespace: one exact sock_diag lookup over netlink (what ``ss`` uses; unprivileged), else /proc/net/tcp."""
    try:
        return _tcp_owner_netlink(local_port, peer_port)
    except OSError:
        return _tcp_owner_proc(local_port, peer_port)


def _tcp_owner_netlink(local_port: int, peer_port: int) -> int | None:
    # struct inet_diag_req_v2: family, protocol, ext, pad, states; struct inet_diag_sockid: sport, dport (big
    # endian), src[4], dst[4], if, cookie[2] (INET_DIAG_NOCOOKIE: do not check it)
    sockid = struct.pack(">HH", peer_port, local_port) + _LOOPBACK + bytes(12) + _LOOPBACK + bytes(12)
    req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    req += struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)
    msg = struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, 1, 1, 0) + req  # NLM_F_REQUEST
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.sendto(msg, (0, 0))
        data = nl.recv(8192)
    if len(data) < 16:
        raise OSError("short sock_diag answer")
    _length, kind = struct.unpack_from("=IH", data, 0)
    if kind == _NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", data, 16)
        if err == -2:  # ENOENT: no such socket
            return None
        raise OSError(-err, "sock_diag lookup failed")
    if kind != _SOCK_DIAG_BY_FAMILY or len(data) < 16 + 72:
        raise OSError("unexpected sock_diag answer")
    # struct inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires, rqueue, wqueue, uid, inode
    (uid,) = struct.unpack_from("=I", data, 16 + 4 + 48 + 12)
    return int(uid)


def _tcp_owner_proc(local_port: int, peer_port: int) -> int | None:
    v4 = f"0100007F:{peer_port:04X}", f"0100007F:{local_port:04X}"
    v6 = f"0000000000000000FFFF00000100007F:{peer_port:04X}", f"0000000000000000FFFF00000100007F:{local_port:04X}"
    for path, (local, remote) in (("/proc/net/tcp", v4), ("/proc/net/tcp6", v6)):
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 7 and fields[1] == local and fields[2] == remote:
                        return int(fields[7])
        except OSError:
            continue
    return None


def _overflow_uid() -> int:
    try:
        with open("/proc/sys/kernel/overflowuid") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65534


class _Client:
    __slots__ = ("buf", "close_after", "continued", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.close_after = False
        self.continued = False


class _Request:
    __slots__ = ("body", "headers", "method", "path")

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


class RuntimeApi:
    """The Runtime API server and its bridge to the node (one instance, one bootstrap, one invocation at a time)."""

    def __init__(self, node: socket.socket, listener: socket.socket, init_type: str, check_peer: bool) -> None:
        self.node = node
        self.listener = listener
        self.init_type = init_type
        self.check_peer = check_peer
        self.decoder = FrameDecoder()
        self.sel = selectors.DefaultSelector()
        self.t0 = time.perf_counter()
        self.initialized = False
        self.waiting: _Client | None = None  # a parked GET /next
        self.queued: Frame | None = None  # an INVOKE not yet handed to the runtime
        self.current: str | None = None  # the request id handed out and not yet answered
        self.t_invoke = 0.0
        self.child = -1
        #: this instance's uid; never the overflow uid that sockets of unmapped (foreign) users show as
        self.uid = os.getuid() if os.getuid() != _overflow_uid() else -1

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start_bootstrap(self, candidates: list[str], env: dict[str, str]) -> None:
        """Start the first executable ``bootstrap`` of ``candidates``; init error (and exit) if there is none."""
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is None:
            self.init_error("Runtime.InvalidEntrypoint", f"Couldn't find valid bootstrap(s): [{' '.join(candidates)}]")
        if not os.access(path, os.X_OK):
            self.init_error("Runtime.InvalidEntrypoint", f"fork/exec {path}: permission denied")
        os.set_inheritable(self.node.fileno(), False)
        try:
            # the bootstrap starts with default signal dispositions (Python ignores SIGPIPE and SIGXFSZ; exec keeps
            # ignored signals ignored, so a shell pipeline would never see SIGPIPE)
            self.child = os.posix_spawn(path, [path], env, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
        except OSError as e:
            self.init_error("Runtime.InvalidEntrypoint", f"fork/exec {path}: {e.strerror or e}".lower())

    def init_error(self, error_type: str, message: str, doc: dict[str, Any] | None = None) -> NoReturn:
        doc = doc or {"errorMessage": message, "errorType": error_type}
        with contextlib.suppress(OSError):
            os.write(2, f"INIT_REPORT Init Duration: {self._ms(self.t0):.2f} ms\tPhase: init\tStatus: error\t"
                        f"Error Type: {error_type}\n".encode())  # fmt: skip
        with contextlib.suppress(OSError, ProtocolError):
            self.node.sendall(encode(Kind.INIT_ERROR, {"error_type": error_type}, json.dumps(doc).encode()))
        self.exit(0)

    def exit(self, code: int) -> NoReturn:
        if self.child > 0:
            with contextlib.suppress(OSError):
                os.kill(self.child, signal.SIGKILL)
        os._exit(code)

    @staticmethod
    def _ms(t: float) -> float:
        return (time.perf_counter() - t) * 1000

    def run(self) -> NoReturn:
        sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # PID 1 of a PID namespace ignores signals without a handler that come from inside it: with SIGINT back to
        # the default, its own bootstrap cannot interrupt it (Python's handler would raise KeyboardInterrupt)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        self._reap()  # the bootstrap may have exited already
        self.listener.setblocking(False)
        self.sel.register(self.node, selectors.EVENT_READ, "node")
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(sig_r, selectors.EVENT_READ, "signal")
        while True:
            for key, _ in self.sel.select():
                what = key.data
                if what == "node":
                    self._from_node()
                elif what == "accept":
                    self._accept()
                elif what == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(sig_r, 4096)
                    self._reap()
                else:
                    self._readable(what)

    def _reap(self) -> None:
        """Reap every child (PID 1 inherits the bootstrap's orphans); act on the bootstrap's exit."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self.child = -1
                code, words = _exit_words(status)
                if not self.initialized:
                    self.init_error("Runtime.ExitError", words)
                os._exit(code)

    # -- node side -------------------------------------------------------------------------------------------
    def _from_node(self) -> None:
        try:
            data = self.node.recv(1 << 16)
            frames = self.decoder.feed(data) if data else []
        except (OSError, ProtocolError):
            self.exit(2)
        if not data:
            self.exit(0)
        for frame in frames:
            if frame.kind == Kind.SHUTDOWN:
                self.exit(0)
            if frame.kind != Kind.INVOKE or self.queued is not None or self.current is not None:
                self.exit(2)
            self.queued = frame
            if self.waiting is not None:
                self._deliver(self.waiting)

    def _deliver(self, client: _Client) -> None:
        frame = self.queued
        assert frame is not None
        h = frame.header
        headers = {
            "Lambda-Runtime-Aws-Request-Id": str(h.get("request_id", "")),
            "Lambda-Runtime-Deadline-Ms": str(int(h.get("deadline_ms", 0))),
            "Lambda-Runtime-Invoked-Function-Arn": str(h.get("invoked_arn", "")),
        }
        if h.get("trace_id"):
            headers["Lambda-Runtime-Trace-Id"] = str(h["trace_id"])
        if h.get("client_context"):
            headers["Lambda-Runtime-Client-Context"] = json.dumps(h["client_context"], separators=(",", ":"))
        if h.get("identity"):
            headers["Lambda-Runtime-Cognito-Identity"] = json.dumps(h["identity"], separators=(",", ":"))
        self.waiting = None
        if self._respond(client, 200, frame.body, headers):
            self.queued = None
            self.current = headers["Lambda-Runtime-Aws-Request-Id"]
            self.t_invoke = time.perf_counter()
            if client.close_after:
                self._close(client)

    def _result(self, ok: bool, error_type: str | None, body: bytes) -> None:
        header = {
            "request_id": self.current,
            "ok": ok,
            "error_type": error_type,
            "duration_ms": self._ms(self.t_invoke),
        }
        self.current = None
        try:
            self.node.sendall(encode(Kind.RESULT, header, body))
        except (OSError, ProtocolError):
            self.exit(2)

    # -- HTTP side -------------------------------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self.check_peer and _tcp_owner(self.listener.getsockname()[1], peer[1]) != self.uid:
                sock.close()  # not this instance's own process: another function or the host
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = _Client(sock)
            self.sel.register(sock, selectors.EVENT_READ, client)

    def _close(self, client: _Client) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(client.sock)
        client.sock.close()
        if self.waiting is client:
            self.waiting = None

    def _readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(client)
            return
        client.buf += data
        if self.waiting is not client:
            self._serve_buffered(client)
        if client.buf and client.sock.fileno() >= 0:
            # a request split over segments (http.client sends the headers and the body in two writes, and Nagle
            # holds the body until the headers are acknowledged): acknowledge at once instead of delaying the ACK
            with contextlib.suppress(OSError):
                client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def _serve_buffered(self, client: _Client) -> None:
        """Answer every complete request in the client's buffer (until one parks on /next)."""
        while self.waiting is not client and client.sock.fileno() >= 0:
            req = self._parse(client)
            if req is None:
                return
            self._route(client, req)
            if client.close_after and self.waiting is not client:
                self._close(client)
                return

    def _parse(self, client: _Client) -> _Request | None:
        buf = client.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._fail(client, 431, "InvalidRequest", "request headers too large")
            return None
        try:
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        except ValueError:
            self._fail(client, 400, "InvalidRequest", "malformed HTTP request")
            return None
        start = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parsed = self._chunked(client, start)
            if parsed is None:
                return None
            body, consumed = parsed
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._fail(client, 400, "InvalidRequest", "bad Content-Length")
                return None
            if length > _MAX_BODY or length < 0:
                self._too_large(client, target.split("?", 1)[0])
                return None
            if len(buf) - start < length:
                if headers.get("expect", "").lower() == "100-continue" and not client.continued:
                    client.continued = True
                    self._send(client, b"HTTP/1.1 100 Continue\r\n\r\n")
                return None
            body, consumed = bytes(buf[start : start + length]), start + length
        del buf[:consumed]
        client.continued = False
        conn = headers.get("connection", "").lower()
        client.close_after = conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive")
        return _Request(method, target.split("?", 1)[0], headers, body)

    def _chunked(self, client: _Client, start: int) -> tuple[bytes, int] | None:
        buf = client.buf
        pos = start
        body = bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            try:
                size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
            except ValueError:
                self._fail(client, 400, "InvalidRequest", "bad chunk size")
                return None
            if len(body) + size > _MAX_BODY:
                self._too_large(client, "")
                return None
            if size == 0:
                end = buf.find(b"\r\n\r\n", eol)
                if end < 0:
                    return None
                return bytes(body), end + 4
            if len(buf) < eol + 2 + size + 2:
                return None
            body += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2

    def _too_large(self, client: _Client, path: str) -> None:
        m = _RESULT_RE.match(path)
        if m and m.group("what") == "response" and m.group("id") == self.current:
            doc = {"errorMessage": f"Response payload size exceeded maximum allowed payload size "
                                   f"({MAX_RESPONSE_BYTES} bytes).", "errorType": "Function.ResponseSizeTooLarge"}  # fmt: skip
            self._result(False, "Function.ResponseSizeTooLarge", json.dumps(doc).encode())
        self._fail(client, 413, "RequestEntityTooLarge", f"request body larger than {MAX_RESPONSE_BYTES} bytes")

    def _fail(self, client: _Client, status: int, error_type: str, message: str) -> None:
        client.close_after = True
        self._respond(client, status, _error_body(error_type, message))
        self._close(client)

    def _send(self, client: _Client, data: bytes) -> bool:
        """Write a whole response: one non-blocking send when it fits the socket buffer (the usual case), else
        blocking until the rest is written (only this instance's own runtime can be slow to read)."""
        try:
            try:
                sent = client.sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                client.sock.setblocking(True)
                client.sock.sendall(data[sent:])
                client.sock.setblocking(False)
            return True
        except OSError:
            self._close(client)
            return False

    def _respond(self, client: _Client, status: int, body: bytes, headers: dict[str, str] | None = None) -> bool:
        head = [f"HTTP/1.1 {status} {_STATUS.get(status, 'Unknown')}", "Content-Type: application/json",
                f"Content-Length: {len(body)}"]  # fmt: skip
        head += [f"{k}: {v.replace(chr(13), '').replace(chr(10), '')}" for k, v in (headers or {}).items()]
        if client.close_after:
            head.append("Connection: close")
        return self._send(client, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace") + body)

    # -- the API ---------------------------------------------------------------------------------------------
    def _route(self, client: _Client, req: _Request) -> None:
        if req.path == f"{API_PREFIX}/invocation/next":
            if req.method != "GET":
                self._respond(client, 405, _error_body("InvalidRequest", "use GET for /invocation/next"))
            else:
                self._next(client)
            return
        if req.path == f"{API_PREFIX}/init/error":
            if req.method != "POST":
                self._respond(client, 405, _error_body("InvalidRequest", "use POST for /init/error"))
            elif self.initialized:
                self._respond(client, 403, _error_body("InvalidStateTransition",
                                                       "init/error after the runtime asked for an invocation"))  # fmt: skip
            else:
                doc, etype = _error_doc(req.body, req.headers.get(_ERROR_TYPE), "Runtime.Unknown")
                self._respond(client, 202, b'{"status":"OK"}')
                self.init_error(etype, str(doc.get("errorMessage", "")), doc)
            return
        m = _RESULT_RE.match(req.path)
        if m is None:
            self._respond(client, 404, _error_body("InvalidRequest", f"no such Runtime API path: {req.path}"))
            return
        if req.method != "POST":
            self._respond(client, 405, _error_body("InvalidRequest", f"use POST for {req.path}"))
            return
        if self.current is None or m.group("id") != self.current:
            self._respond(client, 400, _error_body("InvalidRequestID", f"no invocation {m.group('id')} in progress"))
            return
        if m.group("what") == "response":
            if len(req.body) > MAX_RESPONSE_BYTES:
                self._too_large(client, req.path)
                return
            self._result(True, None, req.body)
        else:
            doc, etype = _error_doc(req.body, req.headers.get(_ERROR_TYPE), "Unhandled")
            self._result(False, etype, json.dumps(doc).encode())
        self._respond(client, 202, b'{"status":"OK"}')

    def _next(self, client: _Client) -> None:
        if self.current is not None:
            self._respond(client, 403, _error_body("InvalidStateTransition",
                                                   f"invocation {self.current} has not been answered"))  # fmt: skip
            return
        if not self.initialized:
            self.initialized = True
            try:
                self.node.sendall(encode(Kind.READY, {"init_ms": self._ms(self.t0), "init_type": self.init_type}))
            except OSError:
                self.exit(2)
        self.waiting = client
        if self.queued is not None:
            self._deliver(client)
            if self.waiting is None and client.sock.fileno() >= 0:
                self._serve_buffered(client)


def _listener(shared_netns: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0 if shared_netns else DEFAULT_PORT))
    sock.listen(64)
    return sock


def serve_provided(node: socket.socket, init_type: str, *, zygote_netns: int, unique_uid: bool) -> NoReturn:
    """PID 1 of a custom-runtime instance: listen, start ``bootstrap``, bridge until the node says stop.

    ``zygote_netns``: the inode of the zygote's network namespace (an instance still in it shares the network);
    ``unique_uid``: instances run as distinct uids, so a connection's owner tells the instance's own processes
    from everyone else's."""
    try:
        own = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        own = zygote_netns
    shared = own == zygote_netns
    try:
        listener = _listener(shared)
    except OSError as e:
        api = RuntimeApi(node, socket.socket(), init_type, False)
        api.init_error("Runtime.SandboxError", f"could not listen for the Runtime API: {e}")
    api = RuntimeApi(node, listener, init_type, check_peer=shared and unique_uid)
    host, port = listener.getsockname()
    env = dict(os.environ)
    env["AWS_LAMBDA_RUNTIME_API"] = f"{host}:{port}"
    task = env.get("LAMBDA_TASK_ROOT", "/var/task")
    api.start_bootstrap([f"{task}/bootstrap", "/opt/bootstrap"], env)
    api.run()
