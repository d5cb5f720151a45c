"""``metering reconcile``: do the counters agree with the records?

Failures (the run exits non-zero): a daily rollup row that differs from the sum of its
records, or a budget counter that differs from its records. Informational (failures
only with ``--strict``): records whose upstream-reported cost differs from our computed
cost, records with no price, and ``interrupted`` records — calls cut by the death of
their serving process, billed from an estimate, to be matched with the provider's bill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func, select

from metering.core.interrupted import INTERRUPTED
from metering.core.money import format_usd
from metering.reports.common import DayWindow, Names, as_date, billable, load_names, utc_day
from metering.storage.budgets import check_budget_counters
from metering.storage.models import COST_COLUMNS, DailyRollup, UsageRecord
from metering.storage.records import ROLLUP_SUMS

CHECKED = ("requests", "errors", *ROLLUP_SUMS)


@dataclass
class ReconcileReport:
    rollup_rows: int = 0
    rollup_problems: list[str] = field(default_factory=list)
    budget_problems: list[str] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)
    difference_count: int = 0
    difference_sum: int = 0
    unpriced: list[dict[str, Any]] = field(default_factory=list)
    unpriced_count: int = 0
    interrupted: list[dict[str, Any]] = field(default_factory=list)
    interrupted_count: int = 0
    interrupted_sum: int = 0

    @property
    def problems(self) -> list[str]:
        return [*self.rollup_problems, *self.budget_problems]

    def failed(self, *, strict: bool) -> bool:
        if self.problems:
            return True
        return strict and bool(
            self.difference_count or self.unpriced_count or self.interrupted_count
        )


def _records_by_rollup_key(conn: Connection, window: DayWindow) -> dict[tuple[Any, ...], list[int]]:
    u = UsageRecord
    day = utc_day(conn, u.started_at)
    team = func.coalesce(u.team_id, 0)
    customer = func.coalesce(u.customer_id, 0)
    sums = [
        func.count().label("requests"),
        func.sum(case((u.status == "success", 0), else_=1)).label("errors"),
        *(func.sum(getattr(u, c)).label(c) for c in ROLLUP_SUMS),
    ]
    query = (
        select(day.label("day"), u.key_id, team, customer, u.provider, u.model, *sums)
        .where(*window.where_instant(u.started_at))
        .group_by(day, u.key_id, team, customer, u.provider, u.model)
    )
    out = {}
    for row in conn.execute(query):
        key = (as_date(row[0]), int(row[1]), int(row[2]), int(row[3]), row[4], row[5])
        out[key] = [int(v or 0) for v in row[6:]]
    return out


def _rollups(conn: Connection, window: DayWindow) -> dict[tuple[Any, ...], list[int]]:
    r = DailyRollup
    query = select(
        r.day, r.key_id, r.team_id, r.customer_id, r.provider, r.model,
        *(getattr(r, c) for c in CHECKED),
    ).where(*window.where_day(r.day))  # fmt: skip
    out = {}
    for row in conn.execute(query):
        key = (as_date(row[0]), int(row[1]), int(row[2]), int(row[3]), row[4], row[5])
        out[key] = [int(v) for v in row[6:]]
    return out


def _describe(key: tuple[Any, ...], names: Names) -> str:
    day, key_id, team_id, customer_id, provider, model = key
    parts = [f"rollup {day} key {names.key(key_id)}"]
    if team_id:
        parts.append(f"team {names.team(team_id)}")
    if customer_id:
        parts.append(f"customer {names.customer(customer_id)}")
    parts.append(f"{provider}/{model}")
    return " ".join(parts)


def _amount(column: str, value: int) -> str:
    return f"{format_usd(value)} USD" if column in COST_COLUMNS else str(value)


def check_rollups(conn: Connection, window: DayWindow, names: Names) -> tuple[int, list[str]]:
    """Compare every rollup row with the sums of its records; one message per disagreement."""
    records = _records_by_rollup_key(conn, window)
    rollups = _rollups(conn, window)
    zero = [0] * len(CHECKED)
    problems = []
    for key in sorted(set(records) | set(rollups), key=str):
        expected = records.get(key, zero)
        actual = rollups.get(key, zero)
        for column, want, have in zip(CHECKED, expected, actual, strict=True):
            if want != have:
                problems.append(
                    f"{_describe(key, names)}: {column} is {_amount(column, have)} in the rollup "
                    f"but {_amount(column, want)} in the records"
                )
    return len(rollups), problems


def _record_info(row: Any, names: Names) -> dict[str, Any]:
    return {
        "request_id": row.request_id,
        "started_at": row.started_at.isoformat(timespec="seconds") + "Z",
        "key": names.key(row.key_id),
        "provider": row.provider,
        "model": row.model,
    }


def cost_differences(
    conn: Connection, window: DayWindow, names: Names, *, limit: int
) -> tuple[int, int, list[dict[str, Any]]]:
    """(count, sum of reported − computed, first ``limit`` records) where they differ."""
    u = UsageRecord
    where = [
        *window.where_instant(u.started_at),
        u.reported_cost.is_not(None),
        u.computed_cost.is_not(None),
        u.reported_cost != u.computed_cost,
    ]
    diff = u.reported_cost - u.computed_cost
    counted = conn.execute(
        select(func.count(), func.coalesce(func.sum(diff), 0)).where(*where)
    ).one()
    count, total = int(counted[0]), int(counted[1] or 0)
    rows = []
    query = (
        select(u.request_id, u.started_at, u.key_id, u.provider, u.model, u.computed_cost,
               u.reported_cost, u.total_cost)
        .where(*where)
        .order_by(func.abs(diff).desc(), u.id)
        .limit(limit)
    )  # fmt: skip
    for row in conn.execute(query):
        rows.append(
            {
                **_record_info(row, names),
                "computed_cost": format_usd(row.computed_cost),
                "reported_cost": format_usd(row.reported_cost),
                "difference": format_usd(row.reported_cost - row.computed_cost),
                "billed": format_usd(row.total_cost),
            }
        )
    return count, total, rows


def unpriced_records(
    conn: Connection, window: DayWindow, names: Names, *, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    u = UsageRecord
    where = [*window.where_instant(u.started_at), u.cost_source == "unpriced", billable(u)]
    count = conn.execute(select(func.count()).where(*where)).scalar_one()
    query = (
        select(u.request_id, u.started_at, u.key_id, u.provider, u.model, u.total_tokens,
               u.status)
        .where(*where)
        .order_by(u.started_at, u.id)
        .limit(limit)
    )  # fmt: skip
    rows = [
        {**_record_info(r, names), "total_tokens": r.total_tokens, "status": r.status}
        for r in conn.execute(query)
    ]
    return int(count), rows


def interrupted_records(
    conn: Connection, window: DayWindow, names: Names, *, limit: int
) -> tuple[int, int, list[dict[str, Any]]]:
    """(count, billed total, first ``limit`` records) of the interrupted calls."""
    u = UsageRecord
    where = [*window.where_instant(u.started_at), u.status == INTERRUPTED]
    counted = conn.execute(
        select(func.count(), func.coalesce(func.sum(u.total_cost), 0)).where(*where)
    ).one()
    query = (
        select(u.request_id, u.started_at, u.key_id, u.provider, u.model, u.prompt_tokens,
               u.completion_tokens, u.cost_source, u.total_cost)
        .where(*where)
        .order_by(u.started_at, u.id)
        .limit(limit)
    )  # fmt: skip
    rows = [
        {
            **_record_info(r, names),
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "cost_source": r.cost_source,
            "billed": format_usd(r.total_cost),
        }
        for r in conn.execute(query)
    ]
    return int(counted[0]), int(counted[1] or 0), rows


def reconcile(
    conn: Connection, *, window: DayWindow, now: datetime, limit: int = 50
) -> ReconcileReport:
    # Here, not at the top: that module builds on this one's rollup check.
    from metering.reports.reconcile_attribution import check_attribution_rollups

    names = load_names(conn)
    report = ReconcileReport()
    report.rollup_rows, report.rollup_problems = check_rollups(conn, window, names)
    report.rollup_problems += check_attribution_rollups(conn, window, names)
    report.budget_problems = check_budget_counters(conn, now=now)
    report.difference_count, report.difference_sum, report.differences = cost_differences(
        conn, window, names, limit=limit
    )
    report.unpriced_count, report.unpriced = unpriced_records(conn, window, names, limit=limit)
    report.interrupted_count, report.interrupted_sum, report.interrupted = interrupted_records(
        conn, window, names, limit=limit
    )
    return report
