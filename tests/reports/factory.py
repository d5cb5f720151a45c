"""A generated month of usage records (several keys, teams, customers, providers and
models; every token class; errors; reported costs; an unpriced model), written through
``write_records`` so the daily rollup is maintained as in production."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert

from metering.core.attribution import end_user_scope, tags_text
from metering.core.records import UsageRow, record_row
from metering.core.responses import bill_response, read_response
from metering.storage.models import Customer, Team, VirtualKey
from metering.storage.prices import load_price_book
from metering.storage.records import write_records

T0 = datetime(2026, 1, 1)
MODELS = (
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "openai/o3-mini",
    "anthropic/claude-sonnet-4-5",
    "gemini/gemini-2.5-pro",
    "perplexity/sonar-deep-research",
    "mistral/mistral-large-unpriced",
)


TAGS = ("feature=rag", "feature=chat", "beta")


@dataclass(frozen=True)
class Org:
    keys: dict[str, int]  # name -> id
    key_team: dict[int, int | None]
    key_customer: dict[int, int | None]


def seed_org(conn: Connection) -> Org:
    conn.execute(insert(Customer), [{"id": 1, "name": "acme", "created_at": T0}])
    conn.execute(
        insert(Team),
        [
            {"id": 1, "name": "search", "customer_id": 1, "created_at": T0},
            {"id": 2, "name": "ml", "customer_id": None, "created_at": T0},
        ],
    )
    keys = [
        ("alice", 1, 1),
        ("bob", 1, 1),
        ("carol", 2, None),
        ("dave", None, None),
        ("erin", None, 1),
    ]
    conn.execute(
        insert(VirtualKey),
        [
            {
                "id": i,
                "name": name,
                "key_hash": f"{i:064x}",
                "key_prefix": f"sk-bf-{i}",
                "team_id": team,
                "customer_id": customer,
                "allowed_models": "[]",
                "enabled": True,
                "created_at": T0,
                "updated_at": T0,
            }
            for i, (name, team, customer) in enumerate(keys, start=1)
        ],
    )
    return Org(
        keys={name: i for i, (name, _, _) in enumerate(keys, start=1)},
        key_team={i: team for i, (_, team, _) in enumerate(keys, start=1)},
        key_customer={i: c for i, (_, _, c) in enumerate(keys, start=1)},
    )


def completion_response(
    model: str, usage: Mapping[str, Any] | None, *, response_id: str = "cmpl-1"
) -> dict[str, Any]:
    provider, _, name = model.partition("/")
    response: dict[str, Any] = {
        "id": response_id,
        "object": "text_completion",
        "model": name,
        "choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}],
        "extra_fields": {"provider": provider, "request_type": "text_completion"},
    }
    if usage is not None:
        response["usage"] = dict(usage)
    return response


def random_usage(rng: random.Random, *, reported: bool) -> dict[str, Any]:
    cached_read = rng.choice([0, 0, rng.randint(1, 4000)])
    cached_write = rng.choice([0, 0, rng.randint(1, 2000)])
    prompt = cached_read + cached_write + rng.randint(1, 250_000)
    reasoning = rng.choice([0, rng.randint(1, 3000)])
    completion = reasoning + rng.randint(0, 4000)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "prompt_tokens_details": {
            "cached_read_tokens": cached_read,
            "cached_write_tokens": cached_write,
            # a 1-hour part of the writes, drawn from nothing new (the stream stays as it was)
            "cached_write_1h_tokens": cached_write // 3 if cached_write % 2 else 0,
        },
        "completion_tokens": completion,
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "citation_tokens": rng.choice([0, rng.randint(1, 900)]),
            "num_search_queries": rng.choice([0, 0, rng.randint(1, 5)]),
        },
        "total_tokens": prompt + completion,
    }
    if reported:
        # The float a provider would send; read back through its shortest repr, never summed.
        usage["cost"] = {"total_cost": round(rng.uniform(0.0001, 2.5), 6)}
    return usage


def build_record(
    conn_book: Any,
    org: Org,
    *,
    request_id: str,
    key: str,
    model: str,
    at: datetime,
    usage: Mapping[str, Any] | None,
    status: str = "success",
    end_user: str | None = None,
    tags: tuple[str, ...] = (),
) -> UsageRow:
    key_id = org.keys[key]
    customer_id = org.key_customer[key_id]
    scope = end_user_scope(customer_id=customer_id, key_id=key_id) if end_user else None
    facts = read_response(completion_response(model, usage, response_id=request_id), model)
    bill = bill_response(facts, conn_book, requested=model, on=at.date())
    return record_row(
        request_id=request_id,
        started_at=at,
        ended_at=at + timedelta(milliseconds=800),
        key_id=key_id,
        team_id=org.key_team[key_id],
        customer_id=org.key_customer[key_id],
        requested_model=model,
        request_type="text_completion",
        stream=False,
        status=status,
        http_status=200 if status == "success" else 502,
        latency_ms=800,
        facts=facts,
        bill=bill,
        end_user=end_user,
        end_user_scope=scope,
        tags=tags_text(sorted(tags)),
    )


def generate_month(
    conn: Connection, org: Org, *, year: int = 2026, month: int = 11, n: int = 400, seed: int = 7
) -> list[UsageRow]:
    """``n`` records spread over the month, plus two just outside it; all written."""
    rng = random.Random(seed)
    attribution = random.Random(seed + 1)  # its own stream: the usage stays as it was
    book = load_price_book(conn)
    first = datetime(year, month, 1)
    nxt = datetime(year + month // 12, month % 12 + 1, 1)
    span = int((nxt - first).total_seconds())
    records = []
    for i in range(n):
        at = first + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6))
        status = "success" if rng.random() > 0.08 else "upstream_error"
        usage = random_usage(rng, reported=rng.random() < 0.2) if status == "success" else None
        records.append(
            build_record(
                book,
                org,
                request_id=f"req-{year}{month:02d}-{i:05d}",
                key=rng.choice(list(org.keys)),
                model=rng.choice(MODELS),
                at=at,
                usage=usage,
                status=status,
                end_user=attribution.choice((None, "user-1", "user-2", "=cmd")),
                tags=tuple(attribution.sample(TAGS, attribution.randrange(3))),
            )
        )
    # the last microsecond of the month before, the first instant of the next
    for rid, at in (
        ("req-before", first - timedelta(microseconds=1)),
        ("req-after", nxt),
    ):
        records.append(
            build_record(
                book,
                org,
                request_id=rid,
                key="alice",
                model="openai/gpt-4o",
                at=at,
                usage=random_usage(rng, reported=False),
            )
        )
    for start in range(0, len(records), 100):
        write_records(conn, records[start : start + 100])
    return records
