from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from metering.core.pricing import price_usage
from metering.core.records import UsageRow, buckets_from_record
from metering.core.sheets import parse_toml_sheet
from metering.reports.common import DayWindow, load_names, parse_month
from metering.reports.reconcile import check_rollups
from metering.reports.reprice import reprice
from metering.storage.budgets import check_budget_counters, set_budget
from metering.storage.models import DailyRollup, RepriceAudit, UsageRecord
from metering.storage.prices import load_price_book, save_versions
from tests.reports.factory import Org

NOW = datetime(2026, 11, 28, 12, 0)

MISTRAL = """
provider = "mistral"
effective_from = "2024-01-01"
source = "test"
[models."mistral-large-unpriced"]
input = "2.00"
output = "6.00"
"""

GPT4O_CORRECTION = """
provider = "openai"
effective_from = "2026-11-15"
source = "test correction"
[models."gpt-4o"]
input = "2.00"
cache_read = "1.00"
output = "8.00"
"""


def _add_prices(engine: Engine, sheet: str) -> None:
    with engine.begin() as conn:
        assert save_versions(conn, parse_toml_sheet(sheet, source="test")).added


def _records(conn: Connection) -> dict[str, dict[str, Any]]:
    rows = conn.execute(select(UsageRecord)).all()
    return {r._mapping["request_id"]: dict(r._mapping) for r in rows}


def _snapshot(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as conn:
        return (
            _records(conn),
            sorted(tuple(r) for r in conn.execute(select(DailyRollup)).all()),
            conn.execute(select(RepriceAudit)).all(),
        )


def _rollups_consistent(engine: Engine) -> None:
    with engine.connect() as conn:
        _, problems = check_rollups(conn, DayWindow(), load_names(conn))
    assert problems == []


def _billable(r: UsageRow) -> bool:
    return r.status == "success" or r.total_tokens > 0 or r.search_queries > 0


def test_added_price_fills_unpriced_records(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    _, generated = month_data
    unpriced = {r.request_id for r in generated if r.cost_source == "unpriced" and _billable(r)}
    # mistral records whose cost the upstream reported were billed that, with no split
    reported = {
        r.request_id
        for r in generated
        if r.model == "mistral-large-unpriced" and r.cost_source == "reported"
    }
    assert unpriced and reported
    _add_prices(engine, MISTRAL)
    result = reprice(engine, window=DayWindow(), now=NOW)
    assert result.newly_priced == len(unpriced)
    assert result.changed == len(unpriced) + len(reported)
    assert list(result.by_model) == [("mistral", "mistral-large-unpriced")]
    with engine.connect() as conn:
        after = _records(conn)
        book = load_price_book(conn)
        audits = conn.execute(select(RepriceAudit)).all()
    version = book.lookup("mistral", "mistral-large-unpriced", date(2026, 11, 1))
    assert version is not None
    for rid in unpriced:
        row = after[rid]
        expected = price_usage(buckets_from_record(UsageRow.from_mapping(row)), version)
        assert row["cost_source"] == "computed"
        assert row["price_version_id"] == version.id
        assert row["total_cost"] == row["computed_cost"] == expected.total > 0
        assert row["adjustment_cost"] == 0
    for rid in reported:
        row = after[rid]
        expected = price_usage(buckets_from_record(UsageRow.from_mapping(row)), version)
        assert row["cost_source"] == "reported"
        assert row["computed_cost"] == expected.total
        assert row["total_cost"] == row["reported_cost"]
        assert row["adjustment_cost"] == row["reported_cost"] - expected.total
    by_record = {a.record_id: a for a in audits}
    assert set(by_record) == {after[rid]["id"] for rid in unpriced | reported}
    for rid in unpriced:
        audit = by_record[after[rid]["id"]]
        assert (audit.old_cost_source, audit.new_cost_source) == ("unpriced", "computed")
        assert audit.old_total_cost == 0
        assert audit.new_total_cost == after[rid]["total_cost"]
    assert all(a.run_id == result.run_id for a in audits)
    assert result.new_total - result.old_total == sum(after[rid]["total_cost"] for rid in unpriced)
    _rollups_consistent(engine)
    # a second run finds nothing left to do
    assert reprice(engine, window=DayWindow(), now=NOW).changed == 0


def test_corrected_price_changes_exactly_the_records_in_its_window(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    _, generated = month_data
    before = _snapshot(engine)[0]
    in_window = {
        r.request_id
        for r in generated
        if r.provider == "openai"
        and r.model == "gpt-4o"
        and r.started_at >= datetime(2026, 11, 15)
        and _billable(r)
    }
    assert in_window
    _add_prices(engine, GPT4O_CORRECTION)
    result = reprice(engine, window=DayWindow(), now=NOW)
    with engine.connect() as conn:
        after = _records(conn)
        audits = {a.record_id: a for a in conn.execute(select(RepriceAudit)).all()}
    changed = {rid for rid in after if after[rid] != before[rid]}
    assert changed == in_window
    assert result.changed == len(in_window)
    assert set(audits) == {after[rid]["id"] for rid in in_window}
    for rid in in_window:
        old, new = before[rid], after[rid]
        assert new["price_version_id"] != old["price_version_id"]
        assert audits[new["id"]].new_price_version_id == new["price_version_id"]
        assert audits[new["id"]].old_total_cost == old["total_cost"]
        assert audits[new["id"]].new_total_cost == new["total_cost"]
        components = sum(
            new[c]
            for c in (
                "input_cost",
                "cache_read_cost",
                "cache_write_cost",
                "output_cost",
                "reasoning_cost",
                "citation_cost",
                "search_cost",
                "request_cost",
            )
        )
        assert new["computed_cost"] == components
        assert new["total_cost"] == components + new["adjustment_cost"]
        if old["cost_source"] == "reported":
            # the upstream-reported cost still wins: only the split moves
            assert new["total_cost"] == old["total_cost"] == old["reported_cost"]
            assert new["adjustment_cost"] == old["reported_cost"] - components
        else:
            assert new["adjustment_cost"] == 0
            assert new["total_cost"] == components
            if old["total_tokens"]:
                assert new["total_cost"] < old["total_cost"]
    assert any(before[rid]["cost_source"] == "reported" for rid in in_window)
    _rollups_consistent(engine)


def test_window_limits_the_records_repriced(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    _, generated = month_data
    _add_prices(engine, GPT4O_CORRECTION)
    window = DayWindow(date(2026, 11, 20), date(2026, 11, 25))
    expected = {
        r.request_id
        for r in generated
        if r.model == "gpt-4o"
        and date(2026, 11, 20) <= r.started_at.date() <= date(2026, 11, 25)
        and _billable(r)
    }
    before = _snapshot(engine)[0]
    result = reprice(engine, window=window, now=NOW)
    after = _snapshot(engine)[0]
    assert {rid for rid in after if after[rid] != before[rid]} == expected
    assert result.changed == len(expected)
    _rollups_consistent(engine)


def test_dry_run_changes_nothing(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    _add_prices(engine, MISTRAL)
    _add_prices(engine, GPT4O_CORRECTION)
    before = _snapshot(engine)
    dry = reprice(engine, window=parse_month("2026-11"), now=NOW, dry_run=True)
    assert dry.changed > 0 and dry.dry_run
    assert _snapshot(engine) == before
    real = reprice(engine, window=parse_month("2026-11"), now=NOW)
    assert (real.changed, real.old_total, real.new_total) == (
        dry.changed,
        dry.old_total,
        dry.new_total,
    )


def test_reprice_adjusts_budget_spend_of_the_current_period(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    with engine.begin() as conn:
        set_budget(
            conn,
            owner_type="key",
            owner_id=4,
            limit_nano=10**15,
            period="monthly",
            now=NOW,
        )
    _add_prices(engine, MISTRAL)
    _add_prices(engine, GPT4O_CORRECTION)
    result = reprice(engine, window=DayWindow(), now=NOW)
    assert len(result.budget_changes) == 1
    assert result.budget_changes[0].startswith("key budget #")
    with engine.connect() as conn:
        assert check_budget_counters(conn, now=NOW) == []


def test_an_estimated_unpriced_record_is_repriced_as_an_estimate() -> None:
    """A cut stream of a model without a price stays an estimate once a price exists."""
    from metering.core.pricing import PriceBook
    from metering.core.records import record_row
    from metering.core.responses import bill_response, read_response
    from metering.reports.reprice import repriced

    facts = read_response(
        {
            "model": "mistral-large-unpriced",
            "usage": {"prompt_tokens": 100, "completion_tokens": 50},
        },
        "mistral/mistral-large-unpriced",
    )
    bill = bill_response(
        facts,
        PriceBook([]),
        requested="mistral/mistral-large-unpriced",
        on=NOW.date(),
        estimated=True,
    )
    row = record_row(
        request_id="r-cut",
        started_at=NOW,
        ended_at=NOW,
        key_id=1,
        team_id=None,
        customer_id=None,
        requested_model="mistral/mistral-large-unpriced",
        request_type="text_completion",
        stream=True,
        status="stream_cut",
        http_status=200,
        latency_ms=5,
        facts=facts,
        bill=bill,
    )
    assert (row.cost_source, row.usage_estimated, row.total_cost) == ("unpriced", True, 0)
    assert (row.cache_hit, row.cache_hit_type) == (False, None)
    book = PriceBook(parse_toml_sheet(MISTRAL, source="test"))
    new = repriced(book, row)
    assert new.cost_source == "estimated"
    assert new.total_cost == 100 * 2_000 + 50 * 6_000  # $2 / $6 per 1M tokens


def test_interrupted_records_keep_their_rule(engine: Engine) -> None:
    """A price correction reprices an interrupted call's estimate; one billed the amount
    reserved for it keeps that amount as its floor; an unpriced one gets priced."""
    from metering.core.interrupted import InFlightCall, LastSeen, interrupted_record
    from metering.storage.records import write_records
    from tests.storage.test_records import make_key

    key = make_key(engine)
    at = datetime(2026, 11, 20, 10)
    seen = LastSeen("h", 1, at)

    def call(request_id: str, model: str, reserved: int | None) -> InFlightCall:
        return InFlightCall(request_id, 1, key, None, None, model, "text_completion", False,
                            at, 1000, 500, reserved)  # fmt: skip

    with engine.connect() as conn:
        book = load_price_book(conn)
    old = book.lookup("openai", "gpt-4o", at.date())
    rows = [
        interrupted_record(call("floored", "openai/gpt-4o", 20_000_000), old, seen=seen, now=at),
        interrupted_record(call("estimate", "openai/gpt-4o", None), old, seen=seen, now=at),
        interrupted_record(call("nopr", "mistral/mistral-large-unpriced", None), None, seen=seen,
                           now=at),
    ]  # fmt: skip
    with engine.begin() as conn:
        write_records(conn, rows)
    _add_prices(engine, GPT4O_CORRECTION)
    _add_prices(engine, MISTRAL)
    result = reprice(engine, window=DayWindow(), now=NOW)
    with engine.connect() as conn:
        after = _records(conn)
    # 1000 × $2.00/M + 500 × $8.00/M (the correction); 1000 × $2/M + 500 × $6/M (mistral)
    assert (after["estimate"]["total_cost"], after["estimate"]["adjustment_cost"]) == (6_000_000, 0)
    floored = after["floored"]
    assert floored["total_cost"] == 20_000_000
    assert (floored["computed_cost"], floored["adjustment_cost"]) == (6_000_000, 14_000_000)
    newly = after["nopr"]
    assert (newly["total_cost"], newly["cost_source"]) == (5_000_000, "estimated")
    assert all(r["status"] == "interrupted" and r["usage_estimated"] for r in after.values())
    assert result.changed == 3
    _rollups_consistent(engine)
