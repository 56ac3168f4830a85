"""The invocation's billed duration and its START/END/REPORT log lines, as Lambda writes them.

The node writes these lines after each invoke and the invoker writes them for an init that failed before the
node could; both format them here, so the two agree with each other and with Lambda (which rounds the billed
duration *up* to the next millisecond, at least 1 ms).
"""

from __future__ import annotations

import math

__all__ = ["billed_ms", "end_line", "report_line", "start_line"]


def billed_ms(duration_ms: float) -> int:
    """Lambda's billed duration: rounded up to the next 1 ms (at least 1 ms)."""
    return max(1, math.ceil(duration_ms))


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}\n"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}\n"


def report_line(
    request_id: str,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int,
    *,
    init_ms: float | None = None,
    status: str | None = None,
    error_type: str | None = None,
) -> str:
    """The tab-separated REPORT line (with its trailing tab, as Lambda writes it), without the newline."""
    line = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed_ms(duration_ms)} "
        f"ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {max_memory_mb} MB\t"
    )
    if init_ms is not None:
        line += f"Init Duration: {init_ms:.2f} ms\t"
    if status:
        line += f"Status: {status}\tError Type: {error_type}\t"
    return line
