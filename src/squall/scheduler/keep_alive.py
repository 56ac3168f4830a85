"""Adaptive keep-alive: the hybrid histogram policy of Shahrad et al., "Serverless in the Wild" (USENIX ATC 2020).

Pure: no asyncio, no os, no clock reads; every time is a parameter (monotonic seconds).  The pool (the shell) feeds
each function's invocation starts and ends into a :class:`FunctionKeepAlive` and asks it two questions:

* :meth:`FunctionKeepAlive.keep_until` -> :class:`KeepUntil`: may an idle instance (and the zygote) of the function
  stay loaded now?  The answer is a window ``[warm_from, until]`` after the function's last invocation ended.
* :meth:`FunctionKeepAlive.prewarm_at` -> :class:`PrewarmAt`: when to start one instance ahead of the next expected
  invocation (``None``: nothing to pre-warm).

The policy (section 4.2 of the paper):

* Each *idle time* (IT) -- from the end of the function's last invocation to the start of its next one, counted only
  when no invocation of the function was running -- goes into a histogram of ``bin_s`` bins covering ``range_s``
  (the paper: 1-minute bins, 4 hours).  ITs beyond the range are counted as out of bounds (OOB).
* The histogram is *representative* when it holds at least ``min_samples`` ITs, at most ``oob_max`` of them are
  out of bounds, and the coefficient of variation of its bin counts is at least ``cv_min`` (the paper: 2; a
  histogram whose ITs spread evenly over the range has a low CV and says little about the next IT).
* Representative: the **pre-warm window** is the head (5th percentile) of the ITs, rounded down to its bin's lower
  edge, minus a ``margin`` (10%); the **keep-alive window** runs from there to the tail (99th percentile, rounded up
  to its bin's upper edge) plus the margin.  After an invocation the function is unloaded at once if the pre-warm
  window is > 0, one instance is started again at the end of the pre-warm window, and it is kept until the end of
  the keep-alive window.  A pre-warm window of 0 means: keep warm from the end of the invocation.
* Not representative: a fixed keep-alive (``fixed_keep_alive_s``; zygotes ``fixed_zygote_keep_alive_s``).  The paper
  forecasts the next IT with ARIMA when many ITs are out of bounds; this implementation falls back to the fixed
  keep-alive there too (see docs/design.md).

Zygotes follow the same windows: in histogram mode a zygote is unloaded with the function's last instance and loaded
again by the pre-warm; in fixed mode it keeps its own, longer fixed keep-alive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from squall.scheduler.state import SchedulerState

__all__ = [
    "FunctionKeepAlive",
    "HistogramConfig",
    "KeepAliveMode",
    "KeepUntil",
    "PrewarmAt",
    "Windows",
    "reap_idle",
    "reap_zygotes_adaptive",
]

KeepAliveMode = Literal["fixed", "histogram"]


@dataclass(frozen=True)
class HistogramConfig:
    """Knobs of the hybrid histogram policy (docs/config.md: ``SQUALL_KEEP_ALIVE_*``)."""

    #: width of one histogram bin, seconds (the paper: 60)
    bin_s: float = 60.0
    #: idle times the histogram covers, seconds (the paper: 4 hours); longer ones are out of bounds
    range_s: float = 4 * 3600.0
    #: percentile of idle times that sets the pre-warm window
    head_percentile: float = 5.0
    #: percentile of idle times that sets the end of the keep-alive window
    tail_percentile: float = 99.0
    #: safety margin: the pre-warm window shrinks and the keep-alive window's end grows by this fraction
    margin: float = 0.10
    #: idle times needed before the histogram is trusted
    min_samples: int = 10
    #: the coefficient of variation of the bin counts must reach this (the paper: 2)
    cv_min: float = 2.0
    #: more than this share of idle times out of bounds -> fixed fallback (the paper's ARIMA case)
    oob_max: float = 0.5
    #: keep-alive while the histogram is not representative, seconds
    fixed_keep_alive_s: float = 300.0
    #: zygote keep-alive while the histogram is not representative, seconds
    fixed_zygote_keep_alive_s: float = 600.0
    #: not in the paper: when the pre-warm window is 0 (the next call may come at any moment, so pre-warming cannot
    #: help), keep warm no longer than ``fixed_keep_alive_s`` -- a longer window only trades memory for cold starts
    #: along the same curve (see docs/design.md)
    cap_without_prewarm: bool = True
    #: not in the paper: what one cold start is worth in seconds of one idle instance kept loaded.  > 0: the
    #: keep-alive window's end (and whether to keep at all) is the one that minimises, over the idle times seen,
    #: idle seconds + this x cold starts (see docs/design.md); 0: the paper's tail percentile (+ the cap above)
    cold_start_cost_s: float = 600.0

    def __post_init__(self) -> None:
        if not (self.bin_s > 0 and self.range_s >= self.bin_s):
            raise ValueError(f"keep-alive histogram: need 0 < bin_s <= range_s (got {self.bin_s}, {self.range_s})")
        if not 0 <= self.head_percentile <= self.tail_percentile <= 100:
            raise ValueError("keep-alive histogram: need 0 <= head_percentile <= tail_percentile <= 100")
        if not 0 <= self.margin < 1:
            raise ValueError(f"keep-alive histogram: margin must be in [0, 1) (got {self.margin})")
        if self.min_samples < 1:
            raise ValueError(f"keep-alive histogram: min_samples must be >= 1 (got {self.min_samples})")

    @property
    def bins(self) -> int:
        return math.ceil(self.range_s / self.bin_s)


@dataclass(frozen=True)
class Windows:
    """What the policy learned for one function, relative to the end of its last invocation."""

    mode: KeepAliveMode
    #: unloaded for this long after the last invocation ended (0: stay warm from the end)
    prewarm_s: float
    #: then kept warm for this long
    keep_alive_s: float
    #: zygote: loaded from ``zygote_from_s`` to ``zygote_until_s`` after the last invocation ended
    zygote_from_s: float
    zygote_until_s: float
    #: why this mode (for the pool API and logs)
    reason: str


@dataclass(frozen=True)
class KeepUntil:
    """Idle instances of the function may be loaded while ``warm_from <= now <= until``; an instance idle for longer
    than ``max_idle_s`` is stopped anyway (the extras a burst left behind)."""

    warm_from: float
    until: float
    max_idle_s: float
    zygote_from: float
    zygote_until: float

    def keeps(self, now: float) -> bool:
        return self.warm_from <= now <= self.until

    def keeps_zygote(self, now: float) -> bool:
        return self.zygote_from <= now <= self.zygote_until


@dataclass(frozen=True)
class PrewarmAt:
    """Start one instance of the function at ``at`` (``None``: do not pre-warm)."""

    at: float | None


class FunctionKeepAlive:
    """One function's idle-time histogram and the windows it implies.  Mutable, but pure: times are parameters.

    Feed it :meth:`invocation_started` / :meth:`invocation_ended`; :meth:`reset` on deploy.
    """

    __slots__ = ("_cached", "_prewarmed_for", "config", "counts", "in_flight", "last_end", "oob", "samples")

    def __init__(self, config: HistogramConfig | None = None) -> None:
        self.config = config or HistogramConfig()
        self.counts: list[int] = [0] * self.config.bins
        self.samples = 0
        self.oob = 0
        self.in_flight = 0
        self.last_end: float | None = None
        self._cached: Windows | None = None
        self._prewarmed_for: float | None = None

    def reset(self) -> None:
        """Forget everything learned (a deploy: the new code may behave differently)."""
        self.counts = [0] * self.config.bins
        self.samples = self.oob = self.in_flight = 0
        self.last_end = None
        self._cached = None
        self._prewarmed_for = None

    # -- events -------------------------------------------------------------------------------------------------
    def invocation_started(self, now: float) -> None:
        if self.in_flight == 0 and self.last_end is not None:
            self.record_idle(max(0.0, now - self.last_end))
        self.in_flight += 1

    def invocation_ended(self, now: float) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if self.in_flight == 0:
            self.last_end = now if self.last_end is None else max(self.last_end, now)

    def record_idle(self, idle_s: float) -> None:
        """One idle time, seconds."""
        self.samples += 1
        b = int(idle_s // self.config.bin_s)
        if b >= len(self.counts):
            self.oob += 1
        else:
            self.counts[b] += 1
        self._cached = None

    # -- the policy ---------------------------------------------------------------------------------------------
    def windows(self) -> Windows:
        if self._cached is None:
            self._cached = self._windows()
        return self._cached

    def _fixed(self, reason: str) -> Windows:
        c = self.config
        return Windows("fixed", 0.0, c.fixed_keep_alive_s, 0.0, c.fixed_zygote_keep_alive_s, reason)

    def _windows(self) -> Windows:
        c = self.config
        if self.samples < c.min_samples:
            return self._fixed(f"learning: {self.samples} of {c.min_samples} idle times")
        if self.oob > c.oob_max * self.samples:
            return self._fixed(f"{self.oob} of {self.samples} idle times beyond {c.range_s:g} s")
        cv = coefficient_of_variation(self.counts)
        if cv < c.cv_min:
            return self._fixed(f"idle times too spread: CV {cv:.2f} < {c.cv_min:g}")
        if c.cold_start_cost_s > 0:
            return self._cost_windows()
        in_range = self.samples - self.oob
        head = _percentile_bin(self.counts, in_range, c.head_percentile) * c.bin_s
        tail = (_percentile_bin(self.counts, in_range, c.tail_percentile) + 1) * c.bin_s
        prewarm = head * (1 - c.margin)
        until = tail * (1 + c.margin)
        zygote_until = until
        if prewarm <= 0 and c.cap_without_prewarm and until > c.fixed_keep_alive_s:
            # capped: as under the fixed keep-alive, instances and the zygote keep their fixed keep-alives
            until, zygote_until = c.fixed_keep_alive_s, c.fixed_zygote_keep_alive_s
        why = f"{self.samples} idle times, CV {cv:.2f}"
        return Windows("histogram", prewarm, until - prewarm, prewarm, zygote_until, why)

    def _cost_windows(self) -> Windows:
        """The window [a, b] after the last end that minimises the expected idle seconds + cold_start_cost_s x the
        chance of a cold start, over the idle times seen (an idle time in bin i counted at the bin's middle; out of
        bounds ones are cold whatever the window).  a: 0 or the paper's pre-warm point (the head percentile); b: the
        end of a non-empty bin at or after a, or a itself (keep nothing)."""
        c = self.config
        n, counts, w = self.samples, self.counts, c.bin_s
        in_range = n - self.oob
        heads = [0]
        if in_range:
            hb = _percentile_bin(counts, in_range, c.head_percentile)
            if hb > 0:
                heads.append(hb)
        best: tuple[float, int, int] | None = None
        for a_bin in heads:
            a = a_bin * w
            before = sum(counts[:a_bin])  # arrive before the pre-warm: cold
            inside = 0  # idle times in [a, b): warm, loaded from a until they arrive
            inside_s = 0.0
            b_bin = a_bin
            candidates = [(a_bin, 0, 0.0)]
            for i in range(a_bin, len(counts)):
                k = counts[i]
                if k:
                    inside += k
                    inside_s += k * ((i + 0.5) * w - a)
                    candidates.append((i + 1, inside, inside_s))
            for b_bin, inside, inside_s in candidates:
                after = n - before - inside  # later than b (or out of bounds): loaded a..b, then cold
                cost = inside_s + (b_bin * w - a) * after + c.cold_start_cost_s * (before + after)
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, a_bin, b_bin)
        assert best is not None
        _, a_bin, b_bin = best
        why = f"{n} idle times, least idle seconds + {c.cold_start_cost_s:g} s per cold start"
        if b_bin <= a_bin:
            # keeping an instance costs more than the cold starts it saves: stop it after each call.  The zygote
            # keeps its fixed keep-alive, as with any window that has no pre-warm: the price is in instance-seconds,
            # and a cold start from a warm zygote (a fork) is far cheaper than a load from nothing
            return Windows("histogram", 0.0, 0.0, 0.0, c.fixed_zygote_keep_alive_s, why)
        prewarm = a_bin * w * (1 - c.margin)
        until = b_bin * w * (1 + c.margin)
        zygote_until = until if prewarm > 0 else max(until, c.fixed_zygote_keep_alive_s)
        return Windows("histogram", prewarm, until - prewarm, prewarm, zygote_until, why)

    def keep_until(self, now: float) -> KeepUntil | None:
        """The window in which idle instances (and the zygote) of this function may stay loaded; ``None`` when no
        invocation has finished since the last reset (no opinion: the caller's fixed keep-alive applies)."""
        del now  # the window is relative to the last end; kept for the uniform (state, input, now) signature
        w = self.windows()
        if self.in_flight > 0:  # while an invocation runs the function stays; extras still age out
            return KeepUntil(-math.inf, math.inf, w.prewarm_s + w.keep_alive_s, -math.inf, math.inf)
        base = self.last_end
        if base is None:
            return None
        return KeepUntil(
            base + w.prewarm_s,
            base + w.prewarm_s + w.keep_alive_s,
            w.prewarm_s + w.keep_alive_s,
            base + w.zygote_from_s,
            base + w.zygote_until_s,
        )

    def prewarm_at(self, now: float) -> PrewarmAt:
        """When to start one instance ahead of the next expected invocation; ``None`` if nothing is due: busy, a
        pre-warm window of 0, already pre-warmed for this idle period, or the keep-alive window has passed."""
        if self.in_flight > 0 or self.last_end is None or self._prewarmed_for == self.last_end:
            return PrewarmAt(None)
        w = self.windows()
        if w.prewarm_s <= 0:
            return PrewarmAt(None)
        at = self.last_end + w.prewarm_s
        if now > at + w.keep_alive_s:
            return PrewarmAt(None)
        return PrewarmAt(at)

    def prewarm_started(self) -> None:
        """The shell started the pre-warm for the current idle period (do not start another)."""
        self._prewarmed_for = self.last_end


def coefficient_of_variation(counts: list[int]) -> float:
    """Standard deviation over mean of the bin counts (population); 0 for an empty histogram."""
    n = len(counts)
    total = sum(counts)
    if n == 0 or total == 0:
        return 0.0
    mean = total / n
    var = sum((x - mean) ** 2 for x in counts) / n
    return math.sqrt(var) / mean


def _percentile_bin(counts: list[int], total: int, pct: float) -> int:
    """Index of the bin holding the ``pct`` percentile of ``total`` samples (nearest rank)."""
    rank = max(1, math.ceil(pct / 100.0 * total))
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if seen >= rank:
            return i
    return len(counts) - 1


def reap_idle(
    state: SchedulerState, now: float, keep: Mapping[str, KeepUntil], fallback_keep_alive_s: float
) -> list[str]:
    """Idle, non-provisioned instances to stop now under the adaptive policy, LRU first.

    ``keep``: function name -> its window; a function without one keeps ``fallback_keep_alive_s`` per instance.
    An instance goes when its function's window does not keep it now, or when it has been idle for longer than the
    whole window (extras left by a burst).
    """
    out = []
    for i in state.instances:
        if i.state != "idle" or i.provisioned:
            continue
        k = keep.get(i.function)
        if k is None:
            if now - i.last_used > fallback_keep_alive_s:
                out.append(i)
        elif not k.keeps(now) or now - i.last_used > k.max_idle_s:
            out.append(i)
    return [i.id for i in sorted(out, key=lambda i: (i.last_used, i.id))]


def reap_zygotes_adaptive(
    zygote_functions: Mapping[str, str],
    last_used: Mapping[str, float],
    now: float,
    keep: Mapping[str, KeepUntil],
    fallback_keep_alive_s: float,
    in_use: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    """Zygote keys to unload, sorted.  ``zygote_functions``: key -> function name.  Keys in ``in_use`` (live instances,
    provisioned targets) stay; a function with a window keeps its zygote while :meth:`KeepUntil.keeps_zygote`; one
    without keeps it ``fallback_keep_alive_s`` after its last use."""
    out = []
    for key, fn in zygote_functions.items():
        if key in in_use:
            continue
        k = keep.get(fn)
        if k is None:
            if now - last_used.get(key, now) > fallback_keep_alive_s:
                out.append(key)
        elif not k.keeps_zygote(now):
            out.append(key)
    return sorted(out)
