"""How fast the dashboard's queries answer over 100k invocation records (store level, no HTTP).

Writes 100,000 synthetic records over the last 24 hours (10 functions, 5% errors, 2% cold) into a fresh SQLite
store, then times (median of 7 runs, after one warm-up) what the pages ask for:

  series_1h_all / series_1h_fn      GET /_squall/api/series, last hour, 60 buckets (all functions / one)
  series_24h_all / series_24h_fn    last 24 h, 96 buckets
  overview_1h                       the overview's per-function totals + 60-point sparklines
  list_first_page / list_page_20    GET /_squall/api/invocations?limit=50 (first page; 20th page via the cursor)
  get_invocation                    one record by request id

Prints JSON lines ({"metric", "value", "unit"}).

    python bench/dashboard_series.py [--quick]        (--quick: 20,000 records)
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quick

from squall.functions.store.metadata import SqliteMetadataStore
from squall.functions.store.records import InvocationRecord


def records(n: int, now: float) -> list[InvocationRecord]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        fn = f"fn-{i % 10}"
        start = now - rng.random() * 86400
        duration = rng.lognormvariate(math.log(30), 0.8)
        status = "error" if rng.random() < 0.05 else "ok"
        cold = rng.random() < 0.02
        out.append(
            InvocationRecord(
                f"req-{i}", fn, "$LATEST", "lambda-api", start, duration, math.ceil(duration),
                150.0 if cold else None, 128, 20, status, "Boom" if status == "error" else None, cold, False,
            )
        )  # fmt: skip
    return out


def timed(fn: Callable[[], Any], runs: int = 7) -> float:
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    n = 20_000 if quick() else 100_000
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteMetadataStore(Path(tmp) / "squall.db")
        # written in start order, as the server writes them (records are appended as invocations finish)
        rows = sorted(records(n, now), key=lambda r: r.start)
        for i in range(0, n, 10_000):
            store.write_batch(rows[i : i + 10_000], [])

        def page20() -> None:
            cursor = None
            for _ in range(20):
                _, cursor = store.list_invocations(None, None, None, None, 50, cursor)

        def overview() -> None:
            store.summaries(now - 3600, now)
            store.sparklines(now - 3600, now, 60)

        checks: dict[str, Callable[[], Any]] = {
            "series_1h_all": lambda: store.series(None, now - 3600, now, 60),
            "series_1h_fn": lambda: store.series("fn-3", now - 3600, now, 60),
            "series_24h_all": lambda: store.series(None, now - 86400, now, 900),
            "series_24h_fn": lambda: store.series("fn-3", now - 86400, now, 900),
            "overview_1h": overview,
            "list_first_page": lambda: store.list_invocations(None, None, None, None, 50, None),
            "list_page_20": page20,
            "get_invocation": lambda: store.get_invocation("req-777"),
        }
        for name, check in checks.items():
            emit(f"dashboard_{name}_ms", timed(check), "ms", records=n)
        store.close()


if __name__ == "__main__":
    main()
