"""``squall invocations ls`` (recent invocation records, newest first) and ``squall invocations show ID``
(one record and its log)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from squall.cli.client import CliError, add_connection_args, make_client, parse_when, show_time
from squall.cli.logs import print_lines
from squall.cli.output import Column, add_output_arg, output_mode, print_json, print_rows

__all__ = ["add_parser", "run_ls", "run_show"]

_STATUS_STYLE = {"ok": "green", "error": "red", "timeout": "red", "throttled": "yellow"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("invocations", help="recent invocations: duration, billed time, memory, errors")
    nouns = p.add_subparsers(dest="action", required=True, metavar="{ls,show}")
    ls = nouns.add_parser("ls", help="list recent invocations, newest first")
    ls.add_argument("--function", help="only this function")
    ls.add_argument("--status", help="only this status (ok, error, timeout, throttled, ...)")
    ls.add_argument("--since", help="only from this long ago or later (e.g. 10m, 24h, 7d, or an ISO time)")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (1..1000, default 50)")
    add_output_arg(ls)
    add_connection_args(ls)
    ls.set_defaults(func=run_ls)
    show = nouns.add_parser("show", help="one invocation's record and log")
    show.add_argument("request_id")
    add_output_arg(show)
    add_connection_args(show)
    show.set_defaults(func=run_show)


def _status(record: dict[str, Any]) -> Text:
    status = str(record.get("status", "?"))
    return Text(status, _STATUS_STYLE.get(status, "yellow"))


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):,.1f} ms"


def run_ls(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise CliError(f"invalid --limit {args.limit}: use 1..1000")
    since = parse_when(args.since, "--since") if args.since else None
    client = make_client(args)
    page = client.api_get(
        "invocations", {"function": args.function, "status": args.status, "limit": args.limit, "since": since}
    )
    records: list[dict[str, Any]] = page["invocations"]
    mode = output_mode(args)
    if mode == "json":
        print_json(records)
        return 0
    console = Console()
    if not records:
        if mode == "table":
            console.print("no invocations found")
        return 0
    columns = [
        Column("time"),
        Column("function"),
        Column("version", priority=3),
        Column("request id", priority=2),
        Column("duration", "right"),
        Column("billed", "right", priority=4),
        Column("memory used", "right", priority=4),
        Column("cold", "center", priority=1),
        Column("status"),
        Column("error type", priority=1),
    ]
    rows: list[list[str | Text]] = []
    for r in records:
        cold = "cold" if r.get("cold") else ""
        if r.get("provisioned"):
            cold = "prov"
        rows.append(
            [
                show_time(float(r.get("start", 0.0))),
                Text(str(r.get("function", "?")), "bold"),
                str(r.get("version", "")),
                str(r.get("request_id", "")),
                _ms(r.get("duration_ms")),
                f"{int(r.get('billed_ms') or 0):,} ms",
                f"{r.get('max_memory_mb', 0)}/{r.get('memory_mb', 0)} MB",
                cold,
                _status(r),
                str(r.get("error_type") or ""),
            ]
        )
    print_rows(console, mode, columns, rows, title=f"{len(records)} invocation(s), newest first")
    if page.get("next_cursor") and mode == "table":
        console.print(f"[dim]more are older: raise --limit (now {args.limit}) or narrow with --since[/]")
    return 0


def run_show(args: argparse.Namespace) -> int:
    client = make_client(args)
    doc = client.api_get(f"invocations/{args.request_id}")
    if output_mode(args) == "json":
        print_json(doc)
        return 0
    r: dict[str, Any] = doc["record"]
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column("key", style="dim")
    table.add_column("value")
    init = r.get("init_ms")
    for key, value in (
        ("request id", str(r.get("request_id", ""))),
        ("function", f"{r.get('function')} (version {r.get('version')})"),
        ("trigger", str(r.get("trigger", ""))),
        ("start", show_time(float(r.get("start", 0.0)))),
        ("status", _status(r)),
        ("error type", str(r.get("error_type") or "-")),
        ("duration", _ms(r.get("duration_ms"))),
        ("billed", f"{int(r.get('billed_ms') or 0):,} ms"),
        ("init", "-" if init is None else _ms(init)),
        ("memory", f"{r.get('max_memory_mb', 0)} MB used of {r.get('memory_mb', 0)} MB"),
        ("cold start", "yes" if r.get("cold") else "no"),
        ("provisioned", "yes" if r.get("provisioned") else "no"),
    ):
        table.add_row(key, value)
    console = Console()
    console.print(table)
    console.print()
    if not print_lines(console, doc.get("logs", [])):
        console.print("[dim]no log lines[/]")
    return 0
