from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, delete, select, update

from metering.core.money import format_usd
from metering.reports.common import DayWindow, parse_month
from metering.reports.reconcile import reconcile
from metering.storage.budgets import set_budget
from metering.storage.models import Budget, DailyRollup
from tests.reports.factory import Org

NOW = datetime(2026, 12, 5)


def _november(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.started_at.strftime("%Y-%m") == "2026-11"]


def test_consistent_data_passes_and_lists_differences_and_unpriced(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    _, records = month_data
    november = _november(records)
    differing = [
        r
        for r in november
        if r.reported_cost is not None
        and r.computed_cost is not None
        and r.reported_cost != r.computed_cost
    ]
    unpriced = [r for r in november if r.cost_source == "unpriced" and r.status == "success"]
    # a failed call without usage to an unpriced model has nothing to price: not listed
    assert any(r.cost_source == "unpriced" and r.status != "success" for r in november)
    assert differing and unpriced
    with engine.connect() as conn:
        report = reconcile(conn, window=parse_month("2026-11"), now=NOW, limit=5)
        everything = reconcile(conn, window=DayWindow(), now=NOW)
    assert report.rollup_problems == [] and everything.rollup_problems == []
    assert report.rollup_rows > 0
    assert not report.failed(strict=False)
    assert report.failed(strict=True)
    assert report.difference_count == len(differing)
    assert report.difference_sum == sum(r.reported_cost - r.computed_cost for r in differing)
    assert len(report.differences) == 5
    biggest = max(differing, key=lambda r: abs(r.reported_cost - r.computed_cost))
    assert report.differences[0]["request_id"] == biggest.request_id
    assert report.differences[0]["difference"] == format_usd(
        biggest.reported_cost - biggest.computed_cost
    )
    assert report.unpriced_count == len(unpriced)
    assert {r["model"] for r in report.unpriced} == {"mistral-large-unpriced"}


def test_corrupted_rollup_is_named(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    with engine.begin() as conn:
        row = conn.execute(
            select(DailyRollup.id, DailyRollup.day, DailyRollup.model, DailyRollup.total_cost)
            .where(
                DailyRollup.key_id == 1,
                DailyRollup.provider == "openai",
                DailyRollup.day >= date(2026, 11, 1),
            )
            .order_by(DailyRollup.day)
            .limit(1)
        ).one()
        conn.execute(
            update(DailyRollup)
            .where(DailyRollup.id == row.id)
            .values(total_cost=DailyRollup.total_cost + 1)
        )
    with engine.connect() as conn:
        report = reconcile(conn, window=parse_month("2026-11"), now=NOW)
    assert report.failed(strict=False)
    (problem,) = report.rollup_problems
    assert problem.startswith(f"rollup {row.day} key alice team search customer acme openai/")
    assert problem.endswith(
        f"total_cost is {format_usd(row.total_cost + 1)} USD in the rollup "
        f"but {format_usd(row.total_cost)} USD in the records"
    )


def test_missing_rollup_row_is_named(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    _, records = month_data
    victim = next(r for r in _november(records) if r.key_id == 4)
    day = victim.started_at.date()
    same = [
        r
        for r in records
        if r.started_at.date() == day
        and (r.key_id, r.provider, r.model) == (4, victim.provider, victim.model)
    ]
    with engine.begin() as conn:
        conn.execute(
            delete(DailyRollup).where(
                DailyRollup.day == day,
                DailyRollup.key_id == 4,
                DailyRollup.provider == victim.provider,
                DailyRollup.model == victim.model,
            )
        )
    with engine.connect() as conn:
        report = reconcile(conn, window=DayWindow(day, day), now=NOW)
        other_day = reconcile(
            conn, window=DayWindow(date(2026, 10, 1), date(2026, 10, 31)), now=NOW
        )
    expected = (
        f"rollup {day} key dave {victim.provider}/{victim.model}: requests is 0 "
        f"in the rollup but {len(same)} in the records"
    )
    assert report.rollup_problems[0] == expected
    assert other_day.rollup_problems == []


def test_corrupted_budget_counter_is_named(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    now = datetime(2026, 11, 28, 12, 0)
    with engine.begin() as conn:
        status = set_budget(
            conn, owner_type="key", owner_id=1, limit_nano=10**15, period="monthly", now=now
        )
    with engine.connect() as conn:
        assert reconcile(conn, window=DayWindow(), now=now).problems == []
    with engine.begin() as conn:
        conn.execute(update(Budget).values(spent_nano=Budget.spent_nano + 5))
    with engine.connect() as conn:
        report = reconcile(conn, window=DayWindow(), now=now)
    assert report.rollup_problems == []
    (problem,) = report.budget_problems
    assert problem.startswith(f"key budget #{status.budget_id} (owner id 1): spent $")
    assert "but its records since 2026-11-01T00:00:00 sum to $" in problem
    assert report.failed(strict=False)
