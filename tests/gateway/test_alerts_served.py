"""Budget alerts end to end: real requests through a real ``metering serve`` (the
simulated upstream) cross 50 % and 80 % of a key's budget; the server's deliverer posts
one signed event per threshold to a receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from metering.storage.alerts import add_alert
from metering.storage.keys import utcnow
from metering.storage.models import Budget
from metering.storage.owners import find_owner
from tests.alert_receiver import Receiver
from tests.gateway.conftest import Served
from tests.gateway.test_budget_gate import BODY, budget, worst_case

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver().start()
    try:
        yield got
    finally:
        got.stop()


def test_serve_delivers_one_event_per_threshold_crossed(served: Served, receiver: Receiver) -> None:
    worst = worst_case(served.engine, BODY)
    limit = 6 * worst  # every request until 80 % still fits its worst case
    budget(served.engine, "key", "app", limit)
    with served.engine.begin() as conn:
        key_id, _ = find_owner(conn, "key", "app")
        add_alert(conn, owner_type="key", owner_id=key_id, url=receiver.url, thresholds="50,80",
                  payload="json", secret="served", now=utcnow())  # fmt: skip
    client = served.client()
    spent = 0
    for _ in range(2_000):  # until 80 % is spent (a request costs less than its worst case)
        client.completions.create(model=BODY["model"], prompt=BODY["prompt"],
                                  max_tokens=BODY["max_tokens"])  # fmt: skip
        with served.engine.connect() as conn:
            spent = conn.execute(select(Budget.spent_nano)).scalar_one()
        if spent * 100 >= limit * 80:
            break
    assert spent * 100 >= limit * 80
    got = receiver.wait_for(2)
    # Events claimed in the same tick are sent concurrently: no order is promised (README).
    assert sorted(r.json["threshold_pct"] for r in got) == [50, 80]
    assert all(r.signed_with("served") for r in got)
    assert all(r.json["budget"]["owner"] == "app" for r in got)
    assert len({r.event_id for r in receiver.got}) == len(receiver.got) == 2
