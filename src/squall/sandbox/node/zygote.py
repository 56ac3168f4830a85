"""Zygote processes (``python -m squall.sandbox.node.zygote FD``), in the manner of the SOCK paper's zygote tree.

base zygote        started by the node; has imported the runtime and common stdlib; clones function zygotes
 function zygote   PID 1 of its own PID namespace, in its own cgroups (limits written by the node), enters the
 |                 function's sandbox (user + mount namespace, its own /proc), drops the capabilities it does not
 |                 need, sets no_new_privs and a seccomp filter, and only then runs the function's code: pre-imports
 |                 its dependencies (found by a sandboxed import probe), or in snapshot mode runs the whole init;
 |                 then clones instances on request and reports their exits (hints: the node checks its cgroups)
 +- instance       PID 1 of its own (nested) namespaces, born in its cgroups, unprivileged:
                   runs squall.sandbox.runtime.loop

Everything from the pre-import on is the function's code: the zygote is as hostile as an instance, and nothing it
says (a pid, an exit) makes the node act on anything but the function's own cgroups.

Fork hygiene: gc.freeze() before serving forks; a zygote that has started threads is never forked (it says so and
the node replaces it with one that has pre-imported nothing); children reseed random and leave with os._exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import importlib
import importlib.machinery
import importlib.util
import os
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

from squall.sandbox.node import isolation, runtime_site, syscalls
from squall.sandbox.node.channel import recv_msg, send_msg

__all__ = ["main"]

#: imported by the base zygote so every function and instance shares them copy-on-write
#: cgroups an instance is born in (the zygote steps in for the clone) and cgroups it joins itself
BORN_IN = ("memory", "unified")
JOINED = ("cpu", "pids")
#: capabilities (in its user namespace) a function zygote keeps once set up: kill (its instances run under other
#: uids), setgid/setuid (instances drop to their uid), net_admin (loopback up in a new network namespace),
#: sys_admin (new namespaces, instances' mounts, setns)
ZYGOTE_CAPS = frozenset({5, 6, 7, 12, 21})

COMMON_MODULES = (
    "asyncio", "base64", "collections", "contextlib", "dataclasses", "datetime", "decimal", "email.utils",
    "functools", "hashlib", "hmac", "http.client", "importlib.metadata", "inspect", "io", "itertools", "json",
    "logging", "math", "pathlib", "random", "re", "shutil", "socket", "ssl", "string", "struct", "tempfile",
    "threading", "time", "traceback", "typing", "urllib.parse", "urllib.request", "uuid", "zipfile",
    "squall.sandbox.runtime.loop", "squall.sandbox.runtime.runtime_api",
)  # fmt: skip


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _reap_all() -> list[tuple[int, int]]:
    out = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        out.append((pid, status))
    return out


# --------------------------------------------------------------------------------------------------- instances


def _function_env(spec: dict[str, Any]) -> dict[str, str]:
    name = spec["name"]
    # the interpreter itself, not the server's virtualenv (hidden from functions)
    py_bin = os.path.dirname(getattr(sys, "_base_executable", sys.executable))
    runtime_dir = spec.get("runtime_dir", runtime_site.SANDBOX_PATH)
    env = {
        "PATH": f"{py_bin}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": runtime_dir,
        "PYTHONPATH": runtime_dir,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": spec.get("version", "$LATEST"),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["memory_mb"]),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_REGION": spec.get("region", "us-east-1"),
        "AWS_DEFAULT_REGION": spec.get("region", "us-east-1"),
        "_HANDLER": spec["handler"],
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(spec.get("environment") or {})
    return env


def _is_provided(spec: dict[str, Any]) -> bool:
    return str(spec.get("runtime") or "").startswith("provided")


def _layers_env(task_root: str, opt_root: str | None, provided: bool) -> dict[str, str]:
    """What Lambda adds for layers and custom runtimes (for the processes a function starts): /opt/bin on PATH, the
    libraries of the package and its layers on LD_LIBRARY_PATH; and no AWS_EXECUTION_ENV for a custom runtime (it
    names a managed runtime)."""
    if provided:
        os.environ.pop("AWS_EXECUTION_ENV", None)
    out = {"LD_LIBRARY_PATH": ":".join(p for p in (f"{task_root}/lib", opt_root and f"{opt_root}/lib") if p)}
    if opt_root:
        out["PATH"] = f"{os.environ.get('PATH', '')}:{opt_root}/bin"
    return out


def _netns_ino() -> int:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


#: most module names a probe reports (the node keeps at most squall.sandbox.node.preimport.MAX_NAMES of them)
PROBE_MAX_NAMES = 1024


def _probe_dependencies(handler: str, candidates: list[str]) -> list[str]:
    """Import the handler module, then each candidate (pinned or learned names; one that fails is skipped); return
    every module this pulled in that is not the user's own code, in import order (parents before submodules)."""
    from squall.sandbox.runtime.handler import import_handler_module, split_handler
    from squall.sandbox.runtime.imports import dependencies

    before = set(sys.modules)
    import_handler_module(handler)
    for name in candidates:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    modname, _ = split_handler(handler)
    fresh = [m for m in list(sys.modules) if m not in before]
    return dependencies(fresh, modname.split(".")[0])[:PROBE_MAX_NAMES]


@dataclasses.dataclass
class _Probe:
    request_id: Any
    sock: socket.socket
    pid: int
    decoder: Any
    deadline: float
    timeout_s: float


def preimport(names: list[str], warnings: list[str]) -> list[str]:
    """Import ``names`` here (in order); return those now loaded.  The first failure is a warning, the rest are
    counted."""
    done: list[str] = []
    failed: list[str] = []
    for dep in names:
        if dep in sys.modules:  # (its package's import brought it in already)
            done.append(dep)
            continue
        try:
            importlib.import_module(dep)
            done.append(dep)
        except BaseException as e:
            if not failed:
                warnings.append(f"pre-import of {dep} failed: {type(e).__name__}: {e}")
            failed.append(dep)
    if len(failed) > 1:
        warnings.append(f"{len(failed)} pre-imports failed in all: {', '.join(failed[:10])}")
    return done


class FunctionZygote:
    def __init__(self, ctrl: socket.socket, spec: dict[str, Any], sandbox: dict[str, Any]) -> None:
        self.ctrl = ctrl
        self.spec = spec
        self.sb = sandbox
        self.instances: dict[int, tuple[int, int]] = {}  # pid -> (slot, the node's token for this instance)
        self.instance_netns: dict[int, int] = {}  # network "none": pid -> the namespace it joined
        self._slot_fds: dict[int, list[int]] = {}  # slot -> cgroup.procs fds of what the instance is born in
        self._home_fds: list[int] | None = None  # cgroup.procs fds of the zygote's own cgroups
        self.preloaded_handler: Any = None
        #: the import probe running in the background, if any
        self.probe: _Probe | None = None
        self.netns_pool: list[int] = []
        #: the zygote's network namespace: an instance still in it shares the network with other processes
        self.netns_ino = _netns_ino()
        #: makes network namespaces without a fork each (started before function code runs; None for "host")
        self.netns_factory: isolation.NetnsFactory | None = None
        #: network "nat": namespaces the node asked for and has not received yet (it wires and pools them itself)
        self.netns_owed = 0
        #: the first instance's namespace was asked of the factory during the load and not taken yet
        self.early_netns = False
        self.seccomp = isolation.build_seccomp_filter() if sandbox.get("seccomp") else None
        isolation.prepare_for_instances()  # what every instance would otherwise compute after the fork
        self.warnings: list[str] = []
        #: the zygote's side of the last spawn (sandbox "phases": the bench's per-phase breakdown only)
        self.last_marks: list[list[Any]] | None = None
        if sandbox.get("seccomp") and self.seccomp is None:
            self.warnings.append("seccomp unavailable (pyseccomp/libseccomp missing): no syscall filter")

    # -- spawning ------------------------------------------------------------------------------------------
    def _cgroup_fds(self, slot: int) -> tuple[list[int], list[int]]:
        """(fds of instance slot ``slot``'s memory and v2 cgroup.procs, fds of the zygote's own), opened once."""
        cg = self.sb.get("cgroups") or {}
        if self._home_fds is None:
            self._home_fds = [
                os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
                for c, d in (cg.get("zygote") or {}).items()
                if c in BORN_IN
            ]
        fds = self._slot_fds.get(slot)
        if fds is None:
            fds = [
                os.open(os.path.join(d, f"i{slot}", "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
                for c, d in (cg.get("fn") or {}).items()
                if c in BORN_IN
            ]
            self._slot_fds[slot] = fds
        return fds, self._home_fds

    def spawn(
        self,
        slot: int,
        sock_fd: int,
        log_fd: int,
        init_type: str,
        mode: str = "serve",
        netns_fd: int = -1,
        token: int = 0,
        tmp_fd: int = -1,
    ) -> int:
        """Clone an instance and adopt it; returns its pid (in this zygote's PID namespace).  With namespaces, one
        clone() makes it PID 1 of new PID/mount/UTS/IPC namespaces (no intermediate process); it joins its network
        namespace itself: for network "nat" the one the node wired and sent with the request (``netns_fd``, closed
        here; the import probe stays in the zygote's own), for "none" one from this zygote's pool.  The zygote steps
        into the slot's memory and v2 cgroups for the clone, so the instance is born there (its page tables and
        first pages are charged to it, and the node's kill switch holds it from its first instruction); the
        instance joins its cpu and pids cgroups itself; ``tmp_fd``: the node's detached mount of the slot's /tmp."""
        sb = self.sb
        marks = _Marks() if sb.get("phases") else None
        fn_dirs = (sb.get("cgroups") or {}).get("fn") or {}
        join = {c: os.path.join(d, f"i{slot}") for c, d in fn_dirs.items() if c in JOINED}
        born, home = self._cgroup_fds(slot) if fn_dirs else ([], [])
        network = self.spec.get("network")
        if network == "none":
            netns_fd = self.netns_pool.pop() if self.netns_pool else self._make_netns()
        elif network == "nat" and netns_fd < 0 and mode != "probe":
            netns_fd = self._make_netns()  # (the import probe stays in this zygote's own, wired namespace)
        keep = False  # network "none": the namespace goes back to the pool when the instance exits
        if marks is not None:
            marks.mark("netns")
        try:
            for fd in born:
                os.pwrite(fd, b"0", 0)
            if marks is not None:
                marks.mark("born_in")
            try:
                if sb.get("namespaces"):
                    pid = syscalls.clone_process(
                        syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
                    )
                else:
                    pid = os.fork()
                if pid == 0:
                    if marks is not None:
                        marks.restart("instance")
                    try:
                        self._instance_main(slot, sock_fd, log_fd, init_type, mode, join, netns_fd, tmp_fd, marks)
                    except SystemExit as e:
                        os._exit(e.code if isinstance(e.code, int) else 1)
                    except BaseException:
                        os._exit(1)
            finally:
                if marks is not None:
                    marks.mark("clone")
                for fd in home:
                    os.pwrite(fd, b"0", 0)
            keep = network == "none" and mode in ("serve", "spare") and netns_fd >= 0
        finally:
            if netns_fd >= 0 and not keep:
                os.close(netns_fd)
        if keep:
            self.instance_netns[pid] = netns_fd
        self.instances[pid] = (slot, token)
        if marks is not None:
            marks.mark("home")
            self.last_marks = marks.stamps
        return pid

    def _instance_main(
        self,
        slot: int,
        sock_fd: int,
        log_fd: int,
        init_type: str,
        mode: str,
        dirs: dict[str, str],
        netns_fd: int,
        tmp_fd: int = -1,
        marks: _Marks | None = None,
    ) -> NoReturn:
        sb = self.sb
        try:
            if netns_fd >= 0:
                syscalls.setns(netns_fd, syscalls.CLONE_NEWNET)
            if marks is not None:
                marks.mark("setns")
            os.dup2(sock_fd, 3)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            devnull = os.open("/dev/null", os.O_RDONLY)
            os.dup2(devnull, 0)
            if tmp_fd >= 0:  # the node's detached mount of this slot's /tmp filesystem
                os.dup2(tmp_fd, 4)
                tmp_fd = 4
            os.closerange(5 if tmp_fd >= 0 else 4, 1 << 16)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            sock = socket.socket(fileno=3)
            if sb.get("sched_batch"):  # see NodeConfig.instance_sched
                os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
            if marks is not None:
                marks.mark("fds")
            uid = sb["instance_uid_first"] + slot
            isolation.enter_instance_sandbox(
                cgroup_dirs=dirs,
                tmp_mb=self.spec.get("tmp_mb", 512),
                tmp_fd=tmp_fd,
                uid=uid,
                hostname="localhost",
                pids_max=sb["pids_max"],
                nofile_max=sb["nofile_max"],
                seccomp_filter=self.seccomp,
                mounts=bool(sb.get("namespaces")),
                drop_privileges=bool(sb.get("drop_privileges")),
                mark=marks.mark if marks is not None else None,
            )
            park = None
            if mode == "spare" and not _is_provided(self.spec):
                # made ahead of need: the runtime loop parks it, sandboxed, before any of the function's code
                park = functools.partial(self._park, sock, marks)
            elif mode == "spare":
                os._exit(2)  # (the node makes spares only for the Python runtime)
            else:
                self._set_env(init_type, marks)
        except BaseException as e:
            _die_with_init_error(3, "Runtime.SandboxError", f"could not enter the sandbox: {e}")
        if mode == "probe":
            _probe_main(sock, self.spec["handler"], list(self.spec.get("candidates") or []))
        if _is_provided(self.spec):
            from squall.sandbox.runtime.runtime_api import serve_provided

            serve_provided(sock, init_type, zygote_netns=self.netns_ino, unique_uid=bool(sb.get("drop_privileges")))
        from squall.sandbox.runtime.loop import serve

        serve(sock, self.spec["handler"], init_type, self.preloaded_handler, marks, park)

    def _set_env(self, init_type: str, marks: _Marks | None) -> None:
        # random was reseeded by the fork hooks (os.register_at_fork), as after os.fork
        os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = (
            time.strftime("%Y/%m/%d/", time.gmtime())
            + f"[{self.spec.get('version', '$LATEST')}]"
            + os.urandom(16).hex()
        )
        os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = init_type
        if marks is not None:
            marks.mark("env")

    def _park(self, sock: socket.socket, marks: _Marks | None) -> str:
        """A spare instance, sandboxed, its runtime set up: warm the import system (the page copies a first import
        costs after the fork: locating the handler's top-level module as the zygote did, an empty module object for
        it, compiling and running a platform-owned snippet; none of the function's modules is imported or run, only
        import hooks its pre-imported dependencies may have installed, sandboxed, as they ran in the zygote), say
        PARKED, then wait for START (exactly that frame: the runtime loop reads what follows with a decoder of its
        own).  Returns the init type.  Anything else, or the node gone: exit."""
        from squall.sandbox.protocol import FrameDecoder, Kind, ProtocolError, encode

        with contextlib.suppress(Exception):
            found = importlib.machinery.PathFinder.find_spec(
                self.spec["handler"].rsplit(".", 1)[0].replace("/", ".").split(".")[0]
            )
            exec(compile(_WARM_SOURCE, "<squall-warm>", "exec"), {"__name__": "squall_warm"})
            if found is not None and type(found.loader) is importlib.machinery.SourceFileLoader:
                importlib.util.module_from_spec(found)  # (a module object, never executed; thrown away)
        sock.sendall(encode(Kind.PARKED))
        if marks is not None:
            marks.mark("parked")
        head = sock.recv(4, socket.MSG_WAITALL)
        if len(head) != 4:
            os._exit(0)
        size = int.from_bytes(head, "big")
        if size > 4096:
            os._exit(2)
        rest = sock.recv(size, socket.MSG_WAITALL)
        try:
            frames = FrameDecoder().feed(head + rest)
        except ProtocolError:
            os._exit(2)
        if len(frames) != 1 or frames[0].kind != Kind.START:
            os._exit(0)
        if marks is not None:
            marks.mark("start")
        itype = frames[0].header.get("init_type")
        init_type = itype if isinstance(itype, str) and itype in INIT_TYPES else "on-demand"
        self._set_env(init_type, marks)
        return init_type

    # -- main loop ---------------------------------------------------------------------------------------
    def handle(self, msg: dict[str, Any], fds: list[int]) -> None:
        op = msg.get("op")
        if op == "spawn":
            recv_mark = ["recv", *_Marks.now()]
            try:
                extra = fds[2:]  # [the wired network namespace (nat)], [the slot's /tmp mount]: as the header says
                netns_fd = fds.pop(2) if msg.get("netns") and extra else -1
                tmp_fd = fds[2] if msg.get("tmp") and len(fds) > 2 else -1  # (closed with the others, below)
                pid = self.spawn(
                    int(msg["slot"]), fds[0], fds[1], msg.get("init_type", "on-demand"), netns_fd=netns_fd,
                    token=int(msg.get("token", 0)), tmp_fd=tmp_fd, mode="spare" if msg.get("spare") else "serve",
                )  # fmt: skip
                reply: dict[str, Any] = {"op": "spawned", "id": msg["id"], "pid": pid}
                if self.last_marks is not None:
                    self.last_marks.insert(0, recv_mark)
                    reply["marks"], self.last_marks = self.last_marks, None
                send_msg(self.ctrl, reply)
            except Exception as e:
                send_msg(self.ctrl, {"op": "spawned", "id": msg["id"], "error": f"{type(e).__name__}: {e}"})
            finally:
                for fd in fds:
                    os.close(fd)
        elif op == "probe":
            for fd in fds:
                os.close(fd)
            self.start_probe(msg)
        elif op == "netns-want":
            self.netns_owed += max(0, int(msg.get("count", 0)))
            for fd in fds:
                os.close(fd)
        elif op == "kill":  # only where the node has no cgroup.kill of its own
            for pid, (_slot, token) in list(self.instances.items()):
                if token == msg.get("token"):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        elif op == "exit":
            if os.getpid() != 1:  # as PID 1 of its namespace, its exit takes every instance with it
                for pid in list(self.instances):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            os._exit(0)

    # -- the import probe (in the background, on the node's request) ------------------------------------------
    def start_probe(self, msg: dict[str, Any]) -> None:
        """Fork the import probe: a sandboxed instance (slot 0) that imports the handler module and the candidate
        names, and answers with the dependencies it saw; the zygote keeps serving meanwhile."""
        if self.probe is not None:
            send_msg(self.ctrl, {"op": "probed", "id": msg["id"], "error": "a probe is already running"})
            return
        self.spec["candidates"] = [str(c) for c in msg.get("candidates") or []][:PROBE_MAX_NAMES]
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        devnull = os.open("/dev/null", os.O_WRONLY)
        try:
            pid = self.spawn(slot=0, sock_fd=child.fileno(), log_fd=devnull, init_type="on-demand", mode="probe")
        except Exception as e:
            parent.close()
            send_msg(self.ctrl, {"op": "probed", "id": msg["id"], "error": f"could not start the probe: {e}"})
            return
        finally:
            child.close()
            os.close(devnull)
        self.instances.pop(pid, None)  # not an instance of the node's: no exit report
        from squall.sandbox.protocol import FrameDecoder

        timeout_s = float(self.sb.get("init_timeout_s", 10.0))
        self.probe = _Probe(msg["id"], parent, pid, FrameDecoder(), time.monotonic() + timeout_s, timeout_s)

    def probe_readable(self) -> None:
        from squall.sandbox.protocol import Kind

        pr = self.probe
        assert pr is not None
        try:
            data = pr.sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self.finish_probe(None, "import probe exited without an answer")
            return
        try:
            frames = pr.decoder.feed(data)
        except Exception as e:
            self.finish_probe(None, f"import probe broke the protocol: {e}")
            return
        for frame in frames:
            if frame.kind == Kind.READY:
                deps = frame.header.get("probe")
                threads = frame.header.get("threads")
                if threads != 1:  # never import in place what starts threads: forking it would be unsafe
                    self.finish_probe([], f"the imports started threads in the import probe ({threads}): "
                                          "nothing is pre-imported")  # fmt: skip
                else:
                    self.finish_probe([str(d) for d in deps] if isinstance(deps, list) else [], None)
            else:
                self.finish_probe(None, f"import probe failed: {frame.body[:300].decode(errors='replace')}")
            return

    def finish_probe(self, deps: list[str] | None, why: str | None) -> None:
        """Stop the probe, pre-import what it imported (here, in place: the next instances inherit it), answer."""
        pr, self.probe = self.probe, None
        assert pr is not None
        pr.sock.close()
        with contextlib.suppress(OSError):
            os.kill(pr.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pr.pid, 0)
        reply: dict[str, Any] = {"op": "probed", "id": pr.request_id}
        if why is not None:
            reply["error"] = why
            send_msg(self.ctrl, reply)
            return
        warnings: list[str] = []
        reply["probe"] = deps
        reply["preloaded"] = preimport(deps or [], warnings)
        keep = {1, self.netns_factory.pid if self.netns_factory is not None else -1}
        strays = _stop_strays(keep, own_pidns_only=True)
        if strays:
            warnings.append(f"stopped {strays} processes the pre-imports left in the zygote")
        reply["threads"] = _thread_count()
        reply["warnings"] = warnings
        gc.collect()
        gc.freeze()
        send_msg(self.ctrl, reply)

    def _make_netns(self) -> int:
        return self.netns_factory.make() if self.netns_factory is not None else isolation.make_netns()

    def take_early_netns(self, block: bool) -> None:
        """Take the namespace :func:`_factory_ask` asked for during the load, if it is there (or wait for it): for
        "nat" send it to the node (``early``: the node wires it and counts it as the first of the pool it asks for,
        the first instance's), for "none" it starts the zygote's pool.  (If a make() took it meanwhile, the factory
        answers in order: this takes make()'s.)"""
        if not self.early_netns or self.netns_factory is None:
            return
        fd = -1
        try:
            msg, fds, _, _ = socket.recv_fds(self.netns_factory.sock, 16, 1, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            msg, fds = b"", []
        self.early_netns = False
        if msg == b"1" and len(fds) == 1:
            fd = fds[0]
            os.set_inheritable(fd, False)
        else:
            for f in fds:
                os.close(f)
        if self.spec.get("network") == "nat":
            try:
                send_msg(self.ctrl, {"op": "netns", "early": True}, [fd] if fd >= 0 else [])
            finally:
                if fd >= 0:
                    os.close(fd)
        elif fd >= 0:
            if len(self.netns_pool) < self.sb.get("netns_pool_size", 2):
                self.netns_pool.append(fd)
            else:
                os.close(fd)

    def _wants_netns(self) -> bool:
        if self.spec.get("network") == "nat":
            return self.netns_owed > 0
        # below half the pool: an instance's namespace comes back to the pool when it exits
        low = max(1, self.sb.get("netns_pool_size", 2) // 2)
        return self.spec.get("network") == "none" and len(self.netns_pool) < low

    def refill(self) -> None:
        """Make one network namespace (only when nothing else is waiting: ~1 ms of kernel work)."""
        if self.spec.get("network") == "nat" and self.netns_owed > 0:
            self.netns_owed -= 1
            try:
                fd = self._make_netns()
            except OSError as e:
                send_msg(self.ctrl, {"op": "netns", "error": str(e)})
                return
            try:
                send_msg(self.ctrl, {"op": "netns"}, [fd])
            finally:
                os.close(fd)
            return
        if self.spec.get("network") == "none" and len(self.netns_pool) < self.sb.get("netns_pool_size", 2):
            try:
                self.netns_pool.append(self._make_netns())
            except OSError as e:
                self.warnings.append(f"network namespace pool: {e}")

    def serve_forever(self) -> NoReturn:
        sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        while True:
            timeout = 0.0 if self._wants_netns() else None
            ctrl_fd = self.ctrl.fileno()
            watch = [ctrl_fd, sig_r]
            if self.early_netns and self.netns_factory is not None:
                watch.append(self.netns_factory.sock.fileno())
            if self.probe is not None:
                watch.append(self.probe.sock.fileno())
                left = max(0.0, self.probe.deadline - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            ready, _, _ = select.select(watch, [], [], timeout)
            if self.early_netns and self.netns_factory is not None and self.netns_factory.sock.fileno() in ready:
                self.take_early_netns(block=True)
            if self.probe is not None:
                if self.probe.sock.fileno() in ready:
                    self.probe_readable()
                elif time.monotonic() >= self.probe.deadline:
                    self.finish_probe(None, f"import probe timed out after {self.probe.timeout_s:.0f} s")
            if not ready:
                if self._wants_netns():
                    self.refill()
                continue
            if sig_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(sig_r, 4096)
                for pid, status in _reap_all():
                    known = self.instances.pop(pid, None)
                    if known is not None:
                        slot, token = known
                        send_msg(
                            self.ctrl, {"op": "exited", "token": token, "slot": slot, "pid": pid, "status": status}
                        )
                    netns_fd = self.instance_netns.pop(pid, None)
                    if netns_fd is not None:
                        if len(self.netns_pool) < self.sb.get("netns_pool_size", 2):
                            self.netns_pool.append(netns_fd)
                        else:
                            os.close(netns_fd)
            if ctrl_fd in ready:
                got = recv_msg(self.ctrl)
                if got is None:
                    self.handle({"op": "exit"}, [])
                    os._exit(0)
                self.handle(*got)


#: the init types a node may give a spare instance (Lambda's AWS_LAMBDA_INITIALIZATION_TYPE)
INIT_TYPES = frozenset({"on-demand", "provisioned-concurrency", "snap-start"})


#: compiled by a spare instance before it parks (see FunctionZygote._park)
_WARM_SOURCE = "def handler(event, context):\n    return {'ok': [1, 2.0, None, 'x']}\n"


def _die_with_init_error(fd: int, error_type: str, message: str) -> NoReturn:
    import json

    from squall.sandbox.protocol import Kind, encode

    doc = {"errorMessage": message, "errorType": error_type, "requestId": "", "stackTrace": []}
    with contextlib.suppress(OSError):
        os.write(fd, encode(Kind.INIT_ERROR, {"error_type": error_type}, json.dumps(doc).encode()))
    os._exit(0)


def _probe_main(sock: socket.socket, handler: str, candidates: list[str]) -> NoReturn:
    import json

    from squall.sandbox.protocol import Kind, encode
    from squall.sandbox.runtime.errors import InitError

    try:
        deps = _probe_dependencies(handler, candidates)
        sock.sendall(encode(Kind.READY, {"probe": deps, "threads": _thread_count()}))
    except InitError as e:
        sock.sendall(encode(Kind.INIT_ERROR, {"error_type": e.error_type}, json.dumps(e.document()).encode()))
    except BaseException as e:
        doc = {"errorMessage": str(e), "errorType": type(e).__name__, "requestId": "", "stackTrace": []}
        sock.sendall(encode(Kind.INIT_ERROR, {"error_type": type(e).__name__}, json.dumps(doc).encode()))
    os._exit(0)


def _ask_to_wire_own_netns(ctrl: socket.socket) -> None:
    """Network "nat": have the node wire this zygote's own namespace, so that pre-imports and snapshot init reach
    what an instance reaches (as Lambda's init phase does).  The node answers before anything else; the zygote
    finishes its set-up meanwhile and waits for the answer (:func:`_own_netns_wired`) before running any of the
    function's code."""
    fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        send_msg(ctrl, {"op": "netns", "self": True}, [fd])
    finally:
        os.close(fd)


def _own_netns_wired(ctrl: socket.socket) -> list[str]:
    got = recv_msg(ctrl)
    if got is None:
        os._exit(1)
    msg, fds = got
    for f in fds:
        os.close(f)
    if msg.get("op") != "netns-wired" or msg.get("error"):
        return [f"no network during init and pre-imports: {msg.get('error') or msg.get('op')}"]
    return []


def _factory_ask(factory: isolation.NetnsFactory | None) -> bool:
    """Ask the network namespace factory for a namespace now; :meth:`FunctionZygote.take_early_netns` takes it."""
    if factory is None or factory.pid <= 0:
        return False
    try:
        factory.sock.send(b"n")
    except OSError:
        return False
    return True


def _join_own_cgroups(sb: dict[str, Any]) -> None:
    """First thing a function zygote does, still host root: move itself into the cgroups the node made for it."""
    for d in ((sb.get("cgroups") or {}).get("zygote") or {}).values():
        fd = os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _lockdown(sb: dict[str, Any], warnings: list[str]) -> None:
    """The zygote's set-up is done: from here on it runs the function's code.  Keep only the capabilities it needs
    to make instances, set no_new_privs and install the zygote's seccomp filter."""
    if sb.get("namespaces"):
        try:
            syscalls.drop_capabilities(set(ZYGOTE_CAPS))
        except OSError as e:
            warnings.append(f"could not drop the zygote's capabilities: {e}")
    syscalls.set_no_new_privs()
    if sb.get("seccomp"):
        f = isolation.build_zygote_seccomp_filter()
        if f is None:
            warnings.append("seccomp unavailable for the function zygote")
        else:
            f.load()


def _pidns(pid: int | str) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return -1


def _stop_strays(keep: set[int], own_pidns_only: bool = False) -> int:
    """Kill every process left in this zygote's PID namespace (import-time or init code may fork): instances are
    forked from the zygote alone; ``keep`` (PID 1, the network namespace factory, started before any function code)
    is spared.  ``own_pidns_only``: only processes of the zygote's own PID namespace (instances, their children and
    the probe live in nested ones).  Only as PID 1 of its own namespace.  Returns how many were reaped."""
    if os.getpid() != 1:
        return 0
    mine = _pidns("self")

    def strays() -> list[int]:
        return [
            int(p) for p in os.listdir("/proc")
            if p.isdigit() and int(p) not in keep and (not own_pidns_only or _pidns(p) == mine)
        ]  # fmt: skip

    n = 0
    deadline = time.monotonic() + 2.0
    for _ in range(3):
        others = strays()
        if not others:
            break
        for pid in others:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if own_pidns_only:  # instances exit meanwhile: their exits are serve_forever's to report, never reaped here
            pending = set(others)
            while pending and time.monotonic() < deadline:
                for pid in list(pending):
                    try:
                        done, _status = os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:  # not our child: gone with its parent, or reparented and reaped
                        done = pid if not os.path.exists(f"/proc/{pid}") else 0
                    if done:
                        pending.discard(pid)
                        n += 1
                if pending:
                    time.sleep(0.001)
            continue
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == 0:
                if time.monotonic() > deadline or not strays():
                    break
                time.sleep(0.001)
                continue
            n += 1
    return n


class _Phases:
    """Where a function zygote's load goes: milliseconds per named phase, in order (its load report's "phases")."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._t = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = round((now - self._t) * 1000, 3)
        self._t = now


class _Marks:
    """Where one instance's creation goes (sandbox "phases", set only by bench/sandbox_start.py --phases): named
    stamps of CLOCK_MONOTONIC (one clock for every process: the node lines up its own, the zygote's and the
    instance's) and of this thread's CPU time, in nanoseconds; and the process's minor page faults so far."""

    __slots__ = ("stamps",)

    def __init__(self) -> None:
        self.stamps: list[list[Any]] = []

    @staticmethod
    def now() -> tuple[int, int]:
        return time.monotonic_ns(), time.thread_time_ns()

    def mark(self, name: str) -> None:
        import resource

        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # (copy-on-write faults, mostly)
        self.stamps.append([name, time.monotonic_ns(), time.thread_time_ns(), faults])

    def restart(self, name: str) -> None:
        """In the child right after the clone: its own list (CPU time restarts at 0 in a new process)."""
        self.stamps = []
        self.mark(name)


def _function_zygote_main(
    ctrl: socket.socket, spec: dict[str, Any], sb: dict[str, Any], go_r: int, ack_w: int
) -> NoReturn:
    """Body of a freshly cloned function zygote (PID 1 of its PID namespace when namespaces are available)."""
    t0 = time.perf_counter()
    phases = _Phases()
    wiring = False  # the node is wiring this zygote's own network namespace
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    syscalls.set_pdeathsig(signal.SIGKILL)
    warnings: list[str] = []
    try:
        _join_own_cgroups(sb)
        phases.mark("cgroups")
        # build the mount namespace while still host root (the Python installation may sit under a directory
        # only root can traverse); entering the user namespace afterwards locks these mounts: the function
        # cannot unmount the masks or make the host filesystem writable again
        if sb.get("namespaces"):
            syscalls.unshare(syscalls.CLONE_NEWNS)
            warnings += isolation.enter_function_sandbox(
                spec["code_dir"],
                sb["data_dir"],
                bool(sb.get("cgroups")),
                spec.get("network", "host"),
                spec.get("opt_dir"),
            )
            # a /proc of its own PID namespace: no host process is visible (read-only: instances mount theirs so)
            syscalls.mount(
                "proc", "/proc", "proc",
                syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC,
            )  # fmt: skip
            if sb.get("unified_mount"):
                syscalls.set_readonly(sb["unified_mount"], False, recursive=False)
            task_root = "/var/task"
            opt_root = "/opt" if spec.get("opt_dir") else None
        else:
            task_root = spec["code_dir"]
            opt_root = spec.get("opt_dir")
            os.chdir(task_root)
        phases.mark("mounts")
        if sb.get("userns"):
            syscalls.unshare(syscalls.CLONE_NEWUSER)
        os.write(ack_w, b"u")
        if os.read(go_r, 1) != b"g":
            os._exit(1)
        phases.mark("userns")
        if sb.get("userns"):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        if spec.get("network") != "host" and sb.get("namespaces"):
            # pre-imports and snapshot init run here: never in the host's network namespace unless the function
            # asked for it (instances get their own namespaces)
            syscalls.unshare(syscalls.CLONE_NEWNET)
            syscalls.bring_loopback_up()
            if spec.get("network") == "nat":
                _ask_to_wire_own_netns(ctrl)
                wiring = True
        phases.mark("netns")
        os.close(go_r)
        os.close(ack_w)
        if os.getpid() != 1:
            syscalls.set_child_subreaper()
    except Exception as e:
        send_msg(ctrl, {"op": "ready", "fatal": f"could not enter the function sandbox: {e}"})
        os._exit(1)
    # the function's runtime: its code, layers, Lambda's runtime site-packages and the stdlib; not the server's
    runtime_dir = runtime_site.SANDBOX_PATH if sb.get("namespaces") else str(runtime_site.ensure(Path(sb["data_dir"])))
    os.environ.clear()
    os.environ.update(_function_env({**spec, "runtime_dir": runtime_dir}))
    os.environ["LAMBDA_TASK_ROOT"] = task_root
    py_path = isolation.function_sys_path(task_root, runtime_dir)  # /opt entries always, as on Lambda
    if opt_root and opt_root != "/opt":  # no mount namespace: the merged layers' host directory
        py_path = [p.replace("/opt/", f"{opt_root}/", 1) if p.startswith("/opt/") else p for p in py_path]
    sys.path[:] = py_path
    isolation.forget_platform_modules()
    provided = _is_provided(spec)
    if provided or opt_root:
        os.environ.update(_layers_env(task_root, opt_root, provided))
    importlib.invalidate_caches()
    from squall.sandbox.runtime import init as runtime_init

    runtime_init.prepare()  # before any of the function's code: its instances reap orphans (runtime/init.py)
    fz = FunctionZygote(ctrl, spec, sb)
    if spec.get("network") in ("nat", "none"):
        try:
            fz.netns_factory = isolation.NetnsFactory()
        except OSError as e:
            warnings.append(f"network namespace factory: {e}")
    warnings += fz.warnings
    # the first instance's network namespace: the factory makes it while this zygote finishes loading
    fz.early_netns = bool(spec.get("netns_early")) and _factory_ask(fz.netns_factory)
    phases.mark("runtime")
    try:
        _lockdown(sb, warnings)
    except OSError as e:
        send_msg(ctrl, {"op": "ready", "fatal": f"could not confine the function zygote: {e}"})
        os._exit(1)
    phases.mark("lockdown")
    if wiring:
        warnings += _own_netns_wired(ctrl)
        phases.mark("netns_wired")
    early_asked = fz.early_netns
    if early_asked and (spec.get("preload") or spec.get("snapshot")):
        # ready already: the node wires it during the pre-imports or init (else once this zygote serves, so as not
        # to lengthen a load that has nothing to overlap it with)
        fz.take_early_netns(block=False)
        phases.mark("netns_early")
    # from here on: the function's code
    report: dict[str, Any] = {"op": "ready", "warnings": warnings, "preloaded": [], "snapshot": False}
    # "nat": the first instance's namespace is sent (already, or once the factory has it): the node counts on it
    report["netns_early"] = spec.get("network") == "nat" and early_asked
    # what the node says: pinned names and what the import probe saw this code import (a probe runs only in the
    # background, on the node's request: start_probe); never the function's own modules
    t_pre = time.perf_counter()
    report["preloaded"] = preimport([str(d) for d in spec.get("preload") or []], warnings)
    if spec.get("snapshot") and not provided:
        from squall.sandbox.runtime.errors import InitError
        from squall.sandbox.runtime.handler import load_handler
        from squall.sandbox.runtime.loop import run_before_snapshot_hooks

        try:
            fz.preloaded_handler = load_handler(spec["handler"])
            run_before_snapshot_hooks()
            report["snapshot"] = True
        except InitError as e:
            report["init_error"] = e.document()
        except BaseException as e:
            report["init_error"] = {
                "errorMessage": str(e), "errorType": type(e).__name__, "requestId": "",
                "stackTrace": traceback.format_list(traceback.extract_tb(e.__traceback__)),
            }  # fmt: skip
    report["preload_ms"] = (time.perf_counter() - t_pre) * 1000
    phases.mark("preload")
    # locate (never run) the handler's top-level module: the path finder's directory caches are then inherited
    # and each instance's import skips the sys.path scan
    with contextlib.suppress(Exception):
        importlib.machinery.PathFinder.find_spec(spec["handler"].rsplit(".", 1)[0].replace("/", ".").split(".")[0])
    strays = _stop_strays({1, fz.netns_factory.pid if fz.netns_factory is not None else -1})
    if strays:
        warnings.append(f"stopped {strays} processes the function's init code left in the zygote")
    report["threads"] = _thread_count()
    phases.mark("strays")
    gc.collect()
    gc.freeze()
    phases.mark("freeze")
    report["phases"] = phases.ms
    report["load_ms"] = (time.perf_counter() - t0) * 1000
    send_msg(ctrl, report)
    if report["threads"] > 1 or report.get("init_error"):
        # never fork a process that has threads (or a broken snapshot): the node replaces this zygote
        while recv_msg(ctrl) is not None:
            pass
        os._exit(0)
    fz.serve_forever()


# ------------------------------------------------------------------------------------------------ base zygote


def _write_id_maps(pid: int, host_base: int) -> None:
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(f"0 {host_base} 65536\n")
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(f"0 {host_base} 65536\n")


def _start_function_zygote(
    msg: dict[str, Any], ctrl_fd: int, ms: dict[str, float] | None = None
) -> tuple[int, int, int]:
    """Clone a function zygote (PID 1 of a new PID namespace when namespaces are available); returns its pid, a
    pidfd for the node (the node's own handle on it: it never signals a pid) and an fd of its user namespace (-1
    without one), taken while the child still waits for us: the node checks the namespaces that zygote sends
    against it.  ``ms``: where the time went (the clone itself, the child's set-up as host root until it has
    entered its user namespace, the ID maps)."""
    spec, sb = msg["spec"], msg["sandbox"]
    ms = {} if ms is None else ms
    go_r, go_w = os.pipe()
    ack_r, ack_w = os.pipe()
    t = time.perf_counter()
    pid = syscalls.clone_process(syscalls.CLONE_NEWPID) if sb.get("namespaces") else os.fork()
    if pid == 0:
        os.close(go_w)
        os.close(ack_r)
        try:
            ctrl = socket.socket(fileno=ctrl_fd)
            _function_zygote_main(ctrl, spec, sb, go_r, ack_w)
        except BaseException:
            traceback.print_exc()
        os._exit(1)
    ms["clone"] = round((time.perf_counter() - t) * 1000, 3)
    os.close(go_r)
    os.close(ack_w)
    os.close(ctrl_fd)
    pidfd = -1
    userns_fd = -1
    try:
        pidfd = os.pidfd_open(pid)
        t = time.perf_counter()
        if not select.select([ack_r], [], [], 10)[0] or os.read(ack_r, 1) != b"u":
            raise OSError("function zygote did not start")
        ms["child_setup"] = round((time.perf_counter() - t) * 1000, 3)
        t = time.perf_counter()
        if sb.get("userns"):
            _write_id_maps(pid, sb["uid_base"])
            userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        os.write(go_w, b"g")
        ms["id_maps"] = round((time.perf_counter() - t) * 1000, 3)
    except OSError:
        with contextlib.suppress(OSError):
            if pidfd >= 0:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                os.close(pidfd)
        if userns_fd >= 0:
            os.close(userns_fd)
        raise
    finally:
        os.close(go_w)
        os.close(ack_r)
    return pid, pidfd, userns_fd


def main(argv: list[str] | None = None) -> NoReturn:
    argv = sys.argv if argv is None else argv
    ctrl = socket.socket(fileno=int(argv[1]))
    syscalls.set_pdeathsig(signal.SIGKILL)
    for name in COMMON_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    isolation.warm()  # what every function zygote would redo: its forks inherit it
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # function zygotes are reaped automatically
    gc.collect()
    gc.freeze()
    send_msg(ctrl, {"op": "ready", "pid": os.getpid(), "threads": _thread_count()})
    while True:
        got = recv_msg(ctrl)
        if got is None:
            os._exit(0)
        msg, fds = got
        if msg.get("op") == "function":
            try:
                ms: dict[str, float] = {}
                pid, pidfd, userns_fd = _start_function_zygote(msg, fds[0], ms)
                try:
                    send_msg(
                        ctrl, {"op": "started", "id": msg["id"], "pid": pid, "userns": userns_fd >= 0, "ms": ms},
                        [pidfd, userns_fd] if userns_fd >= 0 else [pidfd],
                    )  # fmt: skip
                finally:
                    os.close(pidfd)
                    if userns_fd >= 0:
                        os.close(userns_fd)
            except Exception as e:
                send_msg(ctrl, {"op": "started", "id": msg["id"], "error": f"{type(e).__name__}: {e}"})
        else:
            for fd in fds:
                os.close(fd)


if __name__ == "__main__":
    main()
