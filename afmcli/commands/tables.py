"""Tables on the terminal (rich): the evaluation's plain tables, the data commands' summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the data commands print summaries without loading the evaluation
    from afmcli.evaluation.tables import TextTable


def rich_table(table: TextTable) -> Table:
    """The first column never wraps; numbers align right. A compact table has no column
    lines, so that eleven count columns fit 80 characters."""
    options = dict(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True) if table.compact else {}
    out = Table(title=table.title, **options)
    for k, (name, numeric) in enumerate(zip(table.columns, table.numeric)):
        out.add_column(name, justify="right" if numeric else "left", no_wrap=k == 0,
                       min_width=3 if table.compact and numeric else None)
    for row in table.rows:
        out.add_row(*row)
    return out


def print_summary(title: str, items: dict) -> None:
    """Print ``items`` (name -> value) as a two-column table on stdout."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in items.items():
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
