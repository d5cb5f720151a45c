"""Records: priced with the version in force at their time, written exactly once, rolled up."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, func, insert, select

from metering.core.billing import Bill
from metering.core.components import COMPONENT_COLUMNS
from metering.core.pricing import CostBreakdown, PriceBook, PriceVersion, Rates, price_usage
from metering.core.records import (
    RECORD_FIELDS,
    UsageRow,
    buckets_from_record,
    cost_columns,
    record_row,
)
from metering.core.responses import bill_response, read_response
from metering.storage.models import DailyRollup, UsageRecord, VirtualKey
from metering.storage.prices import load_price_book, save_versions
from metering.storage.records import write_records


def make_key(engine: Engine, name: str = "k1") -> int:
    now = datetime(2026, 1, 1)
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(VirtualKey)
                .values(
                    name=name,
                    key_hash=name.ljust(64, "0"),
                    key_prefix="sk-bf-xx",
                    created_at=now,
                    updated_at=now,
                )
                .returning(VirtualKey.id)
            ).scalar_one()
        )


def response(prompt: int = 1000, completion: int = 500, cached: int = 200) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "model": "gpt-4o",
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_read_tokens": cached},
            "total_tokens": prompt + completion,
        },
        "extra_fields": {"provider": "openai"},
    }


def record_for(
    engine: Engine, request_id: str, at: datetime, key_id: int, *, book: PriceBook | None = None
) -> UsageRow:
    """A priced record (``book``: the prices of a database at an older revision, which
    today's ``load_price_book`` cannot read)."""
    if book is None:
        with engine.connect() as conn:
            book = load_price_book(conn)
    facts = read_response(response(), "openai/gpt-4o")
    bill = bill_response(facts, book, requested="openai/gpt-4o", on=at.date())
    return record_row(
        request_id=request_id,
        started_at=at,
        ended_at=at,
        key_id=key_id,
        team_id=None,
        customer_id=None,
        requested_model="openai/gpt-4o",
        request_type="text_completion",
        stream=False,
        status="success",
        http_status=200,
        latency_ms=12,
        facts=facts,
        bill=bill,
    )


def test_record_is_priced_with_the_version_in_force_at_its_time(engine: Engine) -> None:
    doubled = PriceVersion(
        "openai",
        "gpt-4o",
        date(2026, 6, 1),
        Rates(input=Decimal("5"), cache_read=Decimal("2.5"), output=Decimal("20")),
        source="test",
    )
    with engine.begin() as conn:
        assert len(save_versions(conn, [doubled]).added) == 1
    key = make_key(engine)
    before = record_for(engine, "r-old", datetime(2026, 5, 31, 23, 59, 59), key)
    after = record_for(engine, "r-new", datetime(2026, 6, 1, 0, 0, 0), key)
    assert before.total_cost == 7_250_000  # the 2024 sheet
    assert after.total_cost == 14_500_000  # the June 2026 version
    assert before.price_version_id != after.price_version_id
    with engine.begin() as conn:
        write_records(conn, [before, after])
    with engine.connect() as conn:
        rows = conn.execute(select(UsageRecord.request_id, UsageRecord.total_cost)).all()
    assert dict(rows) == {"r-old": 7_250_000, "r-new": 14_500_000}


def test_writes_are_exactly_once_and_rollup_follows(engine: Engine) -> None:
    key = make_key(engine)
    at = datetime(2026, 3, 3, 12, 0)
    recs = [record_for(engine, f"r{i}", at, key) for i in range(3)]
    with engine.begin() as conn:
        assert write_records(conn, recs) == ["r0", "r1", "r2"]
    with engine.begin() as conn:  # a retried write of the same batch, plus one new
        assert write_records(conn, [*recs, record_for(engine, "r3", at, key)]) == ["r3"]
    with engine.connect() as conn:
        count, total = conn.execute(select(func.count(), func.sum(UsageRecord.total_cost))).one()
        rollup = conn.execute(select(DailyRollup)).mappings().all()
    assert (count, total) == (4, 4 * 7_250_000)
    assert len(rollup) == 1
    assert (rollup[0]["day"], rollup[0]["requests"], rollup[0]["total_cost"]) == (
        date(2026, 3, 3),
        4,
        4 * 7_250_000,
    )
    assert rollup[0]["cached_read_tokens"] == 800 and rollup[0]["errors"] == 0


def test_record_fields_are_every_column_but_the_id_in_table_order() -> None:
    columns = tuple(c.name for c in UsageRecord.__table__.columns if c.name != "id")
    assert columns == RECORD_FIELDS
    start = RECORD_FIELDS.index(COMPONENT_COLUMNS[0])
    assert RECORD_FIELDS[start : start + len(COMPONENT_COLUMNS)] == COMPONENT_COLUMNS


def test_a_record_reads_back_as_written_and_errors_are_rolled_up(engine: Engine) -> None:
    key = make_key(engine)
    at = datetime(2026, 3, 3, 12, 0, 0, 123456)
    records = [record_for(engine, f"d{i}", at, key) for i in range(3)]
    records.append(record_for(engine, "d-err", at, key)._replace(status="timeout"))
    with engine.begin() as conn:
        assert write_records(conn, records) == ["d0", "d1", "d2", "d-err"]
    with engine.begin() as conn:  # a replay adds nothing, a new record is added
        again = [*records, records[0]._replace(request_id="new")]
        assert write_records(conn, again) == ["new"]
    with engine.connect() as conn:
        stored = conn.execute(select(UsageRecord).order_by(UsageRecord.id)).mappings().all()
        rollup = conn.execute(select(DailyRollup)).mappings().one()
    assert [UsageRow.from_mapping(r) for r in stored] == [*records, again[-1]]
    assert (rollup["requests"], rollup["errors"]) == (5, 1)
    assert rollup["total_cost"] == 5 * 7_250_000


def test_one_hour_cache_writes_are_stored_rolled_up_and_repriced_from_the_record(
    engine: Engine,
) -> None:
    """The 1-hour part of the writes round-trips through a stored record, so pricing the
    record's buckets again gives the cost it was billed."""
    with engine.connect() as conn:
        book = load_price_book(conn)  # the shipped sheet: cache_write 3.75, 1-hour 6.00
    usage = {
        "prompt_tokens": 1100,
        "completion_tokens": 10,
        "prompt_tokens_details": {"cached_write_tokens": 100, "cached_write_1h_tokens": 40},
    }
    answer = {"id": "msg-1", "model": "claude-sonnet-4-5", "usage": usage}
    answer["extra_fields"] = {"provider": "anthropic"}
    facts = read_response(answer, "anthropic/claude-sonnet-4-5")
    at = datetime(2026, 3, 3, 12, 0)
    bill = bill_response(facts, book, requested="anthropic/claude-sonnet-4-5", on=at.date())
    row = record_row(
        request_id="r-1h", started_at=at, ended_at=at, key_id=make_key(engine), team_id=None,
        customer_id=None, requested_model="anthropic/claude-sonnet-4-5",
        request_type="chat_completion", stream=False, status="success", http_status=200,
        latency_ms=12, facts=facts, bill=bill,
    )  # fmt: skip
    # every write in cached_write_tokens, the 1-hour part beside it
    assert (row.prompt_tokens, row.prompt_text_tokens) == (1100, 1000)
    assert (row.cached_write_tokens, row.cached_write_1h_tokens) == (100, 40)
    assert row.cache_write_cost == 60 * 3750 + 40 * 6000
    assert buckets_from_record(row) == facts.usage
    with engine.begin() as conn:
        assert write_records(conn, [row, row._replace(request_id="r-1h-b")]) == ["r-1h", "r-1h-b"]
    with engine.connect() as conn:
        stored = conn.execute(select(UsageRecord).where(UsageRecord.request_id == "r-1h"))
        back = UsageRow.from_mapping(stored.mappings().one())
        rollup = conn.execute(select(DailyRollup)).mappings().one()
    assert back == row
    assert buckets_from_record(back) == facts.usage
    claude = book.lookup("anthropic", "claude-sonnet-4-5", at.date())
    assert claude is not None and bill.price_version_id == claude.id
    assert price_usage(buckets_from_record(back), claude) == bill.components
    assert (rollup["cached_write_tokens"], rollup["cached_write_1h_tokens"]) == (200, 80)
    assert rollup["cache_write_cost"] == 2 * row.cache_write_cost


def test_record_row_derives_the_totals() -> None:
    facts = read_response(response(), "openai/gpt-4o")
    bill = Bill(CostBreakdown(input=1, output=2), 3, None, 4, "computed", None)
    row = record_row(
        request_id="x",
        started_at=datetime(2026, 1, 1),
        ended_at=datetime(2026, 1, 1, 0, 0, 1),
        key_id=1,
        team_id=None,
        customer_id=2,
        requested_model="openai/gpt-4o",
        request_type="text_completion",
        stream=True,
        status="success",
        http_status=200,
        latency_ms=None,
        facts=facts,
        bill=bill,
    )
    usage = facts.usage
    assert row._replace(**cost_columns(bill)) == row
    assert (row.total_cost, row.completion_text_tokens) == (7, usage.completion_text)
    assert (row.input_cost, row.output_cost, row.adjustment_cost) == (1, 2, 4)
    assert row.total_tokens == row.prompt_tokens + row.completion_tokens == 1500
    assert row.prompt_tokens == 1000 and row.cached_read_tokens == 200


def test_sqlite_dates_given_as_text_or_dates_are_stored_as_datetimes(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL takes the datetimes as they are
    key = make_key(engine)
    at = datetime(2026, 3, 5, 8, 30, 0, 250000)
    text = "2026-03-05 08:30:01.000000"
    row = record_for(engine, "as-text", at, key)._replace(ended_at=text)  # type: ignore[arg-type]
    day = date(2026, 3, 6)
    day_row = record_for(engine, "as-date", at, key)._replace(ended_at=day)
    with engine.begin() as conn:
        assert write_records(conn, [row, day_row]) == ["as-text", "as-date"]
    with engine.connect() as conn:
        stored = dict(conn.execute(select(UsageRecord.request_id, UsageRecord.ended_at)).all())
        started = set(conn.execute(select(UsageRecord.started_at)).scalars())
    assert stored == {"as-text": datetime(2026, 3, 5, 8, 30, 1), "as-date": datetime(2026, 3, 6)}
    assert started == {at}
