"""Synthetic usage records for bench/reports, generated inside the database (SQLite
recursive CTE / PostgreSQL generate_series), then the daily rollup by one
INSERT … SELECT … GROUP BY — the same sums ``write_records`` keeps, so the rollup equals
the records exactly (bench/reports checks it).

Rows are spread evenly over one month (UTC), over ``keys`` keys (one in ten without a
team; teams belong to customers) and 30 provider/model pairs; about 1% are upstream
errors without usage. Amounts are integer nano-USD: tokens × an integer rate per token.

Attribution (README, Attribution): nine in ten records name an end user, one of
``END_USERS_PER_KEY`` per key (scoped by its customer, or the key); a quarter are
untagged, the others carry one or two of ``TAGS`` (``record_tags`` and the end-user and
tag rollups built by ``build_rollup`` as ``write_records`` keeps them).
"""

# SQL here is built from the bench's own integer constants, never from outside input.
# ruff: noqa: S608

from __future__ import annotations

from sqlalchemy import Connection, text

from metering.storage.models import COST_COLUMNS, TOKEN_COLUMNS

PROVIDERS = ("openai", "anthropic", "gemini", "mistral", "perplexity", "bedrock")
MODELS = 30
TEAMS = 30
CUSTOMERS = 10
CREATED = "2026-10-01 00:00:00"
END_USERS_PER_KEY = 3
TAGS = ("beta", "feature=chat", "feature=rag")
# i % 4 → the record's tags (sorted, comma-joined; NULL: none)
TAG_SETS = ("NULL", "'feature=rag'", "'feature=chat'", "'beta,feature=rag'")

# Expressions of the row number ``i`` (1..n) and the joined ``m`` (model) row.
TOKENS = {
    "prompt_tokens": "CASE WHEN i % 97 = 0 THEN 0 ELSE 40 + (i * 13) % 3000 END",
    "completion_tokens": "CASE WHEN i % 97 = 0 THEN 0 ELSE 8 + (i * 17) % 900 END",
}
TOKENS["cached_read_tokens"] = f"(({TOKENS['prompt_tokens']}) * (i % 4)) / 8"
TOKENS["reasoning_tokens"] = (
    f"CASE WHEN m.reasoning = 1 THEN ({TOKENS['completion_tokens']}) / 2 ELSE 0 END"
)
TOKENS["prompt_text_tokens"] = f"({TOKENS['prompt_tokens']}) - ({TOKENS['cached_read_tokens']})"
TOKENS["completion_text_tokens"] = (
    f"({TOKENS['completion_tokens']}) - ({TOKENS['reasoning_tokens']})"
)
TOKENS["total_tokens"] = f"({TOKENS['prompt_tokens']}) + ({TOKENS['completion_tokens']})"
COSTS = {
    "input_cost": f"({TOKENS['prompt_text_tokens']}) * m.in_rate",
    "cache_read_cost": f"({TOKENS['cached_read_tokens']}) * (m.in_rate / 10)",
    "output_cost": f"({TOKENS['completion_text_tokens']}) * m.out_rate",
    "reasoning_cost": f"({TOKENS['reasoning_tokens']}) * m.out_rate",
}
COSTS["total_cost"] = " + ".join(f"({e})" for e in COSTS.values())


def _column_exprs(dialect: str, n: int, keys: int) -> dict[str, str]:
    span = 30 * 86_400  # seconds in the month (November)
    if dialect == "sqlite":
        at = (
            f"strftime('%Y-%m-%d %H:%M:%S', '2026-11-01', '+' || ((i - 1) * {span} / {n}) "
            "|| ' seconds') || '.' || printf('%06d', (i * 7) % 1000000)"
        )
        false, true = "0", "1"
    else:
        at = (
            f"timestamp '2026-11-01' + make_interval(secs => ((i - 1) * {span}::bigint / {n}) "
            "+ ((i * 7) % 1000000) / 1e6)"
        )
        false, true = "false", "true"
    key = f"(1 + (i * 7919) % {keys})"
    team = f"CASE WHEN {key} % 10 = 0 THEN NULL ELSE 1 + {key} % {TEAMS} END"
    customer = (
        f"CASE WHEN {key} % 10 = 0 THEN NULL ELSE 1 + (1 + {key} % {TEAMS}) % {CUSTOMERS} END"
    )
    exprs = {
        "request_id": "'bench-' || i",
        "response_id": "'cmpl-' || i",
        "started_at": at,
        "ended_at": at,
        "key_id": key,
        "team_id": team,
        "customer_id": customer,
        "provider": "m.provider",
        "model": "m.model",
        "requested_model": "m.provider || '/' || m.model",
        "request_type": "'text_completion'",
        "stream": f"CASE WHEN i % 3 = 0 THEN {true} ELSE {false} END",
        "status": "CASE WHEN i % 97 = 0 THEN 'upstream_error' ELSE 'success' END",
        "http_status": "CASE WHEN i % 97 = 0 THEN 503 ELSE 200 END",
        "latency_ms": "200 + i % 1800",
        "cache_hit": false,
        "cache_hit_type": "NULL",
        "computed_cost": COSTS["total_cost"],
        "reported_cost": "NULL",
        "cost_source": "'computed'",
        "price_version_id": "NULL",
        "error_message": "NULL",
        "usage_estimated": false,
        "end_user": f"CASE WHEN i % 10 = 9 THEN NULL ELSE 'user-' || ({key} * "
        f"{END_USERS_PER_KEY} + (i / 7) % {END_USERS_PER_KEY}) END",
        "end_user_scope": f"CASE WHEN i % 10 = 9 THEN NULL WHEN {key} % 10 = 0 THEN 'key:' || "
        f"{key} ELSE 'customer:' || (1 + (1 + {key} % {TEAMS}) % {CUSTOMERS}) END",
        "tags": "CASE i % 4 "
        + " ".join(f"WHEN {n} THEN {t}" for n, t in enumerate(TAG_SETS))
        + " END",
    }
    for column in (*TOKEN_COLUMNS, *COST_COLUMNS):
        exprs[column] = TOKENS.get(column) or COSTS.get(column) or "0"
    return exprs


def create_owners(conn: Connection, keys: int) -> None:
    dialect = conn.dialect.name
    true = "1" if dialect == "sqlite" else "true"
    for c in range(1, CUSTOMERS + 1):
        conn.execute(
            text(
                "INSERT INTO customers (id, name, created_at) "
                f"VALUES ({c}, 'customer-{c}', '{CREATED}')"
            )
        )
    for t in range(1, TEAMS + 1):
        conn.execute(
            text(
                "INSERT INTO teams (id, name, customer_id, created_at) "
                f"VALUES ({t}, 'team-{t}', {1 + t % CUSTOMERS}, '{CREATED}')"
            )
        )
    rows = []
    for k in range(1, keys + 1):
        team = "NULL" if k % 10 == 0 else str(1 + k % TEAMS)
        customer = "NULL" if k % 10 == 0 else str(1 + (1 + k % TEAMS) % CUSTOMERS)
        rows.append(
            f"({k}, 'key-{k:04d}', 'hash-{k}', 'sk-bf-{k}', {team}, {customer}, '[]', {true}, "
            f"'{CREATED}', '{CREATED}')"
        )
    conn.execute(
        text(
            "INSERT INTO virtual_keys (id, name, key_hash, key_prefix, team_id, customer_id, "
            "allowed_models, enabled, created_at, updated_at) VALUES " + ", ".join(rows)
        )
    )
    if dialect == "postgresql":
        for table in ("customers", "teams", "virtual_keys"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            )


def create_models(conn: Connection) -> None:
    conn.execute(
        text(
            "CREATE TEMPORARY TABLE bench_models (idx INTEGER PRIMARY KEY, provider TEXT, "
            "model TEXT, in_rate BIGINT, out_rate BIGINT, reasoning INTEGER)"
        )
    )
    values = []
    for i in range(MODELS):
        provider = PROVIDERS[i % len(PROVIDERS)]
        values.append(
            f"({i}, '{provider}', 'model-{i:02d}', {100 + 37 * i}, {400 + 111 * i}, "
            f"{int(i % 5 == 0)})"
        )
    conn.execute(text("INSERT INTO bench_models VALUES " + ", ".join(values)))


def insert_records(conn: Connection, *, first: int, last: int, n: int, keys: int) -> None:
    """Rows ``first``..``last`` (inclusive) of ``n``."""
    exprs = _column_exprs(conn.dialect.name, n, keys)
    columns = ", ".join(exprs)
    select = ", ".join(exprs.values())
    if conn.dialect.name == "sqlite":
        source = (
            f"WITH RECURSIVE seq(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM seq "
            f"WHERE i < {last}) "
        )
        frm = f"FROM seq JOIN bench_models m ON m.idx = (i * 31 + i / {MODELS}) % {MODELS}"
    else:
        source = ""
        frm = (
            f"FROM generate_series({first}::bigint, {last}::bigint) AS g(i) "
            f"JOIN bench_models m ON m.idx = (i * 31 + i / {MODELS}) % {MODELS}"
        )
    conn.execute(text(f"{source}INSERT INTO usage_records ({columns}) SELECT {select} {frm}"))


def build_rollup(conn: Connection) -> None:
    """The three rollups and ``record_tags``, as ``write_records`` would have kept them."""
    day = "date(started_at)" if conn.dialect.name == "sqlite" else "CAST(started_at AS date)"
    sums = ("requests", "errors", *TOKEN_COLUMNS, *COST_COLUMNS)
    exprs = ["count(*)", "sum(CASE WHEN status = 'success' THEN 0 ELSE 1 END)"]
    exprs += [f"sum({c})" for c in (*TOKEN_COLUMNS, *COST_COLUMNS)]
    base = [day, "key_id", "coalesce(team_id, 0)", "coalesce(customer_id, 0)", "provider", "model"]
    users = [*base, "coalesce(end_user_scope, '')", "coalesce(end_user, '')"]
    names = "day, key_id, team_id, customer_id, provider, model"

    def rollup(table: str, columns: str, keys: list[str], where: str = "", tag: str = "") -> None:
        picked = ", ".join(keys) + (f", '{tag}'" if table == "daily_tag_rollups" else "")
        conn.execute(
            text(
                f"INSERT INTO {table} ({columns}, {', '.join(sums)}) SELECT {picked}, "
                f"{', '.join(exprs)} FROM usage_records {where} GROUP BY {', '.join(keys)}"
            )
        )

    rollup("daily_rollups", names, base)
    rollup("daily_end_user_rollups", f"{names}, end_user_scope, end_user", users)
    tagged = f"{names}, end_user_scope, end_user, tag"
    rollup("daily_tag_rollups", tagged, users, "WHERE tags IS NULL", "")
    for tag in TAGS:
        has = f"(',' || tags || ',') LIKE '%,{tag},%'"
        rollup("daily_tag_rollups", tagged, users, f"WHERE {has}", tag)
        conn.execute(text(f"INSERT INTO tags (name) VALUES ('{tag}')"))
        conn.execute(
            text(f"INSERT INTO record_tags (record_id, tag) SELECT id, '{tag}' FROM usage_records "
                 f"WHERE {has}")
        )  # fmt: skip
