"""Scale to zero: idle instances and zygotes go away after the keep-alive; the next invocation is cold again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e._platform import SquallProcess, create, eventually, signed_get

CODE = "def handler(event, context):\n    return {'ok': True}\n"


def test_idle_instances_and_zygotes_are_reaped(tmp_path: Path) -> None:
    proc = SquallProcess(
        tmp_path / "data", SQUALL_KEEP_ALIVE_S="0.5", SQUALL_ZYGOTE_KEEP_ALIVE_S="1", SQUALL_REAP_INTERVAL_S="0.1"
    ).start()
    try:
        lam = proc.client()
        create(lam, "idle", CODE)
        assert json.loads(lam.invoke(FunctionName="idle", Payload=b"{}")["Payload"].read()) == {"ok": True}
        status, pool = signed_get(proc.url, "/_squall/api/pool")
        assert status == 200 and len(pool["instances"]) == 1 and len(pool["zygotes"]) == 1

        def empty() -> Any:
            _, p = signed_get(proc.url, "/_squall/api/pool")
            return p if not p["instances"] and not p["zygotes"] else None

        eventually(empty, timeout_s=15, what="instances and zygotes reaped")
        lam.invoke(FunctionName="idle", Payload=b"{}")

        def records() -> Any:
            _, body = signed_get(proc.url, "/_squall/api/invocations?function=idle&limit=10")
            return body["invocations"] if len(body["invocations"]) == 2 else None

        recs = eventually(records, what="two records")
        assert [r["cold"] for r in recs] == [True, True]  # both were cold starts: nothing stayed warm
    finally:
        assert proc.stop() == 0
