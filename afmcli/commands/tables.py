"""Plain tables (afmcli.evaluation.tables) as rich tables on the terminal."""

from __future__ import annotations

from rich import box
from rich.table import Table

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
