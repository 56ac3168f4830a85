"""Zygote processes (``python -m squall.node.zygote FD``), in the manner of the SOCK paper's zygote tree.

base zygote        started by the node; has imported the runtime and common stdlib; forks function zygotes
 function zygote   enters the function's sandbox (user + mount namespace), pre-imports the function's
 |                 dependencies (found by a sandboxed import probe), or in snapshot mode runs the whole init;
 |                 then forks instances on request and reports their exits
 +- instance       PID 1 of its own namespaces, in its own cgroups, unprivileged: runs squall.runtime.loop

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

from squall.node import isolation, runtime_site, syscalls
from squall.node.channel import recv_msg, send_msg

__all__ = ["main"]

#: imported by the base zygote so every function and instance shares them copy-on-write
COMMON_MODULES = (
    "asyncio", "base64", "collections", "contextlib", "dataclasses", "datetime", "decimal", "email.utils",
    "functools", "hashlib", "hmac", "http.client", "importlib.metadata", "inspect", "io", "itertools", "json",
    "logging", "math", "pathlib", "random", "re", "shutil", "socket", "ssl", "string", "struct", "tempfile",
    "threading", "time", "traceback", "typing", "urllib.parse", "urllib.request", "uuid", "zipfile",
    "squall.runtime.loop",
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


def _probe_dependencies(handler: str) -> list[str]:
    """Import the handler module; return the top-level modules it pulled in that are not the user's own code."""
    from squall.runtime.handler import import_handler_module, split_handler

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
        self.instances: dict[int, int] = {}  # pid -> slot
        self.preloaded_handler: Any = None
        self.netns_pool: list[int] = []
        self.seccomp = isolation.build_seccomp_filter() if sandbox.get("seccomp") else None
        isolation.prepare_for_instances()  # what every instance would otherwise compute after the fork
        self.warnings: list[str] = []
        if sandbox.get("seccomp") and self.seccomp is None:
            self.warnings.append("seccomp unavailable (pyseccomp/libseccomp missing): no syscall filter")

    # -- spawning ------------------------------------------------------------------------------------------
    def spawn(self, slot: int, sock_fd: int, log_fd: int, init_type: str, mode: str = "serve", tmp_fd: int = -1) -> int:
        """Fork an instance and adopt it; returns its pid.  With namespaces, one clone() makes it PID 1 of new
        PID/mount/UTS/IPC namespaces (no intermediate process); it joins its network namespace itself."""
        sb = self.sb
        dirs = isolation.cgroup_instance_dirs(
            {c: d for c, d in (sb.get("cgroups") or {}).items() if c != "cpu-zygote"}, slot
        )
        if dirs:
            isolation.prepare_instance_cgroups(dirs, self.spec["memory_mb"], sb["cpu_shares"], sb["pids_max"])
        netns_fd = -1
        if self.spec.get("network") == "none":
            netns_fd = self.netns_pool.pop() if self.netns_pool else isolation.make_netns()
        try:
            if sb.get("namespaces"):
                pid = syscalls.clone_process(
                    syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
                )
            else:
                pid = os.fork()
            if pid == 0:
                try:
                    self._instance_main(slot, sock_fd, log_fd, init_type, mode, dirs, netns_fd, tmp_fd)
                except SystemExit as e:
                    os._exit(e.code if isinstance(e.code, int) else 1)
                except BaseException:
                    os._exit(1)
        finally:
            if netns_fd >= 0:
                os.close(netns_fd)
        self.instances[pid] = slot
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
        from squall.runtime.loop import serve

        serve(sock, self.spec["handler"], init_type, self.preloaded_handler)

    # -- main loop ---------------------------------------------------------------------------------------
    def handle(self, msg: dict[str, Any], fds: list[int]) -> None:
        op = msg.get("op")
        if op == "spawn":
            try:
                tmp_fd = fds[2] if len(fds) > 2 else -1
                pid = self.spawn(int(msg["slot"]), fds[0], fds[1], msg.get("init_type", "on-demand"), tmp_fd=tmp_fd)
                send_msg(self.ctrl, {"op": "spawned", "id": msg["id"], "pid": pid})
            except Exception as e:
                send_msg(self.ctrl, {"op": "spawned", "id": msg["id"], "error": f"{type(e).__name__}: {e}"})
            finally:
                for fd in fds:
                    os.close(fd)
        elif op == "exit":
            for pid in list(self.instances):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            os._exit(0)

    def refill(self) -> None:
        if self.spec.get("network") == "none" and len(self.netns_pool) < self.sb.get("netns_pool_size", 2):
            try:
                self.netns_pool.append(isolation.make_netns())
            except OSError as e:
                self.warnings.append(f"network namespace pool: {e}")

    def serve_forever(self) -> NoReturn:
        sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        while True:
            timeout = 0.0 if self.spec.get("network") == "none" and len(self.netns_pool) < 2 else None
            ctrl_fd = self.ctrl.fileno()
            ready, _, _ = select.select([ctrl_fd, sig_r], [], [], timeout)
            if not ready:
                self.refill()
                continue
            if sig_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(sig_r, 4096)
                for pid, status in _reap_all():
                    if self.instances.pop(pid, None) is not None:
                        send_msg(self.ctrl, {"op": "exited", "pid": pid, "status": status})
            if ctrl_fd in ready:
                got = recv_msg(self.ctrl)
                if got is None:
                    self.handle({"op": "exit"}, [])
                    os._exit(0)
                self.handle(*got)


def _die_with_init_error(fd: int, error_type: str, message: str) -> NoReturn:
    import json

    from squall.protocol import Kind, encode

    doc = {"errorMessage": message, "errorType": error_type, "requestId": "", "stackTrace": []}
    with contextlib.suppress(OSError):
        os.write(fd, encode(Kind.INIT_ERROR, {"error_type": error_type}, json.dumps(doc).encode()))
    os._exit(0)


def _probe_main(sock: socket.socket, handler: str) -> NoReturn:
    import json

    from squall.protocol import Kind, encode
    from squall.runtime.errors import InitError

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
    from squall.protocol import FrameDecoder, Kind

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


def _function_zygote_main(
    ctrl: socket.socket, spec: dict[str, Any], sb: dict[str, Any], go_r: int, ack_w: int
) -> NoReturn:
    """Body of a freshly forked function zygote."""
    t0 = time.perf_counter()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    syscalls.set_pdeathsig(signal.SIGKILL)
    warnings: list[str] = []
    try:
        # build the mount namespace while still host root (the Python installation may sit under a directory
        # only root can traverse); entering the user namespace afterwards locks these mounts: the function
        # cannot unmount the masks or make the host filesystem writable again
        if sb.get("namespaces"):
            syscalls.unshare(syscalls.CLONE_NEWNS)
            warnings += isolation.enter_function_sandbox(spec["code_dir"], sb["data_dir"], bool(sb.get("cgroups")))
            task_root = "/var/task"
        else:
            task_root = spec["code_dir"]
            os.chdir(task_root)
        if sb.get("userns"):
            syscalls.unshare(syscalls.CLONE_NEWUSER)
        os.write(ack_w, b"u")
        if os.read(go_r, 1) != b"g":
            os._exit(1)
        if sb.get("userns"):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        os.close(go_r)
        os.close(ack_w)
        syscalls.set_child_subreaper()
    except Exception as e:
        send_msg(ctrl, {"op": "ready", "fatal": f"could not enter the function sandbox: {e}"})
        os._exit(1)
    # the function's runtime: its code, layers, Lambda's runtime site-packages and the stdlib; not the server's
    runtime_dir = runtime_site.SANDBOX_PATH if sb.get("namespaces") else str(runtime_site.ensure(Path(sb["data_dir"])))
    os.environ.clear()
    os.environ.update(_function_env({**spec, "runtime_dir": runtime_dir}))
    os.environ["LAMBDA_TASK_ROOT"] = task_root
    sys.path[:] = isolation.function_sys_path(task_root, runtime_dir)
    isolation.forget_platform_modules()
    importlib.invalidate_caches()
    from squall.runtime import init as runtime_init

    runtime_init.prepare()  # before any of the function's code: its instances reap orphans (runtime/init.py)
    fz = FunctionZygote(ctrl, spec, sb)
    warnings += fz.warnings
    report: dict[str, Any] = {"op": "ready", "warnings": warnings, "preloaded": [], "snapshot": False}
    deps = spec.get("preload")
    t_probe = time.perf_counter()
    if deps is None and spec.get("probe", True):
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
    if spec.get("snapshot"):
        from squall.runtime.errors import InitError
        from squall.runtime.handler import load_handler
        from squall.runtime.loop import run_before_snapshot_hooks

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


def _start_function_zygote(msg: dict[str, Any], ctrl_fd: int) -> int:
    spec, sb = msg["spec"], msg["sandbox"]
    go_r, go_w = os.pipe()
    ack_r, ack_w = os.pipe()
    pid = os.fork()
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
    try:
        if not select.select([ack_r], [], [], 10)[0] or os.read(ack_r, 1) != b"u":
            raise OSError("function zygote did not start")
        if sb.get("userns"):
            _write_id_maps(pid, sb["uid_base"])
        groups = dict(sb.get("cgroups") or {})
        if "cpu-zygote" in groups:
            groups["cpu"] = groups.pop("cpu-zygote")
        for d in groups.values():
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        os.write(go_w, b"g")
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(go_w)
        os.close(ack_r)
    return pid


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
                pid = _start_function_zygote(msg, fds[0])
                send_msg(ctrl, {"op": "started", "id": msg["id"], "pid": pid})
            except Exception as e:
                send_msg(ctrl, {"op": "started", "id": msg["id"], "error": f"{type(e).__name__}: {e}"})
        else:
            for fd in fds:
                os.close(fd)


if __name__ == "__main__":
    main()
