"""bench/instructions: CPU instructions per proxied request, counted by callgrind.

Timings on a shared host move by ×2 between runs; instruction counts do not (valgrind
counts what the process executes, whatever else the machine does). This starts the fake
upstream and ``metering serve --workers 1`` under ``valgrind --tool=callgrind`` with
instrumentation off, sends ``--warmup`` requests, turns counting on, sends exactly
``--requests`` requests (``--concurrency`` at a time, budgeted key, SQLite), dumps the
counts and prints instructions per request. Run it with the Python of each version to
compare (``PYTHON=/path/to/venv/bin/python bench/instructions``). The server's timers
(WAL checkpoints, heartbeats, sweeps) run during the counted window too, by the second:
they are counted again alone, idle, for as long, and subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _common import BENCH, budgeted_key, free_port, metering, start, stop, wait_port

PROMPT = {"model": "openai/gpt-4o-mini", "prompt": "count the instructions", "max_tokens": 16}


async def send(url: str, key: str, count: int, concurrency: int, stream: bool) -> int:
    """Send exactly ``count`` requests; how many answered 200."""
    body = {**PROMPT, "stream": True} if stream else PROMPT
    headers = {"authorization": f"Bearer {key}"}
    queue = list(range(count))
    ok = 0
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            nonlocal ok
            while queue:
                queue.pop()
                async with session.post(url, json=body) as response:
                    await response.read()
                    ok += response.status == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def total_instructions(dump: Path) -> int:
    """The dump's instruction total (0 for the file callgrind writes only at exit)."""
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000, help="counted requests [1000]")
    ap.add_argument("--warmup", type=int, default=300, help="requests before counting [300]")
    ap.add_argument("--concurrency", type=int, default=16, help="in flight at once [16]")
    ap.add_argument("--stream", action="store_true", help="streamed requests")
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench/instructions needs valgrind (apt-get install valgrind)")
    workdir = Path(tempfile.mkdtemp(prefix="metering-instr-"))
    # From a folder of its own: `python -m metering` run from a checkout would import the
    # checkout instead of the interpreter's installed version.
    os.chdir(workdir)
    env = dict(
        os.environ, METERING_DATABASE_URL=f"sqlite:///{workdir / 'bench.db'}", PYTHONHASHSEED="0"
    )
    upstream_port, port = free_port(), free_port()
    upstream = start(
        [sys.executable, str(BENCH / "fake_upstream.py"), "--port", str(upstream_port)],
        log=workdir / "upstream.log",
    )
    server = None
    try:
        wait_port(upstream_port, upstream)
        metering(["db", "upgrade"], env)
        key = budgeted_key(env)
        server = start(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={workdir}/callgrind.out",
             sys.executable, "-m", "metering", "serve", "--workers", "1", "--port", str(port),
             "--upstream", f"http://127.0.0.1:{upstream_port}", "--log-level", "warning"],
            env=env,
            log=workdir / "serve.log",
        )  # fmt: skip
        try:
            wait_port(port, server, timeout=300)
        except RuntimeError:
            sys.stderr.write((workdir / "serve.log").read_text()[-3000:])
            raise
        url = f"http://127.0.0.1:{port}/v1/completions"
        asyncio.run(send(url, key, args.warmup, args.concurrency, args.stream))
        pid = str(server.pid)

        def control(*flags: str) -> None:
            subprocess.run(["callgrind_control", *flags, pid], check=True, capture_output=True)

        def counted() -> int:
            """Instructions of every dump so far (each dump holds those since the last)."""
            return sum(total_instructions(d) for d in workdir.glob("callgrind.out*"))

        control("-i", "on")
        started = time.monotonic()
        ok = asyncio.run(send(url, key, args.requests, args.concurrency, args.stream))
        seconds = time.monotonic() - started  # not money: seconds
        control("-d")
        loaded = counted()
        # The server's own timers (WAL checkpoints, heartbeats, sweeps) run by the second,
        # and under valgrind a run lasts long: count them alone for as long, and subtract.
        time.sleep(seconds)
        control("-d")
        idle = counted() - loaded
        control("-i", "off")
        if loaded == 0:
            raise RuntimeError(f"callgrind dumped no counts (see {workdir})")
        mode = "stream" if args.stream else "plain"
        print(
            f"# bench/instructions {time.strftime('%Y-%m-%d %H:%M')} · {sys.executable} · "
            f"{mode} c={args.concurrency}"
        )
        print(
            f"{mode} c={args.concurrency}: {ok}/{args.requests} answered 200 in {seconds:.0f} s "
            f"under callgrind; {(loaded - idle) / args.requests:,.0f} instructions per request "
            f"({loaded / args.requests:,.0f} with the {idle / args.requests:,.0f} of the idle "
            "timers)"
        )
    finally:
        if server is not None:
            stop(server, timeout=60)
        stop(upstream)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
