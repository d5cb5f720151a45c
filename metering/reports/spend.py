"""``metering spend``: requests, errors, token sums and cost components per group.

Every grouping and filter of ``spend`` is day-granular, so the query always runs on
``daily_rollups`` (kept equal to the sum of the records by ``write_records``); a year of
traffic is at most 366 × keys × models rows to sum, whatever the request count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from metering.core.money import format_usd
from metering.errors import InvalidInput
from metering.reports.common import (
    SPEND_COSTS,
    SPEND_TOKENS,
    DayWindow,
    Names,
    as_date,
    load_names,
    month_of_day,
)
from metering.storage.models import DailyRollup

GROUP_FIELDS = ("key", "team", "customer", "provider", "model", "day", "month")
COUNT_COLUMNS = ("requests", "errors")
METRIC_COLUMNS = (*COUNT_COLUMNS, *SPEND_TOKENS, *SPEND_COSTS)


@dataclass(frozen=True, slots=True)
class SpendFilter:
    window: DayWindow = field(default_factory=DayWindow)
    key_id: int | None = None
    provider: str | None = None
    model: str | None = None  # bare model name, or provider/model


def parse_group_by(text: str) -> tuple[str, ...]:
    """``key,model`` → ("key", "model"); order kept, duplicates dropped."""
    fields_: list[str] = []
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in GROUP_FIELDS:
            raise InvalidInput(
                f"cannot group by {name!r}; choose from {', '.join(GROUP_FIELDS)} "
                "(comma-separated, e.g. --by key,model)"
            )
        if name not in fields_:
            fields_.append(name)
    return tuple(fields_)


def _filter_clauses(filters: SpendFilter) -> list[ColumnElement[bool]]:
    r = DailyRollup
    clauses = filters.window.where_day(r.day)
    if filters.key_id is not None:
        clauses.append(r.key_id == filters.key_id)
    if filters.provider is not None:
        clauses.append(r.provider == filters.provider)
    if filters.model is not None:
        provider, sep, model = filters.model.partition("/")
        match = r.model == filters.model
        if sep and provider and model:
            match = or_(match, and_(r.provider == provider, r.model == model))
        clauses.append(match)
    return clauses


def _group_expressions(conn: Connection, by: Sequence[str]) -> dict[str, Any]:
    r = DailyRollup
    source = {
        "key": r.key_id,
        "team": r.team_id,
        "customer": r.customer_id,
        "provider": r.provider,
        "model": r.model,
        "day": r.day,
        "month": month_of_day(conn, r.day),
    }
    return {name: source[name].label(f"g_{name}") for name in by}


def _display(name: str, value: Any, names: Names) -> Any:
    if name == "key":
        return names.key(int(value))
    if name == "team":
        return names.team(int(value))
    if name == "customer":
        return names.customer(int(value))
    if name == "day":
        return as_date(value).isoformat()
    return value


def spend_frame(
    conn: Connection, *, by: Sequence[str], filters: SpendFilter | None = None
) -> pd.DataFrame:
    """One row per group: the group fields (display values) and int64 nano-USD / counts."""
    filters = filters or SpendFilter()
    groups = _group_expressions(conn, by)
    sums = [func.coalesce(func.sum(getattr(DailyRollup, c)), 0).label(c) for c in METRIC_COLUMNS]
    query = select(*groups.values(), *sums).where(*_filter_clauses(filters))
    if groups:
        query = query.group_by(*groups.values())
    names = load_names(conn) if {"key", "team", "customer"} & set(by) else Names({}, {}, {})
    records: list[dict[str, Any]] = []
    for row in conn.execute(query):
        m = row._mapping
        if not groups and int(m["requests"]) == 0:
            break  # an aggregate without GROUP BY returns one row even when nothing matched
        rec = {name: _display(name, m[f"g_{name}"], names) for name in by}
        # PostgreSQL's SUM(bigint) is numeric (Decimal): exact, turned into int here.
        rec.update({c: int(m[c]) for c in METRIC_COLUMNS})
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=[*by, *METRIC_COLUMNS])
    frame = frame.astype(dict.fromkeys(METRIC_COLUMNS, "int64"))
    if by and not frame.empty:
        frame = frame.sort_values(list(by), na_position="first", kind="stable")
    return frame.reset_index(drop=True)


def frame_totals(frame: pd.DataFrame) -> dict[str, int]:
    """Exact column sums (int64) of the metric columns."""
    return {c: int(frame[c].sum()) for c in METRIC_COLUMNS}


def format_metrics(values: dict[str, Any]) -> dict[str, Any]:
    """Counts and tokens as ints, costs as decimal USD strings (the JSON/CSV edge)."""
    out = dict(values)
    for c in (*COUNT_COLUMNS, *SPEND_TOKENS):
        out[c] = int(values[c])
    for c in SPEND_COSTS:
        out[c] = format_usd(int(values[c]))
    return out


def spend_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for rec in frame.to_dict(orient="records"):
        rows.append(
            format_metrics({str(k): (None if _is_missing(v) else v) for k, v in rec.items()})
        )
    return rows


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)
