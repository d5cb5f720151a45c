"""Budgets in the database: set them, list their status, check and rebuild their counters.

The request protocol (reserve → settle / release, the expiry sweep) lives in
``storage.reservations`` and is re-exported here, so ``metering.storage.budgets`` is
the one import for budgets.

Invariant, checked by ``check_budget_counters`` (used by ``metering reconcile``):
``spent_nano`` = sum of ``total_cost`` of the owner's records that started in the
stored window (key: ``key_id``; team: ``team_id``; customer: ``customer_id`` as stored
on the record; tag: the records carrying it in ``record_tags``; end user: its
``end_user_scope`` and ``end_user``; a default end-user budget: none), of those served
by a model its ``model_pattern`` covers (``budget_rows.recorded_spend``, the rule
settlement applies too), ``reserved_nano`` = sum of the budget's reservation rows.
Setting and removing are ``storage.budget_changes``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from metering.core.budget import soft_limit_reached
from metering.core.forecast import Forecast
from metering.core.money import format_usd
from metering.storage.budget_changes import BudgetKey, remove_budget_of, set_budget_of
from metering.storage.budget_results import Refusal, Released, ReserveResult, SettleResult
from metering.storage.budget_rows import (
    OWNER_RANK,
    applicable_budget_ids,
    load_budgets,
    lock_budgets,
    reserved_total,
    roll_forward,
    row_spend,
    save_counters,
    start_window,
)
from metering.storage.budget_scopes import budget_names
from metering.storage.forecasts import BudgetIdentity, budget_forecasts
from metering.storage.reservations import (
    release,
    release_expired,
    reserve,
    settle,
)

__all__ = [
    "BudgetStatus",
    "Refusal",
    "Released",
    "ReserveResult",
    "SettleResult",
    "budget_status",
    "check_budget_counters",
    "rebuild_budget_counters",
    "release",
    "release_expired",
    "remove_budget",
    "reserve",
    "set_budget",
    "settle",
]


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget_id: int
    owner_type: str
    owner_id: int
    owner_name: str  # a tag budget's tag, an end-user budget's end-user id
    model_pattern: str  # '' = every model
    limit_nano: int
    period: str
    timezone: str
    soft_pct: int | None
    spent_nano: int
    reserved_nano: int
    period_start: datetime
    next_reset: datetime | None
    soft_limit_crossed: bool
    forecast: Forecast | None = None  # None: not asked for (``budget_status(forecast=False)``)
    scope: str = ""  # an end-user budget's (or default's) "customer:<id>" | "key:<id>"
    subject: str = ""  # a tag budget's tag, an end-user budget's end-user id
    scope_name: str = ""  # the scope in words: "customer 'acme'"

    @property
    def identity(self) -> BudgetIdentity:
        return (self.owner_type, self.owner_id, self.scope, self.subject, self.model_pattern)

    @property
    def remaining_nano(self) -> int:
        return max(0, self.limit_nano - self.spent_nano - self.reserved_nano)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``budgets list`` and ``GET /v1/budget`` (decimal USD strings)."""
        return (
            {
                "owner_type": self.owner_type,
                "owner": self.owner_name,
                "limit": format_usd(self.limit_nano),
                "period": self.period,
                "timezone": self.timezone,
                "spent": format_usd(self.spent_nano),
                "reserved": format_usd(self.reserved_nano),
                "remaining": format_usd(self.remaining_nano),
                "period_start": _iso(self.period_start),
                "next_reset": _iso(self.next_reset) if self.next_reset is not None else None,
                "soft_limit_crossed": self.soft_limit_crossed,
            }
            | (NO_FORECAST if self.forecast is None else self.forecast.as_dict())
            | self._scope()
        )

    def _scope(self) -> dict[str, Any]:
        """What narrows the budget (after the older fields, which keep their places)."""
        return {"model": self.model_pattern or None, "scope": self.scope_name or None}


NO_FORECAST = dict.fromkeys(("forecast", "limit_reached_on", "daily_rate", "forecast_basis"))


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds") + "Z"


def set_budget(
    conn: Connection,
    *,
    owner_type: str,
    owner_id: int,
    limit_nano: int,
    period: str,
    timezone: str = "UTC",
    soft_pct: int | None = None,
    model_pattern: str = "",
    scope: str = "",
    subject: str = "",
    now: datetime,
) -> BudgetStatus:
    """Create or change one budget (``storage.budget_changes``): of an owner (a key, team
    or customer: ``owner_id``; a tag, an end user, the default of a scope's end users:
    ``owner_id`` 0 with ``scope``/``subject``), narrowed to ``model_pattern`` or not. A
    new period or zone starts the window containing ``now``, with the spend of the
    records already in it; otherwise the current window and its spend are kept."""
    key = BudgetKey(owner_type, owner_id, scope, subject, model_pattern)
    budget_id = set_budget_of(
        conn, key, limit_nano=limit_nano, period=period, timezone=timezone,
        soft_pct=soft_pct, now=now,
    )  # fmt: skip
    return budget_status(conn, now=now, budget_ids=[budget_id])[0]


def remove_budget(
    conn: Connection,
    *,
    owner_type: str,
    owner_id: int,
    owner_name: str,
    model_pattern: str = "",
    scope: str = "",
    subject: str = "",
) -> None:
    """Delete one budget (``storage.budget_changes.remove_budget_of``); ``owner_name``
    names it in errors."""
    narrowed = f" for models {model_pattern!r}" if model_pattern else ""
    label = f"{owner_type} {owner_name!r}{narrowed}"
    key = BudgetKey(owner_type, owner_id, scope, subject, model_pattern)
    remove_budget_of(conn, key, label=label)


def budget_status(
    conn: Connection,
    *,
    now: datetime,
    key_id: int | None = None,
    team_id: int | None = None,
    customer_id: int | None = None,
    budget_ids: list[int] | None = None,
    forecast: bool = True,
) -> list[BudgetStatus]:
    """Budgets as of ``now`` (read-only: a window that has ended shows the current one
    with the spend of its records). With key/team/customer ids: the budgets that apply
    to such a request; with ``budget_ids``: those; with neither: all. Each with its
    forecast (``core.forecast``) unless ``forecast`` is false."""
    if key_id is not None or team_id is not None or customer_id is not None:
        budget_ids = applicable_budget_ids(
            conn, key_id=key_id, team_id=team_id, customer_id=customer_id
        )
    rows = load_budgets(conn, budget_ids)
    names = budget_names(conn, rows)
    out = []
    for row in sorted(rows, key=lambda r: (OWNER_RANK[r.owner_type], r.id)):
        window = row.window_at(now)
        if window[0] > row.period_start:
            row.period_start = window[0]
            row.spent_nano = row_spend(conn, row, window)
        else:
            window = row.window
        out.append(
            BudgetStatus(
                budget_id=row.id,
                owner_type=row.owner_type,
                owner_id=row.owner_id,
                owner_name=names[row.id][0],
                scope=row.scope,
                subject=row.subject,
                scope_name=names[row.id][1],
                model_pattern=row.model_pattern,
                limit_nano=row.limit_nano,
                period=row.period,
                timezone=row.timezone,
                soft_pct=row.soft_pct,
                spent_nano=row.spent_nano,
                reserved_nano=row.reserved_nano,
                period_start=row.period_start,
                next_reset=window[1],
                soft_limit_crossed=soft_limit_reached(
                    limit_nano=row.limit_nano, soft_pct=row.soft_pct, spent_nano=row.spent_nano
                ),
            )
        )
    if not forecast:
        return out
    forecasts = budget_forecasts(
        conn,
        [
            (s.identity, s.limit_nano, s.spent_nano, (s.period_start, s.next_reset), s.timezone)
            for s in out
        ],
        now=now,
    )
    return [replace(s, forecast=f) for s, f in zip(out, forecasts, strict=True)]


def check_budget_counters(conn: Connection, *, now: datetime) -> list[str]:
    """Every disagreement between budget counters and the records / reservations
    (empty: consistent). Each budget is checked in its stored window."""
    problems = []
    for row in load_budgets(conn):
        label = f"{row.owner_type} budget #{row.id} (owner id {row.owner_id})"
        start, end = row.window
        if start != row.period_start:
            problems.append(f"{label}: period_start {row.period_start} is not a {row.period} start")
        if row.period_start > now:
            problems.append(f"{label}: period_start {row.period_start} is in the future")
        spent = row_spend(conn, row, (start, end))
        if spent != row.spent_nano:
            problems.append(
                f"{label}: spent ${format_usd(row.spent_nano)} but its records since "
                f"{start.isoformat()} sum to ${format_usd(spent)}"
            )
        reserved = reserved_total(conn, row.id)
        if reserved != row.reserved_nano:
            problems.append(
                f"{label}: reserved ${format_usd(row.reserved_nano)} but its reservations "
                f"sum to ${format_usd(reserved)}"
            )
    return problems


def rebuild_budget_counters(conn: Connection, *, now: datetime) -> list[str]:
    """Recompute every budget's counters from the records and reservations (e.g. after
    ``metering reprice`` changed costs); describes what changed."""
    changes = []
    rows = lock_budgets(conn, [r.id for r in load_budgets(conn)])
    for row in rows:
        before = (row.spent_nano, row.reserved_nano)
        roll_forward(conn, row, now=now)
        start_window(conn, row, row.window, now=now)
        row.reserved_nano = reserved_total(conn, row.id)
        if (row.spent_nano, row.reserved_nano) != before:
            changes.append(
                f"{row.owner_type} budget #{row.id}: spent ${format_usd(before[0])} → "
                f"${format_usd(row.spent_nano)}, reserved ${format_usd(before[1])} → "
                f"${format_usd(row.reserved_nano)}"
            )
        save_counters(conn, row, now=now)
    return changes
