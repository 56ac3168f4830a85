"""Value types of the queue store, and the Lambda SQS event record built from a received message."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from squall.sqs.store.md5 import md5_of_attributes

__all__ = ["QueueInfo", "QueueMessage", "SendEntry", "SentMessage", "lambda_record"]


@dataclass(frozen=True)
class QueueInfo:
    name: str
    arn: str
    #: the settable attributes, defaults filled in (VisibilityTimeout, RedrivePolicy, ...), as strings
    attributes: dict[str, str]
    created_at: float
    modified_at: float
    tags: dict[str, str] = field(default_factory=dict)

    def int_attribute(self, name: str) -> int:
        return int(self.attributes[name])


@dataclass(frozen=True)
class SendEntry:
    """One message to send.  ``message_attributes`` use the normal form of ``squall.sqs.store.attrs`` (BinaryValue as
    bytes); ``delay_seconds`` None means the queue's DelaySeconds."""

    body: str
    delay_seconds: int | None = None
    message_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    system_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    sender_id: str | None = None
    message_group_id: str | None = None


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    md5_of_body: str
    md5_of_message_attributes: str | None
    md5_of_system_attributes: str | None


@dataclass(frozen=True)
class QueueMessage:
    """A received message.  ``attributes`` are all its system attributes as SQS returns them (strings:
    SenderId, SentTimestamp, ApproximateReceiveCount, ApproximateFirstReceiveTimestamp, and AWSTraceHeader,
    MessageGroupId, DeadLetterQueueSourceArn when present)."""

    queue_name: str
    message_id: str
    receipt_handle: str
    body: str
    md5_of_body: str
    attributes: dict[str, str]
    message_attributes: dict[str, dict[str, Any]]
    sent_at: float
    receive_count: int


def lambda_record(message: QueueMessage, queue_arn: str, region: str) -> dict[str, Any]:
    """The record of one message in the event an SQS event source mapping sends to a function."""
    attrs = {
        k: v
        for k, v in message.attributes.items()
        if k
        in (
            "ApproximateReceiveCount",
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
            "AWSTraceHeader",
            "MessageGroupId",
            "DeadLetterQueueSourceArn",
        )
    }
    message_attributes: dict[str, Any] = {}
    for name, value in message.message_attributes.items():
        item: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
        if "BinaryValue" in value:
            item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        else:
            item["stringValue"] = value["StringValue"]
        message_attributes[name] = item
    return {
        "messageId": message.message_id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": attrs,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body,
        # SQS's MD5 over the message attributes (what ReceiveMessage returns as MD5OfMessageAttributes); null
        # when the message has none, as in Lambda's records
        "md5OfMessageAttributes": md5_of_attributes(message.message_attributes),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
