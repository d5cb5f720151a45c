"""The admin API end to end against a real ``metering serve`` with httpx2, on SQLite and
PostgreSQL: every route, the refusals of tokens, bad input that changes nothing,
Idempotency-Key, and the API off until a token exists."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import Engine, func, select

from metering.core.money import format_usd
from metering.operations.tokens import create_token_op, revoke_token_op
from metering.reports.export import write_export
from metering.simulator import Simulator
from metering.storage.keys import utcnow
from metering.storage.models import UsageRecord, VirtualKey
from tests.admin.conftest import Admin
from tests.process import start_server, stop_server

pytestmark = pytest.mark.slow

OPENAI_SHEET = """provider = "openai"
effective_from = "2030-01-01"
[models."gpt-test"]
input = "1.00"
output = "2.00"
"""


def _records(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(UsageRecord)).scalar_one())


def _call(admin: Admin, secret: str) -> httpx2.Response:
    body = {"model": "openai/gpt-4o", "prompt": "hello", "max_tokens": 5}
    return httpx2.post(
        admin.url + "/v1/completions", json=body, headers={"authorization": f"Bearer {secret}"}
    )


def _eventually(probe: Callable[[], int], want: int = 403, seconds: float = 5.0) -> int:
    deadline = time.monotonic() + seconds
    while (got := probe()) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def test_every_route(admin: Admin, tmp_path: Path) -> None:
    assert _call(admin, admin.virtual_key).status_code == 200
    month = utcnow().strftime("%Y-%m")
    with admin.client() as api:
        # keys: create (the secret once), list with filters and pages, get, update, disable
        created = api.post("/keys", json={"name": "batch", "team": "ml", "rpm": 60,
                                          "models": ["openai/*"], "budget": "5",
                                          "period": "monthly"})  # fmt: skip
        assert created.status_code == 201, created.text
        secret = created.json()["key"]
        assert secret.startswith("sk-bf-") and set(created.json()) == {"id", "name", "key"}
        assert _call(admin, secret).status_code == 200  # the new key works at once
        page = api.get("/keys", params={"team": "ml", "limit": 1, "offset": 1}).json()
        assert (page["total"], [k["name"] for k in page["data"]]) == (2, ["batch"])
        assert api.get("/keys", params={"status": "disabled"}).json()["total"] == 0
        shown = api.get("/keys/batch").json()
        assert (shown["rpm"], shown["models"], shown["customer"]) == (60, ["openai/*"], "acme")
        assert api.get(f"/keys/{shown['id']}").json() == shown  # by id too
        updated = api.patch("/keys/batch", json={"rpm": None, "tpm": 1000, "team": "research",
                                                 "expires": "2099-01-01"})  # fmt: skip
        assert updated.status_code == 200, updated.text
        u = updated.json()
        assert (u["rpm"], u["tpm"], u["team"], u["expires_at"]) == (
            None, 1000, "research", "2099-01-01T00:00:00Z")  # fmt: skip
        assert u["models"] == ["openai/*"]  # not sent: unchanged
        assert api.post("/keys/batch/disable").json()["status"] == "disabled"
        assert _eventually(lambda: _call(admin, secret).status_code) == 403  # key cache: 1 s
        assert api.post("/keys/batch/enable").json()["status"] == "active"
        # teams and customers
        assert api.post("/customers", json={"name": "globex"}).status_code == 201
        team = api.post("/teams", json={"name": "ops", "customer": "globex"})
        assert (team.status_code, team.json()["customer"]) == (201, "globex")
        assert {t["name"] for t in api.get("/teams").json()["data"]} == {"ml", "research", "ops"}
        customers = {c["name"]: c for c in api.get("/customers").json()["data"]}
        assert (customers["globex"]["teams"], customers["acme"]["keys"]) == (1, 2)
        # budgets: set, list (spent/reserved/remaining/next reset), remove
        budget = api.post("/budgets", json={"owner_type": "team", "owner": "ml",
                                            "limit": "12.5", "period": "daily"})  # fmt: skip
        assert budget.status_code == 200, budget.text
        b = budget.json()
        assert b["limit"] == "12.5" and Decimal(b["spent"]) > 0  # today's records of ml
        assert Decimal(b["remaining"]) == Decimal("12.5") - Decimal(b["spent"])
        listed = {(b["owner_type"], b["owner"]): b for b in api.get("/budgets").json()["data"]}
        assert set(listed) == {("key", "batch"), ("team", "ml")}
        key_budget = listed[("key", "batch")]
        assert key_budget["spent"] != "0" and key_budget["next_reset"].endswith("T00:00:00Z")
        removed = api.delete("/budgets/team/ml")
        assert removed.json() == {"owner_type": "team", "owner": "ml", "removed": True}
        assert {b["owner"] for b in api.get("/budgets").json()["data"]} == {"batch"}
        # narrowed, end-user and tag budgets: the same fields as the CLI's options
        for body in ({"owner_type": "key", "owner": "batch", "model": "openai/gpt-4o*"},
                     {"owner_type": "end_user", "owner": "u-1", "scope": "acme"},
                     {"owner_type": "each_end_user", "owner": "-", "scope": "acme"},
                     {"owner_type": "tag", "owner": "beta"}):  # fmt: skip
            made = api.post("/budgets", json={**body, "limit": "3", "period": "monthly"})
            assert made.status_code == 200, made.text
        scoped = {(b["owner_type"], b["owner"], b["model"], b["scope"])
                  for b in api.get("/budgets").json()["data"]}  # fmt: skip
        assert scoped == {
            ("key", "batch", None, None), ("key", "batch", "openai/gpt-4o*", None),
            ("end_user", "u-1", None, "customer 'acme'"), ("tag", "beta", None, None),
            ("each_end_user", "each end user", None, "customer 'acme'"),
        }  # fmt: skip
        gone = api.delete("/budgets/key/batch", params={"model": "openai/gpt-4o*"})
        assert gone.json() == {"owner_type": "key", "owner": "batch", "removed": True}
        gone = api.delete("/budgets/end_user/u-1", params={"scope": "acme"})
        assert gone.json() == {"owner_type": "end_user", "owner": "u-1", "removed": True}
        assert api.delete("/budgets/end_user/u-1", params={"scope": "acme"}).status_code == 404
        for kind in ("tag/beta", "each_end_user/-?scope=acme"):
            assert api.delete(f"/budgets/{kind}").status_code == 200
        # spend: the records' sums
        spend = api.get("/spend", params={"by": "key"}).json()["data"]
        with admin.engine.connect() as conn:
            billed = {
                name: (int(n), format_usd(int(total)))
                for name, n, total in conn.execute(
                    select(VirtualKey.name, func.count(), func.sum(UsageRecord.total_cost))
                    .join(VirtualKey, VirtualKey.id == UsageRecord.key_id)
                    .group_by(VirtualKey.name)
                )
            }
        assert set(billed) == {"app", "batch"} and billed["app"][0] == 1
        assert {r["key"]: (r["requests"], r["total_cost"]) for r in spend} == billed
        # exports: streamed, the bytes `metering export` writes
        for detail in ("summary", "requests"):
            streamed = api.get(f"/exports/{month}", params={"detail": detail})
            assert streamed.status_code == 200
            assert streamed.headers["content-type"].startswith("text/csv")
            assert "content-length" not in streamed.headers  # chunked, not built whole
            path = tmp_path / f"{detail}.csv"
            with admin.engine.connect() as conn:
                write_export(conn, month=month, detail=detail, out=path)
            assert streamed.content == path.read_bytes()
            rows = 2 if detail == "summary" else sum(n for n, _ in billed.values())
            assert len(list(csv.reader(io.StringIO(streamed.text)))) == 1 + rows
        # prices: import, list, versions, quote
        imported = api.post("/prices/import", json={"filename": "test.toml",
                                                    "content": OPENAI_SHEET})  # fmt: skip
        assert imported.status_code == 200, imported.text
        assert imported.json()["outcomes"][0] == {"outcome": "imported", "count": 1}
        versions = api.get("/prices/versions", params={"model": "openai/gpt-test"}).json()
        assert [v["effective_from"] for v in versions["data"]] == ["2030-01-01"]
        in_force = api.get("/prices", params={"provider": "openai", "at": "2030-02-01"}).json()
        assert "gpt-test" in {p["model"] for p in in_force["data"]}
        quote = api.get("/prices/quote", params={"model": "openai/gpt-test", "at": "2030-02-01",
                                                 "prompt_tokens": 1_000_000,
                                                 "completion_tokens": 500_000}).json()  # fmt: skip
        assert quote["components"][-1] == {"component": "total", "units": "",
                                           "cost_usd": "2"}  # fmt: skip
        # reconcile and the audit log (who, what, before → after)
        reconciled = api.get("/reconcile", params={"month": month})
        assert reconciled.status_code == 200 and reconciled.json()["ok"] is True
        audit = api.get("/audit", params={"actor": "ops", "limit": 100}).json()["data"]
        actions = [a["action"] for a in reversed(audit)]
        assert actions == ["key.create", "key.update", "key.disable", "key.enable",
                           "customer.create", "team.create", "budget.set", "budget.remove",
                           *["budget.set"] * 4, *["budget.remove"] * 4,
                           "prices.import"]  # fmt: skip
        scoped_targets = [a["target"] for a in reversed(audit) if a["action"] == "budget.remove"]
        assert scoped_targets == ["team:ml", "key:batch@openai/gpt-4o*",
                                  "end_user:customer:acme/u-1", "tag:beta",
                                  "each_end_user:customer:acme"]  # fmt: skip
        update = audit[-2]
        assert (update["target"], update["before"]["rpm"], update["after"]["rpm"]) == (
            "key:batch", 60, None)  # fmt: skip
        doc = api.get("/openapi.json").json()
        assert doc["openapi"] == "3.1.0"


def test_tokens_refused(admin: Admin) -> None:
    cases = [
        ("", 401, "admin_token_required"),
        ("sk-adm-not-a-token", 401, "admin_token_not_found"),
        (admin.revoked, 401, "admin_token_revoked"),
        (admin.virtual_key, 401, "admin_token_not_found"),
    ]
    for secret, status, error_type in cases:
        with admin.client(secret) as api:
            for method, path in (("GET", "/keys"), ("POST", "/customers")):
                response = api.request(method, path, json={"name": "x"})
                assert response.status_code == status, (secret, path)
                body = response.json()
                assert (body["type"], body["status_code"]) == (error_type, status)
                assert body["error"]["type"] == error_type and body["is_bifrost_error"] is False
    with admin.client("") as api:  # the token is checked before the input
        assert api.get("/keys", params={"colour": "red"}).status_code == 401
    with admin.client(admin.reader) as api:
        assert api.get("/keys").status_code == 200  # its scope
        assert api.get("/budgets", params={"colour": "red"}).status_code == 403
        for method, path in (("POST", "/keys"), ("GET", "/budgets"), ("GET", "/audit"),
                             ("GET", "/spend"), ("POST", "/prices/import")):  # fmt: skip
            response = api.request(method, path, json={})
            assert (response.status_code, response.json()["type"]) == (403, "admin_scope_missing")
    # an admin token is never a virtual key: 401 on the proxy routes, nothing sent upstream
    before = _records(admin.engine)
    refused = _call(admin, admin.token)
    assert (refused.status_code, refused.json()["type"]) == (401, "virtual_key_not_found")
    assert _records(admin.engine) == before


BAD_INPUT: list[tuple[str, str, dict[str, object] | bytes | None, int]] = [
    ("POST", "/keys", b"{not json", 400),
    ("POST", "/keys", b"[1, 2]", 400),
    ("POST", "/keys", {"name": "x", "colour": "red"}, 400),
    ("POST", "/keys", {"name": 7}, 400),
    ("POST", "/keys", {"name": "x", "rpm": 0}, 400),
    ("POST", "/keys", {"name": "x", "rpm": "10"}, 400),
    ("POST", "/keys", {"name": "x", "models": ["gpt-4o"]}, 400),
    ("POST", "/keys", {"name": "x", "expires": "2001-01-01"}, 400),
    ("POST", "/keys", {"name": "x", "budget": "5"}, 400),
    ("POST", "/keys", {"name": "x", "budget": "-5", "period": "monthly"}, 400),
    ("POST", "/keys", {"name": "x\u0000y"}, 400),
    ("POST", "/keys", {"name": "app"}, 409),
    ("PATCH", "/keys/app", {"rpm": -1}, 400),
    ("PATCH", "/keys/app", {"expires": "yesterday"}, 400),
    ("PATCH", "/keys/app", {}, 400),
    ("PATCH", "/keys/nobody", {"rpm": 5}, 404),
    ("POST", "/keys/nobody/disable", None, 404),
    ("POST", "/teams", {"name": "ml"}, 409),
    ("POST", "/teams", {"name": "new", "customer": "nobody"}, 404),
    ("POST", "/customers", {"name": "  "}, 400),
    ("POST", "/budgets", {"owner_type": "key", "owner": "app", "limit": "0", "period": "daily"},
     400),
    ("POST", "/budgets", {"owner_type": "key", "owner": "app", "limit": "5", "period": "fortnight"},
     400),
    ("POST", "/budgets", {"owner_type": "key", "owner": "app", "limit": "5", "period": "daily",
                          "timezone": "Mars/Olympus"}, 400),
    ("POST", "/budgets", {"owner_type": "planet", "owner": "app", "limit": "5",
                          "period": "daily"}, 400),
    ("DELETE", "/budgets/key/app", None, 404),
    ("DELETE", "/budgets/planet/app", None, 400),
    ("GET", "/keys?limit=0", None, 400),
    ("GET", "/keys?colour=red", None, 400),
    ("GET", "/spend?since=2026-02-30", None, 400),
    ("GET", "/spend?by=planet", None, 400),
    ("GET", "/exports/2026-13", None, 400),
    ("GET", "/exports/2026-12?detail=everything", None, 400),
    ("GET", "/prices/quote?model=openai/gpt-4o&prompt_tokens=-1", None, 400),
    ("GET", "/prices/quote", None, 400),
    ("GET", "/prices/versions?model=openai/none", None, 404),
    ("POST", "/prices/import", {"filename": "x.toml", "content": "this is = not [toml"}, 400),
    ("POST", "/prices/import", {"filename": "x.json", "content": "{"}, 400),
    ("GET", "/keys/app/nothing", None, 404),
    ("PUT", "/keys", None, 405),
]  # fmt: skip


def test_bad_input_gets_its_error_and_changes_nothing(admin: Admin) -> None:
    before = admin.snapshot()
    with admin.client() as api:
        for method, path, body, status in BAD_INPUT:
            if isinstance(body, bytes):
                response = api.request(method, path, content=body)
            else:
                response = api.request(method, path, json=body)
            assert response.status_code == status, (method, path, body, response.text)
            error = response.json()
            assert error["status_code"] == status and error["error"]["message"], error
    assert admin.snapshot() == before


def test_idempotency_key_gives_the_same_answer_once(admin: Admin) -> None:
    with admin.client() as api:
        headers = {"idempotency-key": "create-batch-1"}
        body = {"name": "batch", "team": "ml"}
        first = api.post("/keys", json=body, headers=headers)
        again = api.post("/keys", json=body, headers=headers)
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert {**again.json(), "key": None} == {**first.json(), "key": None}
        assert again.json()["key"] is None  # the secret is shown once, never stored
        other = api.post("/keys", json={"name": "batch2"}, headers=headers)
        assert (other.status_code, other.json()["type"]) == (422, "idempotency_key_reused")
        keys = api.get("/keys").json()
        assert [k["name"] for k in keys["data"]] == ["app", "batch"]
        audit = api.get("/audit", params={"action": "key.create"}).json()["data"]
        assert len(audit) == 1
        # another token's key of the same name is its own
        team = api.post("/teams", json={"name": "t1"}, headers={"idempotency-key": "k"})
        assert team.status_code == 201
        assert api.post("/teams", json={"name": "t1"}).status_code == 409  # no key: done twice


def test_concurrent_duplicates_are_done_once(admin: Admin) -> None:
    body = {"name": "batch", "team": "ml", "budget": "3", "period": "daily"}

    def post(_: int) -> httpx2.Response:
        with admin.client() as api:
            return api.post("/keys", json=body, headers={"idempotency-key": "same"})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post, range(6)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.json()["key"] is not None for a in answers) == 1  # the secret once
    with admin.client() as api:
        assert [k["name"] for k in api.get("/keys").json()["data"]] == ["app", "batch"]
        assert len(api.get("/audit", params={"action": "key.create"}).json()["data"]) == 1
        assert len(api.get("/budgets").json()["data"]) == 1


def test_off_until_a_token_exists(db_url: str, engine: Engine, simulator: Simulator) -> None:
    url, process = start_server(db_url, simulator.url)
    try:
        probes = [("GET", "/admin/v1/keys"), ("GET", "/admin/v1/openapi.json"),
                  ("PUT", "/admin/v1/keys"), ("GET", "/admin/v1/nothing"),
                  ("GET", "/admin/v1")]  # fmt: skip
        for method, path in probes:
            response = httpx2.request(method, url + path)
            assert response.status_code == 404, path
            assert response.json()["type"] == "not_found"
        with engine.begin() as conn:
            secret = create_token_op(conn, name="ops", scopes=(), actor="cli").secret
        auth = {"authorization": f"Bearer {secret}"}
        assert httpx2.get(url + "/admin/v1/keys", headers=auth).status_code == 200
        assert httpx2.put(url + "/admin/v1/keys", headers=auth).status_code == 405
        with engine.begin() as conn:
            revoke_token_op(conn, "ops", actor="cli")
        assert httpx2.get(url + "/admin/v1/keys", headers=auth).status_code == 404  # off again
    finally:
        stop_server(process)
