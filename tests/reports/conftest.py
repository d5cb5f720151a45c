from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from tests.reports.factory import Org, generate_month, seed_org


@pytest.fixture
def month_data(engine: Engine) -> tuple[Org, list[dict[str, Any]]]:
    """November 2026 of generated traffic (plus one record each side of the month)."""
    with engine.begin() as conn:
        org = seed_org(conn)
        records = generate_month(conn, org)
    return org, records


def records_frame(org: Org, records: list[dict[str, Any]]) -> pd.DataFrame:
    """The raw records as pandas sees them, with the display names spend uses."""
    key_names = {v: k for k, v in org.keys.items()}
    team_names = {1: "search", 2: "ml"}
    frame = pd.DataFrame(records)
    frame["key"] = frame["key_id"].map(key_names)
    # team_id/customer_id None become NaN in pandas (truthy): test with notna.
    frame["team"] = frame["team_id"].map(lambda t: team_names[int(t)] if pd.notna(t) else None)
    frame["customer"] = frame["customer_id"].map(lambda c: "acme" if pd.notna(c) else None)
    frame["day"] = frame["started_at"].map(lambda t: t.date().isoformat())
    frame["month"] = frame["started_at"].map(lambda t: t.strftime("%Y-%m"))
    frame["end_user_scope"] = [
        None if scope is None
        else f"customer {'acme'}" if scope.startswith("customer:")
        else f"key {key_names[int(scope.split(':')[1])]}"
        for scope in frame["end_user_scope"]
    ]  # fmt: skip
    frame["tag_list"] = frame["tags"].map(lambda t: t.split(",") if t else [None])
    frame["requests"] = 1
    frame["errors"] = (frame["status"] != "success").astype("int64")
    return frame
