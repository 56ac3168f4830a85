"""Adaptive keep-alive (SQUALL_KEEP_ALIVE_POLICY=hybrid) on a real server, time scaled down by the knobs.

A function invoked every PERIOD_S seconds: while its idle-time histogram is thin, the fixed fallback (0.5 s) unloads
it and every call is cold; once learned, it is unloaded right after each call, pre-warmed before the next one, and
the next call is warm.  Redeploying (UpdateFunctionCode) forgets what was learned.
"""

from __future__ import annotations

import base64
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e._platform import SquallProcess, create, eventually, signed_get, zip_of

CODE = "def handler(event, context):\n    return {'ok': True}\n"
PERIOD_S = 6.0  # idle times of ~6 s land in the [4, 8) s bin: pre-warm 3.6 s after a call, keep until 8.8 s


def pool(proc: SquallProcess) -> dict[str, Any]:
    status, body = signed_get(proc.url, "/_squall/api/pool")
    assert status == 200
    return body


def instances(proc: SquallProcess, state: str | None = None) -> list[dict[str, Any]]:
    return [i for i in pool(proc)["instances"] if i["function"] == "tick" and state in (None, i["state"])]


def invoke(lam: Any) -> tuple[bool, float]:
    """One call; returns (cold start?, when it returned)."""
    out = lam.invoke(FunctionName="tick", Payload=b"{}", LogType="Tail")
    assert out["StatusCode"] == 200 and "FunctionError" not in out
    return "Init Duration" in base64.b64decode(out["LogResult"]).decode(), time.monotonic()


def pace(last_end: float) -> None:
    """The workload: the next call of the timer comes PERIOD_S after the last one ended."""
    left = last_end + PERIOD_S - time.monotonic()
    if left > 0:
        time.sleep(left)


def test_periodic_function_is_prewarmed_unloaded_between_calls_and_redeploy_forgets(tmp_path: Path) -> None:
    proc = SquallProcess(
        tmp_path / "data",
        SQUALL_KEEP_ALIVE_POLICY="hybrid", SQUALL_KEEP_ALIVE_BIN_S="4", SQUALL_KEEP_ALIVE_RANGE_S="60",
        SQUALL_KEEP_ALIVE_MIN_SAMPLES="3", SQUALL_KEEP_ALIVE_S="0.5", SQUALL_ZYGOTE_KEEP_ALIVE_S="0.5",
        SQUALL_REAP_INTERVAL_S="0.1", SQUALL_METRICS_PUBLIC="1",
    ).start()  # fmt: skip
    try:
        lam = proc.client()
        create(lam, "tick", CODE)
        # learning: 4 calls -> 3 idle times; the fixed fallback unloads the function after each call
        cold, end = invoke(lam)
        assert cold
        for _ in range(3):
            eventually(lambda: not instances(proc), timeout_s=30, what="fallback keep-alive unloads the instance")
            pace(end)
            cold, end = invoke(lam)
            assert cold  # nothing was kept: the fallback's 0.5 s is far below the period
        learned = pool(proc)["keep_alive"]["tick"]
        assert learned["mode"] == "histogram" and learned["idle_times"] == 3, learned
        assert learned["prewarm_s"] > 0
        prewarms = pool(proc)["prewarms"]
        for cycle in range(2):
            # unloaded right after the call (the pre-warm window is > 0), instance and zygote
            eventually(lambda: not instances(proc), timeout_s=30, what=f"unloaded after call {cycle}")
            # ... then one instance is started again before the next expected call
            eventually(lambda: instances(proc, "idle"), timeout_s=30, what=f"pre-warmed before call {cycle + 1}")
            pace(end)
            cold, end = invoke(lam)
            assert not cold, f"call {cycle + 1} after learning was a cold start"
        assert pool(proc)["prewarms"] >= prewarms + 2
        with urllib.request.urlopen(proc.url + "/metrics", timeout=30) as resp:  # SQUALL_METRICS_PUBLIC=1
            assert f"squall_prewarms_total {float(pool(proc)['prewarms'])}" in resp.read().decode()

        def records() -> Any:
            _, body = signed_get(proc.url, "/_squall/api/invocations?function=tick&limit=10")
            return body["invocations"] if len(body["invocations"]) == 6 else None

        recs = eventually(records, what="six records")
        assert sorted(r["cold"] for r in recs) == [False, False, True, True, True, True]

        # redeploy: what was learned is forgotten (the new code may run on another schedule)
        lam.update_function_code(FunctionName="tick", ZipFile=zip_of({"app.py": CODE + "# v2\n"}))
        lam.get_waiter("function_updated_v2").wait(FunctionName="tick")
        reset = pool(proc)["keep_alive"]["tick"]
        assert reset["mode"] == "fixed" and reset["idle_times"] == 0, reset
        cold, end = invoke(lam)
        assert cold
        after = pool(proc)["keep_alive"]["tick"]
        assert after["mode"] == "fixed" and after["idle_times"] == 0, after  # no idle time across the deploy
    finally:
        assert proc.stop() == 0
