"""``squall deploy`` of a SAM template or serverless.yml: the buckets and queues it defines, created before the
functions (queues with a RedrivePolicy after the queues they name), and layers refused in one clear error until
``squall deploy`` publishes them."""

from __future__ import annotations

from squall.cli.client import Client, CliError
from squall.project import FunctionDef, Project, QueueDef

__all__ = ["apply_resources", "refuse_layers"]


def refuse_layers(project: Project, functions: list[FunctionDef]) -> None:
    """Layers are recorded in the project but not deployed yet: say so, listing every place, rather than drop them."""
    places = [f"{layer.key} (AWS::Serverless::LayerVersion {layer.name})" for layer in project.layers]
    places += [f"function {fn.name}: Layers {', '.join(fn.layers)}" for fn in functions if fn.layers]
    if places:
        raise CliError(
            f"{project.path}: layers are not yet supported by squall deploy: {'; '.join(places)}. Remove them (vendor "
            "the layer's packages through requirements.txt instead)"
        )


def _order(queues: tuple[QueueDef, ...]) -> list[QueueDef]:
    """Dead-letter targets first: a RedrivePolicy must name an existing queue."""
    return sorted(queues, key=lambda q: "RedrivePolicy" in q.attributes)


def apply_resources(client: Client, project: Project) -> None:
    """Create the project's buckets and queues (existing ones are kept; queue attributes are brought up to date)."""
    s3 = client.boto("s3")
    sqs = client.boto("sqs")
    with client.errors():
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in project.buckets:
            if bucket.name not in existing:
                s3.create_bucket(Bucket=bucket.name)
        for queue in _order(project.queues):
            fixed = {k: v for k, v in queue.attributes.items() if k in ("FifoQueue",)}
            url = sqs.create_queue(QueueName=queue.name, Attributes=fixed)["QueueUrl"]
            settable = {k: v for k, v in queue.attributes.items() if k not in ("FifoQueue",)}
            if settable:
                sqs.set_queue_attributes(QueueUrl=url, Attributes=settable)
