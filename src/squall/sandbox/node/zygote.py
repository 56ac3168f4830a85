"""Zygote processes (``python -m squall.sandbox.node.zygote FD``), in the manner of the SOCK paper's zygote tree.

base zygote        started by the node; has imported the runtime and common stdlib; clones function zygotes
 function zygote   PID 1 of its own PID namespace, in its own cgroups (limits written by the node), enters the
 |                 function's sandbox (user + mount namespace, its own /proc), drops the capabilities it does not
 |                 need, sets no_new_privs and a seccomp filter, and only then runs the function's code: pre-imports
 |                 its dependencies (found by a sandboxed import probe), or in snapshot mode runs the whole init;
 |                 then clones instances on request and reports their exits (hints: the node checks its cgroups)
 +- instance       PID 1 of its own (nested) namespaces, born in its cgroups, unprivileged: runs squall.sandbox.runtime.loop

Everything from the pre-import on is the function's code: the zygote is as hostile as an instance, and nothing it
says (a pid, an exit) makes the node act on anything but the function's own cgroups.

Fork hygiene: gc.freeze() before serving forks; a zygote that has started threads is never forked (it says so and
the node replaces it with one that has pre-imported nothing); children reseed random and leave with os._exit.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.machinery
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


def _probe_dependencies(handler: str) -> list[str]:
    """Import the handler module; return the top-level modules it pulled in that are not the user's own code."""
    from squall.sandbox.runtime.handler import import_handler_module, split_handler

    before = set(sys.modules)
    import_handler_module(handler)
    modname, _ = split_handler(handler)
    own = modname.split(".")[0]
    tops = sorted({m.split(".")[0] for m in set(sys.modules) - before if not m.startswith("__")} - {own})
    task = Path("/var/task")
    vendored = {p.name.split("-")[0].lower() for p in task.glob("*.dist-info")} if task.exists() else set()
    deps = []
    for top in tops:
        mod = sys.modules.get(top)
        f = getattr(mod, "__file__", None) or ""
        in_task = f.startswith("/var/task/")
        if not in_task or top.lower() in vendored or top in sys.stdlib_module_names:
            deps.append(top)
    return deps


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
        self.netns_pool: list[int] = []
        #: the zygote's network namespace: an instance still in it shares the network with other processes
        self.netns_ino = _netns_ino()
        #: makes network namespaces without a fork each (started before function code runs; None for "host")
        self.netns_factory: isolation.NetnsFactory | None = None
        #: network "nat": namespaces the node asked for and has not received yet (it wires and pools them itself)
        self.netns_owed = 0
        self.seccomp = isolation.build_seccomp_filter() if sandbox.get("seccomp") else None
        isolation.prepare_for_instances()  # what every instance would otherwise compute after the fork
        self.warnings: list[str] = []
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
        fn_dirs = (sb.get("cgroups") or {}).get("fn") or {}
        join = {c: os.path.join(d, f"i{slot}") for c, d in fn_dirs.items() if c in JOINED}
        born, home = self._cgroup_fds(slot) if fn_dirs else ([], [])
        network = self.spec.get("network")
        if network == "none":
            netns_fd = self.netns_pool.pop() if self.netns_pool else self._make_netns()
        elif network == "nat" and netns_fd < 0 and mode != "probe":
            netns_fd = self._make_netns()  # (the import probe stays in this zygote's own, wired namespace)
        keep = False  # network "none": the namespace goes back to the pool when the instance exits
        try:
            for fd in born:
                os.pwrite(fd, b"0", 0)
            try:
                if sb.get("namespaces"):
                    pid = syscalls.clone_process(
                        syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
                    )
                else:
                    pid = os.fork()
                if pid == 0:
                    try:
                        self._instance_main(slot, sock_fd, log_fd, init_type, mode, join, netns_fd, tmp_fd)
                    except SystemExit as e:
                        os._exit(e.code if isinstance(e.code, int) else 1)
                    except BaseException:
                        os._exit(1)
            finally:
                for fd in home:
                    os.pwrite(fd, b"0", 0)
            keep = network == "none" and mode == "serve" and netns_fd >= 0
        finally:
            if netns_fd >= 0 and not keep:
                os.close(netns_fd)
        if keep:
            self.instance_netns[pid] = netns_fd
        self.instances[pid] = (slot, token)
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
    ) -> NoReturn:
        sb = self.sb
        try:
            if netns_fd >= 0:
                syscalls.setns(netns_fd, syscalls.CLONE_NEWNET)
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
            )
            # random was reseeded by the fork hooks (os.register_at_fork), as after os.fork
            os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = (
                time.strftime("%Y/%m/%d/", time.gmtime())
                + f"[{self.spec.get('version', '$LATEST')}]"
                + os.urandom(16).hex()
            )
            os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = init_type
        except BaseException as e:
            _die_with_init_error(3, "Runtime.SandboxError", f"could not enter the sandbox: {e}")
        if mode == "probe":
            _probe_main(sock, self.spec["handler"])
        if _is_provided(self.spec):
            from squall.sandbox.runtime.runtime_api import serve_provided

            serve_provided(sock, init_type, zygote_netns=self.netns_ino, unique_uid=bool(sb.get("drop_privileges")))
        from squall.sandbox.runtime.loop import serve

        serve(sock, self.spec["handler"], init_type, self.preloaded_handler)

    # -- main loop ---------------------------------------------------------------------------------------
    def handle(self, msg: dict[str, Any], fds: list[int]) -> None:
        op = msg.get("op")
        if op == "spawn":
            try:
                extra = fds[2:]  # [the wired network namespace (nat)], [the slot's /tmp mount]: as the header says
                netns_fd = fds.pop(2) if msg.get("netns") and extra else -1
                tmp_fd = fds[2] if msg.get("tmp") and len(fds) > 2 else -1  # (closed with the others, below)
                pid = self.spawn(
                    int(msg["slot"]), fds[0], fds[1], msg.get("init_type", "on-demand"), netns_fd=netns_fd,
                    token=int(msg.get("token", 0)), tmp_fd=tmp_fd,
                )  # fmt: skip
                send_msg(self.ctrl, {"op": "spawned", "id": msg["id"], "pid": pid})
            except Exception as e:
                send_msg(self.ctrl, {"op": "spawned", "id": msg["id"], "error": f"{type(e).__name__}: {e}"})
            finally:
                for fd in fds:
                    os.close(fd)
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

    def _make_netns(self) -> int:
        return self.netns_factory.make() if self.netns_factory is not None else isolation.make_netns()

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
            ready, _, _ = select.select([ctrl_fd, sig_r], [], [], timeout)
            if not ready:
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


def _die_with_init_error(fd: int, error_type: str, message: str) -> NoReturn:
    import json

    from squall.sandbox.protocol import Kind, encode

    doc = {"errorMessage": message, "errorType": error_type, "requestId": "", "stackTrace": []}
    with contextlib.suppress(OSError):
        os.write(fd, encode(Kind.INIT_ERROR, {"error_type": error_type}, json.dumps(doc).encode()))
    os._exit(0)


def _probe_main(sock: socket.socket, handler: str) -> NoReturn:
    import json

    from squall.sandbox.protocol import Kind, encode
    from squall.sandbox.runtime.errors import InitError

    try:
        deps = _probe_dependencies(handler)
        sock.sendall(encode(Kind.READY, {"probe": deps}))
    except InitError as e:
        sock.sendall(encode(Kind.INIT_ERROR, {"error_type": e.error_type}, json.dumps(e.document()).encode()))
    except BaseException as e:
        doc = {"errorMessage": str(e), "errorType": type(e).__name__, "requestId": "", "stackTrace": []}
        sock.sendall(encode(Kind.INIT_ERROR, {"error_type": type(e).__name__}, json.dumps(doc).encode()))
    os._exit(0)


def _run_probe(fz: FunctionZygote, timeout_s: float) -> tuple[list[str] | None, str | None]:
    """Run the import probe in a sandboxed instance; (deps, None) or (None, why it failed)."""
    from squall.sandbox.protocol import FrameDecoder, Kind

    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    devnull = os.open("/dev/null", os.O_WRONLY)
    pid = fz.spawn(slot=0, sock_fd=child.fileno(), log_fd=devnull, init_type="on-demand", mode="probe")
    child.close()
    os.close(devnull)
    dec = FrameDecoder()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([parent], [], [], left)[0]:
                return None, f"import probe timed out after {timeout_s:.0f} s"
            data = parent.recv(1 << 16)
            if not data:
                return None, "import probe exited without an answer"
            for frame in dec.feed(data):
                if frame.kind == Kind.READY:
                    return list(frame.header.get("probe", [])), None
                return None, f"import probe failed: {frame.body[:300].decode(errors='replace')}"
    finally:
        parent.close()
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        fz.instances.pop(pid, None)


def _wire_own_netns(ctrl: socket.socket) -> list[str]:
    """Network "nat": have the node wire this zygote's own namespace, so that pre-imports and snapshot init reach
    what an instance reaches (as Lambda's init phase does).  The node answers before anything else."""
    fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        send_msg(ctrl, {"op": "netns", "self": True}, [fd])
    finally:
        os.close(fd)
    got = recv_msg(ctrl)
    if got is None:
        os._exit(1)
    msg, fds = got
    for f in fds:
        os.close(f)
    if msg.get("op") != "netns-wired" or msg.get("error"):
        return [f"no network during init and pre-imports: {msg.get('error') or msg.get('op')}"]
    return []


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


def _stop_strays(keep: int = -1) -> int:
    """Kill every process left in this zygote's PID namespace (import-time or init code may fork): instances are
    forked from the zygote alone; ``keep`` (the network namespace factory, started before any function code) is
    spared.  Only as PID 1 of its own namespace.  Returns how many were reaped."""
    if os.getpid() != 1:
        return 0
    n = 0
    deadline = time.monotonic() + 2.0
    for _ in range(3):
        others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, keep)]
        if not others:
            break
        for pid in others:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == 0:
                if time.monotonic() > deadline or not any(
                    p.isdigit() and int(p) not in (1, keep) for p in os.listdir("/proc")
                ):
                    break
                time.sleep(0.001)
                continue
            n += 1
    return n


def _function_zygote_main(
    ctrl: socket.socket, spec: dict[str, Any], sb: dict[str, Any], go_r: int, ack_w: int
) -> NoReturn:
    """Body of a freshly cloned function zygote (PID 1 of its PID namespace when namespaces are available)."""
    t0 = time.perf_counter()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    syscalls.set_pdeathsig(signal.SIGKILL)
    warnings: list[str] = []
    try:
        _join_own_cgroups(sb)
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
        if sb.get("userns"):
            syscalls.unshare(syscalls.CLONE_NEWUSER)
        os.write(ack_w, b"u")
        if os.read(go_r, 1) != b"g":
            os._exit(1)
        if sb.get("userns"):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        if spec.get("network") != "host" and sb.get("namespaces"):
            # pre-imports and snapshot init run here: never in the host's network namespace unless the function
            # asked for it (instances get their own namespaces)
            syscalls.unshare(syscalls.CLONE_NEWNET)
            syscalls.bring_loopback_up()
            if spec.get("network") == "nat":
                warnings += _wire_own_netns(ctrl)
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
    try:
        _lockdown(sb, warnings)
    except OSError as e:
        send_msg(ctrl, {"op": "ready", "fatal": f"could not confine the function zygote: {e}"})
        os._exit(1)
    # from here on: the function's code
    report: dict[str, Any] = {"op": "ready", "warnings": warnings, "preloaded": [], "snapshot": False}
    deps = spec.get("preload")
    t_probe = time.perf_counter()
    if deps is None and spec.get("probe", True) and not provided:
        deps, why = _run_probe(fz, sb.get("init_timeout_s", 10.0))
        if why:
            report["probe_error"] = why
        report["probe"] = deps
    report["probe_ms"] = (time.perf_counter() - t_probe) * 1000
    t_pre = time.perf_counter()
    for dep in deps or []:
        try:
            importlib.import_module(dep)
            report["preloaded"].append(dep)
        except BaseException as e:
            warnings.append(f"pre-import of {dep} failed: {type(e).__name__}: {e}")
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
    # locate (never run) the handler's top-level module: the path finder's directory caches are then inherited
    # and each instance's import skips the sys.path scan
    with contextlib.suppress(Exception):
        importlib.machinery.PathFinder.find_spec(spec["handler"].rsplit(".", 1)[0].replace("/", ".").split(".")[0])
    strays = _stop_strays(fz.netns_factory.pid if fz.netns_factory is not None else -1)
    if strays:
        warnings.append(f"stopped {strays} processes the function's init code left in the zygote")
    report["threads"] = _thread_count()
    report["load_ms"] = (time.perf_counter() - t0) * 1000
    gc.collect()
    gc.freeze()
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


def _start_function_zygote(msg: dict[str, Any], ctrl_fd: int) -> tuple[int, int, int]:
    """Clone a function zygote (PID 1 of a new PID namespace when namespaces are available); returns its pid, a
    pidfd for the node (the node's own handle on it: it never signals a pid) and an fd of its user namespace (-1
    without one), taken while the child still waits for us: the node checks the namespaces that zygote sends
    against it."""
    spec, sb = msg["spec"], msg["sandbox"]
    go_r, go_w = os.pipe()
    ack_r, ack_w = os.pipe()
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
    os.close(go_r)
    os.close(ack_w)
    os.close(ctrl_fd)
    pidfd = -1
    userns_fd = -1
    try:
        pidfd = os.pidfd_open(pid)
        if not select.select([ack_r], [], [], 10)[0] or os.read(ack_r, 1) != b"u":
            raise OSError("function zygote did not start")
        if sb.get("userns"):
            _write_id_maps(pid, sb["uid_base"])
            userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        os.write(go_w, b"g")
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
                pid, pidfd, userns_fd = _start_function_zygote(msg, fds[0])
                try:
                    send_msg(
                        ctrl, {"op": "started", "id": msg["id"], "pid": pid, "userns": userns_fd >= 0},
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
