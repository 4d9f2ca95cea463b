"""Shared terminal output: one console, one progress-bar style, tables from rows."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

# Off a terminal (piped, redirected, captured) rich would lay everything out 80 columns wide and cut paths in tables.
PIPED_WIDTH = 200


def _console(stderr: bool = False) -> Console:
    """A console at the terminal's width, or :data:`PIPED_WIDTH` columns when output is not a terminal (``COLUMNS``
    still wins)."""
    probe = Console(stderr=stderr)
    if probe.is_terminal or os.environ.get("COLUMNS"):
        return probe
    return Console(stderr=stderr, width=PIPED_WIDTH)


console = _console()
err_console = _console(stderr=True)


def progress(transient: bool = False) -> Progress:
    """A progress bar with count, elapsed time, ETA and a free-form ``{task.fields[info]}`` column."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
    )


def make_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], title: str | None = None,
               formats: dict[str, str] | None = None) -> Table:
    """A rich table with one row per dict; ``formats`` maps a column to a format spec such as ``.2f``."""
    formats = formats or {}
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in (columns[0],) else "right")
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            if value is None:
                cells.append("-")
            elif col in formats and isinstance(value, (int, float)):
                cells.append(format(value, formats[col]))
            else:
                cells.append(str(value))
        table.add_row(*cells)
    return table
