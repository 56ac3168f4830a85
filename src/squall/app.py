"""Composition root: builds every part of Squall with explicit arguments and runs them under one event loop.

stores (SQLite metadata, code, keys) -> node (zygotes, sandboxes) -> pool (scheduler shell) -> telemetry ->
invoker -> async dispatcher -> S3, SQS, triggers, IAM, dashboard -> router (one HTTP port; SigV4 in front).

Nothing here is imported by a service: they meet through ``core.ports`` and what this module hands each of them
at construction; nothing patches another object's attributes afterwards.  Only the CLI (``squall up``) and tests
import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squall.aws.credentials import Credentials, KeyRing
from squall.cluster.api import cluster_routes
from squall.cluster.changes import ChangeLog
from squall.cluster.dispatch import BusDispatcher
from squall.cluster.node import ClusterConfig, ClusterNode
from squall.cluster.outbox import OutboxDrain
from squall.core.arn import function_of_arn, resource_name
from squall.core.clock import SystemClock
from squall.core.config import NodeConfig, ServerConfig
from squall.core.errors import ResourceNotFound, SquallError
from squall.core.model import FunctionSpec
from squall.core.ports import NewEvent
from squall.dashboard.api import DashboardApi, dashboard_api_routes
from squall.dashboard.ui.routes import ui_routes
from squall.dashboard.ui.sessions import SessionGate, Sessions
from squall.functions.api import lambda_routes
from squall.functions.async_delivery import AsyncDispatcher
from squall.functions.control import FunctionService
from squall.functions.invoke_api import InvokeEndpoint
from squall.functions.invoker import InvocationResult, Invoker, spec_from_stored
from squall.functions.metering import PriceTable
from squall.functions.pool import InstancePool, PoolConfig
from squall.functions.provisioning import Provisioning
from squall.functions.squall_api import squall_api_routes
from squall.functions.store.code import CodeStore
from squall.functions.store.invocations import RecordWriter
from squall.functions.store.layers import LayerStore
from squall.functions.store.metadata import SqliteMetadataStore
from squall.functions.store.records import StoredFunction
from squall.functions.store.retention import Retention
from squall.iam.actions import s3_checks
from squall.iam.api import IamApi, Identity
from squall.iam.authorizer import Authorizer
from squall.iam.gate import Gate
from squall.iam.permissions import FunctionPermissions, permission_routes
from squall.iam.store import IamStore
from squall.router import router
from squall.s3.api import s3_app
from squall.s3.notifications import NotificationQuery, StorageEvents
from squall.s3.store.events import NotificationTarget, ObjectEvent
from squall.s3.store.objects import ObjectStore
from squall.sandbox.node.node import Node
from squall.scheduler.keep_alive import HistogramConfig
from squall.sqs.api import sqs_app
from squall.sqs.store.queues import QueueStore
from squall.sqs.store.wait import QueueWaiter
from squall.store.db import DbTarget, PgTarget, target_for
from squall.store.disk import DiskFull, DiskGuard, secure_data_dir
from squall.store.env_crypto import EnvCipher
from squall.store.outbox import EventOutbox
from squall.telemetry import setup as telemetry
from squall.telemetry.api import telemetry_routes
from squall.telemetry.metrics import StateSnapshot
from squall.triggers.event_source_mappings import api as event_source_mappings
from squall.triggers.event_source_mappings.store import MappingStore
from squall.triggers.function_urls import api as function_urls
from squall.triggers.function_urls.store import FunctionUrlStore
from squall.triggers.plugin import Plugin
from squall.triggers.schedules import api as schedules
from squall.triggers.schedules.store import ScheduleStore

__all__ = ["Squall"]

log = logging.getLogger("squall")


def load_prices(path: str) -> PriceTable:
    """The price table: Lambda's x86 us-east-1 prices, or a JSON/YAML file (SQUALL_PRICES) overriding them."""
    if not path:
        return PriceTable()
    import yaml

    with open(path) as f:
        return PriceTable.from_dict(yaml.safe_load(f) or {})


@dataclass
class Squall:
    """One running Squall server.  ``await start()``, serve ``asgi``, ``await stop()``."""

    config: ServerConfig
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        c = self.config
        c.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(c.data_dir, 0o700)
        self.disk = DiskGuard(c.data_dir, c.disk_reserve_mb * 1024 * 1024)
        self.disk.start()  # on a full disk: release the reserve first, so the stores can open
        self.keyring = KeyRing.open(c.data_dir, os.environ)
        self.credentials: Credentials = self.keyring.admin
        self.store = SqliteMetadataStore(
            self.db_target("squall.db", "metadata"), region=c.region, account_id=c.account_id,
            env_cipher=EnvCipher.open(c.data_dir, os.environ),  # environment variables sealed at rest
            disk=self.disk,  # writes refused with DiskFull on a full disk; deletes let through
        )  # fmt: skip
        meta_db = self.db_target("squall.db", "metadata")
        self.code = CodeStore(  # cluster mode: every zip in PostgreSQL too, extracted on the nodes that run it
            c.data_dir / "code", disk=self.disk, shared=meta_db if isinstance(meta_db, PgTarget) else None
        )
        # the cgroup name is derived from the data dir: at start a node kills what is left in its cgroups (a
        # crashed predecessor's instances), which must never hit another server running on the same machine
        digest = hashlib.sha1(str(c.data_dir.resolve()).encode()).hexdigest()[:10]
        self.node = Node(
            NodeConfig(data_dir=c.data_dir, region=c.region, account_id=c.account_id, cgroup_name=f"squall-{digest}")
        )
        self.pool = InstancePool(
            self.node,
            PoolConfig(
                keep_alive_s=c.keep_alive_s,
                zygote_keep_alive_s=c.zygote_keep_alive_s,
                reap_interval_s=c.reap_interval_s,
                max_concurrent_starts=c.max_concurrent_starts,
                throttle_wait_s=c.throttle_wait_s,
                account_concurrency=c.account_concurrency,
                memory_budget_mb=c.memory_budget_mb,
                keep_alive_policy=c.keep_alive_policy,
                keep_alive_histogram=HistogramConfig(
                    bin_s=c.keep_alive_bin_s,
                    range_s=c.keep_alive_range_s,
                    min_samples=c.keep_alive_min_samples,
                    cv_min=c.keep_alive_cv_min,
                    head_percentile=c.keep_alive_head_pct,
                    tail_percentile=c.keep_alive_tail_pct,
                    cap_without_prewarm=c.keep_alive_cap,
                    cold_start_cost_s=c.keep_alive_cold_cost_s,
                ),
            ),
        )
        self.records = RecordWriter(self.store)
        self.queues = QueueStore(
            self.db_target("queues.db", "sqs"), region=c.region, account_id=c.account_id, disk=self.disk
        )
        self.queue_waiter = QueueWaiter(self.queues)  # binds to the running loop at its first wait
        self.prices = load_prices(c.prices_path)
        #: metrics (/metrics) and traces (spans, OTLP export, /_squall/api/traces), handed to the invoker
        self.observability = telemetry.build(c, self._state_snapshot)
        self.invoker = Invoker(
            self.store,
            self.pool,
            self.records,
            region=c.region,
            account_id=c.account_id,
            function_env=self.function_env,
            enqueue_async=self._enqueue_async,  # every async source goes through the dispatcher (FIFO)
            observer=self.observability.metrics,
            tracer=self.observability.tracer,
            code=self.code.materialize if c.database_url else Path,
            placer=self._place if c.nats_url else None,  # cluster mode: placement may run it on another node
        )
        #: cluster mode (--nats-url): events on JetStream, membership, placement and forwarding
        self.cluster: ClusterNode | None = None
        if c.nats_url:
            self.cluster = ClusterNode(
                ClusterConfig(
                    nats_url=c.nats_url, node_id=c.cluster_node_id, replicas=c.nats_replicas,
                    heartbeat_s=c.cluster_heartbeat_s, expiry_s=c.cluster_expiry_s, ack_wait_s=c.nats_ack_wait_s,
                    account_concurrency=c.account_concurrency, changes_poll_s=c.cluster_changes_poll_s,
                ),
                self.invoker, self.pool, reservations=self._reservations, on_remote_change=self.on_change,
                # with PostgreSQL state: changes also go through the change log (a node cut off from NATS misses
                # none); with SQLite each node's state is its own and NATS carries the notices alone
                changelog=ChangeLog(self.db_target("cluster.db", "cluster_changes")) if c.database_url else None,
                on_remote={"iam": self._remote_iam_change, "esm": self._remote_esm_change},
                on_members=self._members_changed, on_resync=self._resync,
                status_extras={"esm_pollers": self._esm_pollers},
            )  # fmt: skip
            self.dispatcher: AsyncDispatcher = BusDispatcher(
                self.invoker,
                None,
                retry_base_delay_s=c.async_retry_base_s,
                max_in_flight=max(1, c.async_max_in_flight),
                queue_sink=self.queues,
            )
        else:
            self.dispatcher = AsyncDispatcher(
                self.invoker,
                retry_base_delay_s=c.async_retry_base_s,
                max_in_flight=max(1, c.async_max_in_flight),
                queue_sink=self.queues,
            )
        #: cluster mode on PostgreSQL: storage events and schedule ticks are written to the event outbox in the
        #: transaction of their cause, and every node's drain publishes them (squall.cluster.outbox)
        self.outbox = EventOutbox(PgTarget(c.database_url, "outbox")) if c.nats_url and c.database_url else None
        self.outbox_drain: OutboxDrain | None = None
        kick = self._kick_outbox if self.outbox is not None else None
        self.storage_events = StorageEvents(
            self.queues, c.region, self.dispatcher.enqueue_threadsafe, self._notification_targets, outbox_kick=kick
        )
        s3_db = self.db_target("objects.db", "s3")  # PostgreSQL: metadata and object data (chunked) there
        self.objects = ObjectStore(
            c.data_dir / "objects",
            on_event=self.storage_events,
            disk=self.disk,
            database=s3_db if isinstance(s3_db, PgTarget) else None,
            tx_events=self.storage_events.in_transaction if kick is not None else None,
        )
        self.functions = FunctionService(
            self.store,
            self.code,
            region=c.region,
            account_id=c.account_id,
            public_url=c.public_url,
            account_limit=c.account_concurrency,  # PutFunctionConcurrency keeps 100 of it unreserved, as Lambda
            clock=SystemClock(),
            on_change=[self.on_change, self._broadcast_change],
            layer_store=LayerStore(self.db_target("layers.db", "layers")),
        )
        # counts and pollers split over the nodes only where the nodes share their state (PostgreSQL); nodes on
        # NATS with SQLite state each have their own functions and mappings
        cluster = self.cluster if c.database_url else None
        self.provisioning = Provisioning(
            self.store, self.pool, self._spec_of,
            # a cluster: the requested count holds cluster-wide (this node keeps its share; the function's home
            # node reports what is ready on all nodes)
            share=cluster.share if cluster else None,
            ready_total=cluster.provisioned_total if cluster else None,
            reports=cluster.owns if cluster else None,
        )  # fmt: skip
        self.started_at = 0.0
        #: event sources (see squall.triggers.plugin), each given its store and the ports it needs
        self.schedules = schedules.install(
            ScheduleStore(self.db_target("schedules.db", "schedules"), outbox=kick is not None),
            self.dispatcher.enqueue_threadsafe, self._function_exists, region=c.region, account_id=c.account_id,
            outbox_kick=kick,  # cluster mode: each tick claimed by one node, its event in the outbox
        )  # fmt: skip
        self.event_source_mappings = event_source_mappings.install(
            MappingStore(self.db_target("esm.db", "event_source_mappings")), self.store, self.invoker, self.queues, self.queue_waiter,
            region=c.region, account_id=c.account_id,
        )  # fmt: skip
        self.function_urls = function_urls.install(
            FunctionUrlStore(self.db_target("function_urls.db", "function_urls")), self.store, self.invoker, public_url=c.public_url,
            account_id=c.account_id,
        )  # fmt: skip
        self.plugins: list[Plugin] = [self.schedules, self.event_source_mappings, self.function_urls]
        if cluster is not None:  # each mapping polled by one node of the cluster
            esm = self._esm()
            esm.owns, esm.announce = cluster.owns, self._announce_esm_change
        #: dashboard sessions (the admin key, entered once on /ui/login)
        self.sessions = Sessions(self.keyring.is_admin, self.keyring.secret_for)
        #: the dashboard reads triggers through their query ports (in the order it lists them) and the pool here
        queries = (self.function_urls.query, self.schedules.query, self.event_source_mappings.query)
        self.dashboard = DashboardApi(
            self.store,
            self.queues,
            self.prices,
            [*(q for q in queries if q is not None), NotificationQuery(self.objects)],
            self,
        )
        self.retention = Retention(self.store, c.log_retention_days, c.prune_interval_s)
        #: IAM: roles and policies (the iam API), execution roles enforced on functions' own calls, resource policies
        self.iam_store = IamStore(self.db_target("iam.db", "iam"))
        if cluster is not None:  # roles and policies written here: the other nodes' caches must not keep them
            self.iam_store.on_write.append(lambda: cluster.note_change_threadsafe("iam"))
        self.iam_api = IamApi(self.iam_store, c.account_id, self.identity)
        self.authorizer = Authorizer(
            self.iam_store, self.iam_api, self._function_config, region=c.region, account_id=c.account_id
        )
        self.gate = Gate(self.authorizer, c.region, c.account_id)
        self.permissions = FunctionPermissions(
            self.iam_store, self._require_function, region=c.region, account_id=c.account_id
        )
        secure_data_dir(c.data_dir)  # what the stores made or an older Squall left: dirs 0700, files 0600

        #: network "nat": a listening socket on the node's gateway address (served by the HTTP server) and the
        #: URL functions get as AWS_ENDPOINT_URL
        self.gateway_socket: socket.socket | None = None
        self._function_endpoint = ""

    def db_target(self, filename: str, name: str) -> DbTarget:
        """Where store ``name`` keeps its tables: ``<data dir>/<filename>`` (SQLite), or that store's tables in
        the PostgreSQL database of ``SQUALL_DATABASE_URL``."""
        return target_for(self.config.data_dir / filename, name, self.config.database_url or None)

    def identity(self, scope: Any) -> Identity:
        """Who signed a request, as STS GetCallerIdentity reports it."""
        account = self.config.account_id
        auth = scope.get("squall.auth")
        function = self.keyring.scope_of(auth.access_key_id) if auth is not None else None
        if function is None:
            return Identity(f"arn:aws:iam::{account}:root", account, account, admin=True)
        caller = self.authorizer.caller(function)
        return Identity(caller.session_arn, caller.context.get("aws:userid", f"AROAUNKNOWN:{function}"), account, False)

    def _function_config(self, name: str) -> dict[str, Any] | None:
        try:
            return self.store.get_function(name).config
        except ResourceNotFound:
            return None

    def _require_function(self, name: str, qualifier: str | None) -> None:
        self.store.get_function(name, qualifier)

    def _qualifier_exists(self, name: str, qualifier: str) -> bool:
        try:
            self.store.get_function(name, qualifier)
            return True
        except ResourceNotFound:
            return False

    @property
    def function_endpoint(self) -> str:
        """The URL functions use for this Squall: the node's gateway address when network "nat" is up (an
        instance reaches nothing else on the host), else the public URL."""
        return self._function_endpoint or self.config.public_url

    def _listen_on_gateway(self) -> None:
        """Network "nat": also listen on the gateway address, the one host address instances may reach (the
        HTTP server starts serving this socket once it is up; until then connections wait in its backlog)."""
        net = self.node.network
        if not net.available:
            return
        c = self.config
        port = c.port
        if c.host not in ("0.0.0.0", "", "::"):  # a wildcard bind already covers the gateway address
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((net.gateway, port))
                sock.listen(2048)
            except OSError as e:
                sock.close()
                log.warning("network nat: cannot listen on %s:%s (%s): functions cannot reach Squall", net.gateway,
                            port, e)  # fmt: skip
                return
            sock.setblocking(False)
            port = sock.getsockname()[1]
            self.gateway_socket = sock
        self.node.allow_endpoint(port)
        self._function_endpoint = f"http://{net.gateway}:{port}"

    def function_env(self, name: str) -> dict[str, str]:
        """What every function finds in its environment so boto3 inside it talks to this Squall."""
        key = self.keyring.issue_scoped(name)
        url = self.function_endpoint
        return {
            "AWS_ENDPOINT_URL": url,
            "AWS_ENDPOINT_URL_S3": url,
            "AWS_ENDPOINT_URL_SQS": url,
            "AWS_ENDPOINT_URL_LAMBDA": url,
            "AWS_ACCESS_KEY_ID": key.access_key_id,
            "AWS_SECRET_ACCESS_KEY": key.secret_access_key,
        }

    def _function_exists(self, name: str, qualifier: str | None = None) -> bool:
        try:
            self.store.get_function(name, qualifier)
            return True
        except ResourceNotFound:
            return False

    def _function_arn_exists(self, arn: str) -> bool:
        ref = function_of_arn(arn)
        return ref is not None and self._function_exists(*ref)

    def _spec_of(self, sf: StoredFunction) -> FunctionSpec:
        return spec_from_stored(
            sf, self.config.region, self.config.account_id, self.function_env(sf.name), self.invoker.code
        )

    async def _place(self, *args: Any) -> InvocationResult | None:
        """The invoker's placement hook in a cluster (the cluster node is built after the invoker it runs on)."""
        return None if self.cluster is None else await self.cluster.maybe_forward(*args)

    def _notification_targets(self, event: ObjectEvent) -> list[NotificationTarget]:
        """Where a storage event goes: the object store reads its bucket's configuration (built after
        ``StorageEvents``, which it calls)."""
        return self.objects.notification_targets(event)

    def _kick_outbox(self) -> None:
        """Rows were committed to the event outbox: this node's drain publishes them now (from any thread)."""
        if self.outbox_drain is not None:
            self.outbox_drain.kick()

    def _enqueue_async(self, batch: list[NewEvent]) -> None:
        """The invoker's way into the durable async queue: the dispatcher's hand-over (built after the invoker,
        which it runs events through)."""
        self.dispatcher.enqueue_threadsafe(batch)

    def _state_snapshot(self) -> StateSnapshot:
        """What a metrics scrape reads of the platform's state."""
        try:
            memory = int(self.node.cgroups.node_memory_in_use())
        except Exception:
            memory = 0
        return StateSnapshot(
            instances=[(i.function, str(i.state)) for i in self.pool.state.instances],
            zygotes=len(self.pool.loaded),
            async_queue_depth=self.store.depth(),
            async_event_age_s=self.store.oldest_age(time.time()),
            async_succeeded=self.dispatcher.delivered,
            async_failed=self.dispatcher.failed,
            node_memory_bytes=memory,
            prewarms=self.pool.prewarms,
        )

    def _queue_exists(self, arn: str) -> bool:
        return self.queues.queue_exists(resource_name(arn))

    def _authorize_post(self, access_key_id: str, bucket: str, key: str) -> SquallError | None:
        """A POST Object form upload signed with a function's key: s3:PutObject as its role allows."""
        function = self.keyring.scope_of(access_key_id)
        if function is None:
            return None
        return self.authorizer.check(function, s3_checks("POST", bucket, key, {}, {}))

    # -- control-plane changes ----------------------------------------------------------------------------
    def _esm(self) -> event_source_mappings.EventSourceMappings:
        esm = self.event_source_mappings.query
        assert isinstance(esm, event_source_mappings.EventSourceMappings)
        return esm

    def _esm_pollers(self) -> list[str]:
        return self._esm().polled_here()

    async def _announce_esm_change(self, uid: str) -> None:
        if self.cluster is not None:
            await self.cluster.broadcast_change(uid, "", kind="esm")

    async def _remote_esm_change(self, _uid: str, _qualifier: str) -> None:
        self._esm().wake()

    async def _remote_iam_change(self, _name: str, _qualifier: str) -> None:
        self.iam_store.invalidate()

    async def _members_changed(self) -> None:
        """The cluster's live nodes changed: shares of provisioned concurrency and mapping pollers move."""
        self.provisioning.resync()
        self._esm().wake()

    async def _resync(self) -> None:
        """Changes made through other nodes may have been missed for good: forget everything cached."""
        self.iam_store.invalidate()
        for name in await asyncio.to_thread(self._function_names):
            await self.on_change(name, "$LATEST")
        self._esm().wake()

    async def _broadcast_change(self, name: str, qualifier: str) -> None:
        """A change made through this node: the other nodes of the cluster run their ``on_change`` too."""
        if self.cluster is not None:
            await self.cluster.broadcast_change(name, qualifier)

    async def on_change(self, name: str, qualifier: str) -> None:
        """A function's code, configuration, versions, aliases or concurrency changed (here or, in a cluster,
        through another node)."""
        await self.invoker.function_changed(name, qualifier)
        exists = self._function_config(name) is not None
        if not exists:  # deleted: the key its instances were given stops working (a new function gets a new one)
            await asyncio.to_thread(self.keyring.revoke_scoped, name)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                self.authorizer.function_changed, name, exists, lambda q: self._qualifier_exists(name, q)
            )
        for p in self.plugins:
            if p.on_change is not None:
                result = p.on_change(name, qualifier)
                if inspect.isawaitable(result):
                    await result
        try:
            reserved = self.store.get_function_concurrency(name)
        except ResourceNotFound:
            reserved = None
        if self.cluster is not None:
            self.cluster.set_reserved(name, reserved)  # this node's share of it
        else:
            self.pool.set_reserved(name, reserved)
        self.provisioning.sync(name)

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.started_at = time.time()
        await self.node.start()
        self._listen_on_gateway()
        released = self.store.release_leases()
        if released:
            log.info("recovered %d async events in flight when the server last stopped", released)
        for name, reserved in self._reservations():
            self.pool.set_reserved(name, reserved)
        if self.cluster is not None:  # before the dispatcher runs: it fetches from the bus
            assert isinstance(self.dispatcher, BusDispatcher)
            self.dispatcher.bus = await self.cluster.connect()
            await self.cluster.start()  # reservations become this node's shares
            await self._queued_events_to_bus()
            if self.outbox is not None:
                self.outbox_drain = OutboxDrain(
                    self.outbox, self.dispatcher.bus, self.cluster.node_id, lease_s=self.config.outbox_lease_s,
                    queues=self.queues,
                )  # fmt: skip
        for name in self._function_names():
            self.provisioning.sync(name)
        # keys and resource policies of functions (or versions, aliases) deleted while the server was going down
        for name in self.keyring.scoped_names():
            if self._function_config(name) is None:
                self.keyring.revoke_scoped(name)
        for name in self.iam_store.functions_with_policies():
            exists = self._function_config(name) is not None
            self.authorizer.function_changed(name, exists, functools.partial(self._qualifier_exists, name))
        self.tasks = [
            *(asyncio.create_task(t(), name=f"{p.name}") for p in self.plugins for t in p.tasks),
            asyncio.create_task(self.dispatcher.run_forever(), name="async-dispatcher"),
            asyncio.create_task(self.pool.reap_forever(), name="reaper"),
            asyncio.create_task(self._flush_forever(), name="record-flusher"),
            asyncio.create_task(self.provisioning.report_forever(), name="provisioned-status"),
            asyncio.create_task(self.retention.run_forever(), name="retention"),
            *([asyncio.create_task(self.outbox_drain.run_forever(), name="outbox-drain")] if self.outbox_drain else []),
        ]

    async def _queued_events_to_bus(self) -> None:
        """A node that ran embedded before joining a cluster: the events still in its SQLite queue (accepted, not
        yet delivered, retries waiting) move to the bus, unchanged (id, attempt, next attempt), then leave the
        queue.  Published before they are deleted: a crash in between publishes them again with the same ids."""
        assert isinstance(self.dispatcher, BusDispatcher) and self.dispatcher.bus is not None
        moved = 0
        while True:
            # every event, due or not: "now" far ahead; the lease only hides them while they are moved
            events = await asyncio.to_thread(self.store.lease, time.time() + 10 * 365 * 86400, 500, 3600.0)
            if not events:
                break
            await self.dispatcher.bus.publish([
                {"id": e.id, "function": e.function, "qualifier": e.qualifier, "payload": e.payload,
                 "request_id": e.request_id, "enqueued_at": e.enqueued_at, "attempt": e.attempt,
                 "next_attempt_at": e.next_attempt_at, "source": e.source, "extra": e.extra or {}}
                for e in events
            ])  # fmt: skip
            await asyncio.to_thread(self.store.ack_many, [e.id for e in events])
            moved += len(events)
        if moved:
            log.info("moved %d events from the local queue to the cluster's event bus", moved)

    def _function_names(self) -> list[str]:
        names: list[str] = []
        marker = None
        while True:
            page, marker = self.store.list_functions(marker, 50)
            names += [f.name for f in page]
            if not marker:
                return names

    def _reservations(self) -> list[tuple[str, int]]:
        out = []
        marker = None
        while True:
            page, marker = self.store.list_functions(marker, 50)
            for f in page:
                r = self.store.get_function_concurrency(f.name)
                if r is not None:
                    out.append((f.name, r))
            if not marker:
                return out

    async def _flush_forever(self) -> None:
        warned = 0.0
        while True:
            await asyncio.sleep(0.1)
            if self.records.pending():
                try:
                    await asyncio.to_thread(self.records.flush)
                except DiskFull as e:  # kept pending (bounded by the writer); said once a minute, not every 0.1 s
                    if time.monotonic() - warned > 60:
                        warned = time.monotonic()
                        log.warning("invocation records wait for disk space: %s", e)
                except Exception:
                    log.exception("writing invocation records")

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t
        for p in self.plugins:
            if p.close is not None:
                with contextlib.suppress(Exception):
                    result = p.close()
                    if inspect.isawaitable(result):
                        await result
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.dispatcher.drain(), 10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.cluster.stop(), 10)
        await self.pool.close()
        if self.gateway_socket is not None:
            self.gateway_socket.close()
            self.gateway_socket = None
        await self.node.close()
        try:
            await asyncio.to_thread(self.records.flush)
        except DiskFull as e:  # stop anyway: the stores must still be closed cleanly
            log.warning("%d invocation records and logs not written at shutdown: %s", self.records.pending(), e)
        await asyncio.to_thread(self.observability.close)
        self.store.close()
        with contextlib.suppress(Exception):
            self.objects.close()
        with contextlib.suppress(Exception):
            self.queues.close()
        with contextlib.suppress(Exception):
            self.iam_store.close()
        if self.outbox is not None:
            with contextlib.suppress(Exception):
                self.outbox.close()

    def pool_summary(self) -> dict[str, Any]:
        """What is running now: instances by state, loaded zygotes, concurrency, memory."""
        return {
            "instances": [
                {
                    "id": i.id,
                    "function": i.function,
                    "version": i.version,
                    "state": i.state,
                    "memory_mb": i.memory_mb,
                    "provisioned": i.provisioned,
                }
                for i in self.pool.state.instances
            ],
            "zygotes": [{"function": f.spec.name, "version": f.spec.version} for f in self.pool.loaded.values()],
            "concurrency": self.pool.concurrency(),
            "cold_starts": self.pool.cold_starts,
            "prewarms": self.pool.prewarms,
            "keep_alive_policy": self.pool.config.keep_alive_policy,
            # what the adaptive keep-alive learned per function (windows in seconds after its last invocation)
            "keep_alive": {
                fn: {
                    "mode": w.mode,
                    "prewarm_s": w.prewarm_s,
                    "keep_alive_s": w.keep_alive_s,
                    "idle_times": h.samples,
                    "reason": w.reason,
                }
                for fn, h in self.pool.keep_alive.items()
                for w in (h.windows(),)
            },
            "node_memory_bytes": self.node.cgroups.node_memory_in_use(),
            "async_queue_depth": self.store.depth(),
        }

    # -- HTTP ---------------------------------------------------------------------------------------------
    def asgi(self) -> Any:
        """The port's ASGI app (``squall.router``): every service's routes and apps, and the app's lifespan."""
        c = self.config
        routes = [
            *cluster_routes(self.cluster),
            *lambda_routes(self.functions),
            *permission_routes(self.permissions),
            *squall_api_routes(self.store, self.prices, self.node.learned_imports),
            *dashboard_api_routes(self.dashboard),
            *ui_routes(self.sessions, secure_cookie=c.public_url.startswith("https://")),
            *telemetry_routes(self.observability),
            *(r for p in self.plugins for r in p.routes),
        ]
        s3 = s3_app(
            self.objects, region=c.region, function_exists=self._function_arn_exists,
            queue_exists=self._queue_exists, lookup_secret=self.keyring.secret_for,
            authorize_post=self._authorize_post,
        )  # fmt: skip
        sqs = sqs_app(
            self.queues, public_url=c.public_url, region=c.region, account_id=c.account_id, waiter=self.queue_waiter
        )
        return router(
            routes=routes,
            start=self.start,
            stop=self.stop,
            health=lambda: {"status": "ok", "uptime_s": time.time() - self.started_at},
            pool_summary=self.pool_summary,
            s3=self.observability.traced("S3", s3),  # spans for requests that carry a trace context
            sqs=self.observability.traced("SQS", sqs),
            iam=self.iam_api,
            invoke=InvokeEndpoint(self.invoker),
            gate=self.gate,
            keyring=self.keyring,
            public=[(p.accepts, p.public_app) for p in self.plugins if p.accepts is not None and p.public_app],
            public_prefixes=(*self.observability.public_prefixes,),
            session=SessionGate(self.sessions, c.region),
        )
