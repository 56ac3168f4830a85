"""``squall deploy`` of a SAM template or serverless.yml: the buckets and queues it defines, created before the
functions (queues with a RedrivePolicy after the queues they name), and its layers, published before the functions
that use them (a new version only when the zip changed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from squall.cli.cfn import layer_arn
from squall.cli.client import Client, CliError
from squall.cli.project import FunctionDef, LayerDef, Project, QueueDef

__all__ = ["apply_resources", "publish_layers"]


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


def _publish(client: Client, project: Project, layer: LayerDef, cache_dir: Path) -> str:
    """The version ARN of ``layer``'s content: the newest version if its CodeSha256 matches, else a new version."""
    from botocore.exceptions import ClientError

    from squall.cli.packaging import build_package

    data, info = build_package(layer.content, None, cache_dir)
    lam = client.lambda_
    try:
        versions = lam.list_layer_versions(LayerName=layer.name).get("LayerVersions", [])
        if versions:
            newest = max(versions, key=lambda v: int(v["Version"]))
            current = lam.get_layer_version(LayerName=layer.name, VersionNumber=int(newest["Version"]))
            if current.get("Content", {}).get("CodeSha256") == info.code_sha256:
                return str(current["LayerVersionArn"])
        kwargs = {"CompatibleRuntimes": list(layer.compatible_runtimes)} if layer.compatible_runtimes else {}
        published = lam.publish_layer_version(LayerName=layer.name, Content={"ZipFile": data}, **kwargs)
        return str(published["LayerVersionArn"])
    except ClientError as e:
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = e.response.get("Error", {}).get("Code", "")
        if status == 404 and code != "ResourceNotFoundException":  # the route itself is missing
            raise CliError(
                f"{project.path}: {layer.key}: the Squall server at {client.endpoint} does not implement layers "
                "(PublishLayerVersion answered 404): upgrade the server, or remove the layer and vendor its packages "
                "through requirements.txt"
            ) from None
        with client.errors():
            raise


def publish_layers(
    client: Client, project: Project, functions: list[FunctionDef], cache_dir: Path, say: Callable[[str], None]
) -> list[FunctionDef]:
    """Publish the project's layers; ``functions`` with their ``Layers`` as version ARNs."""
    published: dict[str, str] = {}
    used = {ref for fn in functions for ref in fn.layers}
    for layer in project.layers:
        if layer_arn(layer.name) not in used:
            continue  # deploy --name of a function that does not use it
        say(f"layer {layer.name}: publishing {layer.content}")
        published[layer_arn(layer.name)] = _publish(client, project, layer, cache_dir)
    out = []
    for fn in functions:
        refs = tuple(published.get(ref, ref) if isinstance(ref, str) else ref for ref in fn.layers)
        unversioned = [ref for ref in refs if isinstance(ref, str) and ref.count(":") < 7]
        if unversioned:
            raise CliError(
                f"{project.path}: function {fn.name}: Layers {', '.join(unversioned)}: a layer ARN needs its version "
                "(arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION), or !Ref a LayerVersion of the template"
            )
        out.append(replace(fn, layers=refs))
    return out
