"""PID 1 of an instance reaps orphans, and never the children the handler itself waits for."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox_helpers import NodeRunner, body

CHILDREN = r"""
import os, subprocess, sys, threading, time

def zombies():
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if f.read().rsplit(") ", 1)[1][:1] == "Z":
                        out.append(int(p))
            except OSError:
                pass
    return out

def make_orphans(stop):
    # each round: a child that forks a grandchild and exits at once; the grandchild (now PID 1's) exits too
    while not stop.is_set():
        pid = os.fork()
        if pid == 0:
            if os.fork() == 0:
                os._exit(0)
            os._exit(0)
        os.waitpid(pid, 0)

def codes(n):
    got = []
    for i in range(n):
        want = i % 7 + 1
        got.append([want, subprocess.run(["/bin/sh", "-c", f"exit {want}"]).returncode])
        pid = os.fork()
        if pid == 0:
            os._exit(want + 10)
        got.append([want + 10, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])])
        p = subprocess.Popen(["/bin/sh", "-c", f"exit {want}"])
        time.sleep(0.002)  # let it exit (and SIGCHLD arrive) before we wait for it
        got.append([want, p.wait()])
    got.append([3, os.waitstatus_to_exitcode(os.system("exit 3"))])
    return got

def handler(event, context):
    if event["do"] == "codes":
        stop = threading.Event()
        makers = [threading.Thread(target=make_orphans, args=(stop,)) for _ in range(2)]
        for t in makers:
            t.start()
        results, crashed = [], []

        def work():
            try:
                results.extend(codes(event["n"]))
            except BaseException as e:
                crashed.append(repr(e))

        workers = [threading.Thread(target=work) for _ in range(2)]
        for t in workers:
            t.start()
        results.extend(codes(event["n"]))
        for t in workers:
            t.join()
        stop.set()
        for t in makers:
            t.join()
        bad = [r for r in results if r[0] != r[1]]
        return {"checked": len(results), "bad": bad, "crashed": crashed}
    if event["do"] == "zombies":
        deadline = time.monotonic() + 5
        while zombies() and time.monotonic() < deadline:
            time.sleep(0.01)
        return zombies()
    return os.getpid()
"""


@pytest.fixture(scope="module")
def children(node: NodeRunner) -> Any:
    return node.load({"app.py": CHILDREN}, name="children", timeout_s=120)


def test_handler_children_keep_their_exit_status(node: NodeRunner, children: Any) -> None:
    """subprocess.run, os.fork + waitpid, Popen.wait after the child exited, os.system: each gets its own exit
    status while PID 1 reaps orphans that die at the same time, from several threads."""
    inst = node.start(children)
    try:
        assert body(node.invoke(inst, {"do": "pid"})) == 1
        out = node.invoke(inst, {"do": "codes", "n": 20})
        assert out.ok, out.payload
        res = body(out)
        assert res["crashed"] == []
        assert res["bad"] == [] and res["checked"] == 3 * (3 * 20 + 1)
        # and nothing is left as a zombie: the orphans were reaped, the handler's children waited for
        assert body(node.invoke(inst, {"do": "zombies"})) == []
    finally:
        node.stop(inst)
