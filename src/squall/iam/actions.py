"""Which IAM action(s), on which resource ARN(s), each S3, SQS and Lambda request a function's key may make.
Pure: the callers parse the request; this module only names what it needs.

Every request yields one or more ``Check``\\ s; the request is allowed only if every check is.  S3 follows AWS's
"Actions, resources and condition keys for Amazon S3" (GetObject/HeadObject -> ``s3:GetObject`` on
``arn:aws:s3:::bucket/key``; ListObjects(V2)/HeadBucket -> ``s3:ListBucket`` on ``arn:aws:s3:::bucket`` with the
``s3:prefix``/``s3:delimiter``/``s3:max-keys`` condition keys; multipart parts -> ``s3:PutObject``; CopyObject and
UploadPartCopy -> ``s3:PutObject`` on the target and ``s3:GetObject`` on the source; DeleteObjects ->
``s3:DeleteObject`` on every key listed).  SQS: ``sqs:<Operation>`` with the batch operations folded into their
single forms, on ``arn:aws:sqs:<region>:<account>:<queue>`` (ListQueues on ``*``).  Lambda Invoke:
``lambda:InvokeFunction`` on the function ARN, qualified when the request names a version or alias.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from squall.core.arn import bucket_arn, function_arn, object_arn, queue_arn

__all__ = ["Check", "invoke_check", "s3_checks", "sqs_checks"]


@dataclass(frozen=True)
class Check:
    action: str
    resource: str
    #: request-specific condition keys (lower case), e.g. {"s3:prefix": "in/"}
    context: Mapping[str, str] = field(default_factory=dict)


_BUCKET_SUB_ACTIONS = {
    ("GET", "notification"): "s3:GetBucketNotification",
    ("PUT", "notification"): "s3:PutBucketNotification",
    ("GET", "versioning"): "s3:GetBucketVersioning",
    ("PUT", "versioning"): "s3:PutBucketVersioning",
    ("GET", "policy"): "s3:GetBucketPolicy",
    ("PUT", "policy"): "s3:PutBucketPolicy",
    ("DELETE", "policy"): "s3:DeleteBucketPolicy",
    ("GET", "acl"): "s3:GetBucketAcl",
    ("PUT", "acl"): "s3:PutBucketAcl",
    ("GET", "tagging"): "s3:GetBucketTagging",
    ("PUT", "tagging"): "s3:PutBucketTagging",
    ("GET", "cors"): "s3:GetBucketCORS",
    ("PUT", "cors"): "s3:PutBucketCORS",
    ("GET", "lifecycle"): "s3:GetLifecycleConfiguration",
    ("PUT", "lifecycle"): "s3:PutLifecycleConfiguration",
}
_BUCKET_SUBRESOURCES = frozenset(
    ["accelerate", "acl", "analytics", "cors", "encryption", "intelligent-tiering", "inventory", "lifecycle",
     "logging", "metrics", "metadataTable", "notification", "object-lock", "ownershipControls", "policy",
     "policyStatus", "publicAccessBlock", "replication", "requestPayment", "tagging", "versioning", "versions",
     "website"]
)  # fmt: skip
_OBJECT_SUBRESOURCES = ("acl", "attributes", "legal-hold", "restore", "retention", "select", "tagging", "torrent")


def _camel(sub: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in sub.split("-"))


def s3_checks(
    method: str,
    bucket: str,
    key: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    copy_source: tuple[str, str] | None = None,
    delete_keys: Sequence[str] = (),
) -> list[Check]:
    """The checks of one S3 request (path-style: ``bucket`` and ``key`` already percent-decoded).  ``copy_source``
    is the parsed ``x-amz-copy-source`` (bucket, key); ``delete_keys`` the keys of a DeleteObjects body."""
    method = method.upper()
    if not bucket:
        return [Check("s3:ListAllMyBuckets", "arn:aws:s3:::*")]
    if not key:
        arn = bucket_arn(bucket)
        sub = next((q for q in query if q in _BUCKET_SUBRESOURCES), None)
        if sub is not None:
            action = _BUCKET_SUB_ACTIONS.get((method, sub)) or f"s3:{method.title()}Bucket{_camel(sub)}"
            return [Check(action, arn)]
        if method == "GET":
            if "location" in query:
                return [Check("s3:GetBucketLocation", arn)]
            if "uploads" in query:
                return [Check("s3:ListBucketMultipartUploads", arn)]
            context = {f"s3:{k}": query[k] for k in ("prefix", "delimiter", "max-keys") if k in query}
            return [Check("s3:ListBucket", arn, context)]
        if method == "HEAD":
            return [Check("s3:ListBucket", arn)]
        if method == "PUT":
            return [Check("s3:CreateBucket", arn)]
        if method == "DELETE":
            return [Check("s3:DeleteBucket", arn)]
        if method == "POST" and "delete" in query:
            return [Check("s3:DeleteObject", object_arn(bucket, k)) for k in delete_keys] or [
                Check("s3:DeleteObject", object_arn(bucket, "*"))
            ]
        return [Check(f"s3:{method.title()}Bucket", arn)]
    arn = object_arn(bucket, key)
    sub = next((q for q in _OBJECT_SUBRESOURCES if q in query), None)
    if sub is not None:
        verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "POST": "Post", "HEAD": "Get"}.get(method, method)
        return [Check(f"s3:{verb}Object{_camel(sub)}", arn)]
    upload = "uploadId" in query
    source = [Check("s3:GetObject", object_arn(*copy_source))] if copy_source is not None else []
    if method == "PUT":
        return [Check("s3:PutObject", arn), *source]
    if method in ("GET", "HEAD"):
        return [Check("s3:ListMultipartUploadParts" if upload and method == "GET" else "s3:GetObject", arn)]
    if method == "DELETE":
        return [Check("s3:AbortMultipartUpload" if upload else "s3:DeleteObject", arn)]
    return [Check("s3:PutObject", arn)]  # POST: CreateMultipartUpload, CompleteMultipartUpload


_SQS_FOLDED = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def sqs_queue_arn(region: str, account: str, queue: str) -> str:
    return queue_arn(region, account, queue)


def sqs_checks(
    operation: str, params: Mapping[str, Any], path_queue: str | None, region: str, account: str
) -> list[Check]:
    """The checks of one SQS JSON request.  The queue comes from ``QueueUrl`` (else the request path, else
    ``QueueName`` / ``SourceArn``), as the SQS API resolves it."""
    action = "sqs:" + _SQS_FOLDED.get(operation, operation)
    if operation == "ListQueues":
        return [Check(action, "*")]
    queue_account, queue = account, ""
    url = params.get("QueueUrl")
    location = url if isinstance(url, str) and url else path_queue
    if location:
        path = location.split("://", 1)[1] if "://" in location else location
        parts = [p for p in path.split("/") if p]
        if "://" in location:
            parts = parts[1:]  # drop the host
        if len(parts) == 2:
            queue_account, queue = parts
        else:
            queue = "/".join(parts) or "?"
    elif isinstance(params.get("QueueName"), str):
        queue = params["QueueName"]
        owner = params.get("QueueOwnerAWSAccountId")
        if isinstance(owner, str) and owner:
            queue_account = owner
    elif isinstance(params.get("SourceArn"), str):
        return [Check(action, params["SourceArn"])]
    if not queue:
        return [Check(action, "*")]
    return [Check(action, sqs_queue_arn(region, queue_account, queue))]


def invoke_check(region: str, account: str, name: str, qualifier: str | None) -> Check:
    return Check("lambda:InvokeFunction", function_arn(region, account, name, qualifier))
