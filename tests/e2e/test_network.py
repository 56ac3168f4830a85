"""Network mode ``nat`` (the default), against a real ``squall up``: the outside world through NAT and the Squall
endpoint, nothing host-local; ``none`` stays empty; ``host`` only when a function asks for it.

"The outside world" is simulated (there is no internet here): a separate network namespace, "uplink", reachable from
the host through a veth and a route, runs a TCP server that reports the address a connection came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from squall.sandbox.node import syscalls
from tests.e2e._platform import SquallProcess, create, eventually, execution_role
from tests.sandbox_helpers import make_node

# interface prefixes of squall.sandbox.node.network (spelled out: this module must import before the change, to fail
# there)
VETH_PREFIX, GATEWAY_PREFIX = "sqv", "sqg"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nftables need root")

PROBE = r"""
import json, os, socket

_listener = None

def _connect(host, port):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect((host, port))
        try:
            data = s.recv(200).decode()
        except OSError:
            data = ""
        return "connected " + data
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    finally:
        s.close()

def _address():
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("198.51.100.1", 9))
        return s.getsockname()[0]
    except OSError as e:
        return f"{type(e).__name__}: {e}"

def handler(event, context):
    global _listener
    op = event["op"]
    if op == "connect":
        return _connect(event["host"], event["port"])
    if op == "interfaces":
        return sorted(name for _, name in socket.if_nameindex())
    if op == "address":
        return _address()
    if op == "listen":
        _listener = socket.socket()
        _listener.bind(("0.0.0.0", 0))
        _listener.listen(16)
        return [_address(), _listener.getsockname()[1]]
    if op == "endpoint":
        return os.environ.get("AWS_ENDPOINT_URL")
    if op == "boto3":
        import boto3
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=event["bucket"])
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName=event["bucket"])["QueueUrl"]
        return {"buckets": names, "queue": url}
    raise ValueError(op)
"""


def _host_address() -> str:
    """A non-loopback IPv4 address of this host (eth0 or whatever the default route uses)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        name, addr = parts[1], parts[3].split("/")[0]
        if name != "lo" and not name.startswith((VETH_PREFIX, GATEWAY_PREFIX)) and not addr.startswith("127."):
            return addr
    pytest.skip("the host has no non-loopback IPv4 address")


class _TcpServer:
    """A TCP server on the host that greets whoever connects (a host-local service a function must not reach)."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"host-service")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    sq = SquallProcess(tmp_path_factory.mktemp("network") / "data").start()
    try:
        yield sq
    finally:
        sq.stop()


@pytest.fixture(scope="module")
def lam(server: SquallProcess) -> Any:
    client = server.client("lambda")
    role = execution_role(server, "net-default-role", {"Effect": "Allow", "Action": ["s3:*", "sqs:*"], "Resource": "*"})
    create(client, "net-default", PROBE, Timeout=30, Role=role)
    create(client, "net-other", PROBE, Timeout=30)
    create(client, "net-none", PROBE, Timeout=30, Tags={"squall:network": "none"})
    create(client, "net-host", PROBE, Timeout=30, Tags={"squall:network": "host"})
    return client


def invoke(client: Any, name: str, event: dict[str, Any]) -> Any:
    out = client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    return body


@pytest.fixture(scope="module")
def host_services() -> Iterator[tuple[_TcpServer, _TcpServer]]:
    loopback, wildcard = _TcpServer("127.0.0.1"), _TcpServer("0.0.0.0")
    try:
        yield loopback, wildcard
    finally:
        loopback.close()
        wildcard.close()


def test_default_mode_is_nat_with_its_own_interface(lam: Any) -> None:
    assert sorted(invoke(lam, "net-default", {"op": "interfaces"})) == ["eth0", "lo"]
    assert invoke(lam, "net-default", {"op": "address"}).startswith("10.250.")


def test_host_loopback_services_unreachable(lam: Any, host_services: tuple[_TcpServer, _TcpServer]) -> None:
    loopback, _ = host_services
    # the positive control: a function that explicitly asked for the host's network reaches it
    assert invoke(lam, "net-host", {"op": "connect", "host": "127.0.0.1", "port": loopback.port}) == (
        "connected host-service"
    )
    got = invoke(lam, "net-default", {"op": "connect", "host": "127.0.0.1", "port": loopback.port})
    assert got.startswith("ConnectionRefusedError"), got


def test_host_addresses_other_ports_unreachable(
    server: SquallProcess, lam: Any, host_services: tuple[_TcpServer, _TcpServer]
) -> None:
    _, wildcard = host_services
    endpoint = invoke(lam, "net-default", {"op": "endpoint"})
    gateway = endpoint.split("//")[1].split(":")[0]
    assert invoke(lam, "net-host", {"op": "connect", "host": _host_address(), "port": wildcard.port}) == (
        "connected host-service"
    )
    for host in (_host_address(), gateway):
        got = invoke(lam, "net-default", {"op": "connect", "host": host, "port": wildcard.port})
        assert got.startswith("ConnectionRefusedError"), (host, got)
    # the squall port on the host's other addresses is not the endpoint either
    got = invoke(lam, "net-default", {"op": "connect", "host": _host_address(), "port": server.port})
    assert got.startswith("ConnectionRefusedError"), got


def test_link_local_metadata_unreachable(lam: Any) -> None:
    got = invoke(lam, "net-default", {"op": "connect", "host": "169.254.169.254", "port": 80})
    assert got.startswith(("ConnectionRefusedError", "OSError", "TimeoutError")) and "connected" not in got, got


def test_boto3_reaches_the_platform_endpoint(server: SquallProcess, lam: Any) -> None:
    endpoint = invoke(lam, "net-default", {"op": "endpoint"})
    assert endpoint.startswith("http://10.250.") and endpoint.endswith(f":{server.port}"), endpoint
    got = invoke(lam, "net-default", {"op": "boto3", "bucket": "net-bucket"})
    assert "net-bucket" in got["buckets"]
    assert got["queue"].endswith("/net-bucket")


def test_instances_cannot_reach_each_other(lam: Any) -> None:
    addr, port = invoke(lam, "net-default", {"op": "listen"})
    assert addr.startswith("10.250."), addr
    other = invoke(lam, "net-other", {"op": "address"})
    assert other != addr
    got = invoke(lam, "net-other", {"op": "connect", "host": addr, "port": port})
    assert "connected" not in got, got
    # the host (through the gateway's routes) could reach it: the listener is really there
    with socket.create_connection((addr, port), timeout=10):
        pass


def test_none_has_only_loopback(lam: Any, server: SquallProcess) -> None:
    assert invoke(lam, "net-none", {"op": "interfaces"}) == ["lo"]
    endpoint = invoke(lam, "net-none", {"op": "endpoint"})
    host = endpoint.split("//")[1].split(":")[0]
    got = invoke(lam, "net-none", {"op": "connect", "host": host, "port": server.port})
    assert got.startswith("OSError") or "unreachable" in got, got


def test_host_only_when_asked(lam: Any) -> None:
    # the function that asked for "host" is in the host's namespace: it sees the node's gateway holder
    assert any(name.startswith(GATEWAY_PREFIX) for name in invoke(lam, "net-host", {"op": "interfaces"}))
    tags = lam.list_tags(Resource=lam.get_function(FunctionName="net-default")["Configuration"]["FunctionArn"])
    assert "squall:network" not in tags["Tags"]
    assert invoke(lam, "net-default", {"op": "interfaces"}) == ["eth0", "lo"]


@pytest.fixture()
def uplink() -> Iterator[tuple[str, int, Path]]:
    """A netns 'outside world' at 198.18.X.2 behind a veth from the host (198.18.X.1), with a TCP server that
    answers with the peer address it saw."""
    n = int(uuid.uuid4().hex[:2], 16)
    name, host_if = f"sqtest-up-{uuid.uuid4().hex[:6]}", f"sxu{uuid.uuid4().hex[:8]}"
    host_ip, far_ip = f"198.18.{n}.1", f"198.18.{n}.2"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("ip", "netns", "add", name)
    proc = None
    try:
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name)
        run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        Path(f"/proc/sys/net/ipv4/conf/{host_if}/forwarding").write_text("1")
        run("ip", "-n", name, "addr", "add", f"{far_ip}/30", "dev", "eth0")
        run("ip", "-n", name, "link", "set", "eth0", "up")
        run("ip", "-n", name, "route", "add", "default", "via", host_ip)
        code = (
            "import socket,sys\n"
            f"s=socket.socket(); s.bind(('{far_ip}',0)); s.listen(8); print(s.getsockname()[1], flush=True)\n"
            "while True:\n c,a=s.accept(); c.sendall(('seen '+a[0]).encode()); c.close()\n"
        )
        proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield far_ip, port, Path(host_ip)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_outside_world_through_nat(lam: Any, uplink: tuple[str, int, Path]) -> None:
    far_ip, port, host_ip = uplink
    own = invoke(lam, "net-default", {"op": "address"})
    assert own.startswith("10.250.") and own != str(host_ip), own
    got = invoke(lam, "net-default", {"op": "connect", "host": far_ip, "port": port})
    # the far side saw the host's address, not the instance's: masqueraded on the way out
    assert got == f"connected seen {host_ip}", got
    assert invoke(lam, "net-none", {"op": "connect", "host": far_ip, "port": port}).startswith("OSError")


def test_leftovers_of_a_killed_server_are_removed(tmp_path: Path) -> None:
    import hashlib

    from squall.sandbox.node.network import node_tag

    data = tmp_path / "data"
    tag = node_tag("squall-" + hashlib.sha1(str(data.resolve()).encode()).hexdigest()[:10])
    tables = lambda: subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout  # noqa: E731
    first = SquallProcess(data).start()
    assert f"squall_{tag}" in tables()
    first.stop(sig=9)
    assert f"squall_{tag}" in tables() and os.path.exists(f"/sys/class/net/{GATEWAY_PREFIX}{tag}")
    second = SquallProcess(data, port=first.port).start()
    try:
        alias = Path(f"/sys/class/net/{GATEWAY_PREFIX}{tag}/ifalias").read_text()
        assert f"pid={second.proc.pid} " in alias  # type: ignore[union-attr]
    finally:
        second.stop()
    eventually(lambda: f"squall_{tag}" not in tables(), what="table removed at shutdown")
    assert not os.path.exists(f"/sys/class/net/{GATEWAY_PREFIX}{tag}")


# -- the node wires only namespaces of the function that sent them ---------------------------------------------


def _namespaces_in_a_new_userns() -> tuple[int, list[int]]:
    """A child in its own user namespace (mapped) and network namespace; returns (pid, [netns fd, userns fd])."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pid = os.fork()
    if pid == 0:
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            child.send(b"u")
            child.recv(1)
            syscalls.unshare(syscalls.CLONE_NEWNET)
            fds = [os.open("/proc/self/ns/net", os.O_RDONLY), os.open("/proc/self/ns/user", os.O_RDONLY)]
            socket.send_fds(child, [b"x"], fds)
            child.recv(1)
        finally:
            os._exit(0)
    child.close()
    parent.recv(1)
    for f, line in (("uid_map", "0 400000 65536\n"), ("setgroups", "deny"), ("gid_map", "0 400000 65536\n")):
        Path(f"/proc/{pid}/{f}").write_text(line)
    parent.send(b"g")
    _, fds, _, _ = socket.recv_fds(parent, 10, 2)
    parent.close()
    return pid, list(fds)


def test_node_refuses_namespaces_the_function_does_not_own() -> None:
    from squall.sandbox.node.network import NodeNetwork, check_netns_owner

    pid_a, (net_a, user_a) = _namespaces_in_a_new_userns()
    pid_b, (net_b, user_b) = _namespaces_in_a_new_userns()
    host_net = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        check_netns_owner(net_a, user_a)
        with pytest.raises(PermissionError):
            check_netns_owner(net_b, user_a)  # another function's namespace
        with pytest.raises(PermissionError):
            check_netns_owner(host_net, user_a)  # the host's
        with pytest.raises(PermissionError):
            check_netns_owner(user_a, user_a)  # not a network namespace
        r, w = os.pipe()
        with pytest.raises(PermissionError):
            check_netns_owner(r, user_a)  # not a namespace at all
        os.close(r)
        os.close(w)
        net = NodeNetwork(f"squall-test-{uuid.uuid4().hex[:8]}")
        net.setup()
        try:
            with pytest.raises(PermissionError):
                net.wire(host_net, user_a)
            with pytest.raises(PermissionError):
                net.wire(net_b, user_a)
            assert net.in_use() == 0
            addr = net.wire(net_a, user_a)
            assert ipaddress_in(addr, str(net.subnet))
        finally:
            net.teardown()
    finally:
        for fd in (net_a, user_a, net_b, user_b, host_net):
            os.close(fd)
        for pid in (pid_a, pid_b):
            os.kill(pid, 9)
            os.waitpid(pid, 0)


def ipaddress_in(addr: str, net: str) -> bool:
    import ipaddress

    return ipaddress.IPv4Address(addr) in ipaddress.IPv4Network(net)


# -- a lying zygote gets only what the node asked for ---------------------------------------------------------

EVIL = r"""
import os, sys

_z = sys.modules.get("__main__")  # the zygote runs as python -m squall.sandbox.node.zygote
if hasattr(_z, "FunctionZygote"):  # pre-imported by the function zygote: patch it to flood the node
    from squall.sandbox.node.channel import send_msg

    _orig = _z.FunctionZygote.refill

    def refill(self):
        for _ in range(10):
            fd = self._make_netns()
            send_msg(self.ctrl, {"op": "netns"}, [fd])
            os.close(fd)
        user = os.open("/proc/self/ns/user", os.O_RDONLY)  # not a network namespace
        send_msg(self.ctrl, {"op": "netns"}, [user])
        os.close(user)
        return _orig(self)

    _z.FunctionZygote.refill = refill
"""


async def _drain(n: Any) -> None:
    await asyncio.get_running_loop().run_in_executor(n._net_exec, lambda: None)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # no spare instances: these tests count the pool's namespaces (a parked spare holds one of them)
    yield from make_node(tmp_path_factory, netns_pool_size=2, network_check_s=0.2, spare_instances=0)


def test_a_lying_zygote_gets_only_the_namespaces_the_node_asked_for(node: Any) -> None:
    fn = node.load_learned(
        {
            "app.py": "import evilnet\ndef handler(event, context):\n    return 'ok'\n",
            "evilnet/__init__.py": EVIL,
            "evilnet-1.0.dist-info/METADATA": "Name: evilnet\nVersion: 1.0\n",
        },
        name="evil",
    )
    assert "evilnet" in fn.preloaded  # the patch really ran in the zygote
    # the flood went out while the pool was filled at load (the zygote's first refill)
    seen: list[tuple[int, int]] = []

    def filled() -> bool:
        seen.append((len(fn.netns_ready), fn.netns_asked))
        return seen[-1] == (2, 0)

    try:
        eventually(filled, what="namespace pool filled")
    except AssertionError as e:
        raise AssertionError(f"{e}; (ready, asked) went {sorted(set(seen), key=seen.index)}") from None
    # the spawn is a round trip on the one ordered control socket: once it is answered the node has read every
    # namespace the zygote sent before; then the node's one wiring thread finishes what was queued.  Taking one of
    # two pooled namespaces asks for none.
    inst = node.start(fn)
    try:
        assert json.loads(node.invoke(inst, {}).payload) == "ok"
        node.run(_drain(node.node))

        def wired() -> list[str]:
            return [n for n in os.listdir("/sys/class/net") if n.startswith(node.node.network.veth_prefix)]

        # the zygote's own and the pool's 2 (the instance took one of them): never the ~40 the zygote sent.  (The
        # namespaces of functions unloaded before, the learning zygote's included, are torn down by the kernel
        # asynchronously: a bounded wait; what the node kept wired would stay.)
        eventually(lambda: len(wired()) == 3, what="3 namespaces wired")
    finally:
        node.stop(inst)


EVIL_EARLY = r"""
import gc, os, sys

_z = sys.modules.get("__main__")
# pre-imported by the function zygote (not an instance: no log stream yet) during its load: flood "early" namespaces
if hasattr(_z, "FunctionZygote") and "AWS_LAMBDA_LOG_STREAM_NAME" not in os.environ:
    from squall.sandbox.node.channel import send_msg

    fz = next(o for o in gc.get_objects() if isinstance(o, _z.FunctionZygote))
    for _ in range(10):
        fd = fz._make_netns()
        send_msg(fz.ctrl, {"op": "netns", "early": True}, [fd])
        os.close(fd)
"""


def test_the_first_instance_namespace_is_made_during_the_load_and_only_one(node: Any) -> None:
    """The zygote's factory makes the first instance's namespace while the zygote loads and the node wires it then
    (the first cold start does not wait for one); a zygote that sends more such "early" namespaces gets one wired,
    counted as the first of its pool's."""

    def wired() -> set[str]:
        return {n for n in os.listdir("/sys/class/net") if n.startswith(node.node.network.veth_prefix)}

    before = wired()  # (other tests' functions on this node)
    fn = node.load({"app.py": "def handler(event, context):\n    return 'ok'\n"}, name="early")
    assert fn.report.get("netns_early") is True
    eventually(lambda: len(fn.netns_ready) == 2 and fn.netns_asked == 0, what="namespace pool filled")
    evil = node.load_learned(
        {
            "app.py": "import evilearly\ndef handler(event, context):\n    return 'ok'\n",
            "evilearly/__init__.py": EVIL_EARLY,
            "evilearly-1.0.dist-info/METADATA": "Name: evilearly\nVersion: 1.0\n",
        },
        name="evil-early",
    )
    assert "evilearly" in evil.preloaded  # the flood really went out, during the load
    eventually(lambda: len(evil.netns_ready) == 2 and evil.netns_asked == 0, what="namespace pool filled")
    inst = node.start(evil)
    try:
        assert json.loads(node.invoke(inst, {}).payload) == "ok"
        node.run(_drain(node.node))
        # two zygotes' own and their pools' 2 each (an instance took one of evil's): never the 10 it sent.  (The
        # learning zygote's namespaces go with it, but the kernel tears namespaces down asynchronously: a bounded
        # wait; what the node kept wired would stay.)
        eventually(lambda: len(wired() - before) == 6, what="6 namespaces wired")
        assert len(wired() - before) == 6, wired() - before
    finally:
        node.stop(inst)
        node.unload(evil)
        node.unload(fn)


def test_a_reused_namespace_keeps_nothing_of_the_previous_instance(node: Any) -> None:
    fn = node.load({"app.py": PROBE}, name="reuse", timeout_s=30)
    # the pool filled (a full pool closes what comes back instead of keeping it)
    eventually(lambda: len(fn.netns_ready) == 2 and fn.netns_asked == 0, what="namespace pool filled")
    a = node.start(fn)
    try:
        addr, port = json.loads(node.invoke(a, {"op": "listen"}).payload)
    finally:
        node.stop(a)
    b = node.start(fn)
    try:
        # the pool hands the namespace back out (no new one made and wired) ...
        assert json.loads(node.invoke(b, {"op": "address"}).payload) == addr
        # ... but what the previous instance left listening died with it
        for host in ("127.0.0.1", addr):
            got = json.loads(node.invoke(b, {"op": "connect", "host": host, "port": port}).payload)
            assert got.startswith("ConnectionRefusedError"), (host, got)
    finally:
        node.stop(b)


SNAPSHOT_INIT = r"""
import os, socket

def _connect(host, port):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect((host, port))
        return "connected"
    except Exception as e:
        return type(e).__name__
    finally:
        s.close()

# runs in the function zygote (snapshot mode): it sees what an instance sees, never the host's network
INIT = {
    "interfaces": sorted(name for _, name in socket.if_nameindex()),
    "host_loopback": _connect("127.0.0.1", int(os.environ["HOST_PORT"])),
    "pidns": os.readlink("/proc/self/ns/pid"),
}

def handler(event, context):
    return {**INIT, "instance_pidns": os.readlink("/proc/self/ns/pid")}
"""


def test_snapshot_init_runs_with_the_network_of_an_instance(
    node: Any, host_services: tuple[_TcpServer, _TcpServer]
) -> None:
    loopback, _ = host_services
    fn = node.load(
        {"app.py": SNAPSHOT_INIT}, name="snapinit", snapshot=True, environment={"HOST_PORT": str(loopback.port)}
    )
    assert fn.snapshot, fn.report
    inst = node.start(fn)
    try:
        out = json.loads(node.invoke(inst, {}).payload)
    finally:
        node.stop(inst)
    assert out["pidns"] != out["instance_pidns"]  # the module ran in the zygote, before the fork
    assert out["interfaces"] == ["eth0", "lo"]
    assert out["host_loopback"] == "ConnectionRefusedError"


def test_a_removed_firewall_table_is_restored(node: Any, host_services: tuple[_TcpServer, _TcpServer]) -> None:
    """A firewall manager reloading its rules (``nft flush ruleset``) removes ours too: the node puts it back."""
    _, wildcard = host_services
    table = node.node.network.table
    listed = lambda: subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout  # noqa: E731
    assert f"inet {table}" in listed()
    subprocess.run(["nft", "delete", "table", "inet", table], check=True)
    eventually(lambda: f"inet {table}" in listed(), what="firewall table restored")
    fn = node.load({"app.py": PROBE}, name="afterflush", timeout_s=30)
    inst = node.start(fn)
    try:
        got = json.loads(node.invoke(inst, {"op": "connect", "host": _host_address(), "port": wildcard.port}).payload)
        assert got.startswith("ConnectionRefusedError"), got
    finally:
        node.stop(inst)
