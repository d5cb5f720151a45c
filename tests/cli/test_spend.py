from __future__ import annotations

import csv
import io
import json
from typing import Any

from click.testing import CliRunner
from sqlalchemy import Engine

from metering.cli import main
from metering.core.money import format_usd
from tests.reports.factory import Org, generate_month, seed_org

NOVEMBER = ["--since", "2026-11-01", "--until", "2026-11-30"]


def _populate(engine: Engine) -> tuple[Org, list[dict[str, Any]]]:
    with engine.begin() as conn:
        org = seed_org(conn)
        return org, generate_month(conn, org, n=120)


def _run(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["--database-url", db_url, *args])


def test_spend_json_fields_and_until_is_inclusive(db_url: str, engine: Engine) -> None:
    _, records = _populate(engine)
    result = _run(db_url, "spend", "--by", "provider,model", *NOVEMBER, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    november = [r for r in records if r.started_at.month == 11]
    assert sum(r["requests"] for r in rows) == len(november)
    assert list(rows[0]) == [
        "provider",
        "model",
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cached_read_tokens",
        "cached_write_tokens",
        "cached_write_1h_tokens",
        "reasoning_tokens",
        "citation_tokens",
        "search_queries",
        "input_cost",
        "cache_read_cost",
        "cache_write_cost",
        "output_cost",
        "reasoning_cost",
        "citation_cost",
        "search_cost",
        "request_cost",
        "adjustment_cost",
        "total_cost",
    ]
    assert all(isinstance(r["total_cost"], str) for r in rows)
    # A record on Nov 30 late in the day is inside --until 2026-11-30.
    assert any(r.started_at.day == 30 for r in november)


def test_spend_table_has_total_row(db_url: str, engine: Engine) -> None:
    _, records = _populate(engine)
    result = _run(db_url, "spend", "--by", "key", *NOVEMBER)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["key", "requests", "errors"]
    total_line = lines[-1].split()
    assert total_line[0] == "TOTAL"
    november = [r for r in records if r.started_at.month == 11]
    assert total_line[1] == str(len(november))
    assert total_line[-1] == format_usd(sum(r.total_cost for r in november))
    assert {line.split()[0] for line in lines[2:-2]} == {"alice", "bob", "carol", "dave", "erin"}


def test_spend_csv_and_key_filter(db_url: str, engine: Engine) -> None:
    _, records = _populate(engine)
    result = _run(db_url, "spend", "--by", "day", "--key", "bob", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    bob = [r for r in records if r.key_id == 2]
    assert sum(int(r["requests"]) for r in rows) == len(bob)
    by_id = _run(db_url, "spend", "--by", "day", "--key", "2", "--format", "csv")
    assert by_id.output == result.output


def test_spend_errors_are_one_line(db_url: str) -> None:
    result = _run(db_url, "spend", "--key", "nobody")
    assert result.exit_code == 1
    assert result.output.startswith("Error: no virtual key named 'nobody'")
    assert len(result.output.strip().splitlines()) == 1
    result = _run(db_url, "spend", "--by", "week")
    assert result.exit_code == 1
    assert "cannot group by 'week'" in result.output
    result = _run(db_url, "spend", "--since", "2026-11-02", "--until", "2026-11-01")
    assert result.exit_code == 1
    assert "before --since" in result.output


def test_spend_on_empty_database(db_url: str) -> None:
    result = _run(db_url, "spend")
    assert result.exit_code == 0
    assert result.output.strip() == "(no rows)"
    assert json.loads(_run(db_url, "spend", "--format", "json").output) == []


def test_spend_by_tag_table_says_that_tag_groups_overlap(db_url: str, engine: Engine) -> None:
    _, records = _populate(engine)
    result = _run(db_url, "spend", "--by", "tag", *NOVEMBER)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("SUM OF GROUPS*") for line in lines)
    assert lines[-1].startswith("* a request with several tags counts in each tag's group")
    as_json = json.loads(_run(db_url, "spend", "--by", "tag", *NOVEMBER, "--format", "json").output)
    november = [r for r in records if r.started_at.month == 11]
    tagged = [r for r in november if r.tags and "beta" in r.tags.split(",")]
    beta = next(g for g in as_json if g["tag"] == "beta")
    assert beta["requests"] == len(tagged)
    assert beta["total_cost"] == format_usd(sum(r.total_cost for r in tagged))
    one = json.loads(
        _run(db_url, "spend", "--by", "key", "--end-user", "user-1", *NOVEMBER,
             "--format", "json").output
    )  # fmt: skip
    users = [r for r in november if r.end_user == "user-1"]
    assert sum(g["requests"] for g in one) == len(users)
