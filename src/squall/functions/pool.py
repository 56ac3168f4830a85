"""The shell around the pure scheduler: applies its decisions to the node's real zygotes and instances.

One ``InstancePool`` per node.  It keeps a ``SchedulerState`` in step with reality, asks ``scheduler.acquire`` where
each request runs, and starts, evicts, reaps and provisions instances accordingly.

Memory accounting: the node budget is compared with what instances really use (the peak seen in each function's
cgroups, at least ``memory_estimate_min_mb``), not with their configured size; the configured size is the hard
limit each instance's cgroup enforces.  Counting configured sizes would cap a 24 GiB node at ~150 instances of
128 MB while they use a few MB each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from squall import scheduler
from squall.core.errors import SquallError
from squall.core.model import FunctionSpec
from squall.sandbox.node.instance import Instance
from squall.sandbox.node.node import LoadedFunction, Node
from squall.scheduler import Evict, SchedulerState, Start, UseIdle, Wait
from squall.scheduler.keep_alive import FunctionKeepAlive, HistogramConfig, KeepUntil
from squall.scheduler.keep_alive import reap_idle as keep_alive_reap_idle
from squall.scheduler.keep_alive import reap_zygotes_adaptive as keep_alive_reap_zygotes

__all__ = ["CapacityWaiters", "InstancePool", "PoolConfig"]

log = logging.getLogger("squall.pool")


@dataclass(frozen=True)
class PoolConfig:
    #: idle time after which an instance is stopped (scale to zero), seconds
    keep_alive_s: float = 300.0
    #: idle time after which a function's zygote is stopped, seconds
    zygote_keep_alive_s: float = 600.0
    #: how long a sync caller waits for capacity before 429, seconds
    throttle_wait_s: float = 1.0
    #: account-wide concurrency limit
    account_concurrency: int = scheduler.ACCOUNT_CONCURRENCY_DEFAULT
    #: node memory budget for instances, MB (0 = 80% of RAM)
    memory_budget_mb: int = 0
    #: memory assumed for an instance before any has been measured, MB
    memory_estimate_min_mb: int = 16
    #: how often the reaper looks, seconds
    reap_interval_s: float = 1.0
    #: instances initialising at once on this node (more queue for a slot): a storm of simultaneous cold starts
    #: on a small machine otherwise starves every init past its timeout (0 = 4 per CPU)
    max_concurrent_starts: int = 0
    #: "fixed": every idle instance stays ``keep_alive_s``; "hybrid": per function, the idle-time histogram policy of
    #: Shahrad et al. (scheduler.keep_alive) decides when to unload and when to pre-warm, with ``keep_alive_s`` and
    #: ``zygote_keep_alive_s`` as its fallback while a function's histogram is not representative
    keep_alive_policy: str = "hybrid"
    #: the histogram's knobs (its fixed_* fields are replaced by keep_alive_s and zygote_keep_alive_s)
    keep_alive_histogram: HistogramConfig = field(default_factory=HistogramConfig)


class CapacityWaiters:
    """Requests waiting for capacity, queued per function version.

    An instance going idle wakes the *first* waiter of its own version (which takes it), not everyone: with hundreds
    of queued async events, waking all of them on every release cost the server O(waiters) decisions per invocation
    (measured: 38% of the server's CPU in the thumbnail showcase at 167 uploads/s).  Anything else that frees capacity
    (an instance stopped or died, a start failed, provisioning changed), or a release with no same-version waiter,
    wakes everyone, who then decide again."""

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], deque[asyncio.Future[None]]] = {}

    async def wait(self, key: tuple[str, str], timeout_s: float) -> None:
        """Return when woken or after ``timeout_s``, whichever comes first."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        queue = self._queues.setdefault(key, deque())
        queue.append(fut)
        timed_out = False

        def on_timeout() -> None:
            nonlocal timed_out
            if not fut.done():
                timed_out = True
                fut.set_result(None)

        timer = loop.call_later(timeout_s, on_timeout)
        try:
            await fut
        finally:
            timer.cancel()
            if timed_out or not fut.done() or fut.cancelled():
                # not woken (woken futures were already taken off the queue): leave no dead entry behind
                if not fut.done():
                    fut.cancel()
                with contextlib.suppress(ValueError):
                    queue.remove(fut)
            if not queue and self._queues.get(key) is queue:
                del self._queues[key]

    def wake_one(self, key: tuple[str, str]) -> None:
        queue = self._queues.get(key)
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.wake_all()

    def wake_all(self) -> None:
        for queue in self._queues.values():
            for fut in queue:
                _resolve(fut)
            queue.clear()

    def __len__(self) -> int:
        return sum(1 for q in self._queues.values() for f in q if not f.done())


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class InstancePool:
    def __init__(
        self, node: Node, config: PoolConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.node = node
        self.config = config or PoolConfig()
        self.clock = clock
        budget = self.config.memory_budget_mb or scheduler.node_memory_budget_mb()
        self.state = SchedulerState(account_limit=self.config.account_concurrency, memory_budget_mb=budget)
        self.instances: dict[str, Instance] = {}
        self.loaded: dict[str, LoadedFunction] = {}
        self._loading: dict[str, asyncio.Future[LoadedFunction]] = {}
        self._zygote_used: dict[str, float] = {}
        self._estimate_mb: dict[str, int] = {}
        self.waiters = CapacityWaiters()
        self.provision_targets: dict[tuple[str, str], tuple[FunctionSpec, int]] = {}
        self.cold_starts = 0
        #: instances started ahead of an expected invocation by the adaptive keep-alive (not cold starts, not billed)
        self.prewarms = 0
        if self.config.keep_alive_policy not in ("fixed", "hybrid"):
            raise ValueError(f"keep-alive policy must be 'fixed' or 'hybrid', not {self.config.keep_alive_policy!r}")
        self._histogram: HistogramConfig | None = (
            replace(
                self.config.keep_alive_histogram,
                fixed_keep_alive_s=self.config.keep_alive_s,
                fixed_zygote_keep_alive_s=self.config.zygote_keep_alive_s,
            )
            if self.config.keep_alive_policy == "hybrid"
            else None
        )
        #: function name -> its idle-time histogram (hybrid policy only)
        self.keep_alive: dict[str, FunctionKeepAlive] = {}
        self._last_spec: dict[str, FunctionSpec] = {}
        self._prewarming: set[asyncio.Task[None]] = set()
        self._starts = asyncio.Semaphore(self.config.max_concurrent_starts or 4 * (os.cpu_count() or 1))

    # -- bookkeeping ------------------------------------------------------------------------------------------
    def _estimate(self, spec: FunctionSpec) -> int:
        return min(spec.memory_mb, max(self.config.memory_estimate_min_mb, self._estimate_mb.get(spec.name, 0)))

    def _set(self, inst_id: str, **changes: object) -> None:
        view = self.state.get(inst_id)
        if view is not None:
            self.state = self.state.upsert(scheduler.evolve(view, **changes))

    async def _notify(self) -> None:
        self.waiters.wake_all()

    def set_reserved(self, function: str, reserved: int | None) -> None:
        self.state = self.state.with_reserved(function, reserved)

    def concurrency(self, function: str | None = None) -> int:
        if function is None:
            return sum(1 for i in self.state.instances if i.state in ("starting", "busy"))
        return scheduler.concurrency(self.state, function)

    def warm(self, function: str | None = None) -> int:
        return sum(1 for i in self.state.instances if i.state == "idle" and function in (None, i.function))

    # -- zygotes ------------------------------------------------------------------------------------------------
    async def function(self, spec: FunctionSpec) -> LoadedFunction:
        key = spec.key
        self._zygote_used[key] = self.clock()
        fn = self.loaded.get(key)
        if fn is not None and not fn.link.closed.is_set():
            return fn
        if fn is not None:
            # its zygote died or was stopped (hung, broke the protocol): the node stopped the whole function, so its
            # idle instances are gone too; forget them now rather than when a request or the reaper meets them
            self.loaded.pop(key, None)
            self._forget_dead(spec)
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[LoadedFunction] = asyncio.get_running_loop().create_future()
        self._loading[key] = fut
        try:
            fn = await self.node.load(spec)
            self.loaded[key] = fn
            fut.set_result(fn)
            return fn
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved
            raise
        finally:
            self._loading.pop(key, None)

    def _forget_dead(self, spec: FunctionSpec) -> None:
        dead = [
            v.id
            for v in self.state.instances
            if v.function == spec.name and v.version == spec.version and v.state == "idle"
            and (inst := self.instances.get(v.id)) is not None and not inst.alive
        ]  # fmt: skip
        if dead:
            self.state = self.state.without(dead)
            for inst_id in dead:
                self.instances.pop(inst_id, None)
            self.waiters.wake_all()

    # -- acquire/release ----------------------------------------------------------------------------------
    async def acquire(self, spec: FunctionSpec, wait_s: float | None = None, init_type: str | None = None) -> Instance:
        """An instance for one request: warm if possible, else a cold start; waits up to ``wait_s`` for capacity,
        then raises TooManyRequestsException."""
        wait_s = self.config.throttle_wait_s if wait_s is None else wait_s
        arrived = self.clock()
        deadline = arrived + wait_s
        while True:
            decision = scheduler.acquire(self.state, spec.name, spec.version, self._estimate(spec), self.clock())
            if isinstance(decision, UseIdle):
                inst = self.instances.get(decision.instance_id)
                if inst is None or not inst.alive:
                    self.state = self.state.without([decision.instance_id])
                    continue
                self._set(inst.id, state="busy")
                self._began(spec, arrived)
                return inst
            if isinstance(decision, Evict):
                await self._stop_many(decision.instance_ids)
                continue
            if isinstance(decision, Start):
                inst = await self._start(spec, init_type)
                self._began(spec, arrived)
                return inst
            assert isinstance(decision, Wait)
            left = deadline - self.clock()
            if left <= 0:
                raise scheduler.throttle_error(decision)
            await self.waiters.wait((spec.name, spec.version), left)

    async def _start(
        self, spec: FunctionSpec, init_type: str | None, provisioned: bool = False, prewarm: bool = False
    ) -> Instance:
        """Start an instance: busy for the request that caused it, or ``starting`` (then the caller makes it idle)
        when ``provisioned`` or a ``prewarm`` of the adaptive keep-alive (not counted as a cold start)."""
        placeholder = f"starting-{id(object())}-{self.clock()}"
        now = self.clock()
        view = scheduler.InstanceView(
            placeholder, spec.name, spec.version, "starting", self._estimate(spec), now, provisioned, now
        )
        self.state = self.state.upsert(view)
        try:
            fn = await self.function(spec)
            async with self._starts:
                inst = await self.node.start_instance(fn, init_type)
        except BaseException:
            self.state = self.state.without([placeholder])
            await self._notify()
            raise
        if prewarm:
            inst.prewarmed = True  # its first invocation is not a cold start (no Init Duration, as provisioned)
            self.prewarms += 1
        else:
            self.cold_starts += 1
        self.state = self.state.without([placeholder]).upsert(
            replace(view, id=inst.id, state="starting" if provisioned or prewarm else "busy")
        )
        self.instances[inst.id] = inst
        return inst

    async def release(self, inst: Instance) -> None:
        """The request is done: the instance goes back to idle (or away, if it died)."""
        if self._histogram is not None:
            history = self.keep_alive.get(inst.function)
            if history is not None:
                history.invocation_ended(self.clock())
        if not inst.alive:
            self.state = self.state.without([inst.id])
            self.instances.pop(inst.id, None)
        else:
            self._set(inst.id, state="idle", last_used=self.clock())
            used = inst.last_max_memory_mb
            if used > self._estimate_mb.get(inst.function, 0):
                self._estimate_mb[inst.function] = used
            self.waiters.wake_one((inst.function, inst.version))
            return
        await self._notify()

    async def _stop_many(self, inst_ids: Sequence[str]) -> None:
        """Stop idle instances.  All are marked ``stopping`` before the first await, so no request can be handed
        one of them while the others are being stopped."""
        chosen = []
        for inst_id in inst_ids:
            view = self.state.get(inst_id)
            if view is not None and view.state == "idle":
                self._set(inst_id, state="stopping")
                chosen.append(inst_id)
        await asyncio.gather(*(self._stop(i) for i in chosen), return_exceptions=True)

    async def _stop(self, inst_id: str) -> None:
        self._set(inst_id, state="stopping")
        inst = self.instances.pop(inst_id, None)
        if inst is not None:
            await self.node.stop_instance(inst)
        self.state = self.state.without([inst_id])
        await self._notify()

    # -- lifecycle management -----------------------------------------------------------------------------
    async def reap_once(self) -> list[str]:
        now = self.clock()
        keep = self._keep_windows(now)
        if keep is None:
            gone = scheduler.reap(self.state, now, self.config.keep_alive_s)
        else:
            gone = keep_alive_reap_idle(self.state, now, keep, self.config.keep_alive_s)
        await self._stop_many(gone)
        live = {(i.function, i.version) for i in self.state.instances}
        live_keys = {k for k, fn in self.loaded.items() if (fn.spec.name, fn.spec.version) in live}
        live_keys |= {spec.key for spec, n in self.provision_targets.values() if n > 0}
        # a zygote whose import probe runs is kept until it answers (bounded by the probe's timeout): its answer is
        # what the function's next zygotes pre-import
        live_keys |= {k for k, fn in self.loaded.items() if fn.probe_task is not None and not fn.probe_task.done()}
        if keep is None:
            zygotes = scheduler.reap_zygotes(self._zygote_used, now, self.config.zygote_keep_alive_s, live_keys)
        else:
            by_key = {k: fn.spec.name for k, fn in self.loaded.items()}
            zygotes = keep_alive_reap_zygotes(
                by_key, self._zygote_used, now, keep, self.config.zygote_keep_alive_s, live_keys
            )
        for key in zygotes:
            fn = self.loaded.pop(key, None)
            self._zygote_used.pop(key, None)
            if fn is not None:
                await self.node.unload(fn)
        return gone

    async def reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.reap_interval_s)
            try:
                await self.reap_once()
                await self.provision_once()
                self.prewarm_once()
            except Exception:
                log.exception("reaper")

    async def drop(self, function: str, version: str | None = None) -> None:
        """Code or configuration changed: stop idle instances and zygotes of that function (busy ones finish), and
        forget what the adaptive keep-alive learned about it (the new code may behave differently)."""
        history = self.keep_alive.get(function)
        if history is not None:
            history.reset()
        self._last_spec.pop(function, None)
        await self._stop_many(
            [v.id for v in self.state.instances if v.function == function and version in (None, v.version)]
        )
        for key, fn in list(self.loaded.items()):
            if fn.spec.name == function and version in (None, fn.spec.version):
                self.loaded.pop(key, None)
                self._zygote_used.pop(key, None)
                busy = [i for i in fn.instances.values() if i.alive and not i.spare]  # (a parked spare: not busy)
                if not busy:
                    await self.node.unload(fn)

    def set_provisioned(self, spec: FunctionSpec, count: int) -> None:
        """Keep ``count`` instances of this version initialised (0 removes the target)."""
        key = (spec.name, spec.version)
        if count <= 0:
            self.provision_targets.pop(key, None)
        else:
            self.provision_targets[key] = (spec, count)

    def provisioned_ready(self, function: str, version: str) -> int:
        return sum(
            1
            for i in self.state.instances
            if i.provisioned and i.function == function and i.version == version and i.state in ("idle", "busy")
        )

    async def provision_once(self) -> None:
        targets = {k: n for k, (_spec, n) in self.provision_targets.items()}
        plan = scheduler.provision(self.state, targets, self.clock())
        await self._stop_many(plan.stop)
        for inst_id in plan.demote:
            self._set(inst_id, provisioned=False)
        for key, n in plan.start.items():
            spec = self.provision_targets[key][0]
            for _ in range(n):
                try:
                    inst = await self._start(spec, "provisioned-concurrency", provisioned=True)
                except SquallError as e:
                    log.warning("provisioned concurrency for %s:%s: %s", key[0], key[1], e)
                    break
                except Exception as e:  # init failure
                    log.warning("provisioned concurrency for %s:%s: init failed: %s", key[0], key[1], e)
                    break
                self._set(inst.id, state="idle", last_used=self.clock())
        if plan.start or plan.stop:
            await self._notify()

    # -- adaptive keep-alive ------------------------------------------------------------------------------
    def _began(self, spec: FunctionSpec, arrived: float) -> None:
        """An invocation of ``spec`` that arrived at ``arrived`` got its instance."""
        if self._histogram is None:
            return
        history = self.keep_alive.get(spec.name)
        if history is None:
            history = self.keep_alive[spec.name] = FunctionKeepAlive(self._histogram)
        history.invocation_started(arrived)
        self._last_spec[spec.name] = spec

    def _keep_windows(self, now: float) -> dict[str, KeepUntil] | None:
        """Each function's keep window under the hybrid policy (``None``: the fixed policy is configured)."""
        if self._histogram is None:
            return None
        out = {}
        for function, history in self.keep_alive.items():
            k = history.keep_until(now)
            if k is not None:
                out[function] = k
        return out

    def prewarm_once(self) -> None:
        """Start one instance of each function whose pre-warm time has come and that has none (no eviction: only
        if it fits in memory).  The start runs in the background; it is not a cold start and is not billed."""
        if self._histogram is None:
            return
        now = self.clock()
        present = {i.function for i in self.state.instances}
        for function, history in self.keep_alive.items():
            at = history.prewarm_at(now).at
            spec = self._last_spec.get(function)
            if at is None or now < at or spec is None:
                continue
            history.prewarm_started()
            if function in present or scheduler.make_room(self.state, self._estimate(spec)) != ():
                continue
            task = asyncio.get_running_loop().create_task(self._prewarm(spec), name=f"prewarm {function}")
            self._prewarming.add(task)
            task.add_done_callback(self._prewarming.discard)

    async def _prewarm(self, spec: FunctionSpec) -> None:
        try:
            inst = await self._start(spec, None, prewarm=True)
        except Exception as e:  # an init failure shows on the next real invocation
            log.warning("pre-warm of %s:%s failed: %s", spec.name, spec.version, e)
            return
        self._set(inst.id, state="idle", last_used=self.clock())
        self.waiters.wake_one((spec.name, spec.version))

    async def close(self) -> None:
        for task in list(self._prewarming):
            task.cancel()
        await asyncio.gather(*(self._stop(i) for i in list(self.instances)), return_exceptions=True)
        await asyncio.gather(*(self.node.unload(fn) for fn in self.loaded.values()), return_exceptions=True)
        self.loaded.clear()
