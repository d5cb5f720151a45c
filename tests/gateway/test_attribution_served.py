"""Tags and end users end to end (README, Attribution): ``metering serve`` as a real
process on SQLite and PostgreSQL, the simulator upstream, raw HTTP through httpx2 on
every model call route; then ``metering spend --by tag,end_user`` (the CLI) against
pandas recomputing the same groups from the stored records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx2
import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from metering.cli import main
from metering.core.money import format_usd
from metering.simulator import Simulator
from metering.storage.keys import create_key
from metering.storage.models import RecordTag, UsageRecord
from tests.gateway.conftest import start_server, stop_server

pytestmark = pytest.mark.slow

TAGS_HEADER = "x-metering-tags"


@dataclass
class Keys:
    url: str
    secrets: dict[str, str]  # key name → secret
    ids: dict[str, int]


@pytest.fixture
def attributed(db_url: str, engine: Engine, simulator: Simulator) -> Iterator[Keys]:
    """Three keys: two customers' (``app`` with default tags) and one without a customer."""
    secrets, ids = {}, {}
    with engine.begin() as conn:
        for name, customer, tags in (
            ("app", "acme", ("team=search", "env=prod")),
            ("other", "globex", ()),
            ("solo", None, ("env=dev",)),
        ):
            made = create_key(conn, name=name, customer=customer, tags=tags)
            secrets[name], ids[name] = made.secret, made.info.id
    url, process = start_server(db_url, simulator.url)
    try:
        yield Keys(url, secrets, ids)
    finally:
        stop_server(process)


# Each route with a body naming end user ``who`` in its own field.
def _bodies(who: str) -> dict[str, dict[str, Any]]:
    return {
        "/v1/completions": {"model": "openai/gpt-4o", "prompt": "hi", "user": who},
        "/v1/chat/completions": {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "user": who,
        },
        "/v1/responses": {"model": "openai/gpt-4o", "input": "hi", "safety_identifier": who},
        "/v1/embeddings": {"model": "openai/text-embedding-3-small", "input": "hi", "user": who},
        "/anthropic/v1/messages": {
            "model": "claude-sonnet-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": who},
        },
    }


def _post(
    client: httpx2.Client, path: str, secret: str, body: dict[str, Any], tags: str | None
) -> httpx2.Response:
    headers = {"authorization": f"Bearer {secret}"}
    if path.startswith("/anthropic"):
        headers = {"x-api-key": secret, "anthropic-version": "2023-06-01"}
    if tags is not None:
        headers[TAGS_HEADER] = tags
    return client.post(path, json=body, headers=headers)


def _records(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(UsageRecord.__table__.select())]
        links = conn.execute(select(RecordTag.record_id, RecordTag.tag)).all()
    frame = pd.DataFrame(rows)
    index: dict[int, list[str]] = {}
    for record_id, tag in links:
        index.setdefault(record_id, []).append(tag)
    frame["tag_rows"] = frame["id"].map(lambda i: sorted(index.get(i, [])))
    return frame


def test_tags_and_end_users_from_every_route_and_spend_agrees_with_pandas(
    attributed: Keys, engine: Engine, simulator: Simulator
) -> None:
    plan = [
        ("app", "user-1", "feature=rag,beta"),
        ("app", "user-2", None),
        ("other", "user-1", "feature=rag"),  # another customer's user-1
        ("solo", "user-1", "feature=chat , beta"),
    ]
    with httpx2.Client(base_url=attributed.url, timeout=30) as client:
        for key, who, tags in plan:
            for path, body in _bodies(who).items():
                response = _post(client, path, attributed.secrets[key], body, tags)
                assert response.status_code == 200, (path, response.text)
        # no end user at all: recorded without one (and a request without tags)
        plain = {"model": "openai/gpt-4o", "prompt": "hi"}
        assert _post(client, "/v1/completions", attributed.secrets["other"], plain, None)
        # the caller reads its record back with them
        secret = attributed.secrets["app"]
        body = _bodies("user-3")["/v1/chat/completions"]
        sent_one = _post(client, "/v1/chat/completions", secret, body, "beta")
        own = client.get(
            f"/v1/requests/{sent_one.headers['x-metering-request-id']}",
            headers={"authorization": f"Bearer {secret}"},
        ).json()
        assert (own["end_user"], own["tags"]) == ("user-3", ["beta", "env=prod", "team=search"])
    sent = len(plan) * 5 + 2
    assert len(simulator.received) == sent
    # the header is the gateway's: never sent upstream; the body is forwarded unchanged
    assert all(TAGS_HEADER not in {h.lower() for h in r["headers"]} for r in simulator.received)
    anthropic = [r for r in simulator.received if r["path"].endswith("/messages")]
    assert all(r["body"]["metadata"]["user_id"] for r in anthropic)

    frame = _records(engine)
    assert len(frame) == sent
    ids = attributed.ids
    acme, globex = (
        int(frame.loc[frame["key_id"] == ids[k], "customer_id"].iloc[0]) for k in ("app", "other")
    )
    for key, who, tags in plan:
        mine = frame[(frame["key_id"] == ids[key]) & (frame["end_user"] == who)]
        assert sorted(mine["request_type"]) == sorted(
            ["text_completion", "chat_completion", "responses", "embedding", "messages"]
        )
        defaults = {"app": {"team=search", "env=prod"}, "other": set(), "solo": {"env=dev"}}[key]
        header = {t.strip() for t in tags.split(",")} if tags else set()
        expected = sorted(defaults | header)
        assert all(t == ",".join(expected) for t in mine["tags"].fillna(""))
        assert all(rows == expected for rows in mine["tag_rows"])
        scope = {"app": f"customer:{acme}", "other": f"customer:{globex}"}.get(key)
        assert set(mine["end_user_scope"]) == {scope or f"key:{ids['solo']}"}
    unattributed = frame[frame["end_user"].isna()]
    assert len(unattributed) == 1 and unattributed["tags"].isna().all()
    assert unattributed["end_user_scope"].isna().all()

    result = CliRunner().invoke(
        main, ["--database-url", str(engine.url.render_as_string(hide_password=False)),
               "spend", "--by", "tag,end_user", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    got = {(g["tag"], g["end_user_scope"], g["end_user"]): g for g in json.loads(result.output)}

    # pandas: a record in each of its tags' groups (None: untagged), its end user's scope
    # shown as the customer's or key's name
    names = {ids["app"]: "app", ids["other"]: "other", ids["solo"]: "solo"}
    customers = {acme: "acme", globex: "globex"}

    def shown(scope: str | None) -> str | None:
        if scope is None:
            return None
        kind, _, ident = scope.partition(":")
        table = customers if kind == "customer" else names
        return f"{kind} {table[int(ident)]}"

    exploded = frame.assign(
        tag=frame["tag_rows"].map(lambda t: t or [None]),
        scope=frame["end_user_scope"].map(shown),
    ).explode("tag")
    expected_groups = (
        exploded.groupby(["tag", "scope", "end_user"], dropna=False)
        .agg(requests=("id", "count"), total_cost=("total_cost", "sum"))
        .reset_index()
    )
    want = {
        tuple(None if pd.isna(v) else v for v in (r.tag, r.scope, r.end_user)): r
        for r in expected_groups.itertuples()
    }
    assert set(got) == set(want)
    for group, row in want.items():
        assert got[group]["requests"] == row.requests, group
        assert got[group]["total_cost"] == format_usd(int(row.total_cost)), group
    # two customers' user-1 stay apart
    assert ("feature=rag", "customer acme", "user-1") in got
    assert ("feature=rag", "customer globex", "user-1") in got
    # tag groups overlap: their sum exceeds the grand total (a request with two tags)
    total = Decimal(format_usd(int(frame["total_cost"].sum())))
    assert sum(Decimal(g["total_cost"]) for g in got.values()) > total
