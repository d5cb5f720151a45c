"""0012 (budget scopes) from the previous revision with budgets and everything that
references them in place: ids, counters and links kept (SQLite copies the table with its
foreign keys off and checks them after), the references still cascade, one owner may now
hold a budget per model pattern, the old one-per-owner rule stays for plain budgets."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, Table, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from metering.storage.engine import make_engine
from metering.storage.migrate import alembic_config, head_revision, upgrade
from tests.storage.test_migrations import empty_db_url  # noqa: F401  (fixture)
from tests.storage.test_records import make_key

REVISION = "0013"  # migrations/versions/0013_budget_scopes.py
AT = datetime(2026, 3, 3, 12, 0)
REFERENCING = ("reservations", "budget_events", "budget_alerts", "budget_alert_events")


def _seed(engine: object) -> dict[str, Table]:
    key_id = make_key(engine)  # type: ignore[arg-type]
    old = MetaData()
    tables = {n: Table(n, old, autoload_with=engine) for n in ("budgets", *REFERENCING)}
    assert "model_pattern" not in tables["budgets"].c
    budget = {
        "owner_type": "key", "owner_id": key_id, "limit_nano": 5 * 10**9, "period": "monthly",
        "timezone": "UTC", "soft_pct": 80, "period_start": datetime(2026, 3, 1),
        "spent_nano": 7, "reserved_nano": 11, "created_at": AT, "updated_at": AT,
    }  # fmt: skip
    with engine.begin() as conn:  # type: ignore[attr-defined]
        budget_id = conn.execute(insert(tables["budgets"]).values(budget)).inserted_primary_key[0]
        conn.execute(
            insert(tables["reservations"]).values(
                request_id="r1", budget_id=budget_id, amount_nano=11, created_at=AT, expires_at=AT
            )
        )
        conn.execute(
            insert(tables["budget_events"]).values(
                budget_id=budget_id,
                kind="soft_limit_crossed",
                period_start=datetime(2026, 3, 1),
                at=AT,
                spent_nano=7,
                limit_nano=5 * 10**9,
            )
        )
        alert_id = conn.execute(
            insert(tables["budget_alerts"]).values(
                budget_id=budget_id,
                url="https://example.com/hook",
                thresholds="50,100",
                payload="json",
                secret="s",
                created_at=AT,
                forecast=False,
            )
        ).inserted_primary_key[0]
        conn.execute(insert(tables["budget_alert_events"]).values(
            event_id="e1", alert_id=alert_id, budget_id=budget_id, kind="threshold",
            threshold_pct=50, period_start=datetime(2026, 3, 1), next_reset=None,
            spent_nano=7, limit_nano=5 * 10**9, forecast_nano=None, created_at=AT,
            status="pending", attempts=0, next_attempt_at=AT))  # fmt: skip
    return tables


def test_upgrade_to_budget_scopes_keeps_budgets_and_their_references(empty_db_url: str) -> None:  # noqa: F811
    engine = make_engine(empty_db_url)
    try:
        script = ScriptDirectory.from_config(alembic_config(engine))
        previous = str(script.get_revision(REVISION).down_revision)  # whatever it is now
        upgrade(engine, previous)
        old = _seed(engine)
        with engine.connect() as conn:
            before = {n: conn.execute(select(t).order_by(t.c.id)).all() for n, t in old.items()}
        assert upgrade(engine) == (previous, head_revision(engine))
        command.check(alembic_config(engine))  # no drift from the models
        new = {n: Table(n, MetaData(), autoload_with=engine) for n in old}
        with engine.connect() as conn:
            for name, table in old.items():
                kept = conn.execute(
                    select(*[new[name].c[c.name] for c in table.c]).order_by(new[name].c.id)
                ).all()
                assert [tuple(r) for r in kept] == [tuple(r) for r in before[name]], name
            scope = conn.execute(
                select(new["budgets"].c.model_pattern, new["budgets"].c.scope,
                       new["budgets"].c.subject, new["budgets"].c.template_id)
            ).one()  # fmt: skip
        assert tuple(scope) == ("", "", "", None)
        (plain,) = before["budgets"]
        budgets = new["budgets"]
        same_owner = {c.name: getattr(plain, c.name) for c in old["budgets"].c if c.name != "id"}
        with engine.begin() as conn:  # the same owner, narrowed to a model: allowed now
            conn.execute(insert(budgets).values(same_owner | {"model_pattern": "openai/gpt-4o*"}))
        with pytest.raises(IntegrityError), engine.begin() as conn:  # a second plain one: not
            conn.execute(insert(budgets).values(same_owner))
        with engine.begin() as conn:  # the foreign keys survived the copy: they cascade
            conn.execute(delete(budgets).where(budgets.c.id == plain.id))
            for name in REFERENCING:
                assert conn.execute(select(func.count()).select_from(new[name])).scalar() == 0
    finally:
        engine.dispose()
