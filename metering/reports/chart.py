"""``metering chart``: a month's daily spend as stacked bars, one series per provider,
model or key. The data (int64 nano-USD per day × series) is computed in SQL from the
daily rollup and returned, so it can be checked without looking at pixels."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy import Connection, func, select

from metering.core.money import NANO_PER_USD, format_usd
from metering.reports.common import DayWindow, as_date, load_names, month_days, parse_month
from metering.reports.files import atomic_file, check_out_path
from metering.storage.models import DailyRollup

ChartBy = Literal["provider", "model", "key"]


def default_chart_path(month: str) -> Path:
    return Path("reports") / f"spend-{month}.png"


def daily_spend(conn: Connection, window: DayWindow, *, by: ChartBy) -> pd.DataFrame:
    """Index: every day of the window (ISO strings); columns: series; cells: nano-USD."""
    r = DailyRollup
    series: Any = {
        "provider": r.provider,
        "model": r.provider + "/" + r.model,
        "key": r.key_id,
    }[by]
    query = (
        select(r.day, series.label("series"), func.sum(r.total_cost).label("total"))
        .where(*window.where_day(r.day))
        .group_by(r.day, series)
    )
    names = load_names(conn) if by == "key" else None
    cells: dict[tuple[str, str], int] = {}
    for row in conn.execute(query):
        label = names.key(int(row.series)) if names is not None else str(row.series)
        cells[(as_date(row.day).isoformat(), label)] = int(row.total)
    days = [d.isoformat() for d in month_days(window)]
    labels = sorted({label for _, label in cells})
    frame = pd.DataFrame(
        [[cells.get((d, s), 0) for s in labels] for d in days],
        index=pd.Index(days, name="day"),
        columns=pd.Index(labels, name=by),
        dtype="int64",
    )
    return frame


def unpriced_in(conn: Connection, window: DayWindow) -> int:
    """Requests of the window without a price: the chart counts them as $0 and says so."""
    r = DailyRollup
    found = conn.execute(
        select(func.coalesce(func.sum(r.unpriced), 0)).where(*window.where_day(r.day))
    ).scalar_one()
    return int(found)


def tick_decimals(step: float) -> int:
    """Decimals that tell ticks ``step`` USD apart (2 at least, as cents; 9 at most)."""
    if step <= 0:
        return 2
    return min(max(2, math.ceil(-math.log10(step) - 1e-9)), 9)


@dataclass(frozen=True, slots=True)
class ChartLayout:
    """What a reader sees besides the bars (for tests: no pixels needed)."""

    y_labels: list[str]
    legend_outside: bool  # the legend is right of the plot, never over the bars


def render_chart(frame: pd.DataFrame, out: Path, *, title: str) -> ChartLayout:
    """Stacked daily bars as a PNG. Headless: an Agg canvas, no pyplot global state.
    The y ticks get as many decimals as they need to differ; the legend (one or two
    columns, 20 models fit) is outside the plot, on the right."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(12, 6), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    days = [d[-2:] for d in frame.index]
    bottom = [0.0] * len(days)
    for label in frame.columns:
        # Floats only for drawing bar heights; every figure printed comes from the ints.
        heights = [int(v) / NANO_PER_USD for v in frame[label]]
        ax.bar(days, heights, bottom=bottom, label=str(label))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_title(title)
    ax.set_xlabel("day of month (UTC)")
    ax.set_ylabel("spend (USD)")
    ticks = list(ax.get_yticks())
    step = min((b - a for a, b in itertools.pairwise(ticks)), default=0.0)
    decimals = tick_decimals(step)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"${v:,.{decimals}f}"))
    fig.subplots_adjust(left=0.08, right=0.74 if len(frame.columns) > 12 else 0.8,
                        top=0.92, bottom=0.1)  # fmt: skip
    legend = None
    if len(frame.columns):
        legend = ax.legend(
            title=frame.columns.name,
            fontsize="small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
            ncol=2 if len(frame.columns) > 24 else 1,
        )
    canvas.draw()  # type: ignore[no-untyped-call]  # matplotlib's Agg canvas is untyped
    labels = [t.get_text() for t in ax.get_yticklabels()]
    outside = legend is None or (legend.get_window_extent().x0 >= ax.get_window_extent().x1)
    with atomic_file(out, binary=True) as fh:
        fig.savefig(fh, format="png")
    return ChartLayout(y_labels=labels, legend_outside=outside)


def chart_month(
    conn: Connection,
    *,
    month: str,
    by: ChartBy = "provider",
    out: Path | None = None,
    create_folder: bool = True,
) -> tuple[Path, pd.DataFrame]:
    """Render the month's chart; returns the file and the plotted frame (nano-USD).
    ``create_folder=False`` (the CLI's ``--out``): a missing folder is an error."""
    window = parse_month(month)
    frame = daily_spend(conn, window, by=by)
    path = out if out is not None else default_chart_path(month)
    check_out_path(path, create=create_folder)  # before any work: a bad --out is one line
    total = format_usd(int(frame.to_numpy().sum())) if frame.size else "0"
    title = f"Daily spend by {by}, {month} (total ${total})"
    unpriced = unpriced_in(conn, window)
    if unpriced:  # nobody should read their $0 as free
        title += f"\n{unpriced} request(s) without a price are counted as $0"
    render_chart(frame, path, title=title)
    return path, frame
