"""Storage events of the object store and S3 bucket notifications, as pure functions.

* ``ObjectEvent`` is what ``ObjectStore`` hands to its ``on_event`` callback after a write is durable.
* ``validate_notification_config`` checks a ``NotificationConfiguration`` (botocore's dict shape) before it is
  stored; ``matching_configurations`` / ``matching_notifications`` say which destinations an event goes to
  (event-name wildcards and key prefix/suffix filters, as S3 applies them).
* ``s3_event_record`` builds the exact S3 event notification record (``{"Records": [record]}`` is the event a
  Lambda function or an SQS message receives).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from squall.core.arn import bucket_arn
from squall.core.timefmt import iso_ms
from squall.s3.errors import InvalidArgument

__all__ = [
    "NOTIFICATION_KINDS",
    "VALID_EVENTS",
    "EventOrigin",
    "NotificationTarget",
    "ObjectEvent",
    "event_payload",
    "matching_configurations",
    "matching_notifications",
    "s3_event_record",
    "validate_notification_config",
]

#: Every event name S3 accepts in a notification configuration (botocore's ``Event`` enum).
VALID_EVENTS: frozenset[str] = frozenset(
    [
        "s3:TestEvent",
        "s3:ReducedRedundancyLostObject",
        "s3:ObjectCreated:*",
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
        "s3:ObjectRemoved:*",
        "s3:ObjectRemoved:Delete",
        "s3:ObjectRemoved:DeleteMarkerCreated",
        "s3:ObjectRestore:*",
        "s3:ObjectRestore:Post",
        "s3:ObjectRestore:Completed",
        "s3:ObjectRestore:Delete",
        "s3:Replication:*",
        "s3:Replication:OperationFailedReplication",
        "s3:Replication:OperationNotTracked",
        "s3:Replication:OperationMissedThreshold",
        "s3:Replication:OperationReplicatedAfterThreshold",
        "s3:LifecycleTransition",
        "s3:IntelligentTiering",
        "s3:ObjectAcl:Put",
        "s3:LifecycleExpiration:*",
        "s3:LifecycleExpiration:Delete",
        "s3:LifecycleExpiration:DeleteMarkerCreated",
        "s3:ObjectTagging:*",
        "s3:ObjectTagging:Put",
        "s3:ObjectTagging:Delete",
        "s3:ObjectAnnotation:*",
        "s3:ObjectAnnotation:Put",
        "s3:ObjectAnnotation:Delete",
        "s3:ObjectRetention:Put",
    ]
)

#: Configuration list name -> (kind, the member holding the destination ARN).
NOTIFICATION_KINDS: Mapping[str, tuple[str, str]] = {
    "LambdaFunctionConfigurations": ("lambda", "LambdaFunctionArn"),
    "QueueConfigurations": ("sqs", "QueueArn"),
    "TopicConfigurations": ("sns", "TopicArn"),
}

_LAMBDA_ARN_RE = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:[a-zA-Z0-9_-]{1,64}(:(\$LATEST|[a-zA-Z0-9_-]+))?"
)
_QUEUE_ARN_RE = re.compile(r"arn:aws[a-zA-Z-]*:sqs:[a-z0-9-]+:\d{12}:[a-zA-Z0-9_-]{1,80}(\.fifo)?")
_DEFAULT_PRINCIPAL = "SQUALL"


@dataclass(frozen=True)
class EventOrigin:
    """Who caused a storage event: copied into the S3 event record."""

    request_id: str = ""
    source_ip: str = ""
    principal_id: str = ""


@dataclass(frozen=True)
class ObjectEvent:
    """One storage event.  ``event_name`` has no ``s3:`` prefix (``ObjectCreated:Put``, ``ObjectRemoved:Delete``,
    ...); ``etag`` is quoted as in the ETag header (``s3_event_record`` strips the quotes); ``time`` is Unix
    seconds; ``sequencer`` is a hex string that increases with every event of the bucket."""

    bucket: str
    key: str
    event_name: str
    size: int
    etag: str
    sequencer: str
    time: float
    version_id: str | None = None
    origin: EventOrigin = EventOrigin()


@dataclass(frozen=True)
class NotificationTarget:
    """A destination an event matched: ``kind`` is "lambda", "sqs" or "sns"."""

    configuration_id: str
    kind: str
    arn: str


# --------------------------------------------------------------------------------------------------- validation


def _filter_rules(conf: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rules = ((conf.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
    return list(rules)


def _invalid(message: str, name: str, value: str) -> InvalidArgument:
    return InvalidArgument(message, {"ArgumentName": name, "ArgumentValue": value})


def _check_rules(conf: Mapping[str, Any]) -> None:
    seen: set[str] = set()
    for rule in _filter_rules(conf):
        name = str(rule.get("Name", ""))
        value = str(rule.get("Value", ""))
        lname = name.lower()
        if lname not in ("prefix", "suffix"):
            raise _invalid(
                f"FilterRule name must be either prefix or suffix, got {name!r}.", "FilterRule", name or "(empty)"
            )
        if lname in seen:
            raise _invalid(f"Cannot specify more than one {lname} rule in a filter.", "FilterRule", name)
        seen.add(lname)
        if len(value.encode("utf-8")) > 1024:
            raise _invalid("FilterRule value cannot be longer than 1024 bytes.", "FilterRule", value[:64])


def _check_destination(
    kind: str,
    arn: str,
    function_exists: Callable[[str], bool] | None,
    queue_exists: Callable[[str], bool] | None,
) -> None:
    if kind == "sns":
        raise _invalid(
            "Squall has no SNS: use LambdaFunctionConfigurations or QueueConfigurations instead of "
            "TopicConfigurations.",
            arn,
            "Not supported",
        )
    if kind == "lambda":
        if not _LAMBDA_ARN_RE.fullmatch(arn):
            raise _invalid(
                f"Unable to validate the following destination configurations: {arn!r} is not a Lambda function "
                "ARN (arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]).",
                arn,
                "Invalid ARN",
            )
        if function_exists is not None and not function_exists(arn):
            raise _invalid(
                f"Unable to validate the following destination configurations: the function {arn!r} does not "
                "exist. Deploy it first.",
                arn,
                "Not found",
            )
        return
    if not _QUEUE_ARN_RE.fullmatch(arn):
        raise _invalid(
            f"Unable to validate the following destination configurations: {arn!r} is not an SQS queue ARN "
            "(arn:aws:sqs:<region>:<account>:<queue name>).",
            arn,
            "Invalid ARN",
        )
    if queue_exists is not None and not queue_exists(arn):
        raise _invalid(
            f"Unable to validate the following destination configurations: the queue {arn!r} does not exist.",
            arn,
            "Not found",
        )


def validate_notification_config(
    config: Mapping[str, Any],
    *,
    function_exists: Callable[[str], bool] | None = None,
    queue_exists: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Check a ``NotificationConfiguration`` and return it normalised (every configuration gets an ``Id``).

    Raises ``InvalidArgument`` for a destination that is not a Lambda function / SQS queue ARN (or does not
    exist, when the callbacks are given), for an unknown event name and for bad filter rules.
    """
    out: dict[str, Any] = {}
    ids: set[str] = set()
    for list_name, (kind, arn_field) in NOTIFICATION_KINDS.items():
        confs = config.get(list_name) or []
        normalised: list[dict[str, Any]] = []
        for conf in confs:
            arn = str(conf.get(arn_field) or "")
            _check_destination(kind, arn, function_exists, queue_exists)
            events = [str(e) for e in conf.get("Events") or []]
            if not events:
                raise _invalid(f"The configuration for {arn} has no events.", arn, "No events")
            for name in events:
                if name not in VALID_EVENTS or name == "s3:TestEvent":
                    raise _invalid(
                        f"The event is not supported for notifications: {name!r}. Use e.g. 's3:ObjectCreated:*' "
                        "or 's3:ObjectRemoved:Delete'.",
                        "Event",
                        name,
                    )
            _check_rules(conf)
            conf_id = str(conf.get("Id") or "") or str(uuid.uuid4())
            if conf_id in ids:
                raise _invalid(f"Configuration ids must be unique; {conf_id!r} appears twice.", "Id", conf_id)
            ids.add(conf_id)
            item: dict[str, Any] = {"Id": conf_id, arn_field: arn, "Events": events}
            rules = [{"Name": str(r.get("Name")), "Value": str(r.get("Value", ""))} for r in _filter_rules(conf)]
            if rules:
                item["Filter"] = {"Key": {"FilterRules": rules}}
            normalised.append(item)
        if normalised:
            out[list_name] = normalised
    if config.get("EventBridgeConfiguration") is not None:
        raise _invalid("Squall has no EventBridge: remove EventBridgeConfiguration.", "EventBridge", "Not supported")
    return out


# --------------------------------------------------------------------------------------------------- matching


def _event_matches(patterns: list[str], event_name: str) -> bool:
    full = "s3:" + event_name
    for pattern in patterns:
        if pattern == full:
            return True
        if pattern.endswith(":*") and full.startswith(pattern[:-1]):
            return True
    return False


def _key_matches(conf: Mapping[str, Any], key: str) -> bool:
    for rule in _filter_rules(conf):
        name = str(rule.get("Name", "")).lower()
        value = str(rule.get("Value", ""))
        if name == "prefix" and not key.startswith(value):
            return False
        if name == "suffix" and not key.endswith(value):
            return False
    return True


def matching_configurations(config: Mapping[str, Any], event: ObjectEvent) -> list[NotificationTarget]:
    """Every configuration of ``config`` that ``event`` triggers, in configuration order."""
    targets: list[NotificationTarget] = []
    for list_name, (kind, arn_field) in NOTIFICATION_KINDS.items():
        for conf in config.get(list_name) or []:
            if _event_matches(list(conf.get("Events") or []), event.event_name) and _key_matches(conf, event.key):
                targets.append(NotificationTarget(str(conf.get("Id") or ""), kind, str(conf.get(arn_field))))
    return targets


def matching_notifications(config: Mapping[str, Any], event: ObjectEvent) -> list[str]:
    """The destination ARNs (Lambda functions, SQS queues) that ``event`` goes to under ``config``."""
    return [t.arn for t in matching_configurations(config, event)]


# --------------------------------------------------------------------------------------------------- records


def s3_event_record(
    event: ObjectEvent,
    region: str,
    *,
    configuration_id: str = "",
    owner_id: str = _DEFAULT_PRINCIPAL,
    host_id: str = "",
) -> dict[str, Any]:
    """The S3 notification record for ``event``, exactly as S3 sends it (event version 2.1).

    The object key is URL-encoded like S3 does it (``quote_plus``: a space becomes '+', '/' stays); removal
    events carry no size or eTag.
    """
    origin = event.origin
    obj: dict[str, Any] = {"key": quote_plus(event.key, safe="/")}
    if event.event_name.startswith("ObjectCreated:"):
        obj["size"] = event.size
        obj["eTag"] = event.etag.strip('"')
    if event.version_id is not None:
        obj["versionId"] = event.version_id
    obj["sequencer"] = event.sequencer
    request_id = origin.request_id or uuid.uuid4().hex.upper()[:16]
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": iso_ms(event.time),
        "eventName": event.event_name,
        "userIdentity": {"principalId": origin.principal_id or owner_id},
        "requestParameters": {"sourceIPAddress": origin.source_ip or "127.0.0.1"},
        "responseElements": {"x-amz-request-id": request_id, "x-amz-id-2": host_id or request_id},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": event.bucket,
                "ownerIdentity": {"principalId": owner_id},
                "arn": bucket_arn(event.bucket),
            },
            "object": obj,
        },
    }


def event_payload(event: ObjectEvent, region: str, **kwargs: Any) -> dict[str, Any]:
    """The whole notification event: ``{"Records": [s3_event_record(event, region, **kwargs)]}``."""
    return {"Records": [s3_event_record(event, region, **kwargs)]}
