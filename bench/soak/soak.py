"""Soak: ``metering serve`` under bounded, steady load on loopback; the server's RSS and
open file descriptors sampled every few seconds; the samples and their trend printed.

    python bench/soak/soak.py                  # 10 minutes, SQLite in a temp dir
    python bench/soak/soak.py --minutes 3 --concurrency 8 --interval 5
    python bench/soak/soak.py --database-url postgresql+psycopg://postgres@127.0.0.1/soak

Not a test (not run in CI). The load: ``--concurrency`` clients in a closed loop,
three whole answers to one stream, a key under a key and a team budget (so every
request reserves and settles), the simulator as the upstream. Trend: least-squares
slope per minute of RSS and of open fds, over all samples and after the first
``--warmup`` seconds. At the end the records are counted against the answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import httpx2  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from metering.simulator import Simulator  # noqa: E402
from metering.storage.budgets import set_budget  # noqa: E402
from metering.storage.database import open_database  # noqa: E402
from metering.storage.keys import create_key, utcnow  # noqa: E402
from metering.storage.models import UsageRecord  # noqa: E402
from tests.process import start_server, stop_server  # noqa: E402


@dataclass
class Sample:
    elapsed: float  # seconds since the load started
    rss_kib: int
    fds: int
    requests: int


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return 60 * sxy / sxx if sxx else 0.0


async def run_load(
    url: str, secret: str, pid: int, seconds: float, concurrency: int, interval: float
) -> tuple[list[Sample], int, int]:
    done = errors = 0
    deadline = time.monotonic() + seconds
    samples: list[Sample] = []
    start = time.monotonic()

    async def worker(client: httpx2.AsyncClient, wid: int) -> None:
        nonlocal done, errors
        i = 0
        while time.monotonic() < deadline:
            i += 1
            body: dict[str, object] = {
                "model": "openai/gpt-4o",
                "prompt": f"soak {wid} {i}",
                "max_tokens": 16,
            }
            if i % 4 == 0:
                body["stream"] = True
            response = await client.post("/v1/completions", json=body)
            if response.status_code == 200:
                done += 1
            else:
                errors += 1

    async def sampler() -> None:
        while time.monotonic() < deadline:
            samples.append(Sample(time.monotonic() - start, rss_kib(pid), open_fds(pid), done))
            print(
                f"  t={samples[-1].elapsed:6.0f}s  rss={samples[-1].rss_kib / 1024:7.1f} MiB"
                f"  fds={samples[-1].fds:4d}  requests={done}",
                flush=True,
            )
            await asyncio.sleep(interval)

    headers = {"authorization": f"Bearer {secret}"}
    limits = httpx2.Limits(max_connections=concurrency)
    async with httpx2.AsyncClient(
        base_url=url, headers=headers, timeout=60, limits=limits
    ) as client:
        await asyncio.gather(sampler(), *(worker(client, w) for w in range(concurrency)))
    samples.append(Sample(time.monotonic() - start, rss_kib(pid), open_fds(pid), done))
    return samples, done, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the trend")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.database_url or f"sqlite:///{Path(tmp) / 'soak.db'}"
        engine = open_database(db_url)
        with engine.begin() as conn:
            key = create_key(conn, name=f"soak-{os.getpid()}", team=f"soak-team-{os.getpid()}")
            for owner_type, owner_id in (("key", key.info.id), ("team", key.info.team_id)):
                assert owner_id is not None
                set_budget(
                    conn,
                    owner_type=owner_type,
                    owner_id=owner_id,
                    limit_nano=10**6 * 10**9,
                    period="monthly",
                    now=utcnow(),
                )
        with Simulator() as sim:
            url, process = start_server(db_url, sim.url, log_path=Path(tmp) / "serve.log")
            print(
                f"soak: {args.minutes:g} min, {args.concurrency} clients, sample every "
                f"{args.interval:g}s, server pid {process.pid}, {db_url.split(':')[0]}"
            )
            try:
                samples, done, errors = asyncio.run(
                    run_load(
                        url,
                        key.secret,
                        process.pid,
                        args.minutes * 60,
                        args.concurrency,
                        args.interval,
                    )
                )
            finally:
                stop_server(process)
        with engine.connect() as conn:
            records = conn.execute(
                select(func.count()).where(UsageRecord.key_id == key.info.id)
            ).scalar_one()
        engine.dispose()

    seconds = samples[-1].elapsed
    steady = [s for s in samples if s.elapsed >= args.warmup] or samples
    print()
    print(f"requests: {done} ok, {errors} errors, {done / seconds:.0f} req/s; records: {records}")
    print(
        f"RSS: start {samples[0].rss_kib / 1024:.1f} MiB, end {samples[-1].rss_kib / 1024:.1f} "
        f"MiB, max {max(s.rss_kib for s in samples) / 1024:.1f} MiB"
    )
    fds_max = max(s.fds for s in samples)
    print(f"open fds: start {samples[0].fds}, end {samples[-1].fds}, max {fds_max}")
    for label, points in (("all samples", samples), (f"after {args.warmup:g}s", steady)):
        rss = slope_per_minute([(s.elapsed, s.rss_kib) for s in points])
        fds = slope_per_minute([(s.elapsed, s.fds) for s in points])
        print(f"trend ({label}): RSS {rss:+.1f} KiB/min, fds {fds:+.2f}/min")


if __name__ == "__main__":
    main()
