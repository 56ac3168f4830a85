"""Helpers shared by the benchmarks: JSON output lines and robust statistics."""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def emit(metric: str, value: float, unit: str, **extra: Any) -> None:
    print(json.dumps({"metric": metric, "value": round(value, 4), "unit": unit, **extra}), flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def quick() -> bool:
    return "--quick" in sys.argv
