"""The PostgreSQL backend's cost: one embedded node (SQLite) vs one node on PostgreSQL, same run, alternated.

Prints JSON lines (value: on PostgreSQL; baseline: embedded):
  pg_warm_invoke_p50_ms   sequential signed Invoke requests to a warm function (each writes its record and logs)
  pg_s3_put_p50_ms        PutObject of 1 KiB (boto3, sequential)
  pg_sqs_send_p50_ms      SendMessage (boto3, sequential)
  pg_sqs_receive_p50_ms   ReceiveMessage of one visible message + DeleteMessage, per message

PostgreSQL: a throwaway server from Debian's package on loopback (tests/pg_helpers.py), fsync off like the tests'
(a production server's fsync adds its disk's flush time to every commit).

    python bench/pg_backend.py [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import emit, median, pct, quick
from _server import Server, deploy
from invoke_http import CODE, sequential

from pg_helpers import PgServer


def _timed(n: int, call: Any) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def measure(server: Server, n: int) -> dict[str, float]:
    s3, sqs = server.client("s3"), server.client("sqs")
    invoke = pct(asyncio.run(sequential(server.port, n)), 50)
    put = pct(_timed(n, lambda i: s3.put_object(Bucket="bench", Key=f"k{i}", Body=b"x" * 1024)), 50)
    url = sqs.get_queue_url(QueueName="bench")["QueueUrl"]
    send = pct(_timed(n, lambda i: sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")), 50)

    def take(_: int) -> None:
        (m,) = sqs.receive_message(QueueUrl=url)["Messages"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    receive = pct(_timed(n, take), 50)
    return {"invoke": invoke, "put": put, "send": send, "receive": receive}


def main() -> None:
    n = 100 if quick() else 500
    repeats = 1 if quick() else 3
    pg = PgServer().start()
    servers = {"embedded": Server(), "postgres": Server(SQUALL_DATABASE_URL=pg.database("bench"))}
    try:
        for server in servers.values():
            deploy(server.lambda_client(), "bench", CODE)
            server.client("s3").create_bucket(Bucket="bench")
            server.client("sqs").create_queue(QueueName="bench")
            asyncio.run(sequential(server.port, 50))  # warm
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in servers}
        for _ in range(repeats):
            for name, server in servers.items():  # alternated, same run
                runs[name].append(measure(server, n))
        for key, metric in (
            ("invoke", "pg_warm_invoke_p50_ms"),
            ("put", "pg_s3_put_p50_ms"),
            ("send", "pg_sqs_send_p50_ms"),
            ("receive", "pg_sqs_receive_p50_ms"),
        ):
            value = median([r[key] for r in runs["postgres"]])
            base = median([r[key] for r in runs["embedded"]])
            emit(
                metric, value, "ms", delta_ms=round(value - base, 4), n=n, repeats=repeats,
                baseline={"embedded_p50_ms": round(base, 4)},
            )  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()
        pg.close()


if __name__ == "__main__":
    main()
