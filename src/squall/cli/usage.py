"""``squall usage``: per-function requests, GB-seconds and what they would cost on AWS Lambda, and when an
always-on server of the same memory would be cheaper."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.text import Text

from squall.cli.client import CliError, add_connection_args, make_client, parse_when, show_time
from squall.cli.output import Column, add_output_arg, output_mode, print_json, print_rows
from squall.functions.metering import usd

__all__ = ["add_parser", "break_even_line", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("usage", help="requests, GB-seconds and cost per function, with a break-even estimate")
    p.add_argument("--since", default="24h", help="start of the window: a duration ago (24h, 7d) or an ISO time")
    p.add_argument("--until", default="now", help="end of the window: 'now', a duration ago, or an ISO time")
    add_output_arg(p)
    add_connection_args(p)
    p.set_defaults(func=run)


def _count(n: float) -> str:
    return f"{n:,.0f}"


def _gb_s(v: float) -> str:
    return f"{v:,.3f}" if v >= 1 or v == 0 else f"{v:.6f}"


def break_even_line(f: dict[str, Any]) -> str:
    """ "an always-on 512 MB server costs $X/month; break-even at N requests/month; at this rate ..."."""
    be = f.get("break_even")
    if not be:
        return f"{f['function']}: no invocations in this window"
    even = be.get("break_even_requests_per_month")
    even_text = "never (requests cost nothing)" if even is None else f"{_count(even)} requests/month"
    verdict = {
        "lambda": "serverless is cheaper",
        "server": "serverless is more expensive",
        "equal": "both cost the same",
    }.get(be.get("cheaper", ""), "")
    return (
        f"{f['function']}: an always-on {be['memory_mb']} MB server costs {usd(be['server_monthly_usd'])}/month; "
        f"break-even at {even_text}; at this rate ({_count(be['requests_per_month'])} requests/month, "
        f"{usd(be['lambda_monthly_usd'])}/month) {verdict}"
    )


def run(args: argparse.Namespace) -> int:
    since = parse_when(args.since, "--since")
    until = parse_when(args.until, "--until")
    if since > until:
        raise CliError(f"--since ({args.since}) is after --until ({args.until})")
    client = make_client(args)
    report = client.api_get("usage", {"since": f"{since:.3f}", "until": f"{until:.3f}"})
    mode = output_mode(args)
    if mode == "json":
        print_json(report)
        return 0
    console = Console()
    functions: list[dict[str, Any]] = report["functions"]
    window = f"{show_time(report['since'])[:19]} .. {show_time(report['until'])[:19]}"
    if not functions:
        console.print(f"no usage between {window}")
        return 0
    totals = report["totals"]
    columns = [
        Column("function", footer="total"),
        Column("requests", "right", footer=_count(totals["requests"])),
        Column("errors", "right", 1, _count(totals["errors"])),
        Column("throttles", "right", 3, _count(totals["throttles"])),
        Column("cold", "right", 2, _count(totals["cold_starts"])),
        Column("p50", "right", 2),
        Column("p99", "right", 2),
        Column("GB-s", "right", 1, _gb_s(totals["gb_seconds"])),
        Column("requests $", "right", 4, usd(totals["cost"]["request_cost"])),
        Column("duration $", "right", 4, usd(totals["cost"]["duration_cost"])),
        Column("provisioned $", "right", 4, usd(totals["cost"]["provisioned_cost"])),
        Column("cost", "right", footer=usd(totals["cost"]["total"])),
    ]
    rows: list[list[str | Text]] = []
    for f in functions:
        c = f["cost"]
        rows.append(
            [
                Text(f["function"], "bold"),
                _count(f["requests"]),
                Text(_count(f["errors"]), "red" if f["errors"] else ""),
                _count(f["throttles"]),
                _count(f["cold_starts"]),
                f"{f['p50_ms']:,.1f} ms",
                f"{f['p99_ms']:,.1f} ms",
                _gb_s(f["gb_seconds"]),
                usd(c["request_cost"]),
                usd(c["duration_cost"]),
                usd(c["provisioned_cost"]),
                Text(usd(c["total"]), "bold"),
            ]
        )
    print_rows(console, mode, columns, rows, f"usage {window} (AWS Lambda prices)", footer_row=True)
    console.print()
    for f in functions:
        console.print(Text(break_even_line(f)), highlight=False, soft_wrap=True)
    return 0
