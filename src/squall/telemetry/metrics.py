"""Prometheus metrics of one Squall server (prometheus_client, a private registry per server).

Counted on the invocation path (labelled children cached per function, so an invocation costs a few dict lookups
and lock-protected adds):

* ``squall_invocations_total{function,status}``: status ``ok`` | ``error`` | ``timeout`` (throttled requests are
  not invocations, as on Lambda)
* ``squall_invocation_errors_total{function}``: function errors and timeouts
* ``squall_throttles_total{function}``: requests refused with TooManyRequestsException (429)
* ``squall_invocation_duration_seconds{function}``: handler duration (histogram)
* ``squall_init_duration_seconds{function}``: init phase of cold starts (histogram)
* ``squall_cold_starts_total{function}``
* ``squall_event_deliveries_total{source,outcome}``: invocations made by event sources (``sqs``: a batch from a
  queue, ``s3``: a storage event, ``schedule``); outcome as ``status`` above or ``throttled``

Read when scraped (a custom collector, nothing on the invocation path):

* ``squall_concurrent_executions{function}``: instances starting or busy
* ``squall_warm_instances{function}``: idle instances ready for a request
* ``squall_zygotes_loaded``: function zygotes in memory
* ``squall_async_queue_depth``: async events queued (leased or not); ``squall_async_event_age_seconds``: age of
  the oldest one
* ``squall_async_events_finished_total{outcome}``: async events finished for good (``success`` | ``failure``)
* ``squall_node_memory_bytes``: memory in use by all instances and zygotes of the node (cgroup)
* ``squall_prewarms_total``: instances the adaptive keep-alive (``SQUALL_KEEP_ALIVE_POLICY=hybrid``) started ahead
  of an expected invocation (not cold starts)
* ``process_*``: the server process (prometheus_client's process collector)

In a cluster (``--nats-url``) every sample carries a ``node`` label (the node id), added when scraped: each node
serves its own ``/metrics``, and series of different nodes stay apart when one Prometheus scrapes them all behind
a load balancer or aggregates them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from squall.core.model import InvokeOutcome

__all__ = ["DELIVERY_SOURCES", "DURATION_BUCKETS", "INIT_BUCKETS", "Metrics", "StateSnapshot"]

log = logging.getLogger("squall.metrics")

#: seconds; Lambda's durations run from about a millisecond to 15 minutes
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip
INIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: triggers whose invocations are deliveries of an event source
DELIVERY_SOURCES = frozenset({"sqs", "s3", "schedule"})


@dataclass
class StateSnapshot:
    """What the scrape-time collector reports; built by the server when /metrics is read."""

    #: (function, state) of every instance; state: starting | busy | idle | stopping ...
    instances: list[tuple[str, str]] = field(default_factory=list)
    zygotes: int = 0
    async_queue_depth: int = 0
    async_event_age_s: float = 0.0
    async_succeeded: int = 0
    async_failed: int = 0
    node_memory_bytes: int = 0
    #: instances the adaptive keep-alive started ahead of an expected invocation
    prewarms: int = 0


class _StateCollector(Collector):
    def __init__(self, snapshot: Callable[[], StateSnapshot]) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time only (no collection at registration)

    def collect(self) -> Iterator[Metric]:
        try:
            s = self.snapshot()
        except Exception:
            log.exception("reading the server state for /metrics")
            return
        running: dict[str, int] = {}
        warm: dict[str, int] = {}
        for function, state in s.instances:
            running.setdefault(function, 0)
            warm.setdefault(function, 0)
            if state in ("starting", "busy"):
                running[function] += 1
            elif state == "idle":
                warm[function] += 1
        conc = GaugeMetricFamily(
            "squall_concurrent_executions",
            "Instances of the function starting or running a request",
            labels=["function"],
        )
        for function, n in sorted(running.items()):
            conc.add_metric([function], n)
        yield conc
        idle = GaugeMetricFamily("squall_warm_instances", "Idle instances ready for a request", labels=["function"])
        for function, n in sorted(warm.items()):
            idle.add_metric([function], n)
        yield idle
        yield GaugeMetricFamily("squall_zygotes_loaded", "Function zygotes in memory", value=s.zygotes)
        yield GaugeMetricFamily(
            "squall_async_queue_depth",
            "Async events in the durable queue (leased or waiting)",
            value=s.async_queue_depth,
        )
        yield GaugeMetricFamily(
            "squall_async_event_age_seconds",
            "Age of the oldest event in the async queue (0 when empty)",
            value=s.async_event_age_s,
        )
        finished = CounterMetricFamily(
            "squall_async_events_finished", "Async events finished for good", labels=["outcome"]
        )
        finished.add_metric(["success"], s.async_succeeded)
        finished.add_metric(["failure"], s.async_failed)
        yield finished
        yield GaugeMetricFamily(
            "squall_node_memory_bytes", "Memory in use by the node's instances and zygotes", value=s.node_memory_bytes
        )
        yield CounterMetricFamily(
            "squall_prewarms",
            "Instances started ahead of an expected invocation (adaptive keep-alive)",
            value=s.prewarms,
        )


class _Fn:
    """The labelled children of one function (looked up once, then reused)."""

    __slots__ = ("cold", "duration", "errors", "init", "invocations", "throttles")

    def __init__(self, m: Metrics, function: str) -> None:
        self.invocations: dict[str, Any] = {}
        self.errors = m.errors.labels(function)
        self.throttles = m.throttles.labels(function)
        self.duration = m.duration.labels(function)
        self.init = m.init_duration.labels(function)
        self.cold = m.cold_starts.labels(function)


class Metrics:
    """The registry and the invocation-path counters; ``observe`` is the invoker's hook."""

    def __init__(
        self, snapshot: Callable[[], StateSnapshot] | None = None, process: bool = True, node: str | None = None
    ) -> None:
        #: the cluster node id every exposed sample is labelled with (None: one embedded node, no label)
        self.node = node
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.invocations = Counter(
            "squall_invocations", "Invocations by outcome (throttled requests excluded)", ["function", "status"],
            registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "squall_invocation_errors",
            "Invocations that ended in a function error or timeout",
            ["function"],
            registry=r,
        )
        self.throttles = Counter(
            "squall_throttles", "Requests refused for lack of capacity (TooManyRequestsException)", ["function"],
            registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "squall_invocation_duration_seconds", "Handler duration", ["function"], buckets=DURATION_BUCKETS, registry=r
        )
        self.init_duration = Histogram(
            "squall_init_duration_seconds", "Init phase of cold starts", ["function"], buckets=INIT_BUCKETS, registry=r
        )
        self.cold_starts = Counter(
            "squall_cold_starts", "Invocations that started a new instance", ["function"], registry=r
        )
        self.deliveries = Counter(
            "squall_event_deliveries", "Invocations made by event sources (sqs batches, s3 events, schedules)",
            ["source", "outcome"], registry=r,
        )  # fmt: skip
        if snapshot is not None:
            r.register(_StateCollector(snapshot))
        if process:
            ProcessCollector(registry=r)
        self._fns: dict[str, _Fn] = {}
        self._deliveries: dict[tuple[str, str], Any] = {}

    def _fn(self, function: str) -> _Fn:
        fn = self._fns.get(function)
        if fn is None:
            fn = self._fns[function] = _Fn(self, function)
        return fn

    def observe(
        self,
        function: str,
        trigger: str,
        outcome: InvokeOutcome | None,
        status: str,
        init_ms: float | None = None,
    ) -> None:
        """One finished invocation (or throttled request).  ``init_ms`` is given for an init that failed (no
        outcome); a successful cold start carries its own in ``outcome``."""
        fn = self._fns.get(function) or self._fn(function)
        if trigger in DELIVERY_SOURCES:
            d = self._deliveries.get((trigger, status))
            if d is None:
                d = self._deliveries[(trigger, status)] = self.deliveries.labels(trigger, status)
            d.inc()
        if status == "throttled":
            fn.throttles.inc()
            return
        inv = fn.invocations.get(status)
        if inv is None:
            inv = fn.invocations[status] = self.invocations.labels(function, status)
        inv.inc()
        if status != "ok":
            fn.errors.inc()
        if outcome is not None:
            fn.duration.observe(outcome.duration_ms / 1000.0)
            if outcome.cold:
                fn.cold.inc()
                if outcome.init_ms is not None:
                    fn.init.observe(outcome.init_ms / 1000.0)
        elif init_ms is not None:
            fn.cold.inc()
            fn.init.observe(init_ms / 1000.0)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        if self.node is None:
            return generate_latest(self.registry)
        return generate_latest(_Labelled(self.registry, "node", self.node))


class _Labelled:
    """A registry's metrics with one more label on every sample (at scrape time: nothing on the invocation path)."""

    def __init__(self, registry: CollectorRegistry, name: str, value: str) -> None:
        self.registry, self.name, self.value = registry, name, value

    def collect(self) -> Iterator[Metric]:
        for m in self.registry.collect():
            out = Metric(m.name, m.documentation, m.type, m.unit)
            out.samples = [s._replace(labels={**s.labels, self.name: self.value}) for s in m.samples]
            yield out
