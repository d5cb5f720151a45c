from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine

from metering.cli import main
from tests.reports.factory import completion_response, seed_org

USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}


def test_ingest_command(db_url: str, engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        seed_org(conn)
    path = tmp_path / "backfill.jsonl"
    good = {
        "key": "alice",
        "timestamp": "2026-11-03T12:00:00Z",
        "response": completion_response("openai/gpt-4o", USAGE),
    }
    path.write_text(json.dumps(good) + "\n" + "oops\n" + json.dumps({**good, "key": "erin"}) + "\n")
    runner = CliRunner()
    first = runner.invoke(main, ["--database-url", db_url, "ingest", str(path)])
    assert first.exit_code == 1
    assert "line 2: not JSON" in first.output
    assert "ingested 2, duplicate 0, bad 1" in first.output
    assert "Error: 1 bad line(s) skipped" in first.output

    path.write_text(json.dumps(good) + "\n")
    again = runner.invoke(main, ["--database-url", db_url, "ingest", str(path)])
    assert again.exit_code == 0, again.output
    assert again.output == "ingested 0, duplicate 1, bad 0\n"

    spend = runner.invoke(
        main, ["--database-url", db_url, "spend", "--by", "key", "--format", "json"]
    )
    assert [(r["key"], r["requests"]) for r in json.loads(spend.output)] == [
        ("alice", 1),
        ("erin", 1),
    ]


def test_ingest_missing_file(db_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--database-url", db_url, "ingest", str(tmp_path / "none.jsonl")]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot read ")
