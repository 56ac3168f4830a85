"""Validation of queue names, queue attributes and message attributes, with the messages SQS uses.

Queue attributes are kept as SQS shows them: a ``dict[str, str]`` of the settable attributes (defaults filled in).
Message attributes are normalised to ``{"DataType": str, "StringValue": str}`` or
``{"DataType": str, "BinaryValue": bytes}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from squall.core import jsonlimits
from squall.core.errors import InvalidParameterValue
from squall.sqs.errors import (
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidMessageContents,
    MissingParameter,
    UnsupportedOperation,
)

__all__ = [
    "COMPUTED_ATTRIBUTES",
    "DEFAULT_ATTRIBUTES",
    "MAX_MESSAGE_SIZE_LIMIT",
    "QUEUE_ATTRIBUTE_NAMES",
    "SETTABLE_ATTRIBUTES",
    "SYSTEM_ATTRIBUTE_NAMES",
    "check_body",
    "message_size",
    "normalize_message_attributes",
    "normalize_system_attributes",
    "redrive_policy",
    "validate_queue_attributes",
    "validate_queue_name",
]

MAX_MESSAGE_SIZE_LIMIT = 1_048_576
FIFO_UNSUPPORTED = "FIFO queues are not supported yet"

DEFAULT_ATTRIBUTES: Mapping[str, str] = {
    "VisibilityTimeout": "30",
    "MessageRetentionPeriod": "345600",
    "DelaySeconds": "0",
    "MaximumMessageSize": "262144",
    "ReceiveMessageWaitTimeSeconds": "0",
}

# name -> (min, max) for the integer attributes
_INT_RANGES: Mapping[str, tuple[int, int]] = {
    "VisibilityTimeout": (0, 43200),
    "MessageRetentionPeriod": (60, 1_209_600),
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, MAX_MESSAGE_SIZE_LIMIT),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "KmsDataKeyReusePeriodSeconds": (60, 86400),
}

#: attributes a caller may set (stored and echoed; only the first group changes behaviour)
SETTABLE_ATTRIBUTES = frozenset(
    {*_INT_RANGES, "RedrivePolicy", "Policy", "KmsMasterKeyId", "SqsManagedSseEnabled", "RedriveAllowPolicy"}
)
_FIFO_ONLY = frozenset({"FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"})

#: attributes computed on read
COMPUTED_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
)
QUEUE_ATTRIBUTE_NAMES = frozenset({*SETTABLE_ATTRIBUTES, *_FIFO_ONLY, *COMPUTED_ATTRIBUTES, "All"})

SYSTEM_ATTRIBUTE_NAMES = frozenset(
    {
        "All",
        "SenderId",
        "SentTimestamp",
        "ApproximateReceiveCount",
        "ApproximateFirstReceiveTimestamp",
        "SequenceNumber",
        "MessageDeduplicationId",
        "MessageGroupId",
        "AWSTraceHeader",
        "DeadLetterQueueSourceArn",
    }
)

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_ATTR_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_ATTR_TYPE = re.compile(r"(String|Number|Binary)(\..+)?")
# the characters SQS accepts in bodies and string values: #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF
_BAD_CHARS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def validate_queue_name(name: str) -> None:
    if name.endswith(".fifo"):
        raise UnsupportedOperation(FIFO_UNSUPPORTED)
    if not _QUEUE_NAME.fullmatch(name):
        raise InvalidParameterValue(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )


def _invalid(name: str) -> InvalidAttributeValue:
    return InvalidAttributeValue(f"Invalid value for the parameter {name}.")


def redrive_policy(text: str) -> tuple[str, int]:
    """Parse a RedrivePolicy JSON string into (deadLetterTargetArn, maxReceiveCount)."""
    try:
        doc = jsonlimits.loads(text)
    except ValueError:
        raise _invalid("RedrivePolicy")
    if not isinstance(doc, dict):
        raise _invalid("RedrivePolicy")
    arn = doc.get("deadLetterTargetArn")
    count = doc.get("maxReceiveCount")
    if not isinstance(arn, str) or not arn:
        raise InvalidParameterValue(
            f"Value {text} for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain "
            "mandatory attribute: deadLetterTargetArn."
        )
    try:
        number = int(str(count))
    except ValueError:
        raise InvalidParameterValue(
            f"Value {text} for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: "
            f"{count}, valid values are from 1 to 1000 both inclusive."
        )
    if not 1 <= number <= 1000:
        raise InvalidParameterValue(
            f"Value {text} for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: "
            f"{count}, valid values are from 1 to 1000 both inclusive."
        )
    return arn, number


def validate_queue_attributes(attributes: Mapping[str, Any]) -> dict[str, str]:
    """Check settable attributes (values as strings, like the wire); returns them normalised.  Existence of a
    redrive target is checked by the store."""
    out: dict[str, str] = {}
    for name, raw in attributes.items():
        value = str(raw)
        if name in _FIFO_ONLY:
            if name == "FifoQueue" and value.lower() == "false":
                continue
            raise UnsupportedOperation(FIFO_UNSUPPORTED)
        if name not in SETTABLE_ATTRIBUTES:
            raise InvalidAttributeName(f"Unknown Attribute {name}.")
        if name in _INT_RANGES:
            low, high = _INT_RANGES[name]
            if not re.fullmatch(r"\d{1,10}", value) or not low <= int(value) <= high:
                raise _invalid(name)
            value = str(int(value))
        elif name == "RedrivePolicy":
            if value:
                arn, count = redrive_policy(value)
                value = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": count}, separators=(",", ":"))
        elif name == "SqsManagedSseEnabled":
            if value.lower() not in ("true", "false"):
                raise _invalid(name)
            value = value.lower()
        out[name] = value
    return out


def check_body(body: Any) -> str:
    """The message body, checked for presence and characters (size is checked with the attributes)."""
    if not isinstance(body, str) or body == "":
        raise MissingParameter("The request must contain the parameter MessageBody.")
    if _BAD_CHARS.search(body):
        raise InvalidMessageContents("Invalid characters found. Deleted message body or attributes.")
    return body


def _check_string(value: str) -> None:
    if _BAD_CHARS.search(value):
        raise InvalidMessageContents("Invalid characters found. Deleted message body or attributes.")


def normalize_message_attributes(attributes: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Validate message attributes ({name: {DataType, StringValue | BinaryValue (bytes)}}); returns a copy in
    normal form."""
    if not attributes:
        return {}
    if len(attributes) > 10:
        raise InvalidParameterValue(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum [10]."
        )
    out: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        if (
            not _ATTR_NAME.fullmatch(name)
            or name.startswith((".", "AWS.", "Amazon.", "aws.", "amazon."))
            or name.endswith(".")
            or ".." in name
        ):
            raise InvalidParameterValue(f"Message (user) attribute name '{name}' is invalid.")
        if not isinstance(value, Mapping):
            raise InvalidParameterValue(f"The message attribute '{name}' must contain a non-empty value.")
        data_type = value.get("DataType")
        if not isinstance(data_type, str) or not data_type:
            raise InvalidParameterValue(f"The message attribute '{name}' must contain an attribute type.")
        match = _ATTR_TYPE.fullmatch(data_type)
        if match is None or len(data_type) > 256:
            raise InvalidParameterValue(
                f"The type of message (user) attribute '{name}' is invalid. You must use only the following "
                "supported type prefixes: Binary, Number, String."
            )
        if value.get("StringListValues") or value.get("BinaryListValues"):
            raise InvalidParameterValue(f"Message (user) attribute '{name}' uses list values, which are not supported.")
        if match.group(1) == "Binary":
            data = value.get("BinaryValue")
            if not isinstance(data, bytes | bytearray) or not data:
                raise InvalidParameterValue(
                    f"Message (user) attribute '{name}' must contain a non-empty value of type '{data_type}'."
                )
            out[name] = {"DataType": data_type, "BinaryValue": bytes(data)}
            continue
        text = value.get("StringValue")
        if not isinstance(text, str) or text == "":
            raise InvalidParameterValue(
                f"Message (user) attribute '{name}' must contain a non-empty value of type '{data_type}'."
            )
        _check_string(text)
        if match.group(1) == "Number":
            try:
                number = Decimal(text)
            except InvalidOperation:
                number = None
            if number is None or not number.is_finite():
                raise InvalidParameterValue(f"Could not cast message attribute '{name}' value to number.")
        out[name] = {"DataType": data_type, "StringValue": text}
    return out


def normalize_system_attributes(attributes: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """MessageSystemAttributes of a send: only AWSTraceHeader (a String) is allowed."""
    if not attributes:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        if name != "AWSTraceHeader":
            raise InvalidParameterValue(f"Message system attribute name '{name}' is invalid.")
        if not isinstance(value, Mapping) or value.get("DataType") != "String":
            raise InvalidParameterValue("The message system attribute 'AWSTraceHeader' must be of type String.")
        text = value.get("StringValue")
        if not isinstance(text, str) or not text:
            raise InvalidParameterValue("The message system attribute 'AWSTraceHeader' must have a value.")
        out[name] = {"DataType": "String", "StringValue": text}
    return out


def message_size(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes counted against MaximumMessageSize: the body plus each attribute's name, type and value."""
    size = len(body.encode("utf-8"))
    for name, value in attributes.items():
        size += len(name.encode("utf-8")) + len(str(value["DataType"]).encode("utf-8"))
        if "BinaryValue" in value:
            size += len(value["BinaryValue"])
        else:
            size += len(str(value["StringValue"]).encode("utf-8"))
    return size
