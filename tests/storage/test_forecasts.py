"""Budget forecasts read from the database (``storage.forecasts``): the recent spend comes
from the daily rollups, per owner, and ``budget_status`` carries each budget's forecast;
``metering forecast`` prints them. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import Engine

from metering.cli import main
from metering.core.forecast import RecentSpend, forecast, lookback_start
from metering.storage.budgets import budget_status
from metering.storage.forecasts import recent_spend
from tests.helpers import Org, record_and_settle
from tests.storage.budgeting import USD, set_

NOW = datetime(2026, 12, 2, 12)  # 1.5 days into December: the recent rate applies


def test_recent_spend_is_each_owners_rollups_since_the_lookback(db: Engine, org: Org) -> None:
    spends = [  # (key, started_at, USD)
        (org.key_id, datetime(2026, 11, 20, 9), 50),  # before the lookback: not counted
        (org.key_id, datetime(2026, 11, 27, 9), 4),
        (org.other_key_id, datetime(2026, 11, 29, 9), 6),
        (org.key_id, datetime(2026, 12, 2, 9), 2),
    ]
    with db.begin() as conn:
        for i, (key_id, at, usd) in enumerate(spends):
            record_and_settle(conn, org, request_id=f"r{i}", cost_nano=usd * USD,
                              started_at=at, key_id=key_id)  # fmt: skip
    owners = [("key", org.key_id, "", "", ""), ("key", org.other_key_id, "", "", ""),
              ("team", org.team_id, "", "", ""), ("customer", org.customer_id, "", "", ""),
              ("team", org.team_id + 999, "", "", "")]  # fmt: skip
    with db.connect() as conn:
        found = recent_spend(conn, owners, now=NOW)
    assert lookback_start(NOW) == datetime(2026, 11, 25)
    assert found == {
        ("key", org.key_id, "", "", ""): RecentSpend(6 * USD, datetime(2026, 11, 27)),
        ("key", org.other_key_id, "", "", ""): RecentSpend(6 * USD, datetime(2026, 11, 29)),
        ("team", org.team_id, "", "", ""): RecentSpend(12 * USD, datetime(2026, 11, 27)),
        ("customer", org.customer_id, "", "", ""): RecentSpend(12 * USD, datetime(2026, 11, 27)),
    }


def test_budget_status_carries_each_budgets_forecast(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 100, "monthly", now=datetime(2026, 11, 1))
    set_(db, "team", org.team_id, 40, "never", now=datetime(2026, 11, 1))
    set_(db, "customer", org.customer_id, 10, "daily", now=datetime(2026, 11, 1))
    with db.begin() as conn:
        record_and_settle(conn, org, request_id="a", cost_nano=9 * USD,
                          started_at=datetime(2026, 11, 28, 12))  # fmt: skip
        record_and_settle(conn, org, request_id="b", cost_nano=3 * USD,
                          started_at=datetime(2026, 12, 2, 6))  # fmt: skip
    with db.connect() as conn:
        rows = budget_status(conn, now=NOW, key_id=org.key_id, team_id=org.team_id,
                             customer_id=org.customer_id)  # fmt: skip
    by_owner = {s.owner_type: s for s in rows}
    recent = RecentSpend(12 * USD, datetime(2026, 11, 28))  # 12 USD over 4.5 days
    for kind, spent in (("key", 3), ("team", 12), ("customer", 3)):
        s = by_owner[kind]
        assert s.spent_nano == spent * USD
        expected = forecast(limit_nano=s.limit_nano, spent_nano=s.spent_nano,
                            window=(s.period_start, s.next_reset), now=NOW,
                            timezone=s.timezone, recent=recent)  # fmt: skip
        assert s.forecast == expected
    key = by_owner["key"].as_dict()
    # $12 over 4.5 days = $2.666666666 a day; 29.5 days of December left after $3.
    assert key["daily_rate"] == "2.666666666"
    assert key["forecast"] == "81.666666666"
    assert key["forecast_basis"] == "recent"
    assert key["limit_reached_on"] is None
    # The daily customer budget runs at its own rate: $3 in 12 of its 24 hours.
    customer = by_owner["customer"].as_dict()
    assert (customer["forecast_basis"], customer["forecast"]) == ("period", "6")
    assert customer["limit_reached_on"] is None
    team = by_owner["team"].as_dict()  # never: no end, the limit day at the recent rate
    assert team["forecast"] is None
    # $28 to go at $12 per 4.5 days: exactly 10.5 days, 00:00 on the 13th.
    assert team["limit_reached_on"] == "2026-12-13"
    with db.connect() as conn:
        (plain,) = budget_status(conn, now=NOW, key_id=org.key_id, forecast=False)
    assert plain.forecast is None and plain.as_dict()["forecast"] is None


def test_the_forecast_command_prints_every_budget_or_an_owners(db: Engine, org: Org) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    url = db.url.render_as_string(hide_password=False)
    set_(db, "key", org.key_id, 100, "never", now=now)
    set_(db, "customer", org.customer_id, 1000, "never", now=now)
    today = datetime(now.year, now.month, now.day)
    with db.begin() as conn:  # today only: the rate's span is its minimum, one day
        record_and_settle(conn, org, request_id="t", cost_nano=5 * USD, started_at=today)
    runner = CliRunner()
    result = runner.invoke(main, ["forecast", "--database-url", url, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["owner_type"]: r for r in json.loads(result.output)}
    assert set(rows) == {"key", "customer"}
    assert rows["key"]["daily_rate"] == "5"
    assert rows["key"]["limit_reached_on"] == (today + timedelta(days=19)).date().isoformat()
    assert rows["customer"]["limit_reached_on"] == (today + timedelta(days=199)).date().isoformat()
    only = runner.invoke(main, ["forecast", "--customer", "acme", "--database-url", url,
                                "--format", "json"])  # fmt: skip
    assert only.exit_code == 0, only.output
    assert [r["owner_type"] for r in json.loads(only.output)] == ["customer"]
    for_key = runner.invoke(main, ["forecast", "--key", "alice", "--database-url", url,
                                   "--format", "json"])  # fmt: skip
    assert [r["owner_type"] for r in json.loads(for_key.output)] == ["key", "customer"]
    both = runner.invoke(main, ["forecast", "--key", "alice", "--team", "search",
                                "--database-url", url])  # fmt: skip
    assert both.exit_code != 0 and "at most one" in both.output
