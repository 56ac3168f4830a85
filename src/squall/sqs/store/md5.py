"""The checksums SQS returns with every message, computed exactly as AWS does (SDKs verify them).

* ``MD5OfMessageBody`` / ``MD5OfBody``: hex MD5 of the UTF-8 body.
* ``MD5OfMessageAttributes`` (and ``MD5OfMessageSystemAttributes``): hex MD5 over the attributes sorted by name,
  each encoded as ``len(name) name len(type) type transport value`` where lengths are 4-byte big-endian, the
  transport byte is 1 for String/Number values and 2 for Binary values, and ``value`` is ``len(bytes) bytes``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["md5_of_attributes", "md5_of_body"]

_STRING = 1
_BINARY = 2


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest()


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def md5_of_attributes(attributes: Mapping[str, Mapping[str, Any]] | None) -> str | None:
    """MD5 of message (or message system) attributes in their normalised form
    (``{"DataType": .., "StringValue": str}`` or ``{"DataType": .., "BinaryValue": bytes}``); None when empty."""
    if not attributes:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        data_type = str(value["DataType"])
        digest.update(_field(name.encode("utf-8")))
        digest.update(_field(data_type.encode("utf-8")))
        if "BinaryValue" in value and value["BinaryValue"] is not None:
            digest.update(bytes([_BINARY]))
            digest.update(_field(bytes(value["BinaryValue"])))
        else:
            digest.update(bytes([_STRING]))
            digest.update(_field(str(value.get("StringValue", "")).encode("utf-8")))
    return digest.hexdigest()
