"""Node membership: heartbeats in a JetStream key-value bucket, watched by every node.

Each node puts its ``NodeView`` (load, capacity, idle warm instances per function version, running invocations
per function, where it takes forwarded requests) under its node id every ``heartbeat_s`` (0.3 s).  Every node
watches the bucket and notes, on its own monotonic clock, when it last heard from each node: a node not heard from
for ``expiry_s`` (1.5 s: five missed heartbeats) is out of placement (``scheduler.placement.live_nodes``), however the other node died.
Receipt times on the watcher's own clock, not the sender's timestamps, so clocks that disagree between hosts do
not matter.  A node that stops cleanly deletes its key: out at once.

The bucket's TTL (``max_age``, 30 s) only cleans up the keys of dead nodes: NATS 2.9 (Debian's) has no
per-message TTL and a KV TTL is per bucket, so liveness is the receipt-time check above, not the key vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NoStreamResponseError
from nats.js.kv import KeyValue

from squall.scheduler.placement import NodeView, live_nodes

__all__ = ["BUCKET", "Membership", "view_from_dict", "view_to_dict"]

log = logging.getLogger("squall.cluster.membership")

BUCKET = "squall_nodes"
_KEY_SAFE = str.maketrans({c: "_" for c in " .*>:/\\"})


def node_key(node_id: str) -> str:
    """The bucket key of a node id (KV keys may not hold ':' or spaces; ids like "host:9070" are common)."""
    return node_id.translate(_KEY_SAFE)


def view_to_dict(v: NodeView) -> dict[str, Any]:
    return {
        "node_id": v.node_id,
        "in_flight": v.in_flight,
        "capacity": v.capacity,
        "idle": dict(v.idle),
        "running": dict(v.running),
        "address": v.address,
        "provisioned": dict(v.provisioned),
        "ts": time.time(),
    }


def view_from_dict(d: dict[str, Any]) -> NodeView:
    return NodeView(
        node_id=str(d["node_id"]),
        in_flight=int(d.get("in_flight", 0)),
        capacity=int(d.get("capacity", 0)),
        idle={str(k): int(v) for k, v in (d.get("idle") or {}).items()},
        running={str(k): int(v) for k, v in (d.get("running") or {}).items()},
        address=str(d.get("address", "")),
        provisioned={str(k): int(v) for k, v in (d.get("provisioned") or {}).items()},
    )


class Membership:
    def __init__(
        self,
        nc: Client,
        node_id: str,
        report: Callable[[], NodeView],
        *,
        heartbeat_s: float = 0.3,
        expiry_s: float = 1.5,
        replicas: int = 1,
        bucket_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nc = nc
        self.node_id = node_id
        self.report = report
        self.heartbeat_s = heartbeat_s
        self.expiry_s = expiry_s
        self.replicas = replicas
        self.bucket_ttl_s = bucket_ttl_s
        self.clock = clock
        self.kv: KeyValue | None = None
        self._views: dict[str, NodeView] = {}
        self._seen: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()

    async def start(self) -> None:
        js = self.nc.jetstream(timeout=10.0)
        try:
            self.kv = await js.key_value(BUCKET)
        except BucketNotFoundError:
            cfg = KeyValueConfig(
                bucket=BUCKET, history=1, ttl=self.bucket_ttl_s, storage=StorageType.MEMORY, replicas=self.replicas
            )
            try:
                self.kv = await js.create_key_value(cfg)
            except Exception:  # another node created it meanwhile
                self.kv = await js.key_value(BUCKET)
        await self._first_beat()  # in the bucket before anyone is told this node is up
        self._tasks = [
            asyncio.create_task(self._heartbeat_forever(), name="cluster-heartbeat"),
            asyncio.create_task(self._watch_forever(), name="cluster-watch"),
        ]

    async def beat(self) -> None:
        assert self.kv is not None
        view = self.report()
        await self.kv.put(node_key(self.node_id), json.dumps(view_to_dict(view)).encode())
        self._note(view, self.clock())  # this node knows it is alive without waiting for its own echo

    async def _first_beat(self, timeout_s: float = 30.0) -> None:
        """The first heartbeat, retried while the bucket is not answering yet: nodes started at once find the bucket
        another node has just created, before its replicas have elected a leader (a put then gets "no response
        from stream" for up to a few seconds)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                await self.beat()
                return
            except (NoStreamResponseError, NoRespondersError, NatsTimeout) as e:
                if time.monotonic() > deadline:
                    raise
                log.info("the node bucket does not answer yet (%s); retrying", type(e).__name__)
                await asyncio.sleep(0.2)

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.beat()
            except Exception as e:  # NATS unreachable: the others will see this node expire
                log.warning("heartbeat: %s", e)

    def _note(self, view: NodeView, at: float) -> None:
        new = view.node_id not in self._seen
        self._views[view.node_id] = view
        self._seen[view.node_id] = at
        if new:
            self.changed.set()

    async def _watch_forever(self) -> None:
        assert self.kv is not None
        while True:
            try:
                watcher = await self.kv.watchall()
                initial = True
                async for entry in watcher:
                    if entry is None:  # the end of the initial values
                        initial = False
                        continue
                    if entry.operation in ("DEL", "PURGE") or not entry.value:
                        gone = [n for n in self._views if node_key(n) == entry.key]
                        for n in gone:
                            self._views.pop(n, None)
                            self._seen.pop(n, None)
                        self.changed.set()
                        continue
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        raw = json.loads(entry.value)
                        view = view_from_dict(raw)
                        # an old entry found at start (a node that died before this one started) is as old as
                        # its sender says: it counts as heard from then, not now
                        age = max(0.0, time.time() - float(raw.get("ts", 0.0)))
                        at = self.clock() - age if initial else self.clock()
                        if view.node_id != self.node_id:
                            self._note(view, at)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("watching the node bucket: %s", e)
                await asyncio.sleep(0.5)

    def live(self) -> set[str]:
        return live_nodes(self._seen, self.clock(), self.expiry_s)

    def views(self) -> dict[str, NodeView]:
        live = self.live()
        return {n: v for n, v in self._views.items() if n in live}

    def known(self) -> dict[str, NodeView]:
        """Every node heard of since this one started (gone ones too, until they delete their key or it expires)."""
        return dict(self._views)

    def last_seen_s(self) -> dict[str, float]:
        now = self.clock()
        return {n: now - t for n, t in self._seen.items()}

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks = []
        if self.kv is not None:
            with contextlib.suppress(Exception):
                await self.kv.delete(node_key(self.node_id))
