"""Frozen between invocations, as on Lambda: an instance's threads and child processes make no progress while no
invocation runs (cgroup v2 freezer, after a short idle) and resume on the next one; timeouts, stop and scale-to-zero
still work on a frozen instance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox_helpers import NodeRunner, body, eventually, make_node

TICKER = """
import os, threading, time

TICKS = []


def tick():
    while True:
        TICKS.append(time.monotonic())
        time.sleep(0.002)


def child():
    fd = os.open("/tmp/child-ticks", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    while True:
        os.write(fd, b"%f\\n" % time.monotonic())
        time.sleep(0.002)


def handler(event, context):
    if not TICKS:
        threading.Thread(target=tick, daemon=True).start()
        if os.fork() == 0:
            try:
                child()
            finally:
                os._exit(0)
    time.sleep(event.get("sleep", 0))
    since = event.get("since", 0)
    try:
        with open("/tmp/child-ticks") as f:
            kids = [float(x) for x in f.read().split()]
    except OSError:
        kids = []
    return {"ticks": [t for t in TICKS if t > since], "child": [t for t in kids if t > since]}
"""


@pytest.fixture(scope="module")
def fnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRunner]:
    yield from make_node(tmp_path_factory, freeze_after_ms=20.0)


@pytest.fixture(scope="module")
def ticker(fnode: NodeRunner) -> Any:
    if not getattr(fnode.node.caps, "killable", True):
        pytest.skip("no cgroup v2 freezer here")
    return fnode.load({"app.py": TICKER}, name="ticker", timeout_s=1)


def frozen(inst: Any) -> bool:
    cg = getattr(inst, "cgroup", None)
    return cg is not None and cg.events().get("frozen") == 1


def test_no_progress_between_invocations(fnode: NodeRunner, ticker: Any) -> None:
    inst = fnode.start(ticker)
    try:
        assert fnode.invoke(inst, {"sleep": 0.05}).ok
        eventually(lambda: frozen(inst), what="the idle instance frozen")
        t_frozen = time.monotonic()
        time.sleep(0.5)  # the interval under test: nothing of the instance may run in it
        t_thaw = time.monotonic()
        out = fnode.invoke(inst, {"sleep": 0.1, "since": t_frozen})
        assert out.ok, out.payload
        res = body(out)
        for what in ("ticks", "child"):
            during_freeze = [t for t in res[what] if t_frozen < t < t_thaw]
            assert during_freeze == [], (what, len(during_freeze))
            assert [t for t in res[what] if t > t_thaw], what  # and both resumed during the invocation
        assert inst.freezes >= 1
    finally:
        fnode.stop(inst)


def test_timeout_kills_a_thawed_instance(fnode: NodeRunner, ticker: Any) -> None:
    inst = fnode.start(ticker)
    assert fnode.invoke(inst, {}).ok
    eventually(lambda: frozen(inst), what="the idle instance frozen")
    out = fnode.invoke(inst, {"sleep": 30})
    assert out.error_type == "Sandbox.Timedout"
    assert not inst.alive
    assert inst.cgroup is not None and not inst.cgroup.populated()


def test_stop_kills_a_frozen_instance(fnode: NodeRunner, ticker: Any) -> None:
    inst = fnode.start(ticker)
    assert fnode.invoke(inst, {}).ok
    eventually(lambda: frozen(inst), what="the idle instance frozen")
    fnode.stop(inst)
    assert inst.cgroup is not None and not inst.cgroup.populated()
    # the slot's cgroup is thawed for the next instance: a new one starts and runs
    again = fnode.start(ticker)
    try:
        assert fnode.invoke(again, {}).ok
    finally:
        fnode.stop(again)


def test_scale_to_zero_reaps_a_frozen_instance(fnode: NodeRunner, ticker: Any) -> None:
    from squall.core.model import InvokeRequest
    from squall.functions.pool import InstancePool, PoolConfig

    async def make() -> Any:
        return InstancePool(fnode.node, PoolConfig(keep_alive_s=0.3))

    pool = fnode.run(make())

    async def once() -> Any:
        inst = await pool.acquire(ticker.spec)
        try:
            assert (await inst.invoke(InvokeRequest(b"{}", request_id="r"))).ok
        finally:
            await pool.release(inst)
        return inst

    try:
        inst = fnode.run(once())
        eventually(lambda: frozen(inst), what="the idle instance frozen")

        def reaped() -> bool:
            fnode.run(pool.reap_once())
            return not pool.instances

        eventually(reaped, what="the frozen instance reaped after the keep-alive")
        assert not inst.alive
        assert inst.cgroup is not None and not inst.cgroup.populated()
    finally:
        fnode.run(pool.close())
