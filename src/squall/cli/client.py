"""How the CLI reaches a Squall server: endpoint, credentials, a boto3 Lambda client and a signed-HTTP helper.

* Endpoint: ``--endpoint``, else ``SQUALL_ENDPOINT``, else ``AWS_ENDPOINT_URL``, else
  ``http://127.0.0.1:$SQUALL_PORT`` (port 9070 by default).
* Credentials, explicit environment first as in AWS's own precedence: ``SQUALL_ACCESS_KEY_ID``/
  ``SQUALL_SECRET_ACCESS_KEY``, else ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, else the admin key in
  ``<data dir>/credentials.json`` (data dir: ``--data-dir``, ``SQUALL_DATA_DIR``, ``~/.squall``).

Every failure becomes a ``SquallError`` with one line that says what to do (``squall: error: ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from squall.core.errors import SquallError

__all__ = [
    "DEFAULT_PORT",
    "REGION",
    "CliError",
    "Client",
    "add_connection_args",
    "aws_errors",
    "data_dir_from",
    "endpoint_from",
    "load_credentials",
    "make_client",
    "parse_duration",
    "parse_when",
    "show_time",
]

DEFAULT_PORT = 9070
REGION = "us-east-1"
SERVICE = "lambda"
ROLE_ARN = "arn:aws:iam::000000000000:role/squall"
_AUTH_CODES = frozenset({"UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch"})


class CliError(SquallError):
    """A problem the user can fix; printed as one line."""

    code = "CliError"
    status = 400
    fault = "user"


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """``--endpoint`` and ``--data-dir``, shared by every command that talks to a server."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--endpoint",
        help=f"Squall URL (env SQUALL_ENDPOINT or AWS_ENDPOINT_URL; default http://127.0.0.1:{DEFAULT_PORT})",
    )
    group.add_argument("--data-dir", type=Path, help="where credentials.json lives (env SQUALL_DATA_DIR; ~/.squall)")


def endpoint_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    url = getattr(args, "endpoint", None) or env.get("SQUALL_ENDPOINT") or env.get("AWS_ENDPOINT_URL")
    if not url:
        port = env.get("SQUALL_PORT") or str(DEFAULT_PORT)
        url = f"http://127.0.0.1:{port}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"invalid endpoint {url!r}: use a URL such as http://127.0.0.1:{DEFAULT_PORT}")
    return url.rstrip("/")


def data_dir_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    given = getattr(args, "data_dir", None)
    if given:
        return Path(given).expanduser()
    if env.get("SQUALL_DATA_DIR"):
        return Path(env["SQUALL_DATA_DIR"]).expanduser()
    return Path.home() / ".squall"


def _admin_from_file(path: Path) -> tuple[str, str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise CliError(f"cannot read {path}: permission denied (run as the user that runs `squall up`)")
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read {path}: {e}")
    admin = data.get("admin") if isinstance(data, dict) else None
    if isinstance(admin, dict):
        key_id, secret = admin.get("access_key_id"), admin.get("secret_access_key")
        if isinstance(key_id, str) and isinstance(secret, str) and key_id and secret:
            return key_id, secret
    return None


def load_credentials(data_dir: Path, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(access key id, secret): see the module docstring for the order."""
    env = os.environ if env is None else env
    key_id, secret = env.get("SQUALL_ACCESS_KEY_ID", "").strip(), env.get("SQUALL_SECRET_ACCESS_KEY", "").strip()
    if key_id and secret:
        return key_id, secret
    if key_id or secret:
        raise CliError("set both SQUALL_ACCESS_KEY_ID and SQUALL_SECRET_ACCESS_KEY, or neither")
    key_id, secret = env.get("AWS_ACCESS_KEY_ID", "").strip(), env.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if key_id and secret:
        return key_id, secret
    if key_id or secret:
        raise CliError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
    found = _admin_from_file(data_dir / "credentials.json")
    if found:
        return found
    raise CliError(
        f"no credentials: found no {data_dir / 'credentials.json'} (pass --data-dir or set SQUALL_DATA_DIR to the "
        "server's data dir) and neither SQUALL_ACCESS_KEY_ID/SQUALL_SECRET_ACCESS_KEY nor AWS_ACCESS_KEY_ID/"
        "AWS_SECRET_ACCESS_KEY is set"
    )


def _first_paragraph(message: str) -> str:
    """A server message on one line: its first paragraph (SigV4 errors append the canonical request)."""
    head = message.strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in head.splitlines() if line.strip())


def _with_hint(code: str, message: str) -> str:
    if code in _AUTH_CODES:
        return (
            f"{message} (check the credentials: SQUALL_ACCESS_KEY_ID/SQUALL_SECRET_ACCESS_KEY, "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or --data-dir)"
        )
    return message


def _no_server(endpoint: str) -> CliError:
    return CliError(f"cannot reach Squall at {endpoint}: is `squall up` running?")


@contextlib.contextmanager
def aws_errors(endpoint: str) -> Iterator[None]:
    """Turn botocore's exceptions into one-line ``CliError``s."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        ReadTimeoutError,
        WaiterError,
    )

    try:
        yield
    except EndpointConnectionError:
        raise _no_server(endpoint) from None
    except ConnectionClosedError:
        raise CliError(f"the Squall server at {endpoint} closed the connection; is it still running?") from None
    except ReadTimeoutError:
        raise CliError(f"the Squall server at {endpoint} did not answer in time") from None
    except WaiterError as e:
        reason = (e.last_response or {}).get("Error", {}).get("Message") or str(e)
        raise CliError(f"gave up waiting: {reason}") from None
    except ClientError as e:
        err = e.response.get("Error", {})
        code = err.get("Code") or "Error"
        message = _with_hint(code, _first_paragraph(err.get("Message") or str(e)))
        raise CliError(f"{code}: {message}") from None
    except BotoCoreError as e:
        raise CliError(str(e)) from None


@dataclass
class Client:
    """A connection to one Squall server."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    data_dir: Path

    @cached_property
    def lambda_(self) -> Any:
        """A boto3 Lambda client pointed at the server (region us-east-1, no retries on refusal)."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise CliError("the squall CLI needs boto3: pip install boto3") from None
        return boto3.client(
            "lambda",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(
                retries={"total_max_attempts": 1},
                connect_timeout=5,
                read_timeout=960,
                parameter_validation=True,
            ),
        )

    def boto(self, service: str) -> Any:
        """A boto3 client for ``service`` ("s3" path-style, "sqs", ...) pointed at the server."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
        )

    def api_put(self, path: str, body: Mapping[str, Any], timeout_s: float = 30.0) -> Any:
        """PUT JSON to ``/_squall/api/<path>``, signed like ``api_get``; the decoded JSON answer."""
        import json

        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = f"{self.endpoint}/_squall/api/{path.lstrip('/')}"
        data = json.dumps(body).encode()
        request = AWSRequest(method="PUT", url=url, data=data, headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(self.access_key_id, self.secret_access_key), SERVICE, REGION).add_auth(request)
        try:
            response = httpx.put(url, content=data, headers=dict(request.headers.items()), timeout=timeout_s)
        except httpx.ConnectError:
            raise _no_server(self.endpoint) from None
        if response.status_code >= 400:
            code = response.headers.get("x-amzn-ErrorType", f"HTTP {response.status_code}")
            raise CliError(f"{code}: {response.text.strip()[:300]}")
        return response.json() if response.content else None

    def errors(self) -> contextlib.AbstractContextManager[None]:
        """``with client.errors(): client.lambda_.get_function(...)``: botocore errors as one line."""
        return aws_errors(self.endpoint)

    def api_get(self, path: str, params: Mapping[str, Any] | None = None, timeout_s: float = 30.0) -> Any:
        """GET ``/_squall/api/<path>`` signed with SigV4 (service "lambda"); the decoded JSON body."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        clean = {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""}
        query = urlencode(sorted(clean.items()), quote_via=quote, safe="-_.~")
        url = f"{self.endpoint}/_squall/api/{path.lstrip('/')}" + (f"?{query}" if query else "")
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(Credentials(self.access_key_id, self.secret_access_key), SERVICE, REGION).add_auth(request)
        try:
            response = httpx.get(url, headers=dict(request.headers.items()), timeout=timeout_s)
        except httpx.ConnectError:
            raise _no_server(self.endpoint) from None
        except httpx.TimeoutException:
            raise CliError(f"the Squall server at {self.endpoint} did not answer in time") from None
        except httpx.HTTPError as e:
            raise CliError(f"talking to {self.endpoint}: {e}") from None
        if response.status_code >= 400:
            code = response.headers.get("x-amzn-ErrorType", f"HTTP {response.status_code}")
            try:
                body = response.json()
                message = body.get("Message") or body.get("message") or response.text
            except ValueError:
                message = response.text.strip() or response.reason_phrase
            message = _with_hint(code, _first_paragraph(str(message)))
            if response.status_code == 404 and code.startswith("HTTP"):
                message = f"{url} not found (is the server at {self.endpoint} a Squall server of this version?)"
            raise CliError(f"{code}: {message}")
        try:
            return response.json()
        except ValueError:
            raise CliError(f"the server at {self.endpoint} sent a response that is not JSON") from None


def make_client(args: argparse.Namespace) -> Client:
    """The client for the connection options in ``args`` (see ``add_connection_args``)."""
    endpoint = endpoint_from(args)
    data_dir = data_dir_from(args)
    key_id, secret = load_credentials(data_dir)
    return Client(endpoint, key_id, secret, data_dir)


# ------------------------------------------------------------------------------------------- time helpers

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_duration(text: str, option: str = "duration") -> float:
    """Seconds in ``text``: "90" (seconds), "30s", "10m", "24h", "7d", "2w", or combinations like "1h30m"."""
    raw = text.strip().lower()
    if not raw:
        raise CliError(f"invalid {option} '': use e.g. 30s, 10m, 24h or 7d")
    try:
        value = float(raw)
    except ValueError:
        pos, total = 0, 0.0
        for m in _DURATION_PART.finditer(raw):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNIT_S[m.group(2)]
            pos = m.end()
        if pos != len(raw):
            raise CliError(f"invalid {option} {text!r}: use e.g. 30s, 10m, 24h or 7d") from None
        return total
    if value < 0 or value != value or value == float("inf"):
        raise CliError(f"invalid {option} {text!r}: use e.g. 30s, 10m, 24h or 7d")
    return value


def parse_when(text: str, option: str, now: float | None = None) -> float:
    """Epoch seconds for a ``--since``/``--until`` value: "now", a duration ago ("10m", "24h") or an ISO time."""
    now = time.time() if now is None else now
    raw = text.strip()
    if raw.lower() == "now":
        return now
    try:
        return now - parse_duration(raw, option)
    except CliError:
        pass
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"invalid {option} {text!r}: use a duration ago (30s, 10m, 24h, 7d), 'now', or an ISO time "
            "such as 2024-05-01T12:00"
        ) from None
    return dt.timestamp()  # naive times are local time, as the user reads them


def show_time(ts: float, with_date: bool = True) -> str:
    """Local time for tables: "2024-05-01 12:00:00.123" (or only the time of day)."""
    dt = datetime.fromtimestamp(ts)
    text = dt.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
    return f"{text}.{dt.microsecond // 1000:03d}"
