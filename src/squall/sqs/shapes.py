"""Request parsing and response shapes of SQS's JSON protocol (botocore's ``sqs`` model, 2012-11-05).

Everything here is pure: JSON documents in, ``squall.store`` value types out, and back.  Binary message
attribute values travel base64-encoded in JSON and are ``bytes`` inside Squall.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from squall.aws.errors import error_code
from squall.core import jsonlimits
from squall.core.errors import InvalidParameterValue, SquallError
from squall.sqs.errors import (
    BatchEntryIdsNotDistinct,
    EmptyBatchRequest,
    InvalidAttributeName,
    InvalidBatchEntryId,
    MissingParameter,
    QueueDoesNotExist,
    SqsError,
    TooManyEntriesInBatchRequest,
)
from squall.sqs.store.attrs import SYSTEM_ATTRIBUTE_NAMES
from squall.sqs.store.md5 import md5_of_attributes
from squall.sqs.store.records import QueueMessage, SendEntry, SentMessage

__all__ = [
    "InvalidAddress",
    "batch_entries",
    "batch_failure",
    "decode_token",
    "encode_token",
    "message_json",
    "optional_int",
    "queue_name_from_url",
    "queue_url",
    "required_str",
    "send_entry",
    "sent_json",
    "string_list",
    "string_map",
    "system_attribute_names",
]

_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")


class InvalidAddress(SqsError):
    code = "InvalidAddress"


def queue_url(public_url: str, account_id: str, name: str) -> str:
    return f"{public_url.rstrip('/')}/{account_id}/{name}"


def queue_name_from_url(url: str, account_id: str) -> str:
    """The queue name in a queue URL (any host: clients may reach the server under several names)."""
    path = urlsplit(url).path if "://" in url else url
    parts = [p for p in path.split("/") if p]
    if len(parts) != 2:
        raise InvalidAddress(f"The address {url} is not valid for this endpoint.")
    if parts[0] != account_id:
        raise QueueDoesNotExist()
    return parts[1]


def required_str(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or value == "":
        raise MissingParameter(f"The request must contain the parameter {key}.")
    return value


def optional_int(params: Mapping[str, Any], key: str, low: int, high: int, reason: str) -> int | None:
    """An optional integer parameter in [low, high]; ``reason`` completes AWS's message."""
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameterValue(f"Value {value} for parameter {key} is invalid. Reason: {reason}")
    return value


def string_list(params: Mapping[str, Any], key: str) -> list[str]:
    value = params.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameterValue(f"The parameter {key} must be a list of strings.")
    return value


def string_map(params: Mapping[str, Any], key: str) -> dict[str, str]:
    value = params.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidParameterValue(f"The parameter {key} must be a map of strings.")
    return value


def encode_token(name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": name}).encode()).decode()


def decode_token(token: str | None) -> str:
    if not token:
        return ""
    try:
        doc = jsonlimits.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (binascii.Error, UnicodeError, ValueError):
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("after"), str):
        raise InvalidParameterValue("Invalid NextToken value.")
    return str(doc["after"])


def _decode_attribute_map(raw: Any, what: str) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidParameterValue(f"{what} must be a map.")
    out: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise InvalidParameterValue(f"The message attribute '{name}' must contain a non-empty value.")
        item = dict(value)
        if isinstance(item.get("BinaryValue"), str):
            try:
                item["BinaryValue"] = base64.b64decode(item["BinaryValue"], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidParameterValue(f"The message attribute '{name}' has an invalid binary value.")
        out[name] = item
    return out


def send_entry(params: Mapping[str, Any], sender_id: str | None) -> SendEntry:
    """A SendMessage request (or SendMessageBatch entry) as a ``SendEntry``."""
    if params.get("MessageDeduplicationId") is not None:
        raise InvalidParameterValue("The request include parameter that is not valid for this queue type")
    body = params.get("MessageBody")
    if not isinstance(body, str) or body == "":
        raise MissingParameter("The request must contain the parameter MessageBody.")
    delay = optional_int(params, "DelaySeconds", 0, 900, "must be between 0 and 900, if provided.")
    group = params.get("MessageGroupId")
    return SendEntry(
        body=body,
        delay_seconds=delay,
        message_attributes=_decode_attribute_map(params.get("MessageAttributes"), "MessageAttributes"),
        system_attributes=_decode_attribute_map(params.get("MessageSystemAttributes"), "MessageSystemAttributes"),
        sender_id=sender_id,
        message_group_id=group if isinstance(group, str) and group else None,
    )


def sent_json(sent: SentMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"MessageId": sent.message_id, "MD5OfMessageBody": sent.md5_of_body}
    if sent.md5_of_message_attributes:
        out["MD5OfMessageAttributes"] = sent.md5_of_message_attributes
    if sent.md5_of_system_attributes:
        out["MD5OfMessageSystemAttributes"] = sent.md5_of_system_attributes
    return out


def _wants(names: list[str], name: str) -> bool:
    for pattern in names:
        if pattern in ("All", ".*") or pattern == name:
            return True
        if pattern.endswith(".*") and name.startswith(pattern[:-1]):
            return True
    return False


def system_attribute_names(params: Mapping[str, Any]) -> list[str]:
    """The union of AttributeNames (deprecated) and MessageSystemAttributeNames, validated."""
    names = string_list(params, "AttributeNames") + string_list(params, "MessageSystemAttributeNames")
    for name in names:
        if name not in SYSTEM_ATTRIBUTE_NAMES:
            raise InvalidAttributeName(f"Unknown Attribute {name}.")
    return names


def message_json(message: QueueMessage, system_names: list[str], attribute_names: list[str]) -> dict[str, Any]:
    """One Message of a ReceiveMessage result, with the requested system and message attributes only; the
    MD5OfMessageAttributes covers the attributes returned."""
    out: dict[str, Any] = {
        "MessageId": message.message_id,
        "ReceiptHandle": message.receipt_handle,
        "MD5OfBody": message.md5_of_body,
        "Body": message.body,
    }
    attrs = {k: v for k, v in message.attributes.items() if "All" in system_names or k in system_names}
    if attrs:
        out["Attributes"] = attrs
    chosen = {k: v for k, v in message.message_attributes.items() if _wants(attribute_names, k)}
    if chosen:
        wire: dict[str, Any] = {}
        for name, value in chosen.items():
            if "BinaryValue" in value:
                wire[name] = {
                    "DataType": value["DataType"],
                    "BinaryValue": base64.b64encode(value["BinaryValue"]).decode(),
                }
            else:
                wire[name] = {"DataType": value["DataType"], "StringValue": value["StringValue"]}
        out["MessageAttributes"] = wire
        out["MD5OfMessageAttributes"] = md5_of_attributes(chosen)
    return out


def batch_entries(params: Mapping[str, Any], required: tuple[str, ...]) -> list[dict[str, Any]]:
    """The Entries of a batch request, checked as SQS does: 1..10 entries, valid and distinct ids."""
    entries = params.get("Entries")
    if not isinstance(entries, list) or not entries:
        raise EmptyBatchRequest()
    if len(entries) > 10:
        raise TooManyEntriesInBatchRequest(
            f"Maximum number of entries per request are 10. You have sent {len(entries)}."
        )
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidParameterValue("Each batch entry must be a structure.")
        entry_id = entry.get("Id")
        if not isinstance(entry_id, str) or not _BATCH_ID.fullmatch(entry_id):
            raise InvalidBatchEntryId()
        if entry_id in seen:
            raise BatchEntryIdsNotDistinct(f"Id {entry_id} repeated.")
        seen.add(entry_id)
        for key in required:
            if entry.get(key) is None:
                raise MissingParameter(f"The request must contain the parameter Entries.member.{key}.")
    return entries


def batch_failure(entry_id: str, error: SquallError) -> dict[str, Any]:
    """A BatchResultErrorEntry for one refused entry."""
    return {
        "Id": entry_id,
        "SenderFault": error.status < 500,
        "Code": error_code(error, "sqs"),
        "Message": error.message,
    }
