"""``metering spend``: requests, errors, token sums and cost components per group.

Every grouping and filter of ``spend`` is day-granular, so the query always runs on a
daily rollup (kept equal to the sum of the records by ``write_records``): ``daily_rollups``,
or ``daily_end_user_rollups`` when end users are grouped or filtered, or
``daily_tag_rollups`` when tags are (a record once per tag: README, Attribution). A year
of traffic is at most 366 × keys × models (× end users × tags) rows to sum, whatever the
request count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    scope_name,
)
from metering.storage.models import DailyEndUserRollup, DailyRollup, DailyTagRollup

GROUP_FIELDS = (
    "key", "team", "customer", "provider", "model", "day", "month", "end_user", "tag",
)  # fmt: skip
# A request with several tags is in each of their groups (README, Attribution).
TAG_OVERLAP_NOTE = (
    "a request with several tags counts in each tag's group: the tag groups can add up "
    "to more than the grand total"
)
COUNT_COLUMNS = ("requests", "errors")
METRIC_COLUMNS = (*COUNT_COLUMNS, *SPEND_TOKENS, *SPEND_COSTS)


@dataclass(frozen=True, slots=True)
class SpendFilter:
    window: DayWindow = field(default_factory=DayWindow)
    key_id: int | None = None
    provider: str | None = None
    model: str | None = None  # bare model name, or provider/model
    tag: str | None = None  # only requests carrying this tag
    end_user: str | None = None  # only this end-user id (in every scope)


def group_columns(by: Sequence[str]) -> list[str]:
    """The output columns of the group fields: an end user is its scope and its id."""
    out: list[str] = []
    for name in by:
        out.extend(("end_user_scope", "end_user") if name == "end_user" else (name,))
    return out


def _rollup(by: Sequence[str], filters: SpendFilter) -> Any:
    """The smallest rollup that can answer: a record is in the tag rollup once per tag."""
    if "tag" in by or filters.tag is not None:
        return DailyTagRollup
    if "end_user" in by or filters.end_user is not None:
        return DailyEndUserRollup
    return DailyRollup


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


def _filter_clauses(r: Any, filters: SpendFilter) -> list[ColumnElement[bool]]:
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
    if filters.tag is not None:
        clauses.append(r.tag == filters.tag)
    if filters.end_user is not None:
        clauses.append(r.end_user == filters.end_user)
    return clauses


def _group_expressions(conn: Connection, r: Any, by: Sequence[str]) -> dict[str, Any]:
    source = {
        "key": r.key_id,
        "team": r.team_id,
        "customer": r.customer_id,
        "provider": r.provider,
        "model": r.model,
        "day": r.day,
        "month": month_of_day(conn, r.day),
    }
    if r is not DailyRollup:
        source |= {"end_user_scope": r.end_user_scope, "end_user": r.end_user}
    if r is DailyTagRollup:
        source["tag"] = r.tag
    return {name: source[name].label(f"g_{name}") for name in group_columns(by)}


def _display(name: str, names: Names) -> Callable[[Any], Any]:
    """How a group field read from SQL is shown: names for ids, ISO text for days."""
    if name == "key":
        return lambda value: names.key(int(value))
    if name == "team":
        return lambda value: names.team(int(value))
    if name == "customer":
        return lambda value: names.customer(int(value))
    if name == "day":
        return lambda value: as_date(value).isoformat()
    if name == "end_user_scope":
        return lambda value: scope_name(value, names)
    if name in ("end_user", "tag"):
        return lambda value: value or None  # '' in a rollup: none
    return lambda value: value


def _sort_key(by: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Ascending on every group field, a missing team/customer (None) first."""

    def key(rec: dict[str, Any]) -> tuple[Any, ...]:
        return tuple((rec[name] is not None, rec[name] or "") for name in by)

    return key


def spend_groups(
    conn: Connection, *, by: Sequence[str], filters: SpendFilter | None = None
) -> list[dict[str, Any]]:
    """One dict per group, sorted by the group fields: the group fields (display values),
    then the counts, token sums and nano-USD sums as exact ints. SQL does the summing; a
    result is at most days × keys × models rows, so plain dicts shape it."""
    filters = filters or SpendFilter()
    rollup = _rollup(by, filters)
    columns = group_columns(by)
    groups = _group_expressions(conn, rollup, by)
    sums = [func.coalesce(func.sum(getattr(rollup, c)), 0).label(c) for c in METRIC_COLUMNS]
    query = select(*groups.values(), *sums).where(*_filter_clauses(rollup, filters))
    if groups:
        query = query.group_by(*groups.values())
    named = {"key", "team", "customer", "end_user"} & set(by)
    names = load_names(conn) if named else Names({}, {}, {})
    shown = [(name, _display(name, names)) for name in columns]
    width = len(columns)
    records: list[dict[str, Any]] = []
    for row in conn.execute(query):
        if not groups and int(row[0]) == 0:
            break  # an aggregate without GROUP BY returns one row even when nothing matched
        rec = {name: show(value) for (name, show), value in zip(shown, row, strict=False)}
        # PostgreSQL's SUM(bigint) is numeric (Decimal): exact, turned into int here.
        rec.update(zip(METRIC_COLUMNS, map(int, row[width:]), strict=True))
        records.append(rec)
    if by:
        records.sort(key=_sort_key(columns))
    return records


def spend_totals(groups: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Exact sums of the metric columns over the groups."""
    return {c: sum(int(g[c]) for g in groups) for c in METRIC_COLUMNS}


def format_metrics(values: dict[str, Any]) -> dict[str, Any]:
    """Counts and tokens as ints, costs as decimal USD strings (the JSON/CSV edge)."""
    out = dict(values)
    for c in (*COUNT_COLUMNS, *SPEND_TOKENS):
        out[c] = int(values[c])
    for c in SPEND_COSTS:
        out[c] = format_usd(int(values[c]))
    return out


def spend_rows(groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups as output rows: costs as decimal USD strings (counts are ints already)."""
    return [g | {c: format_usd(g[c]) for c in SPEND_COSTS} for g in groups]
