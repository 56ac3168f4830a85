"""Network mode ``nat`` (the default): the host side, done by the node as host root.

Each instance gets its own network namespace (created by its function zygote, so that it is owned by the function's
user namespace and instances can join it) with one veth pair to the host:

    instance netns                          host (one set per node; ``<tag>`` from NodeConfig.cgroup_name)
    eth0  10.250.x.y/32  --- veth ---  sqv<tag><n>   (no address; route 10.250.x.y/32 dev sqv<tag><n>)
    default via G onlink                    sqg<tag>   a port-less bridge holding the gateway G/32; the server
                                                       also listens on G:<port> (AWS_ENDPOINT_URL for functions)

Point-to-point routed links, not a shared bridge: the host routes each instance address to exactly one veth, so an
instance (or its hostile zygote, which is root of the namespace) cannot claim another instance's address by ARP, and
a reverse-path check (``fib saddr . iif``) drops packets whose source is not the address routed to that veth.

The nftables table ``inet squall_<tag>`` (one per node, removed at shutdown; stale ones of dead servers removed at
start) says what an instance may reach:

* the platform endpoint, G:<port> (TCP), and nothing else on the host: no loopback service, none of the host's own
  addresses (those are local delivery: refused with a TCP reset / ICMP admin-prohibited), no IPv6 at all;
* not other instances (of any node: every ``sqv*`` interface), not link-local (169.254.0.0/16: cloud metadata),
  loopback, multicast, or another node's range;
* everything else is forwarded and masqueraded out of whichever interface the route says (the default route:
  "the outside world").  Inbound, only replies (conntrack established/related) reach an instance.

Forwarding is switched on per interface (the instance veths and the default route's interfaces), not globally.

The zygote is hostile: it sends the node namespaces to wire, and the node wires one only if it is a network
namespace owned by that function's user namespace (``NS_GET_USERNS`` compared with the user namespace fd the base
zygote took when it created the function zygote), and only as many as the node asked for.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import shutil
import socket
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from squall.sandbox.node import syscalls

__all__ = ["NetworkUnavailable", "NodeNetwork", "check_netns_owner", "node_tag"]

log = logging.getLogger("squall.node.network")

# ioctl(2) on namespace fds (linux/nsfs.h)
NS_GET_USERNS = 0xB701
NS_GET_NSTYPE = 0xB703
NSFS_MAGIC = 0x6E736673

# rtnetlink (linux/rtnetlink.h, if_link.h, veth.h)
_RTM_NEWLINK, _RTM_DELLINK, _RTM_NEWADDR, _RTM_NEWROUTE = 16, 17, 20, 24
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 1, 4, 0x200, 0x400
_IFLA_MTU, _IFLA_IFNAME, _IFLA_LINKINFO, _IFLA_NET_NS_FD = 4, 3, 18, 28
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_RTA_DST, _RTA_OIF, _RTA_GATEWAY = 1, 4, 5
_IFF_UP = 1
_RT_TABLE_MAIN, _RTPROT_STATIC, _RTN_UNICAST = 254, 4, 1
_RT_SCOPE_UNIVERSE, _RT_SCOPE_LINK = 0, 253
_RTNH_F_ONLINK = 4
_NLA_F_NESTED = 0x8000

#: interface prefixes shared by every Squall node: instance veths, gateway holders
VETH_PREFIX = "sqv"
GATEWAY_PREFIX = "sqg"
_LOCK_PATH = "/run/squall-network.lock"


class NetworkUnavailable(Exception):
    """The ``nat`` mode cannot be set up here (tool missing, not root, ...): functions fall back to ``none``."""


def node_tag(cgroup_name: str) -> str:
    """Six hex characters naming this node's interfaces and nftables table (interface names hold 15 bytes)."""
    import hashlib

    return hashlib.sha1(cgroup_name.encode()).hexdigest()[:6]


# ------------------------------------------------------------------------------------------------ netlink


def _attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def _nested(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | _NLA_F_NESTED, b"".join(attrs))


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


class _Netlink:
    """A NETLINK_ROUTE socket in the calling thread's network namespace; requests are acknowledged one by one."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes) -> None:
        self.seq += 1
        seq = self.seq
        msg = struct.pack("=IHHII", 16 + len(body), kind, flags | _NLM_F_REQUEST | _NLM_F_ACK, seq, 0) + body
        self.sock.send(msg)
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _f, mseq, _pid = struct.unpack_from("=IHHII", data, off)
                if mtype == _NLMSG_ERROR and mseq == seq:
                    err = struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        raise OSError(-err, os.strerror(-err))
                    return
                off += max(16, (length + 3) & ~3)

    def new_veth(self, host: str, peer: str, peer_netns_fd: int, mtu: int = 0) -> None:
        mtu_attr = _attr(_IFLA_MTU, struct.pack("=I", mtu)) if mtu else b""
        # created down: asking for IFF_UP here fails (ENOTCONN) when the peer goes to another namespace
        peer_info = _ifinfo() + _attr(_IFLA_IFNAME, peer.encode() + b"\0") + mtu_attr
        peer_info += _attr(_IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        linkinfo = _nested(
            _IFLA_LINKINFO,
            _attr(_IFLA_INFO_KIND, b"veth"),
            _nested(_IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer_info)),
        )
        body = _ifinfo() + _attr(_IFLA_IFNAME, host.encode() + b"\0") + mtu_attr + linkinfo
        self.request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, body)

    def set_up(self, index: int) -> None:
        self.request(_RTM_NEWLINK, 0, _ifinfo(index=index, flags=_IFF_UP, change=_IFF_UP))

    def del_link(self, index: int) -> None:
        self.request(_RTM_DELLINK, 0, _ifinfo(index=index))

    def add_addr(self, index: int, addr: str, prefix: int = 32) -> None:
        raw = socket.inet_aton(addr)
        body = struct.pack("=BBBBI", socket.AF_INET, prefix, 0, _RT_SCOPE_UNIVERSE, index)
        self.request(
            _RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_EXCL, body + _attr(_IFA_LOCAL, raw) + _attr(_IFA_ADDRESS, raw)
        )

    def add_route(self, oif: int, dst: str | None, gateway: str | None = None) -> None:
        """``dst/32 dev oif scope link``, or (dst None) ``default via gateway dev oif onlink``."""
        scope = _RT_SCOPE_LINK if gateway is None else _RT_SCOPE_UNIVERSE
        flags = _RTNH_F_ONLINK if gateway is not None else 0
        body = struct.pack(
            "=BBBBBBBBI",
            socket.AF_INET,
            32 if dst else 0,
            0,
            0,
            _RT_TABLE_MAIN,
            _RTPROT_STATIC,
            scope,
            _RTN_UNICAST,
            flags,
        )
        if dst:
            body += _attr(_RTA_DST, socket.inet_aton(dst))
        if gateway:
            body += _attr(_RTA_GATEWAY, socket.inet_aton(gateway))
        body += _attr(_RTA_OIF, struct.pack("=I", oif))
        self.request(_RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_EXCL, body)


# ------------------------------------------------------------------------------------------ namespace checks


def _ns_inode(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def check_netns_owner(netns_fd: int, userns_fd: int) -> None:
    """Raise PermissionError unless ``netns_fd`` is a network namespace owned by the user namespace ``userns_fd``.

    What a (hostile) function zygote sends is checked against what the platform obtained itself: the namespace's
    owning user namespace (``NS_GET_USERNS``, asked of the kernel) must be the function's."""
    try:
        nstype = fcntl.ioctl(netns_fd, NS_GET_NSTYPE)
    except OSError as e:
        raise PermissionError(f"not a namespace: {e}") from None
    if nstype != syscalls.CLONE_NEWNET:
        raise PermissionError("not a network namespace")
    with open("/proc/thread-self/ns/net", "rb") as own:
        if _ns_inode(own.fileno()) == _ns_inode(netns_fd):
            raise PermissionError("the node's own network namespace")
    try:
        owner = fcntl.ioctl(netns_fd, NS_GET_USERNS)
    except OSError as e:
        raise PermissionError(f"owner of the network namespace unknown: {e}") from None
    try:
        if _ns_inode(owner) != _ns_inode(userns_fd):
            raise PermissionError("network namespace not owned by the function's user namespace")
    finally:
        os.close(owner)


# ------------------------------------------------------------------------------------------------ the node side


def _run(*argv: str, stdin: str | None = None, check: bool = True) -> str:
    out = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise NetworkUnavailable(f"{' '.join(argv[:4])} failed: {(out.stderr or out.stdout).strip()[:300]}")
    return out.stdout


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_alive(alias: str) -> bool:
    """An alias ``squall pid=N start=T`` names a live process only if that pid still has that start time."""
    try:
        fields = dict(p.split("=", 1) for p in alias.split()[1:])
        return _start_time(int(fields["pid"])) == fields["start"]
    except (ValueError, KeyError):
        return False


def _write_sysctl(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _links() -> list[str]:
    try:
        return os.listdir("/sys/class/net")
    except OSError:
        return []


def _alias(name: str) -> str:
    try:
        return Path(f"/sys/class/net/{name}/ifalias").read_text().strip()
    except OSError:
        return ""


@dataclass
class NodeNetwork:
    """One node's share of the host network: a gateway address, an address range, a firewall table."""

    cgroup_name: str
    cidr: str = "10.250.0.0/16"
    slice_prefix: int = 21
    tag: str = ""
    available: bool = False
    why: str = ""
    gateway: str = ""
    subnet: ipaddress.IPv4Network | None = None
    _in_use: dict[int, str] = field(default_factory=dict)
    _free: list[int] = field(default_factory=list)
    _counter: int = 0
    #: veth MTU: the smallest of the uplinks' (so a full-size packet need not be fragmented on the way out)
    mtu: int = 0
    _ports: set[int] = field(default_factory=set)
    _nl: _Netlink | None = None
    _host_ns: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.tag = self.tag or node_tag(self.cgroup_name)

    @property
    def table(self) -> str:
        return f"squall_{self.tag}"

    @property
    def holder(self) -> str:
        return f"{GATEWAY_PREFIX}{self.tag}"

    @property
    def veth_prefix(self) -> str:
        return f"{VETH_PREFIX}{self.tag}"

    # -- set-up and tear-down (start and shutdown; subprocesses are fine here) ------------------------------
    def setup(self) -> None:
        """Create the gateway, pick an address range, load the firewall table.  Raises NetworkUnavailable."""
        if os.geteuid() != 0:
            raise NetworkUnavailable("not running as root")
        for tool in ("nft", "ip"):
            if shutil.which(tool) is None:
                pkg = "nftables" if tool == "nft" else "iproute2"
                raise NetworkUnavailable(f"'{tool}' not found (install the {pkg} package)")
        Path(_LOCK_PATH).parent.mkdir(parents=True, exist_ok=True)
        with open(_LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._clean_stale()
            self.subnet = self._pick_slice()
            hosts = self.subnet.hosts()
            self.gateway = str(next(hosts))
            first = int(ipaddress.IPv4Address(self.gateway)) + 1
            self._free = list(range(int(self.subnet.broadcast_address) - 1, first - 1, -1))
            me = os.getpid()
            try:
                _run("ip", "link", "add", self.holder, "type", "bridge")
                _run("ip", "link", "set", self.holder, "alias", f"squall pid={me} start={_start_time(me)}")
                with contextlib.suppress(OSError):
                    _write_sysctl(f"/proc/sys/net/ipv6/conf/{self.holder}/disable_ipv6", "1")
                _run("ip", "addr", "add", f"{self.gateway}/32", "dev", self.holder)
                _run("ip", "link", "set", self.holder, "up")
                _run("nft", "-f", "-", stdin=self.ruleset())
            except BaseException:
                self.teardown()
                raise
        uplinks = self._uplinks()
        mtus = []
        for dev in uplinks:
            with contextlib.suppress(OSError, ValueError):
                mtus.append(int(Path(f"/sys/class/net/{dev}/mtu").read_text()))
        self.mtu = min(mtus, default=0)
        for dev in uplinks:
            try:
                _write_sysctl(f"/proc/sys/net/ipv4/conf/{dev}/forwarding", "1")
            except OSError as e:
                log.warning("network: could not enable forwarding on %s (%s): functions cannot reach out", dev, e)
        self._host_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.available = True

    def ruleset(self) -> str:
        assert self.subnet is not None
        v, g = self.veth_prefix, self.gateway
        blocked = f"0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3, {self.cidr}"
        return f"""
table inet {self.table} {{
  set endpoint {{ type inet_service; }}
  chain pre {{
    type filter hook prerouting priority -300; policy accept;
    iifname "{v}*" meta nfproto ipv6 drop
    iifname "{v}*" fib saddr . iif oif missing drop
  }}
  chain input {{
    type filter hook input priority -10; policy accept;
    iifname "{v}*" jump from_instance
  }}
  chain from_instance {{
    ct state established,related accept
    ip daddr {g} tcp dport @endpoint accept
    meta l4proto tcp reject with tcp reset
    reject with icmpx admin-prohibited
  }}
  chain forward {{
    type filter hook forward priority -10; policy accept;
    iifname "{v}*" jump out_of_instance
    oifname "{v}*" ct state established,related accept
    oifname "{v}*" drop
  }}
  chain out_of_instance {{
    oifname "{VETH_PREFIX}*" reject with icmpx admin-prohibited
    ip daddr {{ {blocked} }} reject with icmpx admin-prohibited
    accept
  }}
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {self.subnet} oifname != "{VETH_PREFIX}*" masquerade
  }}
}}
"""

    def allow_endpoint(self, port: int) -> None:
        """Let instances reach the platform at gateway:port."""
        _run("nft", "add", "element", "inet", self.table, "endpoint", f"{{ {int(port)} }}")
        self._ports.add(int(port))

    def ensure_table(self) -> bool:
        """Reload the firewall table if something removed it (``nft flush ruleset``, a firewall manager's reload):
        without it instances could reach the host.  Returns False when it had to be reloaded."""
        if not self.available or _run("nft", "list", "table", "inet", self.table, check=False).strip():
            return True
        _run("nft", "-f", "-", stdin=self.ruleset())
        for port in self._ports:
            _run("nft", "add", "element", "inet", self.table, "endpoint", f"{{ {port} }}")
        return False

    def teardown(self) -> None:
        self.available = False
        self._remove(self.tag)
        if self._nl is not None:
            self._nl.close()
            self._nl = None
        if self._host_ns >= 0:
            os.close(self._host_ns)
            self._host_ns = -1

    @staticmethod
    def _remove(tag: str) -> None:
        _run("nft", "delete", "table", "inet", f"squall_{tag}", check=False)
        for name in _links():
            if name.startswith(f"{VETH_PREFIX}{tag}") or name == f"{GATEWAY_PREFIX}{tag}":
                _run("ip", "link", "del", name, check=False)

    def _clean_stale(self) -> None:
        """Remove what dead servers left: their gateway holders, veths and tables (and ours, from a killed run)."""
        tags: set[str] = set()
        for name in _links():
            if not name.startswith(GATEWAY_PREFIX):
                continue
            tag = name[len(GATEWAY_PREFIX) :]
            alias = _alias(name)
            if _owner_alive(alias):
                if tag == self.tag:
                    raise NetworkUnavailable(f"another server ({alias}) already uses network {name}")
                continue
            tags.add(tag)
        for line in _run("nft", "list", "tables", check=False).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "inet" and parts[2].startswith("squall_"):
                tag = parts[2][len("squall_") :]
                if f"{GATEWAY_PREFIX}{tag}" not in _links():
                    tags.add(tag)
        for tag in tags:
            log.info("network: removing %s%s left by a server that is gone", GATEWAY_PREFIX, tag)
            self._remove(tag)

    def _pick_slice(self) -> ipaddress.IPv4Network:
        taken: list[ipaddress.IPv4Network] = []
        for line in _run("ip", "-4", "-o", "route", "show", "table", "all", check=False).splitlines():
            # "10.0.0.0/8 dev ...", or a route type first: "local 10.0.0.1 dev ...", "unreachable 10.1.0.0/16"
            for word in line.split()[:2]:
                if word == "default":
                    break
                with contextlib.suppress(ValueError):
                    taken.append(ipaddress.IPv4Network(word, strict=False))
                    break
        pool = ipaddress.IPv4Network(self.cidr)
        # this node's preferred slice first (stable across restarts), then any free one
        slices = list(pool.subnets(new_prefix=self.slice_prefix))
        start = int(self.tag, 16) % len(slices)
        for net in slices[start:] + slices[:start]:
            if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
                return net
        raise NetworkUnavailable(f"no free /{self.slice_prefix} left in {self.cidr} (SQUALL_NETWORK_CIDR)")

    @staticmethod
    def _uplinks() -> list[str]:
        """Interfaces of the default routes: replies from the outside world come in there and are forwarded."""
        out = []
        for line in _run("ip", "-4", "-o", "route", "show", "default", check=False).splitlines():
            parts = line.split()
            if "dev" in parts:
                out.append(parts[parts.index("dev") + 1])
        return sorted(set(out))

    # -- wiring one namespace (a worker thread; the hot path never waits for it when the pool is full) ------
    def wire(self, netns_fd: int, userns_fd: int) -> str:
        """Connect a function's fresh network namespace; returns its address.  Raises PermissionError when the
        namespace is not that function's, OSError when the kernel refuses."""
        if not self.available or self.subnet is None:
            raise OSError(errno.ENETDOWN, "network mode nat is not available")
        check_netns_owner(netns_fd, userns_fd)
        with self._lock:
            index = self._allocate()
            self._counter += 1
            name = f"{self.veth_prefix}{self._counter:x}"
            self._in_use[index] = name
        addr = str(ipaddress.IPv4Address(index))
        if self._nl is None:
            self._nl = _Netlink()
        nl = self._nl
        try:
            nl.new_veth(name, "eth0", netns_fd, self.mtu)
            host_index = socket.if_nametoindex(name)
        except BaseException:
            with self._lock:
                self._release(index)
            raise
        try:
            _write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/forwarding", "1")
            nl.set_up(host_index)
            nl.add_route(host_index, addr)
            self._configure_inside(netns_fd, addr)
        except BaseException:
            with contextlib.suppress(OSError):
                nl.del_link(host_index)
            with self._lock:
                self._release(index)
            raise
        return addr

    def _configure_inside(self, netns_fd: int, addr: str) -> None:
        """eth0 gets the address and the default route: done from inside (this thread enters the namespace, opens
        a netlink socket there, and comes back before anything else runs on it)."""
        syscalls.setns(netns_fd, syscalls.CLONE_NEWNET)
        inside: _Netlink | None = None
        try:
            inside = _Netlink()
            eth0 = socket.if_nametoindex("eth0")
        except BaseException:
            if inside is not None:
                inside.close()
            raise
        finally:
            try:
                syscalls.setns(self._host_ns, syscalls.CLONE_NEWNET)
            except OSError:  # cannot happen as host root; never keep working from the wrong namespace
                self.available = False
                raise
        try:
            inside.set_up(eth0)
            inside.add_addr(eth0, addr)
            inside.add_route(eth0, None, gateway=self.gateway)
        finally:
            inside.close()

    def _allocate(self) -> int:
        if not self._free:
            self._reclaim()
        if not self._free:
            raise OSError(errno.EADDRNOTAVAIL, f"all addresses of {self.subnet} are in use")
        return self._free.pop()

    def _release(self, index: int) -> None:
        if self._in_use.pop(index, None) is not None:
            self._free.append(index)

    def _reclaim(self) -> None:
        """Addresses whose veth is gone (its namespace died with its last process) are free again."""
        present = set(_links())
        for index, name in list(self._in_use.items()):
            if name not in present:
                self._release(index)

    def in_use(self) -> int:
        with self._lock:
            self._reclaim()
            return len(self._in_use)
