"""Spare instances (SQUALL_SPARE_INSTANCES): made ahead of need in a free slot, fully sandboxed, parked before any of
the function's code runs.  An instance taken from a spare must be indistinguishable, from inside and from the node,
from one forked on demand: same slot-bound isolation, its init run only when it is taken."""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox_helpers import PROC_STATUS, NodeRunner, body, eventually, make_node

APP = (
    r"""
import os, socket, time

IMPORTED_AT = time.time()
INIT_TYPE = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")

"""
    + PROC_STATUS
    + r"""

def handler(event, context):
    st = status()
    tmp = sorted(os.listdir("/tmp"))
    with open("/tmp/mine", "w") as f:
        f.write("x")
    return {
        "imported_at": IMPORTED_AT, "init_type": INIT_TYPE, "uid": os.getuid(), "pid": os.getpid(),
        "seccomp": st.get("Seccomp"), "no_new_privs": st.get("NoNewPrivs"), "cgroups": open("/proc/self/cgroup").read(),
        "netns": os.stat("/proc/self/ns/net").st_ino, "tmp": tmp, "hostname": socket.gethostname(),
    }
"""
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRunner]:
    yield from make_node(tmp_path_factory, spare_instances=1)


@pytest.fixture(scope="module")
def fn(node: NodeRunner) -> Any:
    return node.load({"app.py": APP}, name="spare", network="none", timeout_s=10)


def parked(node: NodeRunner, fn: Any) -> Any:
    """Wait for the spare, parked; return it (the instance the next start takes)."""
    assert node.run(node.node.spares_parked(fn)) == 1
    (spare,) = fn.spares
    return spare


def inside(node: NodeRunner, inst: Any) -> dict[str, Any]:
    out = node.invoke(inst, {})
    assert out.ok, out.payload
    got: dict[str, Any] = body(out)
    return got


def test_a_cold_start_takes_the_parked_spare_and_runs_the_init_only_then(node: NodeRunner, fn: Any) -> None:
    spare = parked(node, fn)
    # parked: in its slot's memory cgroup (born there: its pages are charged to the slot), none of the code imported
    procs = Path(fn.cgroups["memory"], f"i{spare.slot}", "cgroup.procs").read_text().split()
    assert procs, "the parked spare is not in its slot's memory cgroup"
    time.sleep(0.3)
    taken_at = time.time()
    inst = node.start(fn, "provisioned-concurrency")
    try:
        assert inst is spare
        got = inside(node, inst)
    finally:
        node.stop(inst)
    assert got["imported_at"] >= taken_at - 0.05, "the function's code ran before the spare was taken"
    assert got["init_type"] == "provisioned-concurrency"


def test_instance_from_a_spare_is_isolated_like_one_forked_on_demand(node: NodeRunner, fn: Any) -> None:
    spare = parked(node, fn)
    a = node.start(fn)  # the spare
    b = node.start(fn)  # none parked (made only once no start is in flight): forked on demand
    try:
        assert a is spare and b is not spare
        ga, gb = inside(node, a), inside(node, b)
        host = {}
        for i in (a, b):
            status = Path(f"/proc/{i.host_pid()}/status").read_text()
            host[i.slot] = next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1:]
            # the node's own view: the instance's process is in its slot's memory cgroup
            mem = Path(fn.cgroups["memory"], f"i{i.slot}", "cgroup.procs").read_text().split()
            assert str(i.host_pid()) in mem
    finally:
        node.stop(a)
        node.stop(b)
    cfg = node.config
    for inst, got in ((a, ga), (b, gb)):
        assert got["pid"] == 1 and got["hostname"] == "localhost"
        assert got["uid"] == cfg.instance_uid_first + inst.slot  # its slot's uid
        assert got["seccomp"] == "2" and got["no_new_privs"] == "1"
        assert got["tmp"] == []  # its slot's /tmp, empty
        assert f"/i{inst.slot}" in got["cgroups"]  # its slot's cgroups (memory, cpu, pids)
        assert len(set(host[inst.slot])) == 1 and "0" not in host[inst.slot]
    assert ga["uid"] != gb["uid"]
    assert ga["netns"] != gb["netns"]  # network "none": a namespace of its own
    assert a.slot != b.slot


def test_a_slot_reused_through_a_spare_starts_with_an_empty_tmp(node: NodeRunner, fn: Any) -> None:
    for _ in range(3):  # each instance writes /tmp/mine; the next one of its slot (a spare or not) sees none
        parked(node, fn)
        inst = node.start(fn)
        try:
            assert inside(node, inst)["tmp"] == []
        finally:
            node.stop(inst)


def test_spares_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    gen = make_node(tmp_path_factory, spare_instances=0)
    assert isinstance(gen, Generator)
    runner = next(gen)
    try:
        f = runner.load({"app.py": APP}, name="nospare", timeout_s=10)
        inst = runner.start(f)
        try:
            assert inside(runner, inst)["seccomp"] == "2"
        finally:
            runner.stop(inst)
        time.sleep(0.2)  # (past the delay after which a spare would be made)
        assert f.spares == [] and len(f.instances) == 0
    finally:
        gen.close()


def test_a_spare_is_stopped_with_its_zygote(node: NodeRunner) -> None:
    f = node.load({"app.py": APP}, name="spare2", timeout_s=10)
    spare = parked(node, f)
    pid = spare.host_pid()
    assert pid and os.path.exists(f"/proc/{pid}")
    node.unload(f)
    assert not os.path.exists(f"/proc/{pid}")
    assert f.spares == [] and f.instances == {}


NAT_APP = r"""
import os, socket

def handler(event, context):
    return {"interfaces": sorted(n for _, n in socket.if_nameindex()), "netns": os.stat("/proc/self/ns/net").st_ino}
"""


def test_a_spare_with_network_nat_has_its_own_wired_namespace(node: NodeRunner) -> None:
    f = node.load({"app.py": NAT_APP}, name="sparenat", network="nat", timeout_s=10)
    if f.network != "nat":
        pytest.skip("network nat unavailable here")
    spare = parked(node, f)
    a = node.start(f)
    b = node.start(f)
    try:
        assert a is spare
        ga, gb = inside(node, a), inside(node, b)
    finally:
        node.stop(a)
        node.stop(b)
        node.unload(f)
    for got in (ga, gb):
        assert "lo" in got["interfaces"] and len(got["interfaces"]) == 2, got  # loopback + its wired veth
    assert ga["netns"] != gb["netns"]


def test_a_deploy_drop_stops_the_zygote_despite_its_parked_spare(node: NodeRunner) -> None:
    """The pool stops a replaced function's zygote once none of its instances is busy: a parked spare is not busy."""
    from squall.core.model import InvokeRequest
    from squall.functions.pool import InstancePool, PoolConfig

    async def make() -> Any:
        return InstancePool(node.node, PoolConfig())

    pool = node.run(make())
    spec = node.load({"app.py": APP}, name="dropped", timeout_s=10).spec
    node.unload(node.node.functions[spec.key])  # (the pool loads its own)

    async def once() -> Any:
        inst = await pool.acquire(spec)
        try:
            assert (await inst.invoke(InvokeRequest(b"{}", request_id="r"))).ok
        finally:
            await pool.release(inst)

    try:
        node.run(once())
        (fn,) = pool.loaded.values()
        spare = parked(node, fn)
        pid = spare.host_pid()
        node.run(pool.drop("dropped"))
        assert fn.unloaded, "the replaced function's zygote was kept for its parked spare"
        assert pid and not os.path.exists(f"/proc/{pid}")
    finally:
        node.run(pool.close())


def test_a_spare_that_died_while_parked_is_never_taken(node: NodeRunner, fn: Any) -> None:
    """(A spare killed in the instant it is taken fails that start like an instance dying in its init: only the
    function's own zygote could do that, and only to itself.)"""
    for _ in range(3):
        spare = parked(node, fn)
        assert spare.cgroup is not None
        spare.cgroup.kill()  # (the zygote could do as much: it is the function's code)
        eventually(lambda: spare not in fn.spares, what="the dead spare dropped")  # noqa: B023
        inst = node.start(fn)
        try:
            assert inst is not spare
            assert inside(node, inst)["seccomp"] == "2"
        finally:
            node.stop(inst)
