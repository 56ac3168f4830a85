"""JSON from outside, parsed with a bound on nesting depth: the one helper every API and trigger uses.

Python's ``json`` parser recurses once per nesting level, so ``[[[[...]]]]`` a few thousand levels deep raises
RecursionError (a 500, and a deep document that *does* parse can still break whatever walks it later).  ``loads``
refuses a document nested deeper than ``max_depth`` before parsing it, with ``JsonTooDeep`` (a ``ValueError``:
callers that already turn ``ValueError`` into their service's "malformed JSON" error keep doing so, and put the
message in it).

The depth check costs two ``bytes.count`` calls for any document with no more than ``max_depth`` brackets (so for
almost every request); only bigger documents are scanned, in linear time: escapes and then strings are cut out with
``bytes.replace``/``split``, every byte but brackets is deleted, and the running depth is the maximum of a C-level
``accumulate``.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

__all__ = ["MAX_API_DEPTH", "MAX_PAYLOAD_DEPTH", "JsonTooDeep", "json_depth_exceeds", "loads"]

#: API request bodies (Lambda control plane, SQS, IAM, the dashboard API, attributes holding JSON)
MAX_API_DEPTH = 64
#: Invoke payloads and function responses the platform parses (Lambda itself sets no documented bound; this one
#: stays well inside what Python's parsers and encoders handle without recursion errors)
MAX_PAYLOAD_DEPTH = 512

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class JsonTooDeep(ValueError):
    """A JSON document nests arrays/objects deeper than allowed."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"the JSON document nests arrays and objects more than {max_depth} levels deep")
        self.max_depth = max_depth


def json_depth_exceeds(data: bytes | bytearray | str, max_depth: int) -> bool:
    """Whether ``data`` (JSON text) nests deeper than ``max_depth``.  Invalid JSON is judged on its brackets."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    # outside strings only: drop escaped backslashes, then escaped quotes, then every other "-separated piece is
    # the inside of a string (all C-speed passes: a regex over strings backtracks badly on unterminated input)
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[0::2]).translate(None, _NOT_BRACKETS)
    if len(brackets) <= max_depth:
        return False
    return max(accumulate(map(_STEP.__getitem__, brackets))) > max_depth


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_API_DEPTH) -> Any:
    """``json.loads`` that raises ``JsonTooDeep`` for documents nested deeper than ``max_depth``."""
    if json_depth_exceeds(data, max_depth):
        raise JsonTooDeep(max_depth)
    try:
        return json.loads(data)
    except RecursionError:  # not reachable with a sane max_depth; kept so no depth can become a 500
        raise JsonTooDeep(max_depth) from None
