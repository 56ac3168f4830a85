"""Every timestamp format Squall writes, from Unix seconds (UTC), in one place.

========================  =================================  ===================================================
function                  example                            where
========================  =================================  ===================================================
``iso_ms``                ``2026-12-03T09:30:00.123Z``       S3 (LastModified, event time), async event records
``iso_s``                 ``2026-12-03T09:30:00Z``           IAM, SigV2 expiry, schedule (EventBridge) events
``iso_us``                ``2026-12-03T09:30:00.123456Z``    function URL configs
``lambda_time``           ``2026-12-03T09:30:00.123+0000``   Lambda control plane (LastModified)
``amz_date``              ``20261203T093000Z``               SigV4 (X-Amz-Date)
``http_date``             ``Thu, 03 Dec 2026 09:30:00 GMT``  HTTP headers (Last-Modified)
========================  =================================  ===================================================

Fractions are truncated, never rounded up (a time never moves to the next second).
"""

from __future__ import annotations

import math
import time
from email.utils import formatdate

__all__ = ["amz_date", "http_date", "iso_ms", "iso_s", "iso_us", "lambda_time"]


def _split(ts: float, per_second: int) -> tuple[time.struct_time, int]:
    ticks = math.floor(ts * per_second)
    whole, frac = divmod(ticks, per_second)
    return time.gmtime(whole), frac


def iso_ms(ts: float) -> str:
    """ISO 8601 with milliseconds and ``Z``."""
    t, ms = _split(ts, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms:03d}Z"


def iso_s(ts: float) -> str:
    """ISO 8601 to the second, with ``Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(ts)))


def iso_us(ts: float) -> str:
    """ISO 8601 with microseconds and ``Z``."""
    t, us = _split(ts, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{us:06d}Z"


def lambda_time(ts: float) -> str:
    """Lambda's control-plane timestamps: milliseconds and a ``+0000`` offset."""
    t, ms = _split(ts, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms:03d}+0000"


def amz_date(ts: float) -> str:
    """SigV4's ISO 8601 basic format, ``YYYYMMDD'T'HHMMSS'Z'``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(math.floor(ts)))


def http_date(ts: float) -> str:
    """An RFC 7231 HTTP date (``Last-Modified``, ``Date``)."""
    return formatdate(math.floor(ts), usegmt=True)
