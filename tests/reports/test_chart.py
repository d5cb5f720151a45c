from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from metering.reports.chart import chart_month, render_chart, tick_decimals
from tests.reports.factory import Org

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _expected(records: list[dict[str, Any]], label: Any) -> dict[tuple[str, str], int]:
    cells: dict[tuple[str, str], int] = defaultdict(int)
    for r in records:
        if r.started_at.strftime("%Y-%m") == "2026-11":
            cells[(r.started_at.date().isoformat(), label(r))] += r.total_cost
    return cells


@pytest.mark.parametrize(
    ("by", "label"),
    [
        ("provider", lambda r: r.provider),
        ("model", lambda r: f"{r.provider}/{r.model}"),
        ("key", lambda r: ["alice", "bob", "carol", "dave", "erin"][r.key_id - 1]),
    ],
)
def test_chart_is_a_png_of_the_expected_series(
    engine: Engine,
    month_data: tuple[Org, list[dict[str, Any]]],
    tmp_path: Path,
    by: Any,
    label: Any,
) -> None:
    _, records = month_data
    out = tmp_path / "charts" / "nov.png"
    with engine.connect() as conn:
        path, frame = chart_month(conn, month="2026-11", by=by, out=out)
    assert path == out
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(str(out)).shape
    assert (width, height) == (1200, 600)

    expected = _expected(records, label)
    assert list(frame.index) == [f"2026-11-{d:02d}" for d in range(1, 31)]
    assert list(frame.columns) == sorted({s for _, s in expected})
    for day in frame.index:
        for series in frame.columns:
            assert int(frame.loc[day, series]) == expected.get((day, series), 0)
    assert str(frame.dtypes.iloc[0]) == "int64"


def test_chart_of_an_empty_month(engine: Engine, tmp_path: Path) -> None:
    with engine.connect() as conn:
        _, frame = chart_month(conn, month="2026-02", out=tmp_path / "feb.png")
    assert frame.shape == (28, 0)
    assert (tmp_path / "feb.png").read_bytes().startswith(PNG_MAGIC)


def test_tick_decimals_tell_small_steps_apart() -> None:
    assert [tick_decimals(s) for s in (5.0, 0.25, 0.01, 0.002, 0.0005, 1e-12)] == [
        2, 2, 2, 3, 4, 9,
    ]  # fmt: skip


def test_a_small_month_reads_and_the_legend_is_outside(tmp_path: Path) -> None:
    days = [f"2026-11-{d:02d}" for d in range(1, 31)]
    models = [f"openai/model-{i:02d}" for i in range(20)]  # 20 series
    frame = pd.DataFrame(
        [[(d * 37 + m * 11) % 400 * 1000 for m in range(20)] for d in range(30)],
        index=pd.Index(days, name="day"),
        columns=pd.Index(models, name="model"),
        dtype="int64",
    )  # at most $0.0004 a cell: the whole month is cents
    layout = render_chart(frame, tmp_path / "small.png", title="small")
    labels = [label for label in layout.y_labels if label]
    assert len(labels) >= 3 and len(set(labels)) == len(labels)  # no "$0.01" four times
    assert layout.legend_outside
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(str(tmp_path / "small.png")).shape
    assert (width, height) == (1200, 600)
