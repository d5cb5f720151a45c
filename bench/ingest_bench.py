"""bench/ingest: time ``metering ingest`` of N JSON lines (default 1,000,000).

Writes a JSON Lines file of saved completions responses (simulator shape, usage with
cached and reasoning tokens, a few models, 5 keys, one month; no request_id, so each
is derived from the line's content), then runs ``metering ingest FILE`` on a fresh
database as a subprocess: wall time, lines/s and peak RSS; then ingests the same file
again (everything is a duplicate: exactly-once) and times that too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from _common import create_pg_database, drop_pg_database, metering, timed_metering

from metering.simulator import make_usage

MODELS = ("openai/gpt-4o", "openai/gpt-4o-mini", "openai/o3-mini", "gemini/gemini-2.5-pro")
KEYS = 5
PG_DB = "metering_bench_ingest"


def write_lines(path: Path, n: int) -> None:
    start = datetime(2026, 11, 1)
    step = timedelta(days=30) / n
    with path.open("wb") as fh:
        for i in range(n):
            model = MODELS[i % len(MODELS)]
            provider, _, name = model.partition("/")
            prompt = "x" * (40 + i % 400)
            usage = make_usage(model, {"prompt": prompt, "max_tokens": 8 + i % 8}, 1)
            response = {
                "id": f"cmpl-{i}",
                "object": "text_completion",
                "created": 1_700_000_000 + i,
                "model": name,
                "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}],
                "usage": usage,
                "extra_fields": {"provider": provider, "model_requested": name, "latency": 300},
            }
            line = {
                "key": f"ingest-{i % KEYS}",
                "timestamp": (start + step * i).isoformat() + "Z",
                "response": response,
            }
            fh.write(orjson.dumps(line) + b"\n")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=1_000_000, help="JSON lines [1,000,000]")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL at 127.0.0.1:5432")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="metering-bench-ingest-"))
    # From a folder of its own: `python -m metering` run from a checkout would import the
    # checkout instead of the interpreter's installed version.
    os.chdir(workdir)
    url = create_pg_database(PG_DB) if args.postgres else f"sqlite:///{workdir / 'ingest.db'}"
    try:
        env = dict(os.environ, METERING_DATABASE_URL=url)
        metering(["db", "upgrade"], env)
        for k in range(KEYS):
            metering(["keys", "create", f"ingest-{k}"], env)
        budget = ["--limit", "1000000", "--period", "monthly"]
        metering(["budgets", "set", "--key", "ingest-0", *budget], env)
        data = workdir / "lines.jsonl"
        t0 = time.perf_counter()
        write_lines(data, args.lines)
        size = data.stat().st_size / 1e6
        print(f"# wrote {args.lines:,} lines ({size:.0f} MB) in {time.perf_counter() - t0:.1f} s")
        dialect = "postgresql" if args.postgres else "sqlite"
        print(
            f"# bench/ingest {time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} cores · {dialect}"
        )
        for label in ("first", "again"):
            wall, rss, last = timed_metering(["ingest", str(data)], env, workdir / "out.txt")
            print(
                f"metering ingest ({label}): {wall:.1f} s, {args.lines / wall:,.0f} lines/s, "
                f"peak RSS {rss} MB · {last}"
            )
    finally:
        if args.postgres:
            drop_pg_database(PG_DB)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
