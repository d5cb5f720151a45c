from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select

from metering.reports import ingest as ingest_module
from metering.reports.common import DayWindow, load_names
from metering.reports.ingest import derived_request_id, ingest_lines
from metering.reports.reconcile import check_rollups
from metering.storage.models import DailyRollup, UsageRecord
from tests.reports.factory import completion_response, seed_org

NOW = datetime(2026, 11, 28)
USAGE = {
    "prompt_tokens": 1000,
    "prompt_tokens_details": {"cached_read_tokens": 200},
    "completion_tokens": 500,
    "completion_tokens_details": {"reasoning_tokens": 100},
    "total_tokens": 1500,
}


def _line(**fields: Any) -> bytes:
    return (json.dumps(fields) + "\n").encode()


def _lines() -> list[bytes]:
    return [
        _line(
            key="alice",
            timestamp="2026-11-03T23:59:59.999999Z",
            response=completion_response("openai/gpt-4o", USAGE, response_id="a"),
        ),
        _line(
            key=2,
            timestamp="2026-11-04T01:00:00+01:00",  # = 2026-11-04T00:00:00Z
            response=completion_response("openai/gpt-4o", USAGE, response_id="b"),
            request_id="given-id-1",
        ),
        b"{not json\n",
        _line(key="nobody", timestamp="2026-11-04T00:00:00", response={}),
        _line(key="alice", timestamp="yesterday", response={}),
        b"\n",
        _line(
            key="carol",
            timestamp="2026-11-05T10:00:00",
            model="anthropic/claude-sonnet-4-5",
            response=completion_response("anthropic/claude-sonnet-4-5", USAGE, response_id="c"),
        ),
        _line(
            key="dave",
            timestamp="2026-11-05T10:00:00",
            response=completion_response(
                "openai/gpt-4o", {**USAGE, "prompt_tokens": -1}, response_id="d"
            ),
        ),
        b"\xff\xfe\n",
        _line(key="alice", timestamp="2026-11-06T00:00:00", response=[1]),
    ]


def _count(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        records = conn.execute(select(func.count()).select_from(UsageRecord)).scalar_one()
        requests = conn.execute(select(func.sum(DailyRollup.requests))).scalar()
    return int(records), int(requests or 0)


def test_ingest_twice_is_once_and_bad_lines_do_not_stop_the_rest(engine: Engine) -> None:
    with engine.begin() as conn:
        seed_org(conn)
    first = ingest_lines(engine, _lines(), now=NOW)
    assert (first.ingested, first.duplicate, first.bad) == (3, 0, 6)
    assert [n for n, _ in first.bad_lines] == [3, 4, 5, 8, 9, 10]
    reasons = dict(first.bad_lines)
    assert reasons[3].startswith("not JSON")
    assert reasons[4].startswith("no virtual key named 'nobody'")
    assert "is not ISO-8601" in reasons[5]
    assert "must not be negative" in reasons[8]
    assert reasons[9] == "not UTF-8 text"
    assert reasons[10].startswith("response must be a JSON object")
    assert _count(engine) == (3, 3)

    second = ingest_lines(engine, _lines(), now=NOW)
    assert (second.ingested, second.duplicate, second.bad) == (0, 3, 6)
    assert _count(engine) == (3, 3)

    with engine.connect() as conn:
        rows = {
            r.request_id: r
            for r in conn.execute(
                select(
                    UsageRecord.request_id,
                    UsageRecord.started_at,
                    UsageRecord.key_id,
                    UsageRecord.team_id,
                    UsageRecord.provider,
                    UsageRecord.model,
                    UsageRecord.cached_read_tokens,
                    UsageRecord.total_cost,
                    UsageRecord.cost_source,
                )
            )
        }
        _, problems = check_rollups(conn, DayWindow(), load_names(conn))
    assert problems == []
    given = rows["given-id-1"]
    assert given.started_at == datetime(2026, 11, 4, 0, 0, 0)
    assert (given.key_id, given.team_id) == (2, 1)
    derived = [r for rid, r in rows.items() if rid.startswith("ingest-")]
    assert len(derived) == 2
    alice = next(r for r in derived if r.key_id == 1)
    assert alice.started_at == datetime(2026, 11, 3, 23, 59, 59, 999999)
    assert (alice.provider, alice.model, alice.cached_read_tokens) == ("openai", "gpt-4o", 200)
    # 800 × 2.50 + 200 × 1.25 + 500 × 10.00 per 1M = 0.00725 USD
    assert alice.total_cost == 7_250_000 and alice.cost_source == "computed"


def test_duplicates_within_one_batch_are_counted_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "BATCH_ROWS", 2)
    with engine.begin() as conn:
        seed_org(conn)
    line = _line(
        key="bob",
        timestamp="2026-11-10T08:00:00Z",
        response=completion_response("openai/gpt-4o-mini", USAGE),
    )
    result = ingest_lines(engine, [line, line, line, line, line], now=NOW)
    assert (result.ingested, result.duplicate, result.bad) == (1, 4, 0)
    assert _count(engine) == (1, 1)


def test_derived_request_id_is_deterministic() -> None:
    at = datetime(2026, 11, 1)
    one = derived_request_id(1, at, "openai/gpt-4o", {"id": "x", "usage": {"a": 1, "b": 2}})
    two = derived_request_id(1, at, "openai/gpt-4o", {"usage": {"b": 2, "a": 1}, "id": "x"})
    assert one == two and one.startswith("ingest-") and len(one) <= 64
    assert one != derived_request_id(2, at, "openai/gpt-4o", {"id": "x"})


def test_worker_processes_give_the_same_result(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "CHUNK_LINES", 2)  # several chunks: worker processes
    monkeypatch.setattr(ingest_module, "BATCH_ROWS", 2)
    with engine.begin() as conn:
        seed_org(conn)
    read: list[int] = []
    first = ingest_lines(engine, _lines(), now=NOW, progress=read.append)
    assert sum(read) == sum(len(line) for line in _lines())
    assert (first.ingested, first.duplicate, first.bad) == (3, 0, 6)
    assert [n for n, _ in first.bad_lines] == [3, 4, 5, 8, 9, 10]
    assert dict(first.bad_lines)[9] == "not UTF-8 text"
    again = ingest_lines(engine, _lines() + _lines(), now=NOW)
    assert (again.ingested, again.duplicate, again.bad) == (0, 6, 12)
    assert [n for n, _ in again.bad_lines][6:] == [13, 14, 15, 18, 19, 20]
    assert _count(engine) == (3, 3)


def test_batches_are_written_with_a_large_page_cache_then_put_back(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sqlite_engine
    with engine.begin() as conn:
        seed_org(conn)
    used: list[tuple[Any, tuple[int, int]]] = []
    record = ingest_module.ledger.record

    def pragmas(conn: Any) -> tuple[int, int]:
        run = conn.exec_driver_sql if isinstance(conn, Connection) else conn.execute
        return tuple(run(f"PRAGMA {name}").fetchone()[0] for name in ("cache_size", "temp_store"))

    def spy(conn: Connection, entries: list[Any], *, now: Any) -> list[bool]:
        used.append((conn.connection.dbapi_connection, pragmas(conn)))
        return record(conn, entries, now=now)

    monkeypatch.setattr(ingest_module.ledger, "record", spy)
    result = ingest_lines(engine, _lines(), now=NOW)
    assert result.ingested == 3
    assert [during for _, during in used] == [(-ingest_module.WRITER_CACHE_KIB, 2)]
    assert pragmas(used[0][0]) == (-2000, 0)  # SQLite's defaults


def test_hostile_names_in_a_line_are_bad_lines_and_the_upstreams_are_cleaned(
    engine: Engine,
) -> None:
    """The rules of the gateway: a name the line chose that no column can hold is a bad
    line (nothing written); what the saved response names is made storable."""
    with engine.begin() as conn:
        seed_org(conn)
    ok = completion_response("openai/gpt-4o", USAGE, response_id="h")
    T = "2026-11-03T00:00:00Z"
    strange = {**ok, "id": "x\x00" * 300, "model": "gpt-4o\x1b", "extra_fields": {
        "provider": "open\x00ai" + "i" * 200, "request_type": "text\x00completion"}}  # fmt: skip
    lines = [
        _line(key="alice", timestamp=T, model="openai/gpt-4o\x00", response=ok),
        _line(key="alice", timestamp=T, model="openai/a,openai/b", response=ok),
        _line(key="ali\x00ce", timestamp=T, response=ok),
        _line(key="alice", timestamp=T, request_id="r\x00", response=ok),
        _line(key="alice", timestamp=T, model="openai/gpt-4o",
              request_id="strange", response=strange),
    ]  # fmt: skip
    result = ingest_lines(engine, lines, now=NOW)
    assert (result.ingested, result.bad) == (1, 4)
    reasons = dict(result.bad_lines)
    assert "control characters" in reasons[1] and "comma-separated" in reasons[2]
    assert "control characters" in reasons[3] and "control characters" in reasons[4]
    with engine.connect() as conn:
        row = conn.execute(select(UsageRecord).where(UsageRecord.request_id == "strange")).one()
    assert row.response_id is not None and len(row.response_id) == 200
    assert row.response_id.endswith("…") and "\x00" not in row.response_id
    assert row.model == "gpt-4o\ufffd" and row.request_type == "text\ufffdcompletion"
    assert len(row.provider) == 100 and row.provider.startswith("open\ufffdai")


def test_ingest_keeps_anthropic_one_hour_cache_writes(engine: Engine) -> None:
    with engine.begin() as conn:
        seed_org(conn)
    usage = {
        "prompt_tokens": 1100,
        "completion_tokens": 10,
        "cache_creation_input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 60, "ephemeral_1h_input_tokens": 40},
    }
    model = "anthropic/claude-sonnet-4-5"
    line = _line(key="carol", timestamp="2026-11-05T10:00:00", model=model,
                 response=completion_response(model, usage, response_id="1h"))  # fmt: skip
    assert ingest_lines(engine, [line], now=NOW).ingested == 1
    with engine.connect() as conn:
        row = conn.execute(
            select(UsageRecord.cached_write_tokens, UsageRecord.cached_write_1h_tokens,
                   UsageRecord.cache_write_cost)
        ).one()  # fmt: skip
    assert tuple(row) == (100, 40, 60 * 3750 + 40 * 6000)


def test_a_timestamp_in_the_future_is_a_bad_line(engine: Engine) -> None:
    with engine.begin() as conn:
        seed_org(conn)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    lines = [
        _line(key="alice", timestamp=later, response=completion_response("openai/gpt-4o", USAGE))
    ]
    result = ingest_lines(engine, lines, now=NOW)
    assert (result.ingested, result.bad) == (0, 1)
    assert "is in the future" in result.bad_lines[0][1]
