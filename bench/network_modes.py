"""What network mode "nat" (the default) costs, against "none" and "host" (node API, no HTTP; needs root).

Prints JSON lines:
  netns_create_ms           a fresh network namespace, made as a function zygote does (its NetnsFactory helper,
                            in the function's user namespace, unshares in place, loopback up, fd back): p50, p99;
                            baseline: the old way, a forked helper per namespace (isolation.make_netns)
  netns_wire_ms             the node wiring it (veth pair into the namespace, host route, forwarding, the address
                            and default route inside): p50, p99
  cold_start_ms{mode}       start_instance until READY, pool of wired namespaces kept full (modes alternated)
  cold_start_pool_miss_ms   "nat" with netns_pool_size=0: every start waits for a namespace to be made and wired
  warm_invoke_ms{mode}      one invocation on a warm instance (modes alternated in rounds)
  burst_ms{mode}            16 instances started at once until all are READY (the pool holds 4)
  load_ms{mode}             loading a function (its zygote; "nat" also wires the zygote's own namespace)

    python bench/network_modes.py [--quick]      (BENCH_IDLE_S: pause before each cold start, default 0.005 s)
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, pct, quick

from squall.core.config import NodeConfig
from squall.core.model import FunctionSpec, InvokeRequest, NetworkMode
from squall.sandbox.node import isolation, syscalls
from squall.sandbox.node.network import NodeNetwork
from squall.sandbox.node.node import Node

HANDLER = "def handler(event, context):\n    return {'ok': True}\n"
MODES: tuple[NetworkMode, ...] = ("nat", "none", "host")
#: BENCH_IDLE_S: pause before each sequential cold start (s)
IDLE_S = float(os.environ.get("BENCH_IDLE_S", "0.005"))


def _namespace_factory(count: int) -> tuple[int, int, socket.socket]:
    """A child in its own (mapped) user namespace that makes ``count`` network namespaces the way a function
    zygote does and sends each fd with its creation time; returns (pid, userns fd, socket)."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            child.send(b"u")
            child.recv(1)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            factory = isolation.NetnsFactory()
            for _ in range(count):
                t0 = time.perf_counter()
                fd = factory.make()
                ms = (time.perf_counter() - t0) * 1000
                t0 = time.perf_counter()
                os.close(isolation.make_netns())
                forked = (time.perf_counter() - t0) * 1000
                socket.send_fds(child, [f"{ms} {forked}".encode()], [fd])
                os.close(fd)
                child.recv(1)  # one at a time: the parent times the wiring alone
        finally:
            os._exit(0)
    parent.recv(1)
    for f, line in (("uid_map", "0 500000 65536\n"), ("setgroups", "deny"), ("gid_map", "0 500000 65536\n")):
        Path(f"/proc/{pid}/{f}").write_text(line)
    userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
    parent.send(b"g")
    return pid, userns, parent


def bench_namespaces(n: int) -> None:
    net = NodeNetwork(f"squall-bench-net-{os.getpid()}")
    net.setup()
    pid, userns, sock = _namespace_factory(n)
    create, forked, wire = [], [], []
    try:
        for _ in range(n):
            msg, fds, _, _ = socket.recv_fds(sock, 64, 1)
            made, fork_ms = msg.split()
            create.append(float(made))
            forked.append(float(fork_ms))
            t0 = time.perf_counter()
            net.wire(fds[0], userns)
            wire.append((time.perf_counter() - t0) * 1000)
            os.close(fds[0])
            sock.send(b"n")
    finally:
        os.waitpid(pid, 0)
        os.close(userns)
        net.teardown()
    emit("netns_create_ms", pct(create, 50), "ms", p99=round(pct(create, 99), 3), n=n,
         baseline={"forked_helper_p50": round(pct(forked, 50), 3)})  # fmt: skip
    emit("netns_wire_ms", pct(wire, 50), "ms", p99=round(pct(wire, 99), 3), n=n)


async def bench_node(tmp: Path, code: Path) -> None:
    n_cold = 30 if quick() else 150
    n_warm = 300 if quick() else 2000
    node = Node(NodeConfig(data_dir=tmp / "data", cgroup_name=f"squall-bench-net-{os.getpid()}"))
    await node.start()
    if not node.network.available:
        raise SystemExit(f"network nat unavailable: {node.network.why}")
    loads: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(3 if quick() else 10):
        for m in MODES:
            t0 = time.perf_counter()
            f = await node.load(FunctionSpec(name=f"load-{m}-{i}", code_dir=code, handler="app.handler", network=m))
            loads[m].append((time.perf_counter() - t0) * 1000)
            await node.unload(f)
            await asyncio.sleep(0.5)  # the kernel tears the unloaded function's namespaces down meanwhile
    fns = {m: await node.load(FunctionSpec(name=f"net-{m}", code_dir=code, handler="app.handler", network=m))
           for m in MODES}  # fmt: skip
    cold: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(n_cold):
        for m in MODES:
            await asyncio.sleep(IDLE_S)  # idle time, as between real cold starts: the pools refill
            t0 = time.perf_counter()
            inst = await node.start_instance(fns[m])
            cold[m].append((time.perf_counter() - t0) * 1000)
            await inst.invoke(InvokeRequest(b"{}", request_id=f"c{i}"))
            await node.stop_instance(inst)
    warm: dict[str, list[float]] = {m: [] for m in MODES}
    insts = {m: await node.start_instance(fns[m]) for m in MODES}
    for r in range(10):
        for m in MODES:
            for i in range(n_warm // 10):
                t0 = time.perf_counter()
                await insts[m].invoke(InvokeRequest(b"{}", request_id=f"w{r}-{i}"))
                warm[m].append((time.perf_counter() - t0) * 1000)
    for inst in insts.values():
        await node.stop_instance(inst)
    burst: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(2 if quick() else 5):
        for m in MODES:
            await asyncio.sleep(0.3)
            t0 = time.perf_counter()
            started = await asyncio.gather(*(node.start_instance(fns[m]) for _ in range(16)))
            burst[m].append((time.perf_counter() - t0) * 1000)
            await asyncio.gather(*(node.stop_instance(i) for i in started))
    await node.close()
    base = {"none_p50": round(pct(cold["none"], 50), 3), "host_p50": round(pct(cold["host"], 50), 3)}
    for m in MODES:
        emit("cold_start_ms", pct(cold[m], 50), "ms", mode=m, p99=round(pct(cold[m], 99), 3), n=n_cold, baseline=base)
    wbase = {"none_p50": round(pct(warm["none"], 50), 4), "host_p50": round(pct(warm["host"], 50), 4)}
    for m in MODES:
        emit("warm_invoke_ms", pct(warm[m], 50), "ms", mode=m, p99=round(pct(warm[m], 99), 3), n=n_warm,
             baseline=wbase)  # fmt: skip
    for m in MODES:
        emit("load_ms", pct(loads[m], 50), "ms", mode=m, n=len(loads[m]))
    for m in MODES:
        emit("burst_ms", pct(burst[m], 50), "ms", mode=m, instances=16, rounds=len(burst[m]))

    # every start waits for its namespace: the cost a burst pays once the pool is empty
    node = Node(NodeConfig(data_dir=tmp / "data2", cgroup_name=f"squall-bench-net0-{os.getpid()}", netns_pool_size=0))
    await node.start()
    fn = await node.load(FunctionSpec(name="net-miss", code_dir=code, handler="app.handler", network="nat"))
    miss = []
    for i in range(n_cold):
        await asyncio.sleep(IDLE_S)
        t0 = time.perf_counter()
        inst = await node.start_instance(fn)
        miss.append((time.perf_counter() - t0) * 1000)
        await inst.invoke(InvokeRequest(b"{}", request_id=f"m{i}"))
        await node.stop_instance(inst)
    await node.close()
    emit("cold_start_pool_miss_ms", pct(miss, 50), "ms", mode="nat", p99=round(pct(miss, 99), 3), n=n_cold,
         baseline={"nat_pooled_p50": round(pct(cold["nat"], 50), 3)})  # fmt: skip


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, nftables)")
    bench_namespaces(50 if quick() else 300)
    tmp = Path(tempfile.mkdtemp(prefix="squall-bench-net-"))
    code = tmp / "code"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    for p in (tmp, code):
        os.chmod(p, 0o755)
    os.chmod(code / "app.py", 0o644)
    asyncio.run(bench_node(tmp, code))


if __name__ == "__main__":
    main()
