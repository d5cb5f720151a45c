"""CSV cells rendered by the database, for the per-request export.

Formatting ten million rows cell by cell in Python costs ~45 µs a row. Here the database
renders them: on SQLite one ``printf('%s,%s,…', cell, cell, …)`` per row builds the whole
line (``a || ',' || b || …`` copied the growing line at every step: ~17 → ~10 µs a row),
on PostgreSQL ``COPY … (FORMAT csv)`` writes the lines and does the quoting itself.

Each expression reproduces exactly what ``csv.writer`` (QUOTE_MINIMAL, ``,`` and ``"``,
``\\n`` line ends) writes for the Python value, and amounts follow
``metering.core.money.format_usd`` (plain decimal, no trailing zeros) in integer
arithmetic, so the file is byte-identical to the cell-by-cell rendering (tests compare
them). Kinds of cell: ``text``, ``csv`` (already rendered), ``integer`` (NULL → empty),
``count`` (a NOT NULL integer), ``boolean``, ``timestamp`` (naive UTC →
``isoformat(timespec="microseconds") + "Z"``) and ``usd`` (nano-USD).

SQLite's cost is per operation, not per byte (callgrind over the bench database: 74k →
55k instructions a line with the cells below and the name tables of ``request_csv``): a
SQL function call or a string it makes costs a few hundred instructions, a comparison or
integer arithmetic a few dozen, so the cells use arithmetic where it can do the work.
"""

from __future__ import annotations

from typing import Literal

NANO = 1_000_000_000
CellKind = Literal["text", "csv", "integer", "count", "boolean", "timestamp", "usd"]


def _usd(expr: str, *, sqlite: bool, null: str) -> str:
    """Integer nano-USD → ``format_usd`` (``-1.5``, ``0.000000001``, ``12``)."""

    def fraction(e: str) -> str:  # ``.ddddddddd`` of a positive amount, trailing 0s trimmed
        if sqlite:  # 1e9 + r has ten digits: its last nine are r zero-padded
            digits = f"'.' || substr(CAST({e} % {NANO} + {NANO} AS TEXT), 2)"
        else:
            digits = f"'.' || lpad(CAST({e} % {NANO} AS TEXT), 9, '0')"
        return f"rtrim({digits}, '0')"

    whole = f"CAST({expr} / {NANO} AS TEXT)"
    negated = f"(-{expr})"
    return (
        f"CASE WHEN {expr} = 0 THEN '0' WHEN {expr} IS NULL THEN {null} "
        f"WHEN {expr} % {NANO} = 0 THEN {whole} "
        f"WHEN {expr} > 0 THEN {whole} || {fraction(expr)} "
        f"ELSE '-' || CAST({negated} / {NANO} AS TEXT) || {fraction(negated)} END"
    )


def _sqlite_usd(x: str) -> tuple[str, str]:
    """(``%s%s``, two arguments) of an amount on SQLite, the common case without a string
    function: a positive amount under one dollar is a constant prefix (``0.`` and the
    zeros its magnitude needs) and the integer with its trailing zeros divided away:
    ``5_000_000`` → ``'0.00'``, ``5`` → ``0.005``. Others (zero, NULL, whole dollars,
    one dollar or more, negative) are one text in the first argument and NULL (empty)."""

    def prefix(lo: int, hi: int) -> str:  # 10**lo <= x < 10**hi: a binary search, ≤ 4 tests
        if hi - lo == 1:
            return f"'0.{'0' * (9 - hi)}'"
        mid = (lo + hi) // 2
        return f"CASE WHEN {x} >= {10**mid} THEN {prefix(mid, hi)} ELSE {prefix(lo, mid)} END"

    divided = [x, *(f"{x} / {10**i}" for i in range(1, 9))]  # x < 1e9: ≤ 8 trailing zeros
    stripped = " ".join(f"WHEN {x} % {10 ** (i + 1)} <> 0 THEN {divided[i]}" for i in range(8))
    small = f"{x} > 0 AND {x} < {NANO}"
    first = (
        f"CASE WHEN {x} = 0 THEN '0' WHEN {small} THEN {prefix(0, 9)} "
        f"ELSE {_usd(x, sqlite=True, null='NULL')} END"
    )
    return "%s%s", f"{first}, CASE WHEN {small} THEN CASE {stripped} ELSE {divided[8]} END END"


def sqlite_text(expr: str) -> str:
    """A text quoted when it holds a comma, a quote or a line break (quotes doubled).

    Four GLOBs of one character each: SQLite finds a single character after ``*`` with
    ``strcspn``, but retries a ``[set]`` after ``*`` at every offset (~390 → ~180 ns)."""
    special = " OR ".join(f"{expr} GLOB '*{c}*'" for c in (",", '"', "\n", "\r"))
    quoted = f"'\"' || replace({expr}, '\"', '\"\"') || '\"'"
    return f"CASE WHEN {special} THEN {quoted} ELSE {expr} END"


def sqlite_cell(kind: CellKind, expr: str) -> tuple[str, str]:
    """(printf format, arguments) of one cell on SQLite. ``%s`` of NULL is empty and of an
    integer its decimal text, so integers and NULLs need no SQL of their own."""
    if kind == "text":
        return "%s", sqlite_text(expr)
    if kind in ("csv", "integer"):
        return "%s", expr
    if kind == "count":  # NOT NULL: ``%d`` formats the integer without a text copy of it
        return "%d", expr
    if kind == "boolean":
        return "%s", f"CASE WHEN {expr} THEN 'true' ELSE 'false' END"
    if kind == "timestamp":  # stored by SQLAlchemy as ``YYYY-MM-DD HH:MM:SS.ffffff``
        return "%.10sT%sZ", f"{expr}, substr({expr}, 12)"  # the date, 'T', the time
    return _sqlite_usd(expr)


def sqlite_line(cells: list[tuple[str, str]]) -> str:
    """One ``printf`` rendering the cells as a CSV line (without its line end)."""
    fmt = ",".join(f for f, _ in cells)
    return f"printf('{fmt}', {', '.join(arg for _, arg in cells)})"


def copy_cell(kind: CellKind, expr: str) -> str:
    """One column of ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` on PostgreSQL.

    COPY quotes a value holding a comma, a quote or a line break like ``csv.writer``,
    writes NULL as an empty cell, but quotes an empty string (``""``, which csv.writer
    writes as nothing): text is NULLIF'd to NULL when empty."""
    if kind == "text":
        return f"NULLIF({expr}, '')"
    if kind in ("integer", "count"):
        return expr
    if kind == "csv":
        raise ValueError("COPY renders the cells itself: give it text, not rendered cells")
    if kind == "boolean":
        return f"CASE WHEN {expr} THEN 'true' ELSE 'false' END"
    if kind == "timestamp":
        return f'to_char({expr}, \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')'
    return _usd(expr, sqlite=False, null="NULL")
