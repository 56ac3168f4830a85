"""``squall invoke NAME``: call a function synchronously (prints its response) or asynchronously (prints the
request id).  A function error prints the error type and message and exits 1."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.text import Text

from squall.cli.client import CliError, add_connection_args, make_client

__all__ = ["add_parser", "read_payload", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("invoke", help="invoke a function and print its response")
    p.add_argument("name", help="function name (or NAME:QUALIFIER)")
    p.add_argument("stdin", nargs="?", choices=["-"], help="'-': read the payload from standard input")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--payload", help="the event, as JSON (default {})")
    src.add_argument("--payload-file", type=Path, help="read the event from this JSON file")
    p.add_argument(
        "--async", dest="is_async", action="store_true", help="invoke asynchronously (Event); print the request id"
    )
    p.add_argument("--qualifier", help="version or alias to invoke")
    p.add_argument("--log", action="store_true", help="also show the invocation's log (last 4 KB)")
    add_connection_args(p)
    p.set_defaults(func=run)


def read_payload(args: argparse.Namespace) -> bytes:
    """The payload bytes from --payload, --payload-file or stdin; must be JSON."""
    if args.stdin == "-" and (args.payload is not None or args.payload_file is not None):
        raise CliError("give the payload once: '-' (stdin), --payload or --payload-file")
    if args.stdin == "-":
        raw = sys.stdin.buffer.read()
        where = "standard input"
    elif args.payload_file is not None:
        try:
            raw = args.payload_file.read_bytes()
        except OSError as e:
            raise CliError(f"cannot read --payload-file {args.payload_file}: {e.strerror or e}") from None
        where = str(args.payload_file)
    elif args.payload is not None:
        raw = args.payload.encode()
        where = "--payload"
    else:
        return b"{}"
    if not raw.strip():
        return b"{}"
    try:
        json.loads(raw)
    except ValueError as e:
        raise CliError(f"the payload from {where} is not valid JSON: {e}") from None
    return raw


def _print_payload(console: Console, body: bytes) -> None:
    try:
        doc = json.loads(body)
    except ValueError:
        console.print(Text(body.decode("utf-8", errors="replace")))
        return
    if console.is_terminal:
        console.print_json(data=doc)
    else:
        print(json.dumps(doc, indent=2, ensure_ascii=False))


def _print_log(err: Console, headers: dict[str, Any]) -> None:
    encoded = headers.get("x-amz-log-result")
    if not encoded:
        return
    try:
        log = base64.b64decode(encoded).decode("utf-8", errors="replace")
    except ValueError:
        return
    err.print(Rule("log", style="dim"))
    err.print(Text(log.rstrip("\n")), highlight=False)
    err.print(Rule(style="dim"))


def _print_function_error(err: Console, name: str, kind: str, body: bytes) -> None:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        err.print(Text(f"squall: function {name} failed ({kind}): {body.decode('utf-8', errors='replace')}", "red"))
        return
    etype = doc.get("errorType") or kind
    message = doc.get("errorMessage") or ""
    err.print(
        Text.assemble(
            ("squall: function ", "red"),
            (name, "bold red"),
            (" failed: ", "red"),
            (f"{etype}", "bold red"),
            f": {message}",
        )
    )
    trace = doc.get("stackTrace")
    if isinstance(trace, list) and trace:
        err.print(Text("stack trace (in the function's code):", "dim"))
        for frame in trace:
            err.print(Text(str(frame).rstrip("\n"), "dim"), highlight=False)


def run(args: argparse.Namespace) -> int:
    out, err = Console(), Console(stderr=True)
    payload = read_payload(args)
    client = make_client(args)
    kwargs: dict[str, Any] = {
        "FunctionName": args.name,
        "Payload": payload,
        "InvocationType": "Event" if args.is_async else "RequestResponse",
    }
    if args.qualifier:
        kwargs["Qualifier"] = args.qualifier
    if args.log and not args.is_async:
        kwargs["LogType"] = "Tail"
    with client.errors():
        response = client.lambda_.invoke(**kwargs)
        body: bytes = response["Payload"].read()
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    request_id = response.get("ResponseMetadata", {}).get("RequestId") or headers.get("x-amzn-requestid", "")
    if args.is_async:
        out.print(f"accepted ({response.get('StatusCode', 202)}): request id {request_id}", highlight=False)
        return 0
    if args.log:
        _print_log(err, headers)
    function_error = response.get("FunctionError")
    if function_error:
        _print_function_error(err, args.name, function_error, body)
        return 1
    _print_payload(out, body)
    return 0
