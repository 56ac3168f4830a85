"""The scheduler's view of a node: instances grouped in per function-version pools, plus the limits.

Everything here is a frozen value.  The invoker shell owns the mutable registry of real instances and hands the
pure decision functions (:mod:`squall.scheduler.decide`) a :class:`SchedulerState` snapshot built from it.

Concurrency follows Lambda: it counts *concurrent executions*, i.e. instances that are ``starting`` (the request
that caused the start will run there) or ``busy``.  Memory counts every instance that still holds memory:
``starting``, ``idle``, ``busy`` and ``stopping``.

Reserved concurrency is per function (all versions and aliases share it).  A function with a reservation draws
only from it; every other function draws from the *unreserved pool* = account limit minus the sum of
reservations.  Lambda never lets reservations take the unreserved pool below 100
(:func:`validate_reserved_concurrency`).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

from squall.core.errors import InvalidParameterValue

__all__ = [
    "ACCOUNT_CONCURRENCY_DEFAULT",
    "MEMORY_BUDGET_FRACTION_DEFAULT",
    "UNRESERVED_MIN_DEFAULT",
    "InstanceState",
    "InstanceView",
    "PoolKey",
    "SchedulerState",
    "concurrency",
    "evolve",
    "memory_used_mb",
    "pools",
    "unreserved_in_use",
    "unreserved_pool",
    "validate_reserved_concurrency",
]

#: Lambda's default per-region account concurrency quota
ACCOUNT_CONCURRENCY_DEFAULT = 1000
#: Lambda keeps at least this much concurrency unreserved
UNRESERVED_MIN_DEFAULT = 100
#: share of the node's RAM that instances may use (see :mod:`squall.scheduler.host`)
MEMORY_BUDGET_FRACTION_DEFAULT = 0.8

_T = TypeVar("_T")

InstanceState = Literal["starting", "idle", "busy", "stopping"]
#: (function name, version)
PoolKey = tuple[str, str]

_RUNNING: frozenset[str] = frozenset({"starting", "busy"})
#: where a state keeps its count of running instances of unreserved functions (not a field: not compared, not shown)
_UNRESERVED_RUNNING = "_unreserved_running"
_ID = operator.attrgetter("id")


@dataclass(frozen=True)
class InstanceView:
    """One instance as the scheduler sees it.  Times are monotonic seconds."""

    id: str
    function: str
    version: str
    state: InstanceState
    memory_mb: int
    #: when the instance last finished (or started) work; for MRU/LRU ordering and keep-alive
    last_used: float
    #: kept warm by provisioned concurrency: never reaped, never evicted
    provisioned: bool = False
    started_at: float = 0.0

    @property
    def pool(self) -> PoolKey:
        return (self.function, self.version)


@dataclass(frozen=True)
class SchedulerState:
    """A snapshot of one node for the decision functions.  Do not mutate the mappings."""

    instances: tuple[InstanceView, ...] = ()
    #: function name -> reserved concurrency; absent means no reservation (draws from the unreserved pool)
    reserved: Mapping[str, int] = field(default_factory=dict)
    account_limit: int = ACCOUNT_CONCURRENCY_DEFAULT
    unreserved_min: int = UNRESERVED_MIN_DEFAULT
    #: memory all instances together may hold, MB (default: 80% of RAM, see ``host.node_memory_budget_mb``)
    memory_budget_mb: int = 0

    def _index(self, instance_id: str) -> int:
        """Position of the instance with this id, -1 if none (the ids are compared at C speed)."""
        try:
            return list(map(_ID, self.instances)).index(instance_id)
        except ValueError:
            return -1

    def get(self, instance_id: str) -> InstanceView | None:
        n = self._index(instance_id)
        return None if n < 0 else self.instances[n]

    def upsert(self, instance: InstanceView) -> SchedulerState:
        """A copy with ``instance`` added (last), or replacing the instance with the same id (which moves last).
        On every request twice: tuple slices and a field copy, not a filtering pass and ``dataclasses.replace``; the
        count of running unreserved instances, once computed, is carried over (one instance changed)."""
        insts = self.instances
        n = self._index(instance.id)
        old = None if n < 0 else insts[n]
        new = evolve(self, instances=(*insts, instance) if n < 0 else insts[:n] + insts[n + 1 :] + (instance,))
        count = self.__dict__.get(_UNRESERVED_RUNNING)
        if count is not None:
            reserved = self.reserved
            if old is not None and old.state in _RUNNING and old.function not in reserved:
                count -= 1
            if instance.state in _RUNNING and instance.function not in reserved:
                count += 1
            new.__dict__[_UNRESERVED_RUNNING] = count
        return new

    def without(self, instance_ids: Iterable[str]) -> SchedulerState:
        """A copy without the given instances."""
        gone = set(instance_ids)
        new = evolve(self, instances=tuple(i for i in self.instances if i.id not in gone))
        new.__dict__.pop(_UNRESERVED_RUNNING, None)  # counted again when asked
        return new

    def with_reserved(self, function: str, reserved: int | None) -> SchedulerState:
        """A copy with the function's reservation set (``None`` deletes it).  Does not validate."""
        table = {k: v for k, v in self.reserved.items() if k != function}
        if reserved is not None:
            table[function] = reserved
        return replace(self, reserved=table)


def evolve(value: _T, **changes: object) -> _T:
    """``dataclasses.replace`` for the frozen, slot-less, validation-free values of this module, at a fraction of its
    cost (it is on the hot path: an instance view changes state twice per request)."""
    new = object.__new__(type(value))
    d = new.__dict__
    d.update(value.__dict__)
    d.update(changes)
    return new


def pools(state: SchedulerState) -> dict[PoolKey, list[InstanceView]]:
    """Instances grouped by (function, version), in state order."""
    out: dict[PoolKey, list[InstanceView]] = {}
    for inst in state.instances:
        out.setdefault(inst.pool, []).append(inst)
    return out


def concurrency(state: SchedulerState, function: str) -> int:
    """Concurrent executions of a function, all versions: instances starting or busy."""
    return sum(1 for i in state.instances if i.function == function and i.state in _RUNNING)


def unreserved_pool(state: SchedulerState) -> int:
    """Concurrency left for functions without a reservation: account limit minus the sum of reservations."""
    return state.account_limit - sum(state.reserved.values())


def unreserved_in_use(state: SchedulerState) -> int:
    """Concurrent executions of functions without a reservation (counted once per state, then carried over by
    ``upsert``: this is asked on every request)."""
    count = state.__dict__.get(_UNRESERVED_RUNNING)
    if count is None:
        reserved = state.reserved
        count = sum(1 for i in state.instances if i.function not in reserved and i.state in _RUNNING)
        state.__dict__[_UNRESERVED_RUNNING] = count
    return count


def memory_used_mb(state: SchedulerState) -> int:
    """Memory held by all instances (every state holds memory until it is gone)."""
    return sum(i.memory_mb for i in state.instances)


def validate_reserved_concurrency(state: SchedulerState, function: str, reserved: int) -> None:
    """Check a PutFunctionConcurrency request the way Lambda does; raise ``InvalidParameterValue`` if refused.

    The function's old reservation (if any) is replaced, so raising it by N costs N, not the whole value.
    """
    if reserved < 0:
        raise InvalidParameterValue(
            f"1 validation error detected: Value '{reserved}' at 'reservedConcurrentExecutions' failed to "
            "satisfy constraint: Member must have value greater than or equal to 0"
        )
    others = sum(v for k, v in state.reserved.items() if k != function)
    if state.account_limit - others - reserved < state.unreserved_min:
        raise InvalidParameterValue(
            "Specified ReservedConcurrentExecutions for function decreases account's "
            f"UnreservedConcurrentExecution below its minimum value of [{state.unreserved_min}]."
        )
