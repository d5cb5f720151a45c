"""What every report file shares: where it may be written, how it is written (atomically,
with the user's umask) and the one rule that keeps a CSV cell from being run as a
spreadsheet formula (README, CLI: `metering export`).

Formula injection (OWASP, "CSV Injection"): a cell starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return is read as a formula by spreadsheets; such a cell gets
a leading single quote. It applies to the cells a user or a client chose (key, team and
customer names, tags, model names), never to amounts, whose minus sign is a number's.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from metering.errors import InvalidInput

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str | None) -> str | None:
    """A cell a spreadsheet cannot run: ``'`` before a formula's first character."""
    if text and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def neutralise_sql(expr: str) -> str:
    """``neutralise`` of a text column in SQL (SQLite and PostgreSQL alike)."""
    starts = ", ".join(f"'{c}'" for c in FORMULA_STARTS)  # no quote among them
    return f"CASE WHEN substr({expr}, 1, 1) IN ({starts}) THEN '''' || {expr} ELSE {expr} END"


def check_out_path(path: Path, *, create: bool) -> None:
    """The folder of ``path`` exists, or is made when ``create`` (the default
    ``reports/``); a user's ``--out`` is not (a typo is not a new tree): an error."""
    parent = path.parent
    if parent.is_dir():
        return
    if create:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create folder {parent}: {exc.strerror}") from None
        return
    if parent.exists():
        raise InvalidInput(f"cannot write {path}: {parent} is not a folder")
    raise InvalidInput(f"cannot write {path}: folder {parent} does not exist (create it first)")


@contextmanager
def atomic_file(path: Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """A temporary sibling of ``path`` renamed into place when the block ends without an
    error (removed otherwise). Created with ``open`` (so with the umask, like any file);
    a file that cannot be written is one ``InvalidInput`` naming it."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if binary:
            fh: IO[Any] = open(tmp, "xb")  # noqa: SIM115 (closed below, before the rename)
        else:
            fh = open(tmp, "x", encoding="utf-8", newline="")  # noqa: SIM115 (as above)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    try:
        with fh:
            yield fh
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
