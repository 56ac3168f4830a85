"""Burst from zero: N concurrent synchronous invokes of a ``sleep(1)`` function, none warm beforehand.

Prints JSON lines:
  burst_wall_s     wall time until all N returned (target: 1,000 all succeed, <= 3 s); "ok" successes, "errors"
  burst_instances  instances the pool started (cold starts)
  baseline: the same N requests to a warm pool would take ~1 s (the handler sleeps 1 s): "ideal_s": 1.0

    python bench/burst.py [--quick]        (--quick: N = 200)
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quick
from _http import Conn, Signer
from _server import KEY_ID, SECRET, Server, deploy

CODE = "import time\ndef handler(event, context):\n    time.sleep(1)\n    return {'ok': True}\n"
PATH = "/2015-03-31/functions/sleepy/invocations"


FAILURES: dict[str, int] = {}


async def burst(port: int, n: int) -> tuple[float, int, int]:
    signer = Signer(KEY_ID, SECRET)
    ok = errors = 0

    async def one() -> None:
        nonlocal ok, errors
        conn = Conn("127.0.0.1", port)
        try:
            body = b"{}"
            status, out = await conn.request(
                "POST", PATH, body, signer.headers("POST", f"127.0.0.1:{port}", PATH, body)
            )
            if status == 200 and b"errorType" not in out:
                ok += 1
            else:
                errors += 1
                key = f"{status} {out[:160]!r}"
                FAILURES[key] = FAILURES.get(key, 0) + 1
        except Exception as e:
            errors += 1
            FAILURES[type(e).__name__] = FAILURES.get(type(e).__name__, 0) + 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0, ok, errors


def main() -> None:
    n = 200 if quick() else 1000
    server = Server(SQUALL_THROTTLE_WAIT_S="10")
    try:
        client = server.lambda_client()
        deploy(client, "sleepy", CODE, Timeout=10)
        # load the zygote without leaving an instance warm: DryRun validates and resolves but starts nothing
        client.invoke(FunctionName="sleepy", InvocationType="DryRun")
        wall, ok, errors = asyncio.run(burst(server.port, n))
        emit("burst_wall_s", wall, "s", n=n, ok=ok, errors=errors, failures=FAILURES, baseline={"ideal_s": 1.0})
    finally:
        server.stop()


if __name__ == "__main__":
    main()
