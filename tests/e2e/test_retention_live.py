"""Retention on a live server: records and logs past SQUALL_LOG_RETENTION_DAYS are pruned while invocations go on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e._platform import SquallProcess, create, eventually, signed_get

CODE = "def handler(event, context):\n    print('marker', event['n'])\n    return event['n']\n"


def test_old_records_and_logs_are_pruned_while_serving(tmp_path: Path) -> None:
    # 0.00003 days = 2.6 s retention, pruned every 0.2 s
    proc = SquallProcess(tmp_path / "data", SQUALL_LOG_RETENTION_DAYS="0.00003", SQUALL_PRUNE_INTERVAL_S="0.2").start()
    try:
        lam = proc.client()
        create(lam, "short", CODE)
        first = lam.invoke(FunctionName="short", Payload=json.dumps({"n": 1}).encode())
        first_id = first["ResponseMetadata"]["RequestId"]

        def recorded() -> Any:
            status, _ = signed_get(proc.url, f"/_squall/api/invocations/{first_id}")
            return status == 200

        eventually(recorded, what="the first record to be written")

        def pruned() -> Any:
            # keep invoking while pruning runs: every invocation still succeeds
            out = lam.invoke(FunctionName="short", Payload=json.dumps({"n": 2}).encode())
            assert json.loads(out["Payload"].read()) == 2
            status, _ = signed_get(proc.url, f"/_squall/api/invocations/{first_id}")
            _, logs = signed_get(proc.url, f"/_squall/api/logs?function=short&request_id={first_id}")
            return status == 404 and logs["lines"] == []

        eventually(pruned, timeout_s=30, interval_s=0.3, what="the first invocation's record and logs to be pruned")
        _, recent = signed_get(proc.url, "/_squall/api/invocations?function=short&limit=5")
        assert recent["invocations"], "recent records must stay"
    finally:
        assert proc.stop() == 0
