"""Tags and end users in storage (README, Attribution): the records' tags indexed in
``record_tags``, the end-user and tag rollups equal to the records (``reconcile``) through
every write path — a batch, a replay of the same batch, an interrupted call swept from
``calls_in_flight``, the real record replacing that estimate, a journal line — and a
key's default tags."""

from __future__ import annotations

import zlib
from collections import Counter
from datetime import datetime, timedelta

import orjson
import pytest
from sqlalchemy import Connection, Engine, func, select

from metering.core.interrupted import InFlightCall
from metering.errors import InvalidInput
from metering.reports.common import DayWindow
from metering.reports.reconcile import reconcile
from metering.storage import ledger
from metering.storage.attribution import set_key_tags
from metering.storage.in_flight import insert_calls
from metering.storage.journal import JournalEntry, decode, encode
from metering.storage.keys import create_key, find_key, utcnow
from metering.storage.models import DailyTagRollup, RecordTag, Tag, UsageRecord, VirtualKey
from metering.storage.records import write_records
from tests.helpers import Org, record
from tests.storage.test_interrupted import register, sweep

AT = datetime(2026, 11, 5, 12, 0)


def attributed(org: Org, request_id: str, cost: int, who: str | None, tags: str | None) -> object:
    row = record(
        request_id=request_id,
        key_id=org.key_id,
        team_id=org.team_id,
        customer_id=org.customer_id,
        cost_nano=cost,
        started_at=AT,
    )
    scope = f"customer:{org.customer_id}" if who else None
    return row._replace(end_user=who, end_user_scope=scope, tags=tags)


def consistent(conn: Connection) -> None:
    report = reconcile(conn, window=DayWindow(), now=utcnow())
    assert report.rollup_problems == []


def tag_sums(conn: Connection) -> dict[str, tuple[int, int]]:
    r = DailyTagRollup
    query = select(r.tag, func.sum(r.requests), func.sum(r.total_cost)).group_by(r.tag)
    return {tag: (int(n), int(cost)) for tag, n, cost in conn.execute(query)}


def test_tags_are_indexed_and_every_rollup_equals_the_records(db: Engine, org: Org) -> None:
    rows = [
        attributed(org, "a", 100, "user-1", "beta,feature=rag"),
        attributed(org, "b", 20, "user-1", "feature=rag"),
        attributed(org, "c", 3, None, None),
        attributed(org, "d", 4, "user-2", "beta"),
    ]
    with db.begin() as conn:
        assert write_records(conn, rows) == ["a", "b", "c", "d"]  # type: ignore[arg-type]
        assert write_records(conn, rows) == []  # type: ignore[arg-type]  # a replay: nothing
        links = Counter(
            conn.execute(
                select(UsageRecord.request_id, RecordTag.tag).join(
                    RecordTag, RecordTag.record_id == UsageRecord.id
                )
            ).all()
        )
        names = set(conn.execute(select(Tag.name)).scalars())
        consistent(conn)
        sums = tag_sums(conn)
    assert links == Counter(
        {("a", "beta"): 1, ("a", "feature=rag"): 1, ("b", "feature=rag"): 1, ("d", "beta"): 1}
    )
    assert names == {"beta", "feature=rag"}
    # a request with two tags counts in both groups; an untagged one in ''
    assert sums == {"beta": (2, 104), "feature=rag": (2, 120), "": (1, 3)}


def _in_flight(org: Org, process_id: int, request_id: str) -> InFlightCall:
    return InFlightCall(
        request_id=request_id,
        process_id=process_id,
        key_id=org.key_id,
        team_id=org.team_id,
        customer_id=org.customer_id,
        requested_model="openai/gpt-4o",
        request_type="chat_completion",
        stream=False,
        started_at=utcnow() - timedelta(minutes=5),
        prompt_tokens=1000,
        output_tokens=500,
        reserved_nano=None,
        end_user="user-9",
        end_user_scope=f"customer:{org.customer_id}",
        tags="beta,feature=rag",
    )


def test_an_interrupted_call_keeps_its_attribution_and_the_real_record_replaces_it(
    db: Engine, org: Org
) -> None:
    dead = register(db, dead=True)
    call = _in_flight(org, dead, "cut")
    with db.begin() as conn:
        insert_calls(conn, [call])
    assert sweep(db, None).recorded == 1
    with db.connect() as conn:
        stored = conn.execute(
            select(UsageRecord.status, UsageRecord.end_user, UsageRecord.end_user_scope,
                   UsageRecord.tags, UsageRecord.total_cost)
        ).one()  # fmt: skip
        estimate = stored.total_cost
        assert tuple(stored)[:4] == (
            "interrupted", "user-9", f"customer:{org.customer_id}", "beta,feature=rag"
        )  # fmt: skip
        assert tag_sums(conn) == {"beta": (1, estimate), "feature=rag": (1, estimate)}
        consistent(conn)
    # the process was only stalled: its real record arrives and replaces the estimate
    real = record(
        request_id="cut",
        key_id=org.key_id,
        team_id=org.team_id,
        customer_id=org.customer_id,
        cost_nano=1_234,
        started_at=call.started_at,
    )._replace(end_user=call.end_user, end_user_scope=call.end_user_scope, tags=call.tags)
    with db.begin() as conn:
        assert ledger.record(conn, [(real, ledger.Settlement(budgets=True))], now=utcnow()) == [
            True
        ]
    with db.connect() as conn:
        assert tag_sums(conn) == {"beta": (1, 1_234), "feature=rag": (1, 1_234)}
        assert conn.execute(select(func.count()).select_from(RecordTag)).scalar_one() == 2
        consistent(conn)


def test_a_journal_line_keeps_the_attribution_and_an_older_line_has_none(org: Org) -> None:
    row = attributed(org, "j", 5, "user-1", "beta")
    entry = JournalEntry(row, ledger.Settlement(budgets=True))  # type: ignore[arg-type]
    assert decode(encode(entry)) == entry
    payload = orjson.loads(encode(entry).split(b" ", 1)[1])
    for name in ("end_user", "end_user_scope", "tags"):
        del payload["record"][name]  # written by the version before
    body = orjson.dumps(payload)
    old = decode(b"%08x " % zlib.crc32(body) + body + b"\n").record
    assert (old.end_user, old.end_user_scope, old.tags) == (None, None, None)


def test_key_default_tags_are_checked_stored_and_replaced(db: Engine) -> None:
    with db.begin() as conn:
        made = create_key(conn, name="tagged", tags=["env=prod", "team=a", "env=prod"])
        assert made.info.tags == ("env=prod", "team=a")
        assert set_key_tags(conn, key_id=made.info.id, tags=["beta"]) == ("beta",)
        assert find_key(conn, "tagged").tags == ("beta",)
        set_key_tags(conn, key_id=made.info.id, tags=[])
        assert find_key(conn, "tagged").tags == ()
    for bad in (["a\x00b"], ["x" * 65], [""], ["a,b"], [f"t{i}" for i in range(21)]):
        with db.begin() as conn, pytest.raises(InvalidInput):
            create_key(conn, name="refused", tags=bad)
        with db.connect() as conn:  # nothing created
            assert (
                conn.execute(select(VirtualKey.id).where(VirtualKey.name == "refused")).first()
                is None
            )
