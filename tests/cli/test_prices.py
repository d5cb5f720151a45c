"""CLI tests for `metering prices …` and `metering db upgrade` (CliRunner, real databases)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from metering.cli import main
from metering.storage.prices import load_versions

LITELLM = Path(__file__).resolve().parents[1] / "fixtures" / "litellm_model_prices.json"


def run(db_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--database-url", db_url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_quote_table_and_json(db_url: str) -> None:
    args = ["prices", "quote", "openai/gpt-4o", "--prompt-tokens", "1000"]
    args += ["--cached-read-tokens", "200", "--completion-tokens", "500"]
    code, out, _ = run(db_url, *args)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("openai/gpt-4o  price version effective 2024-01-01")
    assert lines[-1].split() == ["total", "0.00725"]
    assert ["input", "800", "0.002"] in [line.split() for line in lines]
    code, out, _ = run(db_url, *args, "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert {r["component"]: r["cost_usd"] for r in rows} == {
        "input": "0.002",
        "cache_read": "0.00025",
        "cache_write": "0",
        "output": "0.005",
        "reasoning": "0",
        "citation": "0",
        "search": "0",
        "request": "0",
        "total": "0.00725",
    }


def test_quote_csv_every_component(db_url: str) -> None:
    code, out, _ = run(
        db_url,
        "prices", "quote", "perplexity/sonar-deep-research",
        "--prompt-tokens", "1000", "--completion-tokens", "3000", "--reasoning-tokens", "2000",
        "--citation-tokens", "500", "--search-queries", "3", "--format", "csv",
    )  # fmt: skip
    assert code == 0
    assert out.splitlines() == [
        "component,units,cost_usd",
        "input,1000,0.002",
        "cache_read,0,0",
        "cache_write,0,0",
        "output,1000,0.008",
        "reasoning,2000,0.006",
        "citation,500,0.001",
        "search,3,0.015",
        "request,1,0",
        "total,,0.032",
    ]


def test_quote_of_one_hour_cache_writes(db_url: str) -> None:
    args = ["prices", "quote", "anthropic/claude-sonnet-4-5", "--prompt-tokens", "1100"]
    args += ["--cached-write-tokens", "100", "--cached-write-1h-tokens", "40", "--format", "csv"]
    code, out, _ = run(db_url, *args)
    assert code == 0
    lines = out.splitlines()
    assert "cache_write,100,0.000465" in lines  # 60 × 3.75 + 40 × 6.00 per 1M
    assert lines[-1] == "total,,0.003465"


def test_quote_of_a_shipped_embedding_model(db_url: str) -> None:
    args = ["prices", "quote", "openai/text-embedding-3-small", "--prompt-tokens", "1000"]
    code, out, _ = run(db_url, *args, "--format", "json")
    assert code == 0
    costs = {r["component"]: r["cost_usd"] for r in json.loads(out)}
    assert (costs["input"], costs["output"], costs["total"]) == ("0.00002", "0", "0.00002")


@pytest.mark.parametrize(
    "args, message",
    [
        (["openai/unknown-model", "--prompt-tokens", "1"], "no price for openai/unknown-model"),
        (["gpt-4o", "--prompt-tokens", "1"], "must be written provider/model"),
        (["openai/gpt-4o", "--prompt-tokens", "-5"], "must not be negative"),
        (["openai/gpt-4o", "--prompt-tokens", "5", "--cached-read-tokens", "9"], "must not exceed"),
        (
            [
                "anthropic/claude-sonnet-4-5",
                "--prompt-tokens",
                "9",
                "--cached-write-1h-tokens",
                "1",
            ],
            "--cached-write-1h-tokens must not exceed --cached-write-tokens",
        ),
    ],
)
def test_quote_errors_are_one_line(db_url: str, args: list[str], message: str) -> None:
    code, out, err = run(db_url, "prices", "quote", *args)
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_list_and_show(db_url: str) -> None:
    code, out, _ = run(db_url, "prices", "list", "--format", "json")
    assert code == 0
    rows = {f"{r['provider']}/{r['model']}": r for r in json.loads(out)}
    assert rows["openai/gpt-4o"]["input"] == "2.5"
    assert (
        rows["gemini/gemini-2.5-pro"]["tiers"] == ">200000: input=2.5, cache_read=0.25, output=15"
    )
    code, out, _ = run(db_url, "prices", "show", "anthropic/claude-sonnet-4-5", "--format", "csv")
    assert code == 0
    assert out.splitlines()[1].startswith("anthropic,claude-sonnet-4-5,2024-01-01,3,0.3,3.75,15,")
    code, _, err = run(db_url, "prices", "show", "openai/nope")
    assert code == 1 and "no price for openai/nope" in err


def test_import_toml_new_version_and_conflicts(db_url: str, tmp_path: Path) -> None:
    sheet = tmp_path / "openai-2026.toml"
    sheet.write_text(
        'provider = "openai"\neffective_from = "2026-06-01"\n'
        '[models."gpt-4o"]\ninput = "5"\ncache_read = "2.5"\noutput = "20"\n'
        "max_input_tokens = 128000\nmax_output_tokens = 16384\n"
    )
    code, out, _ = run(db_url, "prices", "import", str(sheet), "--format", "json")
    assert code == 0
    assert json.loads(out)[0] == {"outcome": "imported", "count": 1}
    code, out, _ = run(db_url, "prices", "import", str(sheet), "--format", "json")
    assert json.loads(out)[:2] == [
        {"outcome": "imported", "count": 0},
        {"outcome": "unchanged", "count": 1},
    ]
    base = ["prices", "quote", "openai/gpt-4o", "--prompt-tokens", "1000", "--format", "csv"]
    assert run(db_url, *base, "--at", "2026-05-31")[1].splitlines()[-1] == "total,,0.0025"
    assert run(db_url, *base, "--at", "2026-06-01")[1].splitlines()[-1] == "total,,0.005"
    # same date, different price: refused unless --replace; nothing changes
    sheet.write_text(sheet.read_text().replace('input = "5"', 'input = "6"'))
    code, _, err = run(db_url, "prices", "import", str(sheet))
    assert code == 1 and "differ from the stored ones" in err
    assert run(db_url, *base, "--at", "2026-06-01")[1].splitlines()[-1] == "total,,0.005"
    code, _, _ = run(db_url, "prices", "import", str(sheet), "--replace")
    assert code == 0
    assert run(db_url, *base, "--at", "2026-06-01")[1].splitlines()[-1] == "total,,0.006"


def test_import_bad_files(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('provider = "x"\neffective_from = "2024-01-01"\n[models.m]\ninput = "cheap"\n')
    code, _, err = run(db_url, "prices", "import", str(bad))
    assert code == 1 and "bad.toml" in err and "not a decimal number" in err
    code, _, err = run(db_url, "prices", "import", str(tmp_path / "missing.json"))
    assert code == 1 and "cannot read" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = run(db_url, "prices", "import", str(broken))
    assert code == 1 and "not valid JSON" in err and len(err.strip().splitlines()) == 1


def test_import_litellm_table(db_url: str) -> None:
    code, out, _ = run(
        db_url,
        "prices",
        "import",
        str(LITELLM),
        "--effective-from",
        "2026-01-01",
        "--format",
        "json",
    )
    assert code == 0
    counts = {r["outcome"]: r["count"] for r in json.loads(out)}
    assert counts["imported"] > 3000
    assert counts["skipped"] > 1000
    assert counts["skipped: mode image_generation"] > 0
    # priced the same as the shipped sheet
    code, out, _ = run(
        db_url, "prices", "quote", "gemini/gemini-2.5-pro", "--prompt-tokens", "250000",
        "--completion-tokens", "1000", "--at", "2026-02-01", "--format", "csv",
    )  # fmt: skip
    assert out.splitlines()[-1] == "total,,0.64"


def test_db_upgrade_names_a_shipped_version_that_differs_from_the_stored_one(
    tmp_path: Path,
) -> None:
    """A database that stored claude-sonnet-4-5 before its sheet had a 1-hour cache write
    rate keeps its version (history is not edited) and is told how to take the new one."""
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'older.db'}"
    assert run(url, "db", "upgrade")[0] == 0
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE price_versions SET rates = :r WHERE model = 'claude-sonnet-4-5'"),
            {"r": json.dumps({"input": "3", "cache_read": "0.3", "cache_write": "3.75",
                              "output": "15", "search_query": "0.01"})},
        )  # fmt: skip
    engine.dispose()
    code, out, _ = run(url, "db", "upgrade")
    assert code == 0
    notice = out.splitlines()[-1]
    assert notice.startswith("kept 1 stored price version(s) that differ from the shipped ones")
    assert "anthropic/claude-sonnet-4-5 effective 2024-01-01" in notice
    sheet = notice.split("`metering prices import ", 1)[1].split(" --replace`", 1)[0]
    assert Path(sheet).name == "anthropic.toml"
    code, out, _ = run(url, "prices", "import", sheet, "--replace", "--format", "json")
    assert code == 0
    assert {r["outcome"]: r["count"] for r in json.loads(out)}["replaced"] == 1
    code, out, _ = run(url, "db", "upgrade")
    assert code == 0 and "kept" not in out


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code, out, _ = run(url, "db", "upgrade")
    assert code == 0 and "upgraded from empty" in out and "shipped price version" in out
    code, out, _ = run(url, "db", "upgrade")
    assert code == 0 and "already at revision" in out


def test_import_refuses_a_float_rate_naming_the_field(db_url: str, tmp_path: Path) -> None:
    sheet = tmp_path / "floaty.toml"
    sheet.write_text('provider = "x"\neffective_from = "2026-01-01"\n'
                     '[models."gpt-x"]\ninput = 0.15\noutput = "0.60"\n')  # fmt: skip
    code, out, err = run(db_url, "prices", "import", str(sheet))
    assert (code, out) == (1, "")
    assert err == (
        "Error: sheet:floaty.toml: models.gpt-x: input = 0.15 is a TOML float; rates are "
        'decimal strings: quote it (input = "0.15")\n'
    )
    assert run(db_url, "prices", "show", "x/gpt-x")[0] == 1


def test_import_names_what_a_new_version_drops_and_needs_allow_drop(
    db_url: str, tmp_path: Path
) -> None:
    sheet = tmp_path / "gemini-2027.toml"
    sheet.write_text('provider = "gemini"\neffective_from = "2027-01-01"\n'
                     '[models."gemini-2.5-pro"]\ninput = "1.00"\noutput = "8.00"\n')  # fmt: skip
    drop_line = (
        "gemini/gemini-2.5-pro effective 2027-01-01 drops cache_read, search_query, "
        "tier above 200000, max_input_tokens, max_output_tokens (set by the version "
        "effective 2024-01-01)\n"
    )
    code, out, err = run(db_url, "prices", "import", str(sheet))
    assert (code, out) == (1, "")
    assert err == drop_line + (
        "Error: 1 new price version(s) drop fields of the version before them (listed "
        "above), which would then be priced by a fallback rate or 0; nothing was imported. "
        "Add the fields to the sheet, or --allow-drop to import it as it is.\n"
    )
    code, out, _ = run(db_url, "prices", "show", "gemini/gemini-2.5-pro", "--format", "json")
    assert [v["effective_from"] for v in json.loads(out)] == ["2024-01-01"]
    code, out, err = run(db_url, "prices", "import", str(sheet), "--allow-drop",
                         "--format", "json")  # fmt: skip
    assert (code, err) == (0, drop_line)
    assert json.loads(out)[0] == {"outcome": "imported", "count": 1}
    # a correction (--replace) that drops a field of the version it replaces is named too
    sheet.write_text(sheet.read_text().replace('output = "8.00"\n', ""))
    code, _, err = run(db_url, "prices", "import", str(sheet), "--replace")
    assert code == 1 and err.startswith(
        "gemini/gemini-2.5-pro effective 2027-01-01 drops output (set by the version "
        "effective 2027-01-01)\n"
    )


def test_import_litellm_names_each_skipped_entry(db_url: str, tmp_path: Path) -> None:
    table = tmp_path / "prices.json"
    table.write_text(
        '{"": {"litellm_provider": "openai", "input_cost_per_token": 1e-6},'
        ' "tts-1": {"litellm_provider": "openai", "mode": "audio_speech"},'
        ' "x-1": {"litellm_provider": "openai", "input_cost_per_token": -2e-6},'
        ' "gpt-9": {"litellm_provider": "openai", "input_cost_per_token": 1e-6,'
        ' "output_cost_per_token": 2e-6}}'
    )
    code, out, err = run(db_url, "prices", "import", str(table), "--effective-from",
                         "2026-01-01", "--format", "csv")  # fmt: skip
    assert code == 0
    assert err == (
        'skipped "": its model name is empty\n'
        'skipped "tts-1": mode audio_speech is not priced per token\n'
        'skipped "x-1": input_cost_per_token is -0.000002, not a non-negative number\n'
    )
    assert out.splitlines() == [
        "outcome,count",
        "imported,1",
        "unchanged,0",
        "replaced,0",
        "skipped,3",
        "skipped: bad name,1",
        "skipped: bad price,1",
        "skipped: mode audio_speech,1",
    ]
    assert run(db_url, "prices", "show", 'openai/""')[0] == 1


def test_remove_a_price_version_unless_records_use_it(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    from datetime import datetime

    from metering.storage.records import write_records
    from tests.helpers import make_org, record

    sheet = tmp_path / "x.toml"
    sheet.write_text('provider = "x"\neffective_from = "2026-01-01"\n'
                     '[models.m]\ninput = "1"\noutput = "2"\n'
                     '[models.typo]\ninput = "1"\noutput = "2"\n')  # fmt: skip
    assert run(db_url, "prices", "import", str(sheet))[0] == 0
    sheet.write_text(sheet.read_text().replace("2026-01-01", "2026-02-01"))
    assert run(db_url, "prices", "import", str(sheet))[0] == 0
    assert run(db_url, "prices", "remove", "x/typo", "--effective-from", "2026-02-01") == (
        0,
        "removed the price version of x/typo effective 2026-02-01\n",
        "",
    )
    assert run(db_url, "prices", "remove", "x/typo") == (
        0,
        "removed the price version of x/typo effective 2026-01-01\n",
        "",
    )
    code, _, err = run(db_url, "prices", "remove", "x/typo")
    assert (code, err) == (
        1,
        "Error: no price version of x/typo; `metering prices show x/typo` lists its versions\n",
    )
    with engine.begin() as conn:
        org = make_org(conn)
        used = load_versions(conn, provider="x", model="m")[0]
        row = record(request_id="r1", key_id=org.key_id, team_id=org.team_id,
                     customer_id=org.customer_id, cost_nano=1,
                     started_at=datetime(2026, 1, 5))  # fmt: skip
        write_records(conn, [row._replace(price_version_id=used.id)])
    code, out, err = run(db_url, "prices", "remove", "x/m")
    assert (code, out) == (1, "")
    assert err == (
        "Error: x/m effective 2026-01-01 priced 1 record(s) and cannot be removed; supersede "
        "it instead: import a version with a later effective_from\n"
    )
    assert len(json.loads(run(db_url, "prices", "show", "x/m", "--format", "json")[1])) == 2
    code, _, err = run(db_url, "prices", "remove", "openai/gpt-4o")
    assert code == 1 and err.startswith(
        "Error: openai/gpt-4o effective 2024-01-01 ships with metering (pricing/) and would "
        "be added again at the next start; supersede it instead"
    )


@pytest.mark.parametrize(
    ("day", "why"),
    [
        ("2026-02-30", "2026-02-30 does not exist (February 2026 has 28 days)"),
        ("2026-13-01", "2026-13-01 does not exist (months are 01 to 12)"),
        ("2026-2-1", "'2026-2-1' is not a date (YYYY-MM-DD)"),
    ],
)
def test_a_date_that_does_not_exist_is_told_from_a_bad_format(
    db_url: str, day: str, why: str
) -> None:
    for args in (["prices", "list", "--at", day], ["spend", "--since", day],
                 ["reprice", "--until", day, "--dry-run"]):  # fmt: skip
        option = next(a for a in args if a.startswith("--") and a != "--dry-run")
        code, out, err = run(db_url, *args)
        assert (code, out) == (2, "")
        assert err.splitlines()[-1] == f"Error: Invalid value for '{option}': {why}"
    assert run(db_url, "prices", "list", "--at", "2024-02-29")[0] == 0


def test_replace_is_a_new_version_and_records_keep_the_rates_they_were_billed_with(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    """``--replace`` never edits a version that records point to: the old row keeps its
    rates (marked replaced, naming its correction); the correction is a new id, which new
    requests and ``reprice`` use; ``prices show`` lists both."""
    from datetime import datetime

    from sqlalchemy import select

    from metering.storage.models import PriceVersionRow, UsageRecord
    from metering.storage.records import write_records
    from tests.helpers import make_org, record

    sheet = tmp_path / "x.toml"
    sheet.write_text('provider = "x"\neffective_from = "2026-01-01"\n'
                     '[models.m]\ninput = "1"\noutput = "2"\n')  # fmt: skip
    assert run(db_url, "prices", "import", str(sheet))[0] == 0
    with engine.begin() as conn:
        org = make_org(conn)
        (old,) = load_versions(conn, provider="x", model="m")
        row = record(request_id="r1", key_id=org.key_id, team_id=org.team_id,
                     customer_id=org.customer_id, cost_nano=1_000,
                     started_at=datetime(2026, 1, 5))  # fmt: skip
        tokens = {"prompt_tokens": 1_000, "prompt_text_tokens": 1_000, "total_tokens": 1_000}
        row = row._replace(price_version_id=old.id, provider="x", model="m",
                           requested_model="x/m", **tokens)  # fmt: skip
        write_records(conn, [row])
    sheet.write_text(sheet.read_text().replace('input = "1"', 'input = "3"'))
    code, out, err = run(db_url, "prices", "import", str(sheet), "--replace", "--format", "json")
    assert code == 0, err
    assert {r["outcome"]: r["count"] for r in json.loads(out)}["replaced"] == 1
    with engine.connect() as conn:
        (live,) = load_versions(conn, provider="x", model="m")
        (kept,) = load_versions(conn, provider="x", model="m", which="replaced")
        pointed = conn.execute(
            select(UsageRecord.price_version_id).where(UsageRecord.request_id == "r1")
        ).scalar_one()
        replaced_by = conn.execute(
            select(PriceVersionRow.replaced_by).where(PriceVersionRow.id == old.id)
        ).scalar_one()
    assert live.id != old.id and kept.id == old.id == pointed and replaced_by == live.id
    assert str(kept.rates.input) == "1" and str(live.rates.input) == "3"  # the billed rates stay
    shown = json.loads(run(db_url, "prices", "show", "x/m", "--format", "json")[1])
    assert [(r["id"], r["input"], r["status"]) for r in shown] == [
        (old.id, "1", "replaced"),
        (live.id, "3", "live"),
    ]
    quote = ["prices", "quote", "x/m", "--prompt-tokens", "1000000", "--at", "2026-01-05"]
    assert run(db_url, *quote, "--format", "csv")[1].splitlines()[-1] == "total,,3"
    # A second correction of the same date replaces the live one again, never the old row.
    sheet.write_text(sheet.read_text().replace('input = "3"', 'input = "4"'))
    assert run(db_url, "prices", "import", str(sheet), "--replace")[0] == 0
    with engine.connect() as conn:
        assert [v.id for v in load_versions(conn, provider="x", model="m")] != [live.id]
        gone = load_versions(conn, provider="x", model="m", which="replaced")
    assert [(v.id, str(v.rates.input)) for v in gone] == [(old.id, "1"), (live.id, "3")]
    # reprice applies the correction to the old record: it moves to the live version.
    code, _, err = run(db_url, "reprice", "--since", "2026-01-01", "--until", "2026-01-31")
    assert code == 0, err
    with engine.connect() as conn:
        (now_live,) = load_versions(conn, provider="x", model="m")
        repriced = conn.execute(
            select(UsageRecord.price_version_id, UsageRecord.input_cost).where(
                UsageRecord.request_id == "r1"
            )
        ).one()
    assert tuple(repriced) == (now_live.id, 4_000_000)  # 1,000 tokens at $4 per 1M
