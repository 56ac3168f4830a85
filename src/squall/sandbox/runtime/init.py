"""PID 1's duty in an instance: reap orphans, without stealing the exit status of the handler's own children.

The instance is PID 1 of its own PID namespace, so every process whose parent exits is re-parented to it; a zombie
that nobody waits for keeps its pid (and counts against ``pids.max``) for the instance's lifetime.  A classic
init (``waitpid(-1)`` on SIGCHLD) would also reap the handler's *own* children before ``subprocess.run`` or
``os.waitpid`` get to them: Python's subprocess then reports return code 0 for a command that failed.  A separate
init process (PID 1 forking the runtime as PID 2) avoids that but costs a second fork of the whole interpreter per
cold start (~1 ms, ~20% of one), so PID 1 tells the two kinds of children apart itself:

* every way Python code creates a child (``os.fork``, ``os.forkpty``, ``os.posix_spawn[p]``,
  ``_posixsubprocess.fork_exec`` (subprocess, multiprocessing)) is wrapped once, in the function zygote before it
  pre-imports anything (inert there); in PID 1 the wrapper records the child's pid with its start time (``/proc/<pid>/stat`` field 22: a recycled pid is a different
  process);
* on SIGCHLD (and after each invocation if a pass was deferred), PID 1 reads its children from
  ``/proc/self/task/*/children`` and reaps, one ``waitpid(pid, WNOHANG)`` each, the zombies it did not create;
* creating-and-recording and a reaping pass exclude each other (one lock; the pass, which runs in the SIGCHLD
  handler, only ever *tries* it): a pass never sees a child of ours not yet recorded.  A pass that cannot run
  (the lock is taken, or ``os.system`` runs: its child's pid is never visible to Python) is deferred to the next
  SIGCHLD, the end of the creating call, or the end of the invocation.

Limit (documented in docs/design.md): a child made by C code outside these APIs (``ctypes`` ``fork()``, an
extension module's own fork/waitpid) is indistinguishable from an orphan; if it exits before that code waits for
it, PID 1 may reap it first and that code sees ``ECHILD``.  Snapshot mode ran user init after the wrapping
(the zygote wraps before it pre-imports or initialises anything), so its references are wrapped too.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["after_invoke", "install", "prepare", "reap_orphans"]

#: children this process created through Python's APIs: pid -> start time (clock ticks since boot)
_own: dict[int, int | None] = {}
#: held while a wrapped call creates a child and records it, and by a reaping pass: a pass never sees a child of
#: ours that is not recorded yet (a pass that cannot take it at once is deferred, never waited for)
_lock = threading.Lock()
_hidden = 0  # os.system calls in progress: their child is never visible to Python
_pending = False  # a SIGCHLD arrived while a pass could not run
_active = False


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of ``pid`` from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data.rsplit(b") ", 1)[1].split()
        return fields[0].decode(), int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _children() -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/self/task/{tid}/children", "rb") as f:
            out.extend(int(p) for p in f.read().split())
    return out


def reap_orphans() -> list[int]:
    """Reap every zombie child this process did not create itself; returns their pids."""
    global _pending
    if not _lock.acquire(blocking=False):
        _pending = True
        return []
    try:
        if _hidden:
            _pending = True
            return []
        _pending = False
        return _reap()
    finally:
        _lock.release()


def _reap() -> list[int]:
    reaped = []
    me = os.getpid()
    for pid in _children():
        st = _stat(pid)
        if st is None or st[1] != me:
            continue
        state, _ppid, start = st
        if pid in _own:
            if _own[pid] == start:
                continue  # ours: whoever created it waits for it
            _own.pop(pid, None)  # the pid was recycled: the process we created is long gone
        if state != "Z":
            continue
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
    # forget children of ours that someone has reaped since
    for own_pid, own_start in list(_own.items()):
        now = _stat(own_pid)
        if now is None or now[2] != own_start or now[1] != me:
            _own.pop(own_pid, None)
    return reaped


def after_invoke() -> None:
    """Run a pass that a SIGCHLD could not run (a child was being created at that moment)."""
    if _pending:
        reap_orphans()


def _record(pid: int) -> None:
    st = _stat(pid)
    _own[pid] = st[2] if st is not None else None


def _creates_child(create: Callable[..., Any], result_pid: Callable[[Any], int]) -> Callable[..., Any]:
    @functools.wraps(create)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _active:  # a zygote, or a child of PID 1
            return create(*args, **kwargs)
        with _lock:
            result = create(*args, **kwargs)
            pid = result_pid(result)
            if pid > 0:
                _record(pid)
        if _pending and _active:
            reap_orphans()
        return result

    wrapper.__squall_wrapped__ = True  # type: ignore[attr-defined]
    return wrapper


def _hides_child(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _hidden
        if not _active:
            return call(*args, **kwargs)
        with _lock:  # a pass in progress ends first; later ones see _hidden
            _hidden += 1
        try:
            result = call(*args, **kwargs)
        finally:
            _hidden -= 1
        if _pending and _active:
            reap_orphans()
        return result

    wrapper.__squall_wrapped__ = True  # type: ignore[attr-defined]
    return wrapper


def _on_sigchld(_signum: int, _frame: Any) -> None:
    if _active:
        reap_orphans()


def _in_child() -> None:
    """A child of PID 1 (os.fork) is not init: it reaps nothing and gets the default SIGCHLD disposition back."""
    global _active
    if _active:
        _active = False
        _own.clear()
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)


_prepared = False


def prepare() -> None:
    """Wrap the child-creating APIs (inert until :func:`install`).  The function zygote calls it once, before it
    pre-imports the function's dependencies (so references they take, ``from os import fork``, are the wrapped
    ones, and instances do not each pay for it); :func:`install` calls it if nobody did."""
    global _prepared
    if _prepared:
        return
    _prepared = True
    import _posixsubprocess

    def same(pid: Any) -> int:
        return int(pid)

    def first(res: Any) -> int:
        return int(res[0])

    for name, getpid in (("fork", same), ("forkpty", first), ("posix_spawn", same), ("posix_spawnp", same)):
        orig = getattr(os, name, None)
        if orig is not None and not getattr(orig, "__squall_wrapped__", False):
            setattr(os, name, _creates_child(orig, getpid))
    if not getattr(os.system, "__squall_wrapped__", False):
        os.system = _hides_child(os.system)
    fork_exec = _posixsubprocess.fork_exec
    if not getattr(fork_exec, "__squall_wrapped__", False):
        wrapped = _creates_child(fork_exec, same)
        _posixsubprocess.fork_exec = wrapped
        sub = sys.modules.get("subprocess")
        if sub is not None and getattr(sub, "_fork_exec", None) is fork_exec:
            sub._fork_exec = wrapped  # type: ignore[attr-defined]
    os.register_at_fork(after_in_child=_in_child)


def install() -> None:
    """Become a reaping init: called by the instance (PID 1) before any user code of the instance runs."""
    global _active
    if _active or os.getpid() != 1:
        return
    prepare()
    signal.signal(signal.SIGCHLD, _on_sigchld)
    signal.siginterrupt(signal.SIGCHLD, False)  # SA_RESTART: C code that does not retry on EINTR is unaffected
    _active = True
