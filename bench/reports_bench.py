"""bench/reports: time the reports over N synthetic records (default 10,000,000).

Generates the records in a fresh database (bench/reports_data.py: in-database, batched,
then the daily rollup by one GROUP BY), checks rollup = records, then runs as
subprocesses, each timed (wall) with its peak RSS (wait4 rusage):

    metering spend --by provider,model
    metering spend --by key,day
    metering spend --by tag / --by end_user / --by tag,end_user / --tag feature=rag --by key
    metering export --month 2026-11                    (summary)
    metering export --month 2026-11 --detail requests  (one row per request)

and ``metering --version`` (interpreter + import baseline). Every figure includes the
CLI's start-up. The database is dropped (PostgreSQL) or deleted (SQLite) at the end
unless --keep; --db PATH reuses a generated SQLite file (generated only if missing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import create_pg_database, drop_pg_database, metering, timed_metering
from reports_data import build_rollup, create_models, create_owners, insert_records
from sqlalchemy import text

from metering.storage.engine import make_engine

BATCH = 1_000_000
PG_DB = "metering_bench_reports"
MONTH = "2026-11"


def generate(url: str, rows: int, keys: int) -> float:
    env = dict(os.environ, METERING_DATABASE_URL=url)
    metering(["db", "upgrade"], env)
    engine = make_engine(url)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA cache_size=-1000000")  # 1 GB page cache while loading
        create_owners(conn, keys)
    for first in range(1, rows + 1, BATCH):
        last = min(first + BATCH - 1, rows)
        with engine.begin() as conn:
            create_models(conn)
            insert_records(conn, first=first, last=last, n=rows, keys=keys)
            conn.execute(text("DROP TABLE bench_models"))
        print(
            f"  generated {last:,} / {rows:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True
        )
    with engine.begin() as conn:
        build_rollup(conn)
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed


def check_rollup(url: str) -> tuple[int, int, int]:
    """(records, SUM(total_cost) of records, of rollups): the two sums must be equal (and
    the end-user rollup's; the tag rollup's untagged and per-tag sums are checked too)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        n, records = conn.execute(text("SELECT count(*), sum(total_cost) FROM usage_records")).one()
        rollups = conn.execute(text("SELECT sum(total_cost) FROM daily_rollups")).scalar_one()
        users = conn.execute(text("SELECT sum(total_cost) FROM daily_end_user_rollups")).scalar()
        by_tag = {
            tag: cost
            for tag, cost in conn.execute(
                text("SELECT tag, sum(total_cost) FROM daily_tag_rollups GROUP BY tag")
            )
        }
        linked = {
            tag: cost
            for tag, cost in conn.execute(
                text(
                    "SELECT coalesce(t.tag, ''), sum(u.total_cost) FROM usage_records u "
                    "LEFT JOIN record_tags t ON t.record_id = u.id GROUP BY coalesce(t.tag, '')"
                )
            )
        }
    engine.dispose()
    if users != records or {k: int(v) for k, v in by_tag.items()} != {
        k: int(v) for k, v in linked.items()
    }:
        raise SystemExit(f"attribution rollups differ: {users} vs {records}; {by_tag} {linked}")
    return int(n), int(records), int(rollups)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=10_000_000, help="records [10,000,000]")
    ap.add_argument("--keys", type=int, default=400, help="virtual keys [400]")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL at 127.0.0.1:5432")
    ap.add_argument("--db", type=Path, help="SQLite file to (re)use (generated if missing)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each command (min, max shown)")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="metering-bench-reports-"))
    # From a folder of its own: `python -m metering` run from a checkout would import the
    # checkout instead of the interpreter's installed version.
    os.chdir(workdir)
    if args.postgres:
        url = create_pg_database(PG_DB)
        fresh = True
    else:
        db = args.db or workdir / "reports.db"
        fresh = not db.exists()
        url = f"sqlite:///{db}"
    try:
        if fresh:
            print(f"# generating {args.rows:,} records over {MONTH}, {args.keys} keys, 30 models")
            secs = generate(url, args.rows, args.keys)
            print(f"# generated in {secs:.1f} s ({args.rows / secs:,.0f} rows/s)")
        n, records_sum, rollup_sum = check_rollup(url)
        ok = "equal" if records_sum == rollup_sum else "DIFFERENT"
        print(
            f"# {n:,} records; SUM(total_cost) records {records_sum} / rollups {rollup_sum}: {ok}"
        )
        env = dict(os.environ, METERING_DATABASE_URL=url)
        commands = [
            ["--version"],
            ["spend", "--by", "provider,model"],
            ["spend", "--by", "key,day", "--format", "csv"],
            ["spend", "--by", "tag"],
            ["spend", "--by", "end_user", "--format", "csv"],
            ["spend", "--by", "tag,end_user", "--format", "csv"],
            ["spend", "--tag", "feature=rag", "--by", "key", "--format", "csv"],
            ["export", "--month", MONTH, "--out", str(workdir / "summary.csv")],
            [
                "export",
                "--month",
                MONTH,
                "--detail",
                "requests",
                "--out",
                str(workdir / "requests.csv"),
            ],
        ]
        dialect = "postgresql" if args.postgres else "sqlite"
        print(
            f"# bench/reports {time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} cores · "
            f"{dialect}"
        )
        print(f"{'command':58} {'wall s':>8} {'peak RSS MB':>11}  output")
        for cmd in commands:
            runs = [timed_metering(cmd, env, workdir / "stdout.txt") for _ in range(args.repeat)]
            walls = sorted(r[0] for r in runs)
            wall = f"{walls[0]:.2f}" if len(walls) == 1 else f"{walls[0]:.2f}-{walls[-1]:.2f}"
            shown = " ".join(c for c in cmd if not c.startswith(str(workdir)))
            last = (
                runs[-1][2]
                if cmd[0] == "export"
                else f"{len((workdir / 'stdout.txt').read_text().splitlines())} lines"
            )
            print(f"metering {shown:49} {wall:>8} {max(r[1] for r in runs):>11}  {last[:70]}")
    finally:
        if args.postgres and not args.keep:
            drop_pg_database(PG_DB)
        if args.keep:
            print(f"# kept: {url} and {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
