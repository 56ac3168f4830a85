"""REPORT's "Max Memory Used": the instance's resident memory, shared pages included, as Lambda users expect."""

from __future__ import annotations

import re
from typing import Any

from tests.sandbox_helpers import NodeRunner, body

HELLO = "def handler(event, context):\n    return 'hi'\n"

FORGER = r"""
import json, os, struct

def handler(event, context):
    # a hostile runtime writes its own RESULT frame (docs/protocol.md) with an absurd memory figure
    h = json.dumps({"request_id": context.aws_request_id, "ok": True, "error_type": None, "duration_ms": 1.0,
                    "max_rss_kb": 10**12}).encode()
    body = b'"forged"'
    os.write(3, struct.pack(">IBI", 1 + 4 + len(h) + len(body), 4, len(h)) + h + body)
    import time
    time.sleep(0.2)
    return "late"
"""

BIG = r"""
def handler(event, context):
    blob = bytearray(event["mb"] * 1024 * 1024)
    for i in range(0, len(blob), 4096):
        blob[i] = 1
    return len(blob)
"""


def used(out: Any) -> int:
    m = re.search(r"Max Memory Used: (\d+) MB", out.logs)
    assert m, out.logs
    return int(m.group(1))


def test_hello_reports_its_resident_memory(node: NodeRunner) -> None:
    """A hello function's Python interpreter is resident memory (Lambda says ~40 MB for it); most of it is shared
    with the zygote, so the cgroup alone says ~2 MB."""
    fn = node.load({"app.py": HELLO})
    inst = node.start(fn)
    try:
        out = node.invoke(inst, {})
        assert out.ok
        assert used(out) == out.max_memory_mb
        assert out.max_memory_mb >= 10, out.logs
        assert out.max_memory_mb > inst.last_max_memory_mb  # more than what is charged to its cgroup alone
        assert out.max_memory_mb <= 128
    finally:
        node.stop(inst)


def test_memory_grows_with_what_the_handler_uses(node: NodeRunner) -> None:
    fn = node.load({"app.py": BIG}, memory_mb=256)
    inst = node.start(fn)
    try:
        small = node.invoke(inst, {"mb": 1})
        big = node.invoke(inst, {"mb": 100})
        assert big.ok, big.payload
        assert big.max_memory_mb >= small.max_memory_mb + 90
    finally:
        node.stop(inst)


def test_a_forged_memory_figure_stays_within_memory_size(node: NodeRunner) -> None:
    """The figure comes from the (hostile) instance: bounded by MemorySize and never used for the platform's own
    memory estimates."""
    fn = node.load({"app.py": FORGER})
    inst = node.start(fn)
    try:
        out = node.invoke(inst, {})
        assert body(out) == "forged"
        assert out.max_memory_mb == 128
        assert inst.last_max_memory_mb < 128  # the pool's estimate comes from the cgroup, not from the instance
    finally:
        node.stop(inst)
