"""The one renderer of listing commands: CSV cells cannot run as spreadsheet formulas."""

from __future__ import annotations

from metering.cli.output import render


def test_csv_cells_that_look_like_formulas_are_neutralised_numbers_are_not() -> None:
    rows = [
        {"key": '=HYPERLINK("x")', "model": "+cmd", "team": "@SUM(A1)", "cost": "-0.5"},
        {"key": "plain", "model": "-2+3", "team": None, "cost": "12"},
    ]
    out = render(rows, "csv").splitlines()
    assert out[0] == "key,model,team,cost"
    assert out[1] == '"\'=HYPERLINK(""x"")",\'+cmd,\'@SUM(A1),-0.5'
    assert out[2] == "plain,'-2+3,,12"
