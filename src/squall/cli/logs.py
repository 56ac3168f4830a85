"""``squall logs NAME``: a function's log lines (START/END/REPORT and what the function printed), optionally
filtered by time window, request id or text, and followed live with ``--follow`` (polls every ~0.5 s until Ctrl-C)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.text import Text

from squall.cli.client import Client, CliError, add_connection_args, make_client, parse_when, show_time

__all__ = ["add_parser", "print_lines", "run"]

POLL_INTERVAL_S = 0.5
PAGE = 500


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("logs", help="show a function's logs")
    p.add_argument("name", help="function name")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    p.add_argument("--since", help="only lines from this long ago or later (e.g. 10m, 24h, 7d, or an ISO time)")
    p.add_argument("--until", help="only lines before this time (same forms as --since)")
    p.add_argument("--request-id", help="only the lines of this invocation")
    p.add_argument("--grep", help="only lines containing this text (case-insensitive)")
    p.add_argument("--limit", type=int, default=200, help="at most this many log entries (default 200)")
    p.add_argument(
        "-o", "--output", choices=("text", "json"), help="text (default) or json: one JSON object per entry and line"
    )
    add_connection_args(p)
    p.set_defaults(func=run)


def _print_json_lines(entries: Iterable[dict[str, Any]], grep: str | None = None) -> int:
    printed = 0
    for entry in entries:
        if grep is not None and not _matches(str(entry.get("text", "")), grep):
            continue
        sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
        printed += 1
    sys.stdout.flush()
    return printed


def _matches(line: str, needle: str | None) -> bool:
    return needle is None or needle.lower() in line.lower()


def print_lines(console: Console, entries: Iterable[dict[str, Any]], grep: str | None = None) -> int:
    """Print each text line of each entry, prefixed with its time; returns how many were printed."""
    printed = 0
    for entry in entries:
        stamp = show_time(float(entry.get("ts", 0.0)))
        for line in str(entry.get("text", "")).splitlines():
            if not line.strip() or not _matches(line, grep):
                continue
            console.print(Text.assemble((stamp, "dim"), "  ", _styled(line)), highlight=False, soft_wrap=True)
            printed += 1
    return printed


def _styled(line: str) -> Text:
    if line.startswith(("START RequestId", "END RequestId")):
        return Text(line, "cyan")
    if line.startswith("REPORT RequestId"):
        return Text(line, "bold cyan")
    if "Traceback" in line or "[ERROR]" in line or "Error:" in line:
        return Text(line, "red")
    return Text(line)


def _function_exists(client: Client, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        with client.errors():
            client.lambda_.get_function(FunctionName=name)
    except CliError as e:
        if "ResourceNotFoundException" in e.message:
            return False
        raise
    except ClientError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    console = Console()
    if args.limit < 1 or args.limit > 1000:
        raise CliError(f"invalid --limit {args.limit}: use 1..1000")
    since = parse_when(args.since, "--since") if args.since else None
    until = parse_when(args.until, "--until") if args.until else None
    if args.follow and until is not None:
        raise CliError("--follow shows new lines as they come; it cannot be combined with --until")
    client = make_client(args)
    params: dict[str, Any] = {
        "function": args.name,
        "limit": args.limit,
        "since": since,
        "until": until,
        "request_id": args.request_id,
        "q": args.grep,
    }
    # following: the newest line's id before the first page, so the tail starts at "now" even when the window
    # holds no line (the tail after id 0 would be the whole history)
    newest = int(client.api_get("logs", {"function": args.name, "limit": 1})["last_id"]) if args.follow else 0
    first = client.api_get("logs", params)
    if not first["lines"] and not _function_exists(client, args.name):
        raise CliError(f"function {args.name!r} not found and no logs are kept for it (see `squall functions ls`)")

    def show(entries: Iterable[dict[str, Any]], grep: str | None) -> int:
        return _print_json_lines(entries, grep) if args.output == "json" else print_lines(console, entries, grep)

    show(first["lines"], args.grep)
    if not args.follow:
        if not first["lines"] and args.output != "json":
            Console(stderr=True).print("[dim]no log lines (yet)[/]")
        return 0
    last_id = max(newest, int(first["last_id"]))
    # follow: the tail after last_id, filtered here (so no line is skipped between polls)
    follow: dict[str, Any] = {"function": args.name, "limit": PAGE, "request_id": args.request_id}
    try:
        while True:
            page = client.api_get("logs", {**follow, "since_id": last_id})
            show(page["lines"], args.grep)
            last_id = max(last_id, int(page["last_id"]))
            if len(page["lines"]) < PAGE:
                time.sleep(POLL_INTERVAL_S)
    except KeyboardInterrupt:
        return 0
