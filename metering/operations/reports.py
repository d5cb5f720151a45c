"""Read-only reports the CLI and the admin API share: spend, reconcile, the audit log.
(Exports: ``reports.export_stream``.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from metering.core.money import format_usd
from metering.errors import InvalidInput
from metering.reports.common import DayWindow, parse_month
from metering.reports.spend import SpendFilter, parse_group_by, spend_groups, spend_rows
from metering.storage.audit import AuditFilter, list_audit
from metering.storage.keys import find_key, utcnow


@dataclass(frozen=True, slots=True)
class SpendReport:
    group_by: list[str]
    groups: Any  # reports.spend's groups (for the table's total row)
    rows: list[dict[str, Any]]  # as `metering spend --format json` prints them


def spend_report(
    conn: Connection,
    *,
    by: str = "key",
    since: date | None = None,
    until: date | None = None,
    key: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    tag: str | None = None,
    end_user: str | None = None,
) -> SpendReport:
    group_by = list(parse_group_by(by))
    window = DayWindow(since, until)
    key_id = find_key(conn, key).id if key is not None else None
    filters = SpendFilter(
        window=window,
        key_id=key_id,
        provider=provider,
        model=model,
        tag=tag,
        end_user=end_user,
    )
    groups = spend_groups(conn, by=group_by, filters=filters)
    return SpendReport(group_by=group_by, groups=groups, rows=spend_rows(groups))


@dataclass(frozen=True, slots=True)
class ReconcileOutcome:
    report: Any  # reports.reconcile.ReconcileReport
    strict: bool

    def as_json(self) -> dict[str, Any]:
        report = self.report
        return {
            "ok": not report.failed(strict=self.strict),
            "rollup_rows_checked": report.rollup_rows,
            "rollup_problems": report.rollup_problems,
            "budget_problems": report.budget_problems,
            "cost_differences": report.difference_count,
            "cost_difference_total": format_usd(report.difference_sum),
            "differences": report.differences,
            "unpriced_records": report.unpriced_count,
            "unpriced": report.unpriced,
            "interrupted_records": report.interrupted_count,
            "interrupted_total": format_usd(report.interrupted_sum),
            "interrupted": report.interrupted,
        }


def reconcile_report(
    conn: Connection, *, month: str | None, strict: bool, limit: int = 50
) -> ReconcileOutcome:
    from metering.reports.reconcile import reconcile  # pandas-free, but only when asked

    if limit < 0:
        raise InvalidInput("limit cannot be negative")
    window = parse_month(month) if month else DayWindow()
    report = reconcile(conn, window=window, now=utcnow(), limit=limit)
    return ReconcileOutcome(report=report, strict=strict)


def audit_rows(
    conn: Connection,
    *,
    actor: str | None = None,
    action: str | None = None,
    since: date | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    if limit < 1 or limit > 1000:
        raise InvalidInput("limit must be from 1 to 1000")
    if offset < 0:
        raise InvalidInput("offset cannot be negative")
    start = datetime.combine(since, datetime.min.time()) if since is not None else None
    return list_audit(
        conn, AuditFilter(actor=actor, action=action, since=start, limit=limit, offset=offset)
    )
