"""Pure placement decisions: which instance serves a request, what to reap, what to provision.

Every function here is a pure function of ``(state, input, now)``: no clock reads, no I/O, no sleeps.  The invoker
shell applies the returned decision and feeds the new state back in.

``acquire`` order of checks:

1. concurrency: the function's reservation if it has one, else the unreserved pool -> :class:`Wait`
2. an idle instance of the same function-version -> :class:`UseIdle` (provisioned first, then most recently used:
   MRU keeps a few instances hot and lets the rest age out under :func:`reap`)
3. memory fits -> :class:`Start`
4. idle, non-provisioned instances can be evicted (least recently used first) -> :class:`Evict` then start
5. otherwise -> :class:`Wait` (memory)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

from squall.core.errors import TooManyRequests
from squall.scheduler.state import (
    InstanceView,
    PoolKey,
    SchedulerState,
    concurrency,
    memory_used_mb,
    unreserved_in_use,
    unreserved_pool,
)

__all__ = [
    "Decision",
    "Evict",
    "ProvisionPlan",
    "Start",
    "UseIdle",
    "Wait",
    "WaitReason",
    "acquire",
    "make_room",
    "provision",
    "reap",
    "reap_zygotes",
    "throttle_error",
]

WaitReason = Literal["reserved-concurrency", "account-concurrency", "memory"]

#: Lambda's ``Reason`` field of a 429 TooManyRequestsException, per wait reason
_THROTTLE_REASON: dict[WaitReason, str] = {
    "reserved-concurrency": "ReservedFunctionConcurrentInvocationLimitExceeded",
    "account-concurrency": "ConcurrentInvocationLimitExceeded",
    # a full node looks like an account-level limit to the caller
    "memory": "ConcurrentInvocationLimitExceeded",
}


@dataclass(frozen=True)
class UseIdle:
    """Run the request on this idle instance (mark it busy)."""

    instance_id: str


@dataclass(frozen=True)
class Start:
    """Start a new instance of the function-version for this request (count it as ``starting``)."""


@dataclass(frozen=True)
class Evict:
    """Stop these idle instances (LRU first) to free memory, then do ``then``."""

    instance_ids: tuple[str, ...]
    then: Start = field(default_factory=Start)


@dataclass(frozen=True)
class Wait:
    """No capacity now.  Sync callers wait a bounded time, then get :func:`throttle_error`; async events stay
    queued (see ``retry.next_throttled_attempt``)."""

    reason: WaitReason
    detail: str = ""

    @property
    def throttle_reason(self) -> str:
        """The ``Reason`` of Lambda's 429 for this wait."""
        return _THROTTLE_REASON[self.reason]


Decision = UseIdle | Start | Evict | Wait


def throttle_error(wait: Wait) -> TooManyRequests:
    """The error a sync caller gets when its wait runs out (Lambda says "Rate Exceeded.")."""
    return TooManyRequests("Rate Exceeded.", reason=wait.throttle_reason)


def _mru_key(inst: InstanceView) -> tuple[bool, float, str]:
    # provisioned first (already paid for, cheaper duration), then most recently used; id breaks ties
    return (not inst.provisioned, -inst.last_used, inst.id)


def make_room(state: SchedulerState, memory_mb: int) -> tuple[str, ...] | None:
    """Idle, non-provisioned instances to evict (LRU first, as few as possible) so ``memory_mb`` more fits.

    ``()`` when it already fits; ``None`` when even evicting every candidate would not be enough.  Busy,
    starting, stopping and provisioned instances are never candidates.
    """
    free = state.memory_budget_mb - memory_used_mb(state)
    if memory_mb <= free:
        return ()
    candidates = sorted(
        (i for i in state.instances if i.state == "idle" and not i.provisioned),
        key=lambda i: (i.last_used, i.id),
    )
    chosen: list[str] = []
    for inst in candidates:
        chosen.append(inst.id)
        free += inst.memory_mb
        if memory_mb <= free:
            return tuple(chosen)
    return None


def acquire(state: SchedulerState, function: str, version: str, memory_mb: int, now: float) -> Decision:
    """Decide where one request for ``function:version`` (configured with ``memory_mb``) runs."""
    del now  # part of the uniform (state, input, now) signature; no decision here depends on time yet
    reserved = state.reserved.get(function)
    if reserved is not None:
        in_use = concurrency(state, function)
        if in_use >= reserved:
            return Wait("reserved-concurrency", f"{function}: {in_use} of {reserved} reserved in use")
    else:
        pool = unreserved_pool(state)
        in_use = unreserved_in_use(state)
        if in_use >= pool:
            return Wait("account-concurrency", f"unreserved pool: {in_use} of {pool} in use")

    idle = [i for i in state.instances if i.state == "idle" and i.function == function and i.version == version]
    if idle:
        return UseIdle(min(idle, key=_mru_key).id)

    if memory_mb > state.memory_budget_mb:
        return Wait("memory", f"{function} needs {memory_mb} MB; node budget is {state.memory_budget_mb} MB")
    victims = make_room(state, memory_mb)
    if victims is None:
        return Wait("memory", f"{function} needs {memory_mb} MB; nothing idle to evict")
    if victims:
        return Evict(victims)
    return Start()


def reap(state: SchedulerState, now: float, keep_alive_s: float) -> list[str]:
    """Idle, non-provisioned instances idle for longer than ``keep_alive_s`` (scale to zero), LRU first.

    An instance idle for exactly ``keep_alive_s`` is kept.
    """
    old = [i for i in state.instances if i.state == "idle" and not i.provisioned and now - i.last_used > keep_alive_s]
    return [i.id for i in sorted(old, key=lambda i: (i.last_used, i.id))]


def reap_zygotes(
    last_used_by_function: Mapping[str, float],
    now: float,
    zygote_keep_alive_s: float,
    in_use: Collection[str] = (),
) -> list[str]:
    """Functions whose zygote was last used longer than ``zygote_keep_alive_s`` ago, sorted by name.

    Functions in ``in_use`` (e.g. those with live instances or provisioned targets) are always kept.
    """
    return sorted(
        fn for fn, last in last_used_by_function.items() if fn not in in_use and now - last > zygote_keep_alive_s
    )


@dataclass(frozen=True)
class ProvisionPlan:
    """What to do to reach the provisioned-concurrency targets.

    * ``start``: pool -> how many new provisioned instances to start (init runs ahead of traffic)
    * ``stop``: idle provisioned instances no longer wanted (stop them now)
    * ``demote``: busy or starting provisioned instances no longer wanted: clear their ``provisioned`` flag so they
      finish their request and then age out under :func:`reap` like on-demand instances
    """

    start: dict[PoolKey, int] = field(default_factory=dict)
    stop: tuple[str, ...] = ()
    demote: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.start or self.stop or self.demote)


def provision(state: SchedulerState, targets: Mapping[PoolKey, int], now: float) -> ProvisionPlan:
    """Plan to bring each pool's provisioned instances to ``targets`` (absent pool = target 0).

    Stopping instances are not counted.  When lowering, idle instances go first (least recently used first), then
    starting, then busy ones.  Memory is not checked here: the shell passes each start through :func:`make_room`.
    """
    del now
    have: dict[PoolKey, list[InstanceView]] = {}
    for inst in state.instances:
        if inst.provisioned and inst.state != "stopping":
            have.setdefault(inst.pool, []).append(inst)
    start: dict[PoolKey, int] = {}
    stop: list[str] = []
    demote: list[str] = []
    for key in sorted(set(have) | set(targets)):
        want = max(0, targets.get(key, 0))
        current = have.get(key, [])
        if want > len(current):
            start[key] = want - len(current)
        elif want < len(current):
            order = {"idle": 0, "starting": 1, "busy": 2}
            extra = sorted(current, key=lambda i: (order[i.state], i.last_used, i.id))[: len(current) - want]
            for inst in extra:
                (stop if inst.state == "idle" else demote).append(inst.id)
    return ProvisionPlan(start=start, stop=tuple(stop), demote=tuple(demote))
