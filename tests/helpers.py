"""Shared test helpers: an organisation of keys/teams/customers, usage records, and the
one budget-consistency assertion every budget test ends with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, event, insert

from metering.core.records import RECORD_FIELDS, UsageRow
from metering.storage.budgets import check_budget_counters, settle
from metering.storage.models import Customer, Team, VirtualKey
from metering.storage.records import write_records

CHECK_AT = datetime(2100, 1, 1)  # "now" for consistency checks: after every test instant


@dataclass(frozen=True)
class Org:
    customer_id: int
    team_id: int
    key_id: int  # in the team (and so the customer)
    other_key_id: int  # same team


def make_org(conn: Connection, *, prefix: str = "") -> Org:
    t0 = datetime(2025, 1, 1)
    customer_id = conn.execute(
        insert(Customer).values(name=f"{prefix}acme", created_at=t0).returning(Customer.id)
    ).scalar_one()
    team_id = conn.execute(
        insert(Team)
        .values(name=f"{prefix}search", customer_id=customer_id, created_at=t0)
        .returning(Team.id)
    ).scalar_one()
    key_ids = []
    for name in ("alice", "bob"):
        key_ids.append(
            conn.execute(
                insert(VirtualKey)
                .values(
                    name=f"{prefix}{name}",
                    key_hash=f"{prefix}{name}".ljust(64, "0"),
                    key_prefix="sk-bf-test",
                    team_id=team_id,
                    customer_id=customer_id,
                    allowed_models="[]",
                    enabled=True,
                    created_at=t0,
                    updated_at=t0,
                )
                .returning(VirtualKey.id)
            ).scalar_one()
        )
    return Org(int(customer_id), int(team_id), int(key_ids[0]), int(key_ids[1]))


# A record's columns that a test may leave out: what a call with no usage has.
ROW_DEFAULTS: dict[str, Any] = {
    **{name: 0 for name in RECORD_FIELDS if name.endswith(("_tokens", "_cost"))},
    "search_queries": 0,
    "response_id": None,
    "team_id": None,
    "customer_id": None,
    "stream": False,
    "http_status": 200,
    "latency_ms": None,
    "cache_hit": False,
    "cache_hit_type": None,
    "computed_cost": None,
    "reported_cost": None,
    "end_user": None,
    "end_user_scope": None,
    "tags": None,
    "price_version_id": None,
    "error_message": None,
    "usage_estimated": False,
}


def usage_row(**values: Any) -> UsageRow:
    """A ``UsageRow`` of these columns, the others as ``ROW_DEFAULTS`` (tests only: the
    product builds records with ``core.records.record_row``)."""
    return UsageRow.from_mapping({**ROW_DEFAULTS, **values})


def record(
    *,
    request_id: str,
    key_id: int,
    team_id: int | None,
    customer_id: int | None,
    cost_nano: int,
    started_at: datetime,
    served: str = "openai/gpt-4o",
    **attribution: Any,
) -> UsageRow:
    """A record; ``attribution``: its ``end_user``, ``end_user_scope`` and ``tags``."""
    provider, _, model = served.partition("/")
    return usage_row(
        **attribution,
        request_id=request_id,
        started_at=started_at,
        ended_at=started_at + timedelta(seconds=1),
        key_id=key_id,
        team_id=team_id,
        customer_id=customer_id,
        provider=provider,
        model=model,
        requested_model="openai/gpt-4o",
        request_type="text_completion",
        status="success",
        input_cost=cost_nano,
        total_cost=cost_nano,
        computed_cost=cost_nano,
        cost_source="computed",
    )


def record_and_settle(
    conn: Connection,
    org: Org,
    *,
    request_id: str,
    cost_nano: int,
    started_at: datetime,
    now: datetime | None = None,
    key_id: int | None = None,
    served: str = "openai/gpt-4o",
    **attribution: Any,
) -> None:
    """What the gateway does after a response: insert the record and settle, one
    transaction (``served``: the provider/model that served it; ``attribution``: its end
    user, scope and tags, as ``record`` takes them)."""
    key = org.key_id if key_id is None else key_id
    row = record(
        request_id=request_id,
        key_id=key,
        team_id=org.team_id,
        customer_id=org.customer_id,
        cost_nano=cost_nano,
        started_at=started_at,
        served=served,
        **attribution,
    )
    write_records(conn, [row])
    settle(
        conn,
        request_id=request_id,
        key_id=key,
        team_id=org.team_id,
        customer_id=org.customer_id,
        actual_nano=cost_nano,
        started_at=started_at,
        now=now or started_at + timedelta(seconds=1),
    )


def assert_budgets_consistent(engine: Engine, *, now: datetime = CHECK_AT) -> None:
    """Budget counters equal the records and the reservations (``check_budget_counters``)."""
    with engine.connect() as conn:
        problems = check_budget_counters(conn, now=now)
    assert problems == [], "\n".join(problems)


class ReadOnlySwitch:
    """While ``on``, every transaction of ``engine`` is refused writes by the database
    itself: SQLite's ``PRAGMA query_only``, PostgreSQL's ``SET TRANSACTION READ ONLY``
    (each fails a write with its own error, as a read-only volume or replica does)."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        self._sqlite = engine.dialect.name == "sqlite"
        event.listen(engine, "begin", self._begin)

    def _begin(self, conn: Connection) -> None:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if self._sqlite:
                cursor.execute(f"PRAGMA query_only={'ON' if self.on else 'OFF'}")
            elif self.on:
                cursor.execute("SET TRANSACTION READ ONLY")
        finally:
            cursor.close()
