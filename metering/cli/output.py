"""One ``--format table|json|csv`` option and one renderer for every listing command."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

from metering.reports.files import neutralise

F = TypeVar("F", bound=Callable[..., Any])
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def format_option(func: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json", "csv"]),
        default="table",
        show_default=True,
        help="Output format.",
    )(func)


def _cell(value: Any) -> str:
    if type(value) is str:  # the common cases first: listings can be thousands of rows
        return value
    if type(value) is int:
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value)
    return str(value)


def _csv_cell(value: Any) -> str:
    """A CSV cell: numbers as they are, any other text neutralised against formula
    injection (``reports.files.neutralise``, the exports' rule)."""
    text = _cell(value)
    return text if _NUMBER.match(text) else (neutralise(text) or "")


def render(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    footer: Mapping[str, Any] | None = None,
) -> str:
    """Rows as an aligned table (with an optional footer row), JSON list, or CSV."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if fmt == "json":
        return json.dumps([{c: row.get(c) for c in cols} for row in rows], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in cols])
        return buf.getvalue().rstrip("\n")
    body = [[_cell(row.get(c)) for c in cols] for row in rows]
    if footer is not None:
        body.append([_cell(footer.get(c)) for c in cols])
    widths = [max([len(c), *(len(r[i]) for r in body)]) for i, c in enumerate(cols)]
    numeric = [
        bool(body) and all(_NUMBER.match(r[i]) or r[i] == "" for r in body)
        for i in range(len(cols))
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if num else cell.ljust(w)
            for cell, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(cols), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in body[: len(rows)])
    if footer is not None:
        out.append("  ".join("-" * w for w in widths))
        out.append(line(body[-1]))
    return "\n".join(out)


def emit(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    footer: Mapping[str, Any] | None = None,
) -> None:
    if fmt == "table" and not rows:
        click.echo("(no rows)")
        return
    click.echo(render(rows, fmt, columns=columns, footer=footer))
