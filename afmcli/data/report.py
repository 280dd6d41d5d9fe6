"""The rich summary table that the data commands print at the end."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_summary(title: str, items: dict) -> None:
    """Print ``items`` (name -> value) as a two-column table on stdout."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in items.items():
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
