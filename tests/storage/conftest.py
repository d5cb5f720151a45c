"""Fixtures of the budget tests: a fresh database checked for consistent budget
counters after the test, and an organisation in it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.helpers import Org, assert_budgets_consistent, make_org


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    yield engine
    assert_budgets_consistent(engine)


@pytest.fixture
def org(db: Engine) -> Org:
    with db.begin() as conn:
        return make_org(conn)
