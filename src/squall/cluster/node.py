"""This server as a member of a cluster: its NATS connection, the event bus, membership, placement, forwarding.

``ClusterNode`` is built by the server when ``--nats-url`` is given and does four things:

* connects to NATS, sets up the event bus (the dispatcher publishes to and fetches from it);
* heartbeats this node's load (``report``) and watches the others' (``Membership``);
* keeps this node's shares of the cluster-wide limits in its pool: the account limit and each function's
  reserved concurrency are split over the live nodes (``scheduler.placement.shares``) and re-split whenever the
  membership changes, so they hold across the cluster instead of xN;
* decides, for each invocation about to run here, whether it runs here or on another node (``maybe_forward``,
  the ``Invoker.placer`` hook) and forwards it (``Forwarder``);
* carries control-plane changes between nodes: at once on core NATS, and reliably through the change log in
  PostgreSQL (``cluster.changes``), read every ``changes_poll_s``, so a node that missed a NATS message (cut off
  from NATS at that moment) applies the change within a second of reaching PostgreSQL;
* says which node does work that must be done once in the cluster (``owns``: an event source mapping's poller)
  and what this node's share of a cluster-wide count is (``share``: provisioned concurrency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from squall.cluster.bus import EventBus, connect
from squall.cluster.changes import ChangeLog
from squall.cluster.forward import Forwarder, invoke_subject
from squall.cluster.membership import Membership
from squall.core.errors import ServiceError, TooManyRequests
from squall.core.model import FunctionSpec
from squall.functions.invoker import InvocationResult, Invoker
from squall.functions.pool import InstancePool
from squall.scheduler.placement import NodeView, place, rank, share_of

__all__ = ["ClusterConfig", "ClusterNode"]

log = logging.getLogger("squall.cluster")

#: control-plane changes made through one node, for the others.  Core NATS, at most once: the fast path; the
#: change log in PostgreSQL (``ChangeLog``) is the reliable one for a node that missed the message
CHANGES_SUBJECT = "squall.cluster.changed"

#: a handler of a change announced by another node: (name, qualifier)
OnRemote = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class ClusterConfig:
    #: SQUALL_NATS_URL: nats://host:port[,nats://host:port...]
    nats_url: str
    #: SQUALL_NODE_ID: this node's name in the cluster (default: hostname:port)
    node_id: str
    #: SQUALL_NATS_REPLICAS: replicas of the event stream and the node bucket (0 = one per URL given, at most 3)
    replicas: int = 0
    #: SQUALL_CLUSTER_HEARTBEAT_S / SQUALL_CLUSTER_EXPIRY_S: heartbeat period; silence after which a node is out
    heartbeat_s: float = 0.3
    expiry_s: float = 1.5
    #: SQUALL_NATS_ACK_WAIT_S: an event a node fetched and neither acked nor reported in progress for this long
    #: goes to another node (a killed node's events come back after at most this)
    ack_wait_s: float = 10.0
    #: SQUALL_ACCOUNT_CONCURRENCY for the whole cluster (each node runs its share)
    account_concurrency: int = 1000
    #: SQUALL_CLUSTER_CHANGES_POLL_S: how often the change log in PostgreSQL is read for changes missed on NATS
    changes_poll_s: float = 1.0

    def stream_replicas(self) -> int:
        if self.replicas > 0:
            return self.replicas
        return max(1, min(3, len([u for u in self.nats_url.split(",") if u.strip()])))


class ClusterNode:
    def __init__(
        self,
        config: ClusterConfig,
        invoker: Invoker,
        pool: InstancePool,
        *,
        reservations: Callable[[], Iterable[tuple[str, int]]] = lambda: (),
        on_remote_change: OnRemote | None = None,
        changelog: ChangeLog | None = None,
        on_remote: dict[str, OnRemote] | None = None,
        on_members: Callable[[], Awaitable[None]] | None = None,
        on_resync: Callable[[], Awaitable[None]] | None = None,
        status_extras: dict[str, Callable[[], Any]] | None = None,
    ) -> None:
        """``on_remote_change``: a function changed through another node (kind "function"); ``on_remote``: the
        handlers of the other kinds of change ("iam", "esm"); ``changelog``: the change log in PostgreSQL (None
        with SQLite state: each node's state is its own, NATS only); ``on_members``: the live membership changed;
        ``on_resync``: changes may have been missed for good (pruned from the log before this node read them):
        drop everything cached; ``status_extras``: more of this node's state for ``squall cluster status``."""
        self.config = config
        self.node_id = config.node_id
        self.invoker = invoker
        self.pool = pool
        self.reservations = reservations
        self.on_remote_change = on_remote_change
        self.on_remote = dict(on_remote or {})
        self.on_members = on_members
        self.on_resync = on_resync
        self.status_extras = dict(status_extras or {})
        self.changelog = changelog
        self._changes: Subscription | None = None
        self.changes_received = 0
        #: the change-log row last read, and ids after it already applied from a NATS message
        self._cursor = 0
        self._applied: set[int] = set()
        self.changes_from_log = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        #: invocations this node forwarded and is waiting for, per (node, function): not yet in that node's
        #: heartbeat, so placement counts them itself (two requests in one heartbeat period do not both go to a
        #: node with room for one)
        self._outstanding: dict[tuple[str, str], int] = {}
        #: the live set the pool's shares were last split over
        self._shares_for: frozenset[str] = frozenset()
        self.nc: Client | None = None
        self.bus: EventBus | None = None
        self.membership: Membership | None = None
        self.forwarder: Forwarder | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reserved: dict[str, int] = {}
        self.placements: dict[str, int] = {}
        #: between start and stop: the invoker's placement hook (``maybe_forward``) places; else it runs here
        self.started = False

    async def connect(self) -> EventBus:
        """Connect and set up the bus (before the dispatcher starts); ``start`` does the rest."""
        self.nc = await connect(self.config.nats_url, name=f"squall {self.node_id}")
        self.bus = EventBus(self.nc, replicas=self.config.stream_replicas(), ack_wait_s=self.config.ack_wait_s)
        await self.bus.setup()
        return self.bus

    async def start(self) -> None:
        if self.nc is None:
            await self.connect()
        assert self.nc is not None
        self._loop = asyncio.get_running_loop()
        if self.changelog is not None:  # changes before this start are in what this node reads from now on
            self._cursor = await asyncio.to_thread(self.changelog.last_id)
        self.forwarder = Forwarder(
            self.nc, self.node_id, resolve=self._resolve_version, run_local=self._run_forwarded,
            flush_records=lambda: asyncio.to_thread(self.invoker.records.flush),
        )  # fmt: skip
        await self.forwarder.start()
        self._changes = await self.nc.subscribe(CHANGES_SUBJECT, cb=self._on_change_message)
        self.membership = Membership(
            self.nc, self.node_id, self.report, heartbeat_s=self.config.heartbeat_s,
            expiry_s=self.config.expiry_s, replicas=self.config.stream_replicas(),
        )  # fmt: skip
        await self.membership.start()
        self._reserved = dict(await asyncio.to_thread(lambda: list(self.reservations())))
        self.apply_shares()
        self.started = True  # placement on: maybe_forward places from now on
        self._tasks = [asyncio.create_task(self._shares_forever(), name="cluster-shares")]
        if self.changelog is not None:
            self._tasks.append(asyncio.create_task(self._changes_forever(), name="cluster-changes"))

    async def stop(self) -> None:
        self.started = False
        if self._changes is not None:
            with contextlib.suppress(Exception):
                await self._changes.unsubscribe()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.membership is not None:
            await self.membership.stop()
        if self.forwarder is not None:
            await self.forwarder.stop()
        if self.bus is not None:
            await self.bus.close()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        if self.changelog is not None:
            with contextlib.suppress(Exception):
                self.changelog.close()

    # -- control-plane changes: every node drops what it cached of a changed function ----------------------
    async def broadcast_change(self, name: str, qualifier: str, kind: str = "function") -> None:
        """Tell the other nodes that ``name`` changed (through this node): they forget its cached specs, drop
        its idle instances (old code or configuration) and re-read its concurrency, as this node did.  Written
        to the change log first (the reliable path), then published on NATS (the fast one)."""
        seq = 0
        if self.changelog is not None:
            try:
                seq = await asyncio.to_thread(self.changelog.append, self.node_id, kind, name, qualifier)
            except Exception as e:  # committed, but the others see it only at the function's next change
                log.warning("writing the change of %s to the cluster's change log: %s", name, e)
        await self._publish_change(kind, name, qualifier, seq)

    def note_change_threadsafe(self, kind: str, name: str = "", qualifier: str = "") -> None:
        """``broadcast_change`` from a store's thread (IAM's writes): the log row is written here and now (the
        caller's write has committed), the NATS message goes out from the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        seq = 0
        if self.changelog is not None:
            try:
                seq = self.changelog.append(self.node_id, kind, name, qualifier)
            except Exception as e:
                log.warning("writing a %s change to the cluster's change log: %s", kind, e)
        loop.call_soon_threadsafe(lambda: loop.create_task(self._publish_change(kind, name, qualifier, seq)))

    async def _publish_change(self, kind: str, name: str, qualifier: str, seq: int) -> None:
        if self.nc is None:
            return
        body = json.dumps(
            {"node": self.node_id, "kind": kind, "function": name, "qualifier": qualifier, "seq": seq}
        ).encode()
        try:
            await self.nc.publish(CHANGES_SUBJECT, body)
            await self.nc.flush(timeout=5)
        except Exception as e:  # the change log brings it to the others within changes_poll_s
            log.warning("telling the cluster that %s changed: %s", name or kind, e)

    async def _on_change_message(self, msg: Msg) -> None:
        try:
            d = json.loads(msg.data)
            if d.get("node") == self.node_id:
                return
            seq = int(d.get("seq") or 0)
            if seq and seq <= self._cursor:
                return  # already applied from the change log
            if seq:
                self._applied.add(seq)
            self.changes_received += 1
            await self._apply(str(d.get("kind") or "function"), str(d["function"]), str(d.get("qualifier") or ""))
        except Exception:
            log.exception("applying a change announced by another node")

    async def _apply(self, kind: str, name: str, qualifier: str) -> None:
        if kind == "function":
            if self.on_remote_change is not None:
                await self.on_remote_change(name, qualifier or "$LATEST")
            return
        handler = self.on_remote.get(kind)
        if handler is not None:
            await handler(name, qualifier)

    async def read_changes(self) -> int:
        """Apply the changes in the log that this node has not applied yet (made through other nodes, missed
        on NATS); how many."""
        assert self.changelog is not None
        applied = 0
        while True:
            rows, pruned_upto = await asyncio.to_thread(self.changelog.since, self._cursor)
            if pruned_upto:
                log.warning("changes made through other nodes were pruned before this node read them: resync")
                self._cursor = max(self._cursor, pruned_upto)
                if self.on_resync is not None:
                    await self.on_resync()
            for c in rows:
                self._cursor = c.id
                if c.node == self.node_id or c.id in self._applied:
                    continue
                try:
                    await self._apply(c.kind, c.name, c.qualifier)
                except Exception:
                    log.exception("applying change %d (%s %s) from the change log", c.id, c.kind, c.name)
                applied += 1
            self._applied = {i for i in self._applied if i > self._cursor}
            if len(rows) < 1000:
                self.changes_from_log += applied
                return applied

    async def _changes_forever(self) -> None:
        assert self.changelog is not None
        pruned_at = 0.0
        while True:
            await asyncio.sleep(self.config.changes_poll_s)
            try:
                await self.read_changes()
                if time.monotonic() - pruned_at > 3600:  # any node may prune; one delete an hour each
                    pruned_at = time.monotonic()
                    await asyncio.to_thread(self.changelog.prune)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # PostgreSQL unreachable: read again at the next tick, from the same row
                log.warning("reading the cluster's change log: %s", e)

    # -- what this node tells the others ---------------------------------------------------------------------
    def report(self) -> NodeView:
        idle: dict[str, int] = {}
        running: dict[str, int] = {}
        provisioned: dict[str, int] = {}
        for i in self.pool.state.instances:
            if i.provisioned and i.state in ("idle", "busy"):
                key = f"{i.function}:{i.version}"
                provisioned[key] = provisioned.get(key, 0) + 1
            if i.state == "idle":
                key = f"{i.function}:{i.version}"
                idle[key] = idle.get(key, 0) + 1
            elif i.state in ("starting", "busy"):
                running[i.function] = running.get(i.function, 0) + 1
        return NodeView(
            node_id=self.node_id,
            in_flight=sum(running.values()),
            capacity=self.pool.state.account_limit,
            idle=idle,
            running=running,
            address=invoke_subject(self.node_id),
            provisioned=provisioned,
        )

    # -- cluster-wide limits as per-node shares ---------------------------------------------------------------
    def set_reserved(self, function: str, reserved: int | None) -> None:
        """The control plane changed a function's reserved concurrency: this node keeps its share of it."""
        if reserved is None:
            self._reserved.pop(function, None)
            self.pool.set_reserved(function, None)
        else:
            self._reserved[function] = reserved
        self.apply_shares()

    def live(self) -> set[str]:
        """The live nodes as this node sees them (itself included)."""
        live = self.membership.live() if self.membership is not None else set()
        live.add(self.node_id)
        return live

    def share(self, key: str, total: int) -> int:
        """This node's share of a cluster-wide count that belongs to ``key`` (a function's provisioned
        concurrency: key = its name, so a share of 1 sits on the function's home node)."""
        return share_of(self.node_id, total, key, self.live())

    def owns(self, key: str) -> bool:
        """Whether this node does the work of ``key`` that must run on one node at a time (an event source
        mapping's poller: key = its UUID): the first live node in ``key``'s rendezvous order.  When that node
        leaves, the next one in the order takes over once it is out of the membership (``expiry_s``)."""
        return rank(key, self.live())[0] == self.node_id

    def provisioned_total(self, function: str, version: str) -> int:
        """Provisioned instances of ``function:version`` ready on the live nodes (this one counted now, the
        others as of their last heartbeat)."""
        key = f"{function}:{version}"
        views = self.membership.views() if self.membership is not None else {}
        views[self.node_id] = self.report()
        return sum(v.provisioned.get(key, 0) for v in views.values())

    def apply_shares(self) -> None:
        live = self.live()
        self._shares_for = frozenset(live)
        account = share_of(self.node_id, self.config.account_concurrency, "", live)
        if self.pool.state.account_limit != account:
            self.pool.state = replace(self.pool.state, account_limit=account)
        for function, reserved in self._reserved.items():
            self.pool.set_reserved(function, share_of(self.node_id, reserved, function, live))

    async def _shares_forever(self) -> None:
        assert self.membership is not None
        known = self.membership.live()
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.membership.changed.wait(), self.config.heartbeat_s)
            self.membership.changed.clear()
            live = self.membership.live()
            if live != known:
                log.info("cluster members: %s", ", ".join(sorted(live)))
                known = live
                self.apply_shares()
                if self.on_members is not None:
                    try:
                        await self.on_members()
                    except Exception:
                        log.exception("after a membership change")

    # -- placement and forwarding -----------------------------------------------------------------------------
    async def maybe_forward(
        self,
        spec: FunctionSpec,
        payload: bytes,
        request_id: str,
        trigger: str,
        client_context: dict[str, Any] | None,
        trace_id: str,
        traceparent: str,
        wait_s: float | None,
        sync: bool,
    ) -> InvocationResult | None:
        """The result of running the invocation on another node, or None: run it here."""
        if not self.started:
            return None
        m, fw = self.membership, self.forwarder
        if m is None or fw is None:
            return None
        for i in self.pool.state.instances:
            if i.state == "idle" and i.function == spec.name and i.version == spec.version:
                return None  # a warm idle instance here: nothing beats it (the common case: decided first)
        views = m.views()
        if frozenset(views) | {self.node_id} != self._shares_for:
            self.apply_shares()  # placement and this node's pool judge room by the same membership
        if len(views) <= 1:
            return None
        views[self.node_id] = self.report()  # this node's own state is known now, not as of its last heartbeat
        for (node, function), n in self._outstanding.items():
            v = views.get(node)
            if v is not None and n > 0:  # what this node sent there since its heartbeat may not be in it yet
                running = dict(v.running)
                running[function] = running.get(function, 0) + n
                views[node] = replace(v, in_flight=v.in_flight + n, running=running)
        p = place(spec.name, spec.version, views, set(views), self.node_id, reserved=self._reserved.get(spec.name))
        self.placements[p.reason] = self.placements.get(p.reason, 0) + 1
        if p.node_id is None or p.node_id == self.node_id:
            return None
        if not fw.fits(payload):  # larger than the NATS servers take: runs here (docs/cluster.md: max_payload)
            self.placements["too_large_to_forward"] = self.placements.get("too_large_to_forward", 0) + 1
            return None
        key = (p.node_id, spec.name)
        self._outstanding[key] = self._outstanding.get(key, 0) + 1
        try:
            return await fw.forward(
                p.node_id, spec, payload, request_id, trigger, client_context, trace_id, traceparent, wait_s,
                sync=sync, durable=not sync,
            )  # fmt: skip
        except TooManyRequests:  # its share filled up meanwhile: it did not run; here it waits or throttles
            self.placements["throttled_there"] = self.placements.get("throttled_there", 0) + 1
            return None
        except NoRespondersError:  # the node left since its last heartbeat: run here
            log.info("node %s does not answer; %s runs here", p.node_id, request_id)
            return None
        except NatsTimeout as e:  # it may have run there: running it again here could run it twice
            raise ServiceError(f"node {p.node_id} did not answer in time for invocation {request_id}") from e
        finally:
            left = self._outstanding.get(key, 1) - 1
            if left > 0:
                self._outstanding[key] = left
            else:
                self._outstanding.pop(key, None)

    def _resolve_version(self, name: str, version: str) -> FunctionSpec:
        return self.invoker.resolve(name, version)

    async def _run_forwarded(
        self,
        spec: FunctionSpec,
        payload: bytes,
        request_id: str,
        trigger: str,
        client_context: dict[str, Any] | None,
        trace_id: str,
        traceparent: str,
        wait_s: float | None,
        sync: bool,
    ) -> InvocationResult:
        return await self.invoker.run(
            spec, payload, request_id, trigger, client_context, trace_id, traceparent,
            wait_s=wait_s, sync=sync, forwarded=True,
        )  # fmt: skip

    # -- squall cluster status --------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        m = self.membership
        nodes = []
        if m is not None:
            seen = m.last_seen_s()
            live = m.live()
            for node_id, v in sorted(m.known().items()):
                if node_id == self.node_id:
                    v = self.report()
                nodes.append({
                    "node_id": node_id, "live": node_id in live, "last_heartbeat_s": round(seen.get(node_id, 0.0), 3),
                    "in_flight": v.in_flight, "capacity": v.capacity, "warm_idle": dict(v.idle),
                    "running": dict(v.running), "provisioned": dict(v.provisioned), "self": node_id == self.node_id,
                })  # fmt: skip
        pending = None
        if self.bus is not None:
            with contextlib.suppress(Exception):
                pending = await self.bus.pending()
        return {
            "node_id": self.node_id,
            "changes_received": self.changes_received,
            "changes_from_log": self.changes_from_log,
            "nats": {
                "url": self.config.nats_url,
                "connected": bool(self.nc and self.nc.is_connected),
                "server": self.nc.connected_url.netloc if self.nc and self.nc.connected_url else None,
            },
            "event_stream": {"replicas": self.config.stream_replicas(), "pending": pending},
            "nodes": nodes,
            "placements": dict(self.placements),
            "forwarded": self.forwarder.forwarded if self.forwarder else 0,
            "served_for_others": self.forwarder.served if self.forwarder else 0,
            "time": time.time(),
            **{k: f() for k, f in self.status_extras.items()},
        }
