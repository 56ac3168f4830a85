"""``squall deploy``: make a function's declared triggers (squall.yaml ``events:``) real on the server.

http -> the function's HTTP routes; schedule -> its schedules; s3 -> a bucket notification (entries whose Id starts
with ``squall-<function>-`` belong to the function and are replaced on every deploy); sqs -> an event source mapping
(created once per queue).  A declarative deploy (squall.yaml) also clears routes and schedules no longer declared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from squall.cli.client import Client
from squall.cli.project import FunctionDef

__all__ = ["apply_triggers"]


def apply_triggers(
    client: Client, fn: FunctionDef, arn: str, declarative: bool, say: Callable[[str], None]
) -> list[str]:
    """Apply ``fn.events``; returns one note per kind of trigger made active."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in fn.events:
        by_type.setdefault(e.type, []).append(e.config)
    notes: list[str] = []
    routes = [f"{c['method']} {c['path']}" for c in by_type.get("http", [])]
    entries: list[Any] = [
        {"routeKey": key, "payloadFormatVersion": c["payload_format"]} if c.get("payload_format") else key
        for key, c in zip(routes, by_type.get("http", []), strict=True)
    ]
    if routes or declarative:
        say(f"{fn.name}: HTTP routes")
        client.api_put(f"routes/{fn.name}", {"routes": entries})
        if routes:
            notes.append("routes: " + ", ".join(routes))
    schedules = [
        {"name": f"s{i}", "expression": c["expression"], "enabled": c.get("enabled", True), "input": c.get("input")}
        for i, c in enumerate(by_type.get("schedule", []))
    ]
    if schedules or declarative:
        say(f"{fn.name}: schedules")
        client.api_put(f"schedules/{fn.name}", {"schedules": schedules})
        if schedules:
            notes.append("schedules: " + ", ".join(s["expression"] for s in schedules))
    for bucket in sorted({c["bucket"] for c in by_type.get("s3", [])}):
        say(f"{fn.name}: notifications of bucket {bucket}")
        _apply_s3(client, fn.name, arn, bucket, [c for c in by_type["s3"] if c["bucket"] == bucket])
        notes.append(f"s3://{bucket}")
    for c in by_type.get("sqs", []):
        say(f"{fn.name}: queue {c['queue']}")
        _apply_sqs(client, fn.name, c["queue"], int(c["batch_size"]))
        notes.append(f"sqs:{c['queue']}")
    return notes


def _apply_s3(client: Client, name: str, arn: str, bucket: str, configs: list[dict[str, Any]]) -> None:
    s3 = client.boto("s3")
    with client.errors():
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
        current = s3.get_bucket_notification_configuration(Bucket=bucket)
    current.pop("ResponseMetadata", None)
    mine = f"squall-{name}-"
    lambdas = [c for c in current.get("LambdaFunctionConfigurations", []) if not str(c.get("Id", "")).startswith(mine)]
    for i, c in enumerate(configs):
        rules = [{"Name": k, "Value": c[k]} for k in ("prefix", "suffix") if c.get(k)]
        entry: dict[str, Any] = {"Id": f"{mine}{i}", "LambdaFunctionArn": arn, "Events": c["events"]}
        if rules:
            entry["Filter"] = {"Key": {"FilterRules": rules}}
        lambdas.append(entry)
    current["LambdaFunctionConfigurations"] = lambdas
    with client.errors():
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=current)


def _apply_sqs(client: Client, name: str, queue: str, batch_size: int) -> None:
    sqs = client.boto("sqs")
    lam = client.lambda_
    with client.errors():
        url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        found = lam.list_event_source_mappings(FunctionName=name, EventSourceArn=queue_arn).get("EventSourceMappings")
        if found:
            lam.update_event_source_mapping(UUID=found[0]["UUID"], BatchSize=batch_size, Enabled=True)
        else:
            extra = {"MaximumBatchingWindowInSeconds": 1} if batch_size > 10 else {}
            lam.create_event_source_mapping(FunctionName=name, EventSourceArn=queue_arn, BatchSize=batch_size, **extra)
