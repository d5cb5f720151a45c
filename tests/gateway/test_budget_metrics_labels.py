"""Budget gauges: every budget its own series, also several budgets of one owner (one per
model pattern) and two customers' end users with the same id (``scope``)."""

from __future__ import annotations

from sqlalchemy import Engine

from metering.gateway.metrics import BudgetCollector
from metering.storage.budgets import set_budget
from tests.helpers import make_org
from tests.storage.budgeting import USD, T


def test_each_budget_has_its_own_label_set(engine: Engine) -> None:
    with engine.begin() as conn:
        org = make_org(conn)
        other = make_org(conn, prefix="b-")
        budgets = [
            ("key", org.key_id, "", "", ""),
            ("key", org.key_id, "", "", "openai/gpt-4o*"),
            ("end_user", 0, f"customer:{org.customer_id}", "u-1", ""),
            ("end_user", 0, f"customer:{other.customer_id}", "u-1", ""),
        ]
        for kind, owner_id, scope, subject, pattern in budgets:
            set_budget(conn, owner_type=kind, owner_id=owner_id, scope=scope, subject=subject,
                       model_pattern=pattern, limit_nano=USD, period="monthly", now=T)  # fmt: skip
    (limit, *_) = list(BudgetCollector(engine).collect())
    labels = [tuple(sorted(s.labels.items())) for s in limit.samples]
    assert len(labels) == len(set(labels)) == 4
    assert {(s.labels["owner"], s.labels["model"]) for s in limit.samples} == {
        ("alice", ""),
        ("alice", "openai/gpt-4o*"),
        ("u-1", ""),
    }
