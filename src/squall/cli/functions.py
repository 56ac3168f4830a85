"""``squall functions ls | show NAME | rm NAME``: what is deployed, through the Lambda API."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table
from rich.text import Text

from squall.cli.client import Client, add_connection_args, make_client
from squall.cli.output import Column, add_output_arg, output_mode, print_json, print_rows

__all__ = ["add_parser", "run_ls", "run_rm", "run_show"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("functions", help="list, show or delete functions")
    nouns = p.add_subparsers(dest="action", required=True, metavar="{ls,show,rm}")
    ls = nouns.add_parser("ls", help="list functions")
    add_output_arg(ls)
    add_connection_args(ls)
    ls.set_defaults(func=run_ls)
    show = nouns.add_parser("show", help="a function's configuration, aliases and versions")
    show.add_argument("name")
    add_output_arg(show)
    add_connection_args(show)
    show.set_defaults(func=run_show)
    rm = nouns.add_parser("rm", help="delete a function (all its versions and aliases)")
    rm.add_argument("name")
    add_connection_args(rm)
    rm.set_defaults(func=run_rm)


def _all_functions(client: Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with client.errors():
        for page in client.lambda_.get_paginator("list_functions").paginate():
            out.extend(page.get("Functions", []))
    return out


def _reserved(client: Client, name: str) -> str:
    with client.errors():
        value = client.lambda_.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
    return "-" if value is None else str(value)


def _short_time(value: str | None) -> str:
    """Lambda's '2024-05-01T12:00:00.000+0000' as '2024-05-01 12:00:00'."""
    if not value:
        return "-"
    return value.replace("T", " ")[:19]


def run_ls(args: argparse.Namespace) -> int:
    client = make_client(args)
    mode = output_mode(args)
    functions = sorted(_all_functions(client), key=lambda f: f.get("FunctionName", ""))
    reserved = {f.get("FunctionName", "?"): _reserved(client, f.get("FunctionName", "?")) for f in functions}
    if mode == "json":
        print_json([{**f, "ReservedConcurrentExecutions": _int_or_none(reserved[f.get("FunctionName", "?")])}
                    for f in functions])  # fmt: skip
        return 0
    console = Console()
    if not functions:
        if mode == "table":
            console.print("no functions yet: deploy one with `squall deploy PATH`")
        return 0
    columns = [
        Column("name"),
        Column("runtime", priority=2),
        Column("memory", "right"),
        Column("timeout", "right", priority=1),
        Column("last modified", priority=3),
        Column("reserved", "right", priority=1),
    ]
    rows = [
        [
            Text(f.get("FunctionName", "?"), "bold"),
            f.get("Runtime", "-"),
            f"{f.get('MemorySize', '-')} MB",
            f"{f.get('Timeout', '-')} s",
            _short_time(f.get("LastModified")),
            reserved[f.get("FunctionName", "?")],
        ]
        for f in functions
    ]
    print_rows(console, mode, columns, rows, title=f"{len(functions)} function(s)")
    return 0


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def _kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column("key", style="dim", no_wrap=True)
    table.add_column("value", overflow="fold")
    for k, v in rows:
        table.add_row(k, v)
    return table


def _learned_row(p: dict[str, Any]) -> str:
    """What the instances of the current code were seen importing (top-level names, with the module count)."""
    mods = [str(m) for m in p.get("learned") or []]
    if not mods:
        return "- (nothing yet: learned from its instances' imports, reset by a deploy)"
    tops = list(dict.fromkeys(m.split(".", 1)[0] for m in mods))
    more = " (truncated)" if p.get("truncated") else ""
    return f"{' '.join(tops)} ({len(mods)} modules){more}"


def _next_zygote_row(p: dict[str, Any]) -> str:
    if p.get("note"):
        return f"only the pinned names: {p['note']}"
    if not p.get("probed"):
        return "the pinned names (no import probe has run for this code yet)"
    mods = [str(m) for m in p.get("preloaded") or []]
    tops = list(dict.fromkeys(m.split(".", 1)[0] for m in mods))
    return f"{' '.join(tops) or '-'} ({len(mods)} modules, after the sandboxed import probe)"


def run_show(args: argparse.Namespace) -> int:
    client = make_client(args)
    lam = client.lambda_
    with client.errors():
        fn = lam.get_function(FunctionName=args.name)
        aliases: list[dict[str, Any]] = []
        for page in lam.get_paginator("list_aliases").paginate(FunctionName=args.name):
            aliases.extend(page.get("Aliases", []))
        versions: list[dict[str, Any]] = []
        for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=args.name):
            versions.extend(page.get("Versions", []))
    preimport: dict[str, Any] = client.api_get(f"functions/{quote(args.name, safe='')}/preimport")
    if output_mode(args) == "json":
        fn.pop("ResponseMetadata", None)
        print_json({**fn, "Aliases": aliases, "Versions": versions, "Preimport": preimport})
        return 0
    cfg: dict[str, Any] = fn.get("Configuration", {})
    env = (cfg.get("Environment") or {}).get("Variables") or {}
    reserved = (fn.get("Concurrency") or {}).get("ReservedConcurrentExecutions")
    tags = fn.get("Tags") or {}
    rows = [
        ("name", str(cfg.get("FunctionName", args.name))),
        ("arn", str(cfg.get("FunctionArn", "-"))),
        ("runtime", str(cfg.get("Runtime", "-"))),
        ("handler", str(cfg.get("Handler", "-"))),
        ("memory", f"{cfg.get('MemorySize', '-')} MB"),
        ("timeout", f"{cfg.get('Timeout', '-')} s"),
        ("ephemeral storage", f"{(cfg.get('EphemeralStorage') or {}).get('Size', 512)} MB"),
        ("code size", f"{cfg.get('CodeSize', 0):,} bytes"),
        ("code sha256", str(cfg.get("CodeSha256", "-"))),
        ("state", f"{cfg.get('State', '-')} (last update: {cfg.get('LastUpdateStatus', '-')})"),
        ("last modified", _short_time(cfg.get("LastModified"))),
        ("reserved concurrency", "-" if reserved is None else str(reserved)),
        ("snapstart", str((cfg.get("SnapStart") or {}).get("ApplyOn", "None"))),
        ("environment", ", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "-"),
        ("pre-import: pinned", " ".join(preimport.get("pinned") or []) or "-"),
        ("pre-import: learned", _learned_row(preimport)),
        ("pre-import: next zygote", _next_zygote_row(preimport)),
    ]
    console = Console()
    console.print(_kv_table(f"function {cfg.get('FunctionName', args.name)}", rows))
    console.print()
    if aliases:
        at = Table(title="aliases", title_justify="left")
        for col in ("alias", "version", "routing", "description"):
            at.add_column(col, overflow="fold")
        for a in aliases:
            weights = (a.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
            routing = ", ".join(f"{v}: {w:.0%}" for v, w in weights.items()) or "-"
            at.add_row(a.get("Name", "?"), a.get("FunctionVersion", "?"), routing, a.get("Description") or "")
        console.print(at)
    else:
        console.print("[dim]no aliases[/]")
    published = [v for v in versions if v.get("Version") != "$LATEST"]
    if published:
        vt = Table(title="versions", title_justify="left")
        for col in ("version", "last modified", "code sha256", "description"):
            vt.add_column(col, overflow="fold")
        for v in published:
            vt.add_row(
                v.get("Version", "?"),
                _short_time(v.get("LastModified")),
                v.get("CodeSha256", "-"),
                v.get("Description") or "",
            )
        console.print(vt)
    else:
        console.print("[dim]no published versions[/]")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    client = make_client(args)
    with client.errors():
        client.lambda_.delete_function(FunctionName=args.name)
    Console().print(f"deleted function [bold]{args.name}[/]")
    return 0
