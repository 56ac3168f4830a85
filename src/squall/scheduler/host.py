"""The one impure helper of the scheduler: the node memory budget from /proc/meminfo.

Kept apart from the decision code so that stays pure; the parsing is pure and tested on its own.
"""

from __future__ import annotations

from pathlib import Path

from squall.scheduler.state import MEMORY_BUDGET_FRACTION_DEFAULT

__all__ = ["node_memory_budget_mb", "parse_meminfo_total_mb"]


def parse_meminfo_total_mb(text: str) -> int:
    """MemTotal from the text of /proc/meminfo, in MB (MiB; the kernel's "kB" is KiB)."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            value = int(parts[1])
            unit = parts[2] if len(parts) > 2 else "kB"
            if unit != "kB":
                raise ValueError(f"unexpected MemTotal unit {unit!r}")
            return value // 1024
    raise ValueError("no MemTotal line in meminfo")


def node_memory_budget_mb(
    fraction: float = MEMORY_BUDGET_FRACTION_DEFAULT, meminfo_path: Path = Path("/proc/meminfo")
) -> int:
    """``fraction`` of the node's RAM, in MB: what all instances together may hold."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return int(parse_meminfo_total_mb(meminfo_path.read_text()) * fraction)
