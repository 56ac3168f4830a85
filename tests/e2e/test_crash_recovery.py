"""A server killed with SIGKILL mid-load loses no accepted asynchronous event."""

from __future__ import annotations

import json
import signal
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.e2e._platform import SquallProcess, create, eventually, signed_get

SLOW = """
import time
def handler(event, context):
    time.sleep(0.05)
    return {"id": event["id"]}
"""


def _delivered_ids(proc: SquallProcess) -> set[str]:
    ids: set[str] = set()
    cursor = ""
    for _ in range(100):
        status, body = signed_get(proc.url, f"/_squall/api/invocations?function=slow&status=ok&limit=500{cursor}")
        assert status == 200, body
        ids |= {r["request_id"] for r in body["invocations"]}
        if not body.get("next_cursor"):
            break
        cursor = "&cursor=" + urllib.parse.quote(body["next_cursor"], safe="")
    return ids


def test_sigkill_mid_load_loses_no_accepted_event(tmp_path: Path) -> None:
    proc = SquallProcess(tmp_path / "data").start()
    lam = proc.client()
    create(lam, "slow", SLOW)
    accepted: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def send(i: int) -> None:
        if killed.is_set():
            return
        try:
            r = lam.invoke(FunctionName="slow", InvocationType="Event", Payload=json.dumps({"id": i}).encode())
        except Exception:
            return  # the server died under this request: it was never accepted
        if r["StatusCode"] == 202:
            with lock:
                accepted.append(r["ResponseMetadata"]["RequestId"])
                if len(accepted) == 150:
                    proc.stop(signal.SIGKILL)  # mid-load: events queued, some leased, some running
                    killed.set()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(400)))
    assert killed.is_set() and len(accepted) >= 150

    proc.start()
    try:
        want = set(accepted)

        def all_delivered() -> Any:
            missing = want - _delivered_ids(proc)
            return True if not missing else None

        eventually(all_delivered, timeout_s=60, interval_s=0.5, what=f"all {len(want)} accepted events delivered")
    finally:
        proc.stop()
