"""Absurd limits and prices are refused at the CLI with one line, and nothing is stored."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from metering.cli import main
from metering.storage.models import Budget, PriceVersionRow


def test_an_absurd_limit_or_price_is_one_line_and_changes_nothing(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    run = CliRunner().invoke
    base = ["--database-url", db_url]
    assert run(main, [*base, "keys", "create", "app"]).exit_code == 0
    for limit, why in (("10000000000", "at most 1000000000 USD"), ("1e3", "plain decimal"),
                       ("0.0000000001", "finer than the nano-dollar")):  # fmt: skip
        result = run(main, [*base, "budgets", "set", "--key", "app", "--limit", limit,
                            "--period", "monthly"])  # fmt: skip
        assert result.exit_code == 1 and why in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Budget)).scalar_one() == 0
        before = conn.execute(select(func.count()).select_from(PriceVersionRow)).scalar_one()
    sheet = tmp_path / "dear.toml"
    sheet.write_text('provider = "x"\neffective_from = "2026-01-01"\n'
                     '[models.m]\ninput = "1.0"\noutput = "1000000000000000"\n')  # fmt: skip
    result = run(main, [*base, "prices", "import", str(sheet)])
    assert result.exit_code == 1 and "above the maximum" in result.output, result.output
    with engine.connect() as conn:
        after = conn.execute(select(func.count()).select_from(PriceVersionRow)).scalar_one()
    assert after == before


def test_an_unsupported_or_broken_database_is_one_clear_line(tmp_path: Path) -> None:
    broken = tmp_path / "not-a-database.db"
    broken.write_bytes(bytes(range(256)) * 8)
    for url, why in (("mysql://u@h/db", "mysql is not supported"),
                     (f"sqlite:///{broken}", "is not a SQLite database file")):  # fmt: skip
        result = CliRunner().invoke(main, ["--database-url", url, "keys", "list"])
        assert result.exit_code == 1 and why in result.output, result.output
        assert len(result.output.splitlines()) == 1
