"""Lambda's error documents: ``{"errorMessage", "errorType", "requestId", "stackTrace"}``."""

from __future__ import annotations

import json
import traceback
from types import TracebackType
from typing import Any

__all__ = ["InitError", "error_document", "exception_document", "format_for_log"]


class InitError(Exception):
    """The function could not be initialised (import failed, handler missing, ...)."""

    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack or []

    def document(self) -> dict[str, Any]:
        return error_document(self.error_type, self.message, "", self.stack)


def error_document(
    error_type: str, message: str, request_id: str = "", stack: list[str] | None = None
) -> dict[str, Any]:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": stack or [],
    }


def _user_frames(tb: TracebackType | None) -> list[str]:
    frames = [f for f in traceback.extract_tb(tb) if "/squall/sandbox/runtime/" not in f.filename.replace("\\", "/")]
    return traceback.format_list(frames)


def exception_document(exc: BaseException, request_id: str) -> dict[str, Any]:
    return error_document(type(exc).__name__, str(exc), request_id, _user_frames(exc.__traceback__))


def format_for_log(doc: dict[str, Any]) -> str:
    """What Lambda prints to the function's log when a handler fails: ``[ERROR] Type: message`` + the trace."""
    lines = [f"[ERROR] {doc['errorType']}: {doc['errorMessage']}"]
    if doc.get("stackTrace"):
        lines.append("Traceback (most recent call last):")
        lines.extend(s.rstrip("\n") for s in doc["stackTrace"])
    return "\n".join(lines) + "\n"


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()
