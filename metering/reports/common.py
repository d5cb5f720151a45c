"""What the reports share: UTC date windows, dialect-neutral date expressions, names."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Date, cast, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from metering.errors import InvalidInput
from metering.storage.models import COST_COLUMNS, Customer, Team, VirtualKey

# The token sums and cost columns every spend row / export row carries (SPEC §9).
SPEND_TOKENS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_read_tokens",
    "cached_write_tokens",
    "cached_write_1h_tokens",
    "reasoning_tokens",
    "citation_tokens",
    "search_queries",
)
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
SPEND_COSTS = COST_COLUMNS  # every component, the adjustment and the billed total


@dataclass(frozen=True, slots=True)
class DayWindow:
    """Whole UTC days, both ends inclusive (None: open). ``until`` 2026-11-30 covers
    the 30th up to 23:59:59.999999, so --since 11-01 --until 11-30 is all of November."""

    since: date | None = None
    until: date | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.until < self.since:
            raise InvalidInput(
                f"--until {self.until} is before --since {self.since}; both days are inclusive"
            )

    @property
    def start(self) -> datetime | None:
        """First instant inside the window (naive UTC)."""
        return datetime.combine(self.since, time()) if self.since is not None else None

    @property
    def end(self) -> datetime | None:
        """First instant after the window (naive UTC, exclusive)."""
        if self.until is None:
            return None
        return datetime.combine(self.until + timedelta(days=1), time())

    def where_day(self, column: Any) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.since is not None:
            clauses.append(column >= self.since)
        if self.until is not None:
            clauses.append(column <= self.until)
        return clauses

    def where_instant(self, column: Any) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.start is not None:
            clauses.append(column >= self.start)
        if self.end is not None:
            clauses.append(column < self.end)
        return clauses


def billable(u: Any) -> ColumnElement[bool]:
    """Records that have something to price: a success, or a failure that reported usage.
    A failed call without usage costs nothing whatever the price (SPEC §5), so it is never
    listed as unpriced nor repriced."""
    return or_(u.status == "success", u.total_tokens > 0, u.search_queries > 0)


def parse_month(text: str) -> DayWindow:
    """``YYYY-MM`` → the window of that calendar month (UTC). Exactly that: ``2026-1`` or a
    day (``2026-02-30``) is refused, not read as some month."""
    try:
        if not _MONTH.fullmatch(text.strip()):
            raise ValueError(text)
        first = datetime.strptime(text.strip(), "%Y-%m").date()
    except ValueError:
        raise InvalidInput(f"month {text!r} must be written YYYY-MM (e.g. 2026-11)") from None
    last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
    return DayWindow(first, last)


def month_days(window: DayWindow) -> list[date]:
    assert window.since is not None and window.until is not None
    n = (window.until - window.since).days + 1
    return [window.since + timedelta(days=i) for i in range(n)]


def utc_day(conn: Connection, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a naive-UTC timestamp column, in SQL."""
    if conn.dialect.name == "sqlite":
        return func.date(column)
    return cast(column, Date)


def month_of_day(conn: Connection, column: Any) -> ColumnElement[Any]:
    """``YYYY-MM`` of a DATE column, in SQL."""
    if conn.dialect.name == "sqlite":
        return func.strftime("%Y-%m", column)
    return func.to_char(column, "YYYY-MM")


def as_date(value: Any) -> date:
    """A day read back from SQL (``date`` on PostgreSQL, text from SQLite's date())."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class Names:
    """Display names of keys, teams and customers by id (small tables, read whole)."""

    keys: dict[int, str]
    teams: dict[int, str]
    customers: dict[int, str]

    def key(self, key_id: int) -> str:
        return self.keys.get(key_id, f"#{key_id}")

    def team(self, team_id: int | None) -> str | None:
        return self.teams.get(team_id, f"#{team_id}") if team_id else None

    def customer(self, customer_id: int | None) -> str | None:
        return self.customers.get(customer_id, f"#{customer_id}") if customer_id else None


def load_names(conn: Connection) -> Names:
    return Names(
        keys={r.id: r.name for r in conn.execute(select(VirtualKey.id, VirtualKey.name))},
        teams={r.id: r.name for r in conn.execute(select(Team.id, Team.name))},
        customers={r.id: r.name for r in conn.execute(select(Customer.id, Customer.name))},
    )


def scope_name(scope: str | None, names: Names) -> str | None:
    """``customer:3`` → ``customer acme``; ``key:7`` → ``key k1`` (None: no end user)."""
    kind, _, ident = (scope or "").partition(":")
    if not ident.isdigit():
        return None
    if kind == "customer":
        return f"customer {names.customer(int(ident))}"
    return f"key {names.key(int(ident))}"


@dataclass(frozen=True, slots=True)
class AttributionFilter:
    """Only the requests carrying ``tag`` and/or of end user ``end_user`` (every scope's)."""

    tag: str | None = None
    end_user: str | None = None

    def sql(self, mark: str) -> tuple[str, list[str]]:
        """The filter as ``AND …`` over ``usage_records`` with ``mark`` placeholders, and
        its parameters (after the window's)."""
        text, params = "", []
        if self.end_user is not None:
            text += f" AND usage_records.end_user = {mark}"
            params.append(self.end_user)
        if self.tag is not None:
            linked = "record_tags.record_id = usage_records.id"
            text += f" AND EXISTS (SELECT 1 FROM record_tags WHERE {linked} AND record_tags.tag = {mark})"  # noqa: S608, E501 (only a placeholder is put in)
            params.append(self.tag)
        return text, params


NO_FILTER = AttributionFilter()
