"""Scale to zero: memory used by instances before, during and after a burst, once the keep-alive has passed.

Prints JSON lines:
  instances_memory_mb_idle      memory charged to Squall's cgroups before any invocation (the idle baseline)
  instances_memory_mb_peak      with N warm instances
  instances_memory_mb_after     after the keep-alive (SQUALL_KEEP_ALIVE_S=2) and zygote keep-alive passed
  "returned_to_baseline": after <= idle + 5 MB

    python bench/scale_to_zero.py [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quick
from _server import KEY_ID, SECRET, Server, deploy
from burst import burst

CODE = "import time\ndef handler(event, context):\n    time.sleep(0.5)\n    return {'ok': True}\n"


def cgroup_mb(server: Server) -> float:
    """Memory charged to the server's cgroups (instances and zygotes), from its pool API."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.e2e._platform import signed_get

    _, pool = signed_get(server.url, "/_squall/api/pool", KEY_ID, SECRET)
    return float(pool["node_memory_bytes"]) / 1024 / 1024


def main() -> None:
    n = 50 if quick() else 200
    server = Server(SQUALL_KEEP_ALIVE_S="2", SQUALL_ZYGOTE_KEEP_ALIVE_S="3", SQUALL_REAP_INTERVAL_S="0.5")
    try:
        client = server.lambda_client()
        deploy(client, "sleepy", CODE, Timeout=10)
        time.sleep(1)
        idle = cgroup_mb(server)
        import burst as b

        b.PATH = "/2015-03-31/functions/sleepy/invocations"
        _, ok, _ = asyncio.run(burst(server.port, n))
        peak = cgroup_mb(server)
        deadline = time.monotonic() + 30
        after = peak
        while time.monotonic() < deadline:
            time.sleep(1)
            after = cgroup_mb(server)
            if after <= idle + 5:
                break
        emit("instances_memory_mb_idle", idle, "MB")
        emit("instances_memory_mb_peak", peak, "MB", instances=n, ok=ok)
        emit("instances_memory_mb_after", after, "MB", returned_to_baseline=after <= idle + 5, keep_alive_s=2)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
