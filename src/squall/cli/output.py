"""How the listing commands print: ``--output table|text|json``.

* ``table`` (the default on a terminal): a rich table that fits the terminal.  Columns have a priority; when the
  natural widths do not fit, the least important columns are left out (a note says which and how to see them), and
  what remains is cut with an ellipsis, never wrapped to a few characters a cell.
* ``text`` (the default when standard output is not a terminal): a header line, then one line per row, cells
  separated by tabs, no colour and no box, for ``grep``/``cut``/``awk``.
* ``json``: the records as the server sent them (numbers as numbers), indented, for ``jq``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["OUTPUT_MODES", "Column", "add_output_arg", "fit_table", "output_mode", "print_json", "print_rows"]

OutputMode = Literal["table", "text", "json"]
OUTPUT_MODES: tuple[OutputMode, ...] = ("table", "text", "json")
# a column's share of a boxed table beside its text: "│ " before and " " after
_COLUMN_OVERHEAD = 3


@dataclass(frozen=True)
class Column:
    """One column: ``priority`` 0 is always shown; higher numbers are dropped first when the terminal is narrow."""

    header: str
    justify: Literal["left", "right", "center"] = "left"
    priority: int = 0
    footer: str = ""


def add_output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_MODES,
        help="table (default on a terminal), text (tab-separated, default when piped) or json",
    )


def output_mode(args: argparse.Namespace, stream: Any = None) -> OutputMode:
    """The chosen ``--output``, else table on a terminal and text otherwise."""
    chosen = getattr(args, "output", None)
    if chosen:
        return cast(OutputMode, chosen)
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "table" if isatty is not None and isatty() else "text"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _plain(cell: str | Text) -> str:
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return " ".join(text.split())  # no tabs or newlines inside a cell


def _width(cell: str | Text) -> int:
    return Text(cell).cell_len if isinstance(cell, str) else cell.cell_len


def fit_table(
    columns: Sequence[Column], rows: Sequence[Sequence[str | Text]], width: int, title: str | None = None
) -> tuple[Table, list[str]]:
    """A table of ``rows`` within ``width`` cells, and the headers of the columns left out to fit."""
    natural = [max([_width(c.header), _width(c.footer), *(_width(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))

    def total() -> int:
        return sum(natural[i] + _COLUMN_OVERHEAD for i in shown) + 1

    while total() > width:
        droppable = [i for i in shown if columns[i].priority > 0]
        if not droppable:
            break
        worst = max(droppable, key=lambda i: (columns[i].priority, i))  # least important, rightmost first
        shown.remove(worst)
    dropped = [columns[i].header for i in range(len(columns)) if i not in shown]
    footer = any(columns[i].footer for i in shown)
    table = Table(title=title, title_justify="left", show_footer=footer)
    for i in shown:
        c = columns[i]
        # a column keeps at least its header's width (or its content's, if narrower); the rest is cut with "…"
        table.add_column(
            c.header,
            justify=c.justify,
            footer=c.footer,
            no_wrap=True,
            overflow="ellipsis",
            min_width=min(natural[i], max(_width(c.header), 4)),
        )
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table, dropped


def print_rows(
    console: Console,
    mode: OutputMode,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str | Text]],
    title: str | None = None,
    footer_row: bool = False,
) -> None:
    """Print ``rows`` as a fitted table (``table``) or tab-separated lines with a header (``text``).  With
    ``footer_row`` the columns' footers are printed as a last line in text mode (totals)."""
    if mode == "text":
        lines = ["\t".join(c.header for c in columns)]
        lines.extend("\t".join(_plain(cell) for cell in row) for row in rows)
        if footer_row:
            lines.append("\t".join(c.footer for c in columns))
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        return
    table, dropped = fit_table(columns, rows, console.width, title)
    console.print(table)
    if dropped:
        console.print(
            f"[dim]left out to fit {console.width} columns: {', '.join(dropped)} "
            "(widen the terminal, or use --output text or json)[/]"
        )
