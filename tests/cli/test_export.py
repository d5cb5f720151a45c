from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from metering.cli import main
from metering.core.money import format_usd, parse_usd_to_nano
from tests.reports.factory import generate_month, seed_org


def test_export_default_paths_and_totals_match_spend(
    db_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as conn:
        generate_month(conn, seed_org(conn), n=150)
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["--database-url", db_url, "export", "--month", "2026-11"])
    assert result.exit_code == 0, result.output
    path = Path("reports/costs-2026-11.csv")
    assert path.exists()
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    total = sum(parse_usd_to_nano(r["total_cost"], allow_negative=True) for r in rows)
    spend = runner.invoke(
        main,
        [
            "--database-url",
            db_url,
            "spend",
            "--by",
            "month",
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-30",
            "--format",
            "json",
        ],
    )
    (month,) = json.loads(spend.output)
    assert parse_usd_to_nano(month["total_cost"], allow_negative=True) == total
    assert result.output == (
        f"wrote {len(rows)} row(s) to reports/costs-2026-11.csv (total {month['total_cost']} USD)\n"
    )

    result = runner.invoke(
        main, ["--database-url", db_url, "export", "--month", "2026-11", "--detail", "requests"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("wrote 150 row(s) to reports/costs-2026-11-requests.csv")


def test_export_bad_month(db_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--database-url", db_url, "export", "--month", "Nov", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 1
    assert result.output == "Error: month 'Nov' must be written YYYY-MM (e.g. 2026-11)\n"


@pytest.mark.parametrize("month", ["2026-1", "2026-02-30", "2026-13", "26-11", " "])
def test_export_invalid_month_is_one_line(db_url: str, tmp_path: Path, month: str) -> None:
    result = CliRunner().invoke(
        main, ["--database-url", db_url, "export", "--month", month, "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 1
    assert result.output == f"Error: month {month!r} must be written YYYY-MM (e.g. 2026-11)\n"
    assert not (tmp_path / "x").exists()


def test_export_out_in_a_missing_folder_is_an_error(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "costs.csv"
    result = CliRunner().invoke(
        main, ["--database-url", db_url, "export", "--month", "2026-11", "--out", str(out)]
    )
    assert result.exit_code == 1
    assert result.output == (
        f"Error: cannot write {out}: folder {out.parent} does not exist (create it first)\n"
    )
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("detail", ["summary", "requests"])
def test_export_unwritable_out_is_one_line(db_url: str, detail: str) -> None:
    args = ["--database-url", db_url, "export", "--month", "2026-11", "--detail", detail]
    result = CliRunner().invoke(main, [*args, "--out", "/sys/costs.csv"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot write /sys/costs.csv: ")
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_export_focus_cli(db_url: str, engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        generate_month(conn, seed_org(conn), n=80)
    runner = CliRunner()
    base = ["--database-url", db_url, "export", "--month", "2026-11", "--format", "focus"]
    out = tmp_path / "focus.csv"
    result = runner.invoke(main, [*base, "--out", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    total = sum(parse_usd_to_nano(r["BilledCost"], allow_negative=True) for r in rows)
    by_month = ["--by", "month", "--format", "json", "--since", "2026-11-01"]
    spend = runner.invoke(
        main, ["--database-url", db_url, "spend", *by_month, "--until", "2026-11-30"]
    )
    (month,) = json.loads(spend.output)
    assert total == parse_usd_to_nano(month["total_cost"], allow_negative=True)
    assert result.output == (
        f"wrote {len(rows)} FOCUS row(s) to {out} (total {format_usd(total)} USD)\n"
    )


def test_export_focus_cli_errors(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    base = ["--database-url", db_url, "export", "--month", "2026-11", "--format", "focus"]
    result = runner.invoke(main, [*base, "--detail", "requests"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: --detail applies to --format csv; FOCUS has one row per charge\n"
    )
    result = runner.invoke(main, [*base, "--format", "xml"])
    assert result.exit_code == 2
    assert "'xml' is not one of 'csv', 'focus'" in result.output
    result = runner.invoke(main, [*base, "--out", str(tmp_path / "none" / "f.csv")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot write ")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    result = runner.invoke(main, [*base, "--out", str(tmp_path / "f.parquet")])
    assert result.exit_code == 1
    assert result.output == (
        "Error: a .parquet file needs pyarrow: pip install 'metering[parquet]' (or write .csv)\n"
    )
    assert not (tmp_path / "f.parquet").exists()
    assert not (tmp_path / "none").exists()
