from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import Engine, update

from metering.cli import main
from metering.storage.models import DailyRollup
from tests.reports.factory import generate_month, seed_org


def _run(db_url: str, *args: str) -> object:
    return CliRunner().invoke(main, ["--database-url", db_url, "reconcile", *args])


def test_reconcile_passes_then_fails_on_a_corrupted_rollup(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        generate_month(conn, seed_org(conn), n=80)
    result = CliRunner().invoke(main, ["--database-url", db_url, "reconcile", "--month", "2026-11"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("rollups: OK (")
    assert "reported vs computed cost: " in result.output
    assert "unpriced records: " in result.output

    strict = CliRunner().invoke(
        main, ["--database-url", db_url, "reconcile", "--month", "2026-11", "--strict"]
    )
    assert strict.exit_code == 1
    assert "Error: reconcile --strict failed: " in strict.output

    with engine.begin() as conn:
        conn.execute(update(DailyRollup).values(errors=DailyRollup.errors + 1))
    broken = CliRunner().invoke(main, ["--database-url", db_url, "reconcile"])
    assert broken.exit_code == 1
    assert "disagreement(s) with the records" in broken.output
    assert ": errors is " in broken.output
    assert "Error: reconcile failed: " in broken.output

    as_json = CliRunner().invoke(main, ["--database-url", db_url, "reconcile", "--format", "json"])
    assert as_json.exit_code == 1
    body = json.loads(as_json.output[: as_json.output.rindex("}") + 1])
    assert body["ok"] is False
    assert body["rollup_problems"]


def test_reconcile_empty_database_is_ok(db_url: str) -> None:
    result = CliRunner().invoke(main, ["--database-url", db_url, "reconcile", "--strict"])
    assert result.exit_code == 0, result.output
    assert "rollups: OK (0 day row(s) equal their records)" in result.output


def test_reconcile_names_a_corrupted_budget_counter(db_url: str, engine: Engine) -> None:
    from datetime import UTC, datetime

    from metering.storage.budgets import set_budget
    from metering.storage.models import Budget

    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        seed_org(conn)
        set_budget(conn, owner_type="team", owner_id=1, limit_nano=10**12, period="daily", now=now)
        conn.execute(update(Budget).values(spent_nano=7))
    result = CliRunner().invoke(main, ["--database-url", db_url, "reconcile"])
    assert result.exit_code == 1
    assert "budget counters: 1 disagreement(s)" in result.output
    assert "team budget #1 (owner id 1): spent $0.000000007 but its records since" in result.output


def test_reconcile_lists_interrupted_calls_and_strict_fails_on_them(
    db_url: str, engine: Engine
) -> None:
    from datetime import datetime

    from metering.core.interrupted import InFlightCall, LastSeen, interrupted_record
    from metering.storage.prices import load_price_book
    from metering.storage.records import write_records
    from tests.storage.test_records import make_key

    key = make_key(engine)
    at = datetime(2026, 11, 20, 10)
    with engine.connect() as conn:
        version = load_price_book(conn).lookup("openai", "gpt-4o", at.date())
    call = InFlightCall("cut-1", 1, key, None, None, "openai/gpt-4o", "chat_completion", True,
                        at, 1000, 500, 20_000_000)  # fmt: skip
    with engine.begin() as conn:
        write_records(conn, [interrupted_record(call, version, seen=LastSeen(None, None, None),
                                                now=at)])  # fmt: skip
    result = _run(db_url)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    output = result.output  # type: ignore[attr-defined]
    assert "interrupted calls: 1 (" in output and "0.02 USD" in output
    assert "cut-1" in output
    strict = _run(db_url, "--strict")
    assert strict.exit_code == 1  # type: ignore[attr-defined]
    assert "1 interrupted call(s)" in strict.output  # type: ignore[attr-defined]
    as_json = _run(db_url, "--format", "json")
    body = json.loads(as_json.output)  # type: ignore[attr-defined]
    assert (body["interrupted_records"], body["interrupted_total"]) == (1, "0.02")
    (listed,) = body["interrupted"]
    assert (listed["request_id"], listed["billed"], listed["cost_source"]) == (
        "cut-1",
        "0.02",
        "estimated",
    )
    assert (listed["prompt_tokens"], listed["completion_tokens"]) == (1000, 500)


def test_reconcile_as_csv_one_row_per_finding(db_url: str, engine: Engine) -> None:
    header = (
        "section,problem,request_id,started_at,key,provider,model,computed_cost,reported_cost,"
        "difference,billed,total_tokens,status,prompt_tokens,completion_tokens,cost_source"
    )
    empty = CliRunner().invoke(main, ["--database-url", db_url, "reconcile", "--format", "csv"])
    assert (empty.exit_code, empty.output) == (0, header + "\n")
    with engine.begin() as conn:
        generate_month(conn, seed_org(conn), n=80)
    result = _run(db_url, "--format", "csv", "--limit", "2")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    lines = result.output.splitlines()  # type: ignore[attr-defined]
    assert lines[0] == header
    assert [line.split(",")[0] for line in lines[1:]] == ["cost_difference"] * 2 + ["unpriced"] * 2
    assert all(line.count(",") == header.count(",") for line in lines)
    with engine.begin() as conn:
        conn.execute(update(DailyRollup).values(errors=DailyRollup.errors + 1))
    broken = CliRunner().invoke(
        main, ["--database-url", db_url, "reconcile", "--format", "csv", "--limit", "2"]
    )
    assert broken.exit_code == 1
    rows = broken.stdout.splitlines()[1:]
    assert rows[0].startswith("rollup,rollup 2026-") and ": errors is " in rows[0]
    assert rows[0].endswith(",,,,,,,,,,,,,,")
    assert broken.stderr.startswith("Error: reconcile failed: ")
