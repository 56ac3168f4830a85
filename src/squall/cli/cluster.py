"""``squall cluster status``: the nodes of the cluster, their load and their warm instances per function version."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from squall.cli.client import add_connection_args, make_client
from squall.cli.output import Column, add_output_arg, output_mode, print_json, print_rows

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cluster", help="cluster mode: nodes, their load and warm instances")
    verbs = p.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("status", help="list the nodes, their load (in flight / capacity) and warm instances")
    add_output_arg(s)
    add_connection_args(s)
    s.set_defaults(func=run)


def _warm(idle: dict[str, int]) -> str:
    return ", ".join(f"{k}x{n}" for k, n in sorted(idle.items())) or "-"


def run(args: argparse.Namespace) -> int:
    report: dict[str, Any] = make_client(args).api_get("cluster")
    if output_mode(args) == "json":
        print_json(report)
        return 0
    console = Console()
    if not report.get("cluster"):
        console.print("this server runs alone (embedded mode: no --nats-url)")
        return 0
    nodes: list[dict[str, Any]] = report["nodes"]
    rows = [
        [
            n["node_id"] + (" (this)" if n.get("self") else ""),
            "up" if n["live"] else "gone",
            f"{n['last_heartbeat_s']:.1f} s",
            f"{n['in_flight']}/{n['capacity']}",
            _warm(n.get("warm_idle") or {}),
            _warm(n.get("provisioned") or {}),
        ]
        for n in nodes
    ]
    columns = [
        Column("NODE"), Column("STATE"), Column("HEARD", "right", 2), Column("IN FLIGHT", "right"),
        Column("WARM IDLE (function:versionxn)", priority=1), Column("PROVISIONED READY", priority=2),
    ]  # fmt: skip
    stream = report.get("event_stream") or {}
    title = f"{len(nodes)} node(s); events pending: {stream.get('pending')} (stream R{stream.get('replicas')})"
    print_rows(console, output_mode(args), columns, rows, title=title)
    pollers = report.get("esm_pollers")
    if isinstance(pollers, list) and output_mode(args) == "table":  # (text: the rows alone, for scripts)
        console.print(f"event source mappings polled by {report.get('node_id')}: {', '.join(pollers) or 'none'}")
    return 0
