"""ARNs built and split in one place: ``arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE``.

The splitters return None for text that is not the ARN they read (callers that must refuse it raise their own
service's error); they never raise.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Arn",
    "bucket_arn",
    "function_arn",
    "function_of_arn",
    "object_arn",
    "parse_arn",
    "queue_arn",
    "queue_of_arn",
    "resource_name",
]


@dataclass(frozen=True)
class Arn:
    """The six fields of an ARN; ``resource`` may itself contain ``:`` (``function:NAME:QUALIFIER``)."""

    partition: str
    service: str
    region: str
    account: str
    resource: str

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"


def parse_arn(text: str) -> Arn | None:
    """The fields of ``text``, or None when it is not ``arn:`` followed by five ``:``-separated fields."""
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    return Arn(parts[1], parts[2], parts[3], parts[4], parts[5])


def function_arn(region: str, account: str, name: str, qualifier: str | None = None) -> str:
    """``arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]``."""
    arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def queue_arn(region: str, account: str, name: str) -> str:
    """``arn:aws:sqs:REGION:ACCOUNT:NAME``."""
    return f"arn:aws:sqs:{region}:{account}:{name}"


def bucket_arn(bucket: str) -> str:
    """``arn:aws:s3:::BUCKET`` (S3 ARNs name neither region nor account)."""
    return f"arn:aws:s3:::{bucket}"


def object_arn(bucket: str, key: str) -> str:
    """``arn:aws:s3:::BUCKET/KEY``."""
    return f"arn:aws:s3:::{bucket}/{key}"


def function_of_arn(text: str) -> tuple[str, str | None] | None:
    """(name, qualifier or None) of a full Lambda function ARN, or None when ``text`` is not one."""
    arn = parse_arn(text)
    if arn is None or arn.service != "lambda":
        return None
    resource = arn.resource.split(":")
    if len(resource) not in (2, 3) or resource[0] != "function":
        return None
    return resource[1], (resource[2] or None) if len(resource) == 3 else None


def queue_of_arn(text: str) -> tuple[str, str, str] | None:
    """(region, account, name) of an SQS queue ARN, or None when ``text`` is not one."""
    arn = parse_arn(text)
    if arn is None or arn.service != "sqs" or not arn.resource or ":" in arn.resource:
        return None
    return arn.region, arn.account, arn.resource


def resource_name(text: str) -> str:
    """The last ``:``-separated field: a queue's name, a function's name or qualifier (for labels, not checks)."""
    return text.rsplit(":", 1)[-1]
