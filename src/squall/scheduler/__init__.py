"""The scheduler's pure decision code: placement, reaping, provisioning, alias routing and async retries.

Pure core, I/O at the edges: every decision is a function of ``(state, input, now)``; the invoker shell reads the
clock, applies the decision to real instances and builds the next :class:`SchedulerState`.  Only
:func:`node_memory_budget_mb` touches the host (it reads /proc/meminfo).
"""

from squall.scheduler.decide import (
    Decision,
    Evict,
    ProvisionPlan,
    Start,
    UseIdle,
    Wait,
    WaitReason,
    acquire,
    make_room,
    provision,
    reap,
    reap_zygotes,
    throttle_error,
)
from squall.scheduler.host import node_memory_budget_mb, parse_meminfo_total_mb
from squall.scheduler.retry import next_attempt, next_throttled_attempt, validate_event_invoke_config
from squall.scheduler.routing import pick_version, validate_routing
from squall.scheduler.state import (
    ACCOUNT_CONCURRENCY_DEFAULT,
    UNRESERVED_MIN_DEFAULT,
    InstanceState,
    InstanceView,
    PoolKey,
    SchedulerState,
    concurrency,
    evolve,
    memory_used_mb,
    pools,
    unreserved_in_use,
    unreserved_pool,
    validate_reserved_concurrency,
)

__all__ = [
    "ACCOUNT_CONCURRENCY_DEFAULT",
    "UNRESERVED_MIN_DEFAULT",
    "Decision",
    "Evict",
    "InstanceState",
    "InstanceView",
    "PoolKey",
    "ProvisionPlan",
    "SchedulerState",
    "Start",
    "UseIdle",
    "Wait",
    "WaitReason",
    "acquire",
    "concurrency",
    "evolve",
    "make_room",
    "memory_used_mb",
    "next_attempt",
    "next_throttled_attempt",
    "node_memory_budget_mb",
    "parse_meminfo_total_mb",
    "pick_version",
    "pools",
    "provision",
    "reap",
    "reap_zygotes",
    "throttle_error",
    "unreserved_in_use",
    "unreserved_pool",
    "validate_event_invoke_config",
    "validate_reserved_concurrency",
    "validate_routing",
]
