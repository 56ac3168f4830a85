"""Log plumbing inside an instance.

fd 1 and fd 2 are one pipe whose other end the node reads; the node attributes what arrives to the invocation in
flight (one at a time per instance) and frames it with START/END/REPORT.  ``logging`` gets Lambda's format:
``[LEVEL]\\t<ISO time>Z\\t<request id>\\t<message>``.
"""

from __future__ import annotations

import io
import logging
import sys
import time

__all__ = ["LambdaLogHandler", "install"]

_request_id = ""


def set_request_id(request_id: str) -> None:
    global _request_id
    _request_id = request_id


class LambdaLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
            sys.stdout.write(f"[{record.levelname}]\t{ts}\t{_request_id}\t{msg}\n")
        except Exception:
            self.handleError(record)


def install() -> None:
    """Line-buffered stdout/stderr on the log pipe, and Lambda's handler on the root logger."""
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True, write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True, write_through=True)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(LambdaLogHandler())


def flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
