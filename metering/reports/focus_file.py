"""The FOCUS file (``metering export --format focus``): CSV, or Parquet when the path ends
in ``.parquet`` (the optional ``parquet`` extra, pyarrow). Rows are streamed from
``reports.focus`` and written a chunk at a time; amounts stay exact (decimal text in
CSV, ``decimal128(38, 20)`` in Parquet, refused rather than rounded if they do not fit).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection

from metering.core.money import format_rate, usd_to_nano
from metering.errors import InvalidInput
from metering.reports.common import DayWindow, load_names, parse_month
from metering.reports.files import atomic_file, check_out_path, neutralise
from metering.reports.focus import CHUNK_ROWS, FocusRow, Month, group_rows, month_groups
from metering.reports.focus_corrections import correction_rows
from metering.storage.prices import load_versions

PARQUET_SCALE = 20  # decimal digits after the point; unit prices per token need ~15

# FOCUS 1.0 columns; then the names focus-validator 1.0.0 checks where they differ from
# the specification's (ChargeType, InvoiceIssuer, Provider, Publisher, ResourceID: the
# same values again); then newer ones (1.1, 1.2) that validation does not look at.
FOCUS_COLUMNS = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "ChargeType",
    "InvoiceIssuer",
    "Provider",
    "Publisher",
    "ResourceID",
    "ServiceSubcategory",  # 1.1
    "SkuMeter",  # 1.1
    "PricingCurrency",  # 1.2
)
AMOUNT_COLUMNS = frozenset(
    (
        *("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "ListUnitPrice"),
        *("ContractedUnitPrice", "PricingQuantity", "ConsumedQuantity"),
    )
)
DATE_COLUMNS = frozenset(
    ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")
)
# Cells a user or a client chose: neutralised in CSV (reports.files).
CHOSEN_COLUMNS = frozenset(
    (
        *("SubAccountName", "ResourceId", "ResourceID", "ResourceName", "SkuId", "SkuPriceId"),
        *("ProviderName", "PublisherName", "InvoiceIssuerName", "Provider", "Publisher"),
        *("InvoiceIssuer", "ChargeDescription"),
    )
)


def focus_rows(conn: Connection, window: DayWindow) -> Iterator[FocusRow]:
    """Every FOCUS row of the month, streamed."""
    versions = {v.id: v for v in load_versions(conn, which="all") if v.id is not None}
    names = load_names(conn)
    month = Month.of(window)
    for group in month_groups(conn, window, versions):
        for row in group_rows(group, month, names):
            yield _validator_names(row)
    for row in correction_rows(conn, window, names):
        yield _validator_names(row)


def _validator_names(row: FocusRow) -> FocusRow:
    row["ChargeType"] = row["ChargeCategory"]  # focus-validator 1.0.0 checks this name
    return row


def default_focus_path(month: str) -> Path:
    return Path("reports") / f"focus-{month}.csv"


@dataclass
class FocusResult:
    path: Path
    rows: int = 0
    billed: int = 0  # nano-USD: the sum of BilledCost


def _csv_cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format_rate(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if column in CHOSEN_COLUMNS:
        return neutralise(str(value)) or ""
    return str(value)


class _CsvCells:
    """``_csv_cell`` of each column of a row. Texts and dates repeat from row to row (the
    names, days and prices of a group): rendered once each, kept while there are few."""

    MEMO_MAX = 100_000

    def __init__(self) -> None:
        self._memo: dict[tuple[str, Any], str] = {}

    def line(self, row: FocusRow) -> list[str]:
        memo, cells = self._memo, []
        for column in FOCUS_COLUMNS:
            value = row.get(column)
            if value is None:
                cells.append("")
            elif isinstance(value, Decimal):
                cells.append(format_rate(value))
            else:
                text = memo.get((column, value))
                if text is None:
                    if len(memo) >= self.MEMO_MAX:
                        memo.clear()
                    text = memo[(column, value)] = _csv_cell(column, value)
                cells.append(text)
        return cells


def _counted(rows: Iterator[FocusRow], result: FocusResult) -> Iterator[FocusRow]:
    for row in rows:
        result.rows += 1
        result.billed += usd_to_nano(row["BilledCost"])  # exact: whole nano-USD already
        yield row


def _write_csv(
    fh: IO[str], rows: Iterator[FocusRow], progress: Callable[[int], None] | None
) -> None:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(FOCUS_COLUMNS)
    cells = _CsvCells()
    pending = 0
    for row in rows:
        writer.writerow(cells.line(row))
        pending += 1
        if progress is not None and pending == CHUNK_ROWS:
            progress(pending)
            pending = 0
    if progress is not None and pending:
        progress(pending)


def _pyarrow() -> tuple[Any, Any]:
    try:
        # optional (the parquet extra); pyarrow ships no type information
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:
        raise InvalidInput(
            "a .parquet file needs pyarrow: pip install 'metering[parquet]' (or write .csv)"
        ) from None
    return pa, pq


def _write_parquet(
    fh: IO[bytes], rows: Iterator[FocusRow], progress: Callable[[int], None] | None
) -> None:
    pa, pq = _pyarrow()
    types = {
        c: pa.decimal128(38, PARQUET_SCALE)
        if c in AMOUNT_COLUMNS
        else pa.timestamp("s", tz="UTC")
        if c in DATE_COLUMNS
        else pa.string()
        for c in FOCUS_COLUMNS
    }
    schema = pa.schema([(c, types[c]) for c in FOCUS_COLUMNS])
    with pq.ParquetWriter(fh, schema) as writer:
        chunk: list[FocusRow] = []

        def flush() -> None:
            columns = [pa.array([r.get(c) for r in chunk], type=types[c]) for c in FOCUS_COLUMNS]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            if progress is not None:
                progress(len(chunk))
            chunk.clear()

        for row in rows:
            chunk.append(row)
            if len(chunk) == CHUNK_ROWS:
                flush()
        if chunk:
            flush()


def write_focus(
    conn: Connection,
    *,
    month: str,
    out: Path | None = None,
    progress: Callable[[int], None] | None = None,
    create_folder: bool = True,
) -> FocusResult:
    """Write the month's FOCUS rows to ``out`` (atomically), CSV or Parquet by suffix;
    ``create_folder=False`` (the CLI's ``--out``): a missing folder is an error."""
    window = parse_month(month)
    path = out if out is not None else default_focus_path(month)
    parquet = path.suffix.lower() == ".parquet"
    if parquet:
        _pyarrow()  # before any work: a missing extra is one line
    check_out_path(path, create=create_folder)
    result = FocusResult(path=path)
    rows = _counted(focus_rows(conn, window), result)
    if parquet:
        with atomic_file(path, binary=True) as raw:
            _write_parquet(raw, rows, progress)
    else:
        with atomic_file(path) as fh:
            _write_csv(fh, rows, progress)
    return result
