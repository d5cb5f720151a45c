"""bench/proxy: the metering proxy against the upstream direct, same sitting, same wrk.

Starts the fake upstream (bench/fake_upstream.py) and ``metering serve --workers 1`` on a
fresh SQLite database (and, with --postgres, a fresh PostgreSQL database) with a budgeted
key, then for non-streaming and streaming (7 SSE events) requests and each concurrency
runs wrk on the upstream direct, then on the proxy. Prints req/s, p50/p99, the latency the
proxy adds, and CPU ms per request of the server's process tree (/proc utime+stime before
and after each run) and of the upstream (to show it is not the bottleneck). Everything it
starts is stopped by PID; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    BENCH,
    budgeted_key,
    cpu_seconds,
    create_pg_database,
    drop_pg_database,
    free_port,
    metering,
    start,
    stop,
    wait_port,
)

PROMPT = {
    "model": "openai/gpt-4o-mini",
    "prompt": "Say hello to the metering bench",
    "max_tokens": 14,
}
PG_DB = "metering_bench_proxy"


@dataclass
class Point:
    target: str  # direct | metering-sqlite | metering-postgres | litellm
    mode: str  # plain | stream
    conc: int
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float | None  # per request, the server's process tree
    upstream_cpu_ms: float  # per request, the fake upstream
    errors: int
    requests: int = 0


def run_wrk(
    port: int, path: str, body: dict[str, object], auth: str, conc: int, seconds: float
) -> dict[str, int]:
    env = dict(os.environ, BENCH_BODY=json.dumps(body), BENCH_AUTH=auth)
    cmd = [
        "wrk",
        "-t",
        "1",
        "-c",
        str(conc),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "post.lua"),
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            return dict(json.loads(line[len("BENCHJSON ") :]))
    raise RuntimeError(f"wrk printed no summary:\n{out}")


def measure(
    target: str,
    mode: str,
    conc: int,
    port: int,
    auth: str,
    seconds: float,
    server_pid: int | None,
    upstream_pid: int,
) -> Point:
    body = dict(PROMPT, stream=True) if mode == "stream" else dict(PROMPT)
    s0 = cpu_seconds(server_pid) if server_pid else 0.0
    u0 = cpu_seconds(upstream_pid)
    res = run_wrk(port, "/v1/completions", body, auth, conc, seconds)
    s1 = cpu_seconds(server_pid) if server_pid else 0.0
    u1 = cpu_seconds(upstream_pid)
    n = max(res["requests"], 1)
    return Point(
        target=target,
        mode=mode,
        conc=conc,
        rps=res["requests"] / (res["duration_us"] / 1e6),
        p50_ms=res["p50_us"] / 1000,
        p99_ms=res["p99_us"] / 1000,
        server_cpu_ms=(s1 - s0) * 1000 / n if server_pid else None,
        upstream_cpu_ms=(u1 - u0) * 1000 / n,
        errors=res["socket_errors"] + res["non2xx"],
        requests=res["requests"],
    )


def serve_metering(
    url: str, upstream_port: int, workdir: Path, *, budget: bool = True, **extra_env: str
) -> tuple[subprocess.Popen[bytes], int, str]:
    env = dict(os.environ, METERING_DATABASE_URL=url, **extra_env)
    metering(["db", "upgrade"], env)
    key = budgeted_key(env, budget=budget)
    port = free_port()
    proc = start(
        [
            sys.executable,
            "-m",
            "metering",
            "serve",
            "--workers",
            "1",
            "--port",
            str(port),
            "--upstream",
            f"http://127.0.0.1:{upstream_port}",
            "--log-level",
            "warning",
        ],
        env=env,
        log=workdir / f"serve-{port}.log",
    )
    wait_port(port, proc)
    return proc, port, key


def count_records(url: str) -> int:
    from sqlalchemy import create_engine, text

    from metering.storage.engine import normalize_url

    engine = create_engine(normalize_url(url))
    with engine.connect() as conn:
        n = int(conn.execute(text("SELECT count(*) FROM usage_records")).scalar_one())
    engine.dispose()
    return n


def serve_litellm(
    venv: Path, upstream_port: int, workdir: Path
) -> tuple[subprocess.Popen[bytes], int, str]:
    cfg = workdir / "litellm.yaml"
    cfg.write_text(
        "model_list:\n  - model_name: openai/gpt-4o-mini\n    litellm_params:\n"
        "      model: text-completion-openai/gpt-4o-mini\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n      api_key: fake\n"
        "general_settings:\n  master_key: sk-bench\n"
    )
    port = free_port()
    proc = start(
        [
            str(venv / "bin" / "litellm"),
            "--config",
            str(cfg),
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        log=workdir / "litellm.log",
    )
    wait_port(port, proc, timeout=120)
    return proc, port, "sk-bench"


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_table(points: list[Point]) -> None:
    direct = {(p.mode, p.conc): p for p in points if p.target == "direct"}
    head = (
        f"{'target':18} {'mode':6} {'c':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'+p50 ms':>8} {'+p99 ms':>8} {'cpu ms/req':>10} {'upstr ms/req':>12} {'err':>4}"
    )
    print(head)
    print("-" * len(head))
    for p in points:
        d = direct.get((p.mode, p.conc))
        add50 = p.p50_ms - d.p50_ms if d and p.target != "direct" else None
        add99 = p.p99_ms - d.p99_ms if d and p.target != "direct" else None
        print(
            f"{p.target:18} {p.mode:6} {p.conc:>3} {p.rps:>8.0f} {p.p50_ms:>7.2f} "
            f"{p.p99_ms:>7.2f} {fmt(add50):>8} {fmt(add99):>8} {fmt(p.server_cpu_ms, '.3f'):>10} "
            f"{p.upstream_cpu_ms:>12.3f} {p.errors:>4}"
        )


def print_litellm_ratios(points: list[Point]) -> None:
    """LiteLLM against each metering target at the same (mode, c): CPU per request and
    added p50, as 'LiteLLM costs N× more'."""
    litellm = {(p.mode, p.conc): p for p in points if p.target == "litellm"}
    direct = {(p.mode, p.conc): p for p in points if p.target == "direct"}
    for p in points:
        other = litellm.get((p.mode, p.conc))
        if other is None or not p.target.startswith("metering") or not p.server_cpu_ms:
            continue
        d = direct[(p.mode, p.conc)]
        cpu = (other.server_cpu_ms or 0) / p.server_cpu_ms
        added = (other.p50_ms - d.p50_ms) / max(p.p50_ms - d.p50_ms, 1e-3)
        print(
            f"# litellm / {p.target} {p.mode} c={p.conc}: {cpu:.1f}x CPU per request, "
            f"{added:.1f}x added p50, {p.rps / other.rps:.1f}x fewer req/s"
        )


def print_metrics_ratios(points: list[Point]) -> None:
    """CPU per request of SQLite with metrics on against metrics off, at each point."""
    off = {(p.mode, p.conc): p for p in points if p.target == "metering-nometrics"}
    for p in points:
        other = off.get((p.mode, p.conc))
        if p.target != "metering-sqlite" or other is None or not other.server_cpu_ms:
            continue
        ratio = (p.server_cpu_ms or 0) / other.server_cpu_ms
        print(f"# metrics on / off {p.mode} c={p.conc}: {ratio:.3f}x CPU per request")


def median_points(rounds: list[list[Point]]) -> list[Point]:
    """Per (target, mode, c): the median of each figure over the rounds."""
    out = []
    for i, first in enumerate(rounds[0]):
        same = [r[i] for r in rounds]

        def med(attr: str, same: list[Point] = same) -> float:
            return statistics.median(getattr(p, attr) for p in same)

        cpu = None if first.server_cpu_ms is None else med("server_cpu_ms")
        out.append(
            Point(
                first.target,
                first.mode,
                first.conc,
                med("rps"),
                med("p50_ms"),
                med("p99_ms"),
                cpu,
                med("upstream_cpu_ms"),
                sum(p.errors for p in same),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per point [10]")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per server [2]")
    ap.add_argument("--concurrency", default="1,16,64", help="comma-separated [1,16,64]")
    ap.add_argument("--modes", default="plain,stream", help="plain,stream")
    ap.add_argument("--rounds", type=int, default=1, help="repeat and print medians [1]")
    ap.add_argument("--postgres", action="store_true", help="also PostgreSQL (127.0.0.1:5432)")
    ap.add_argument(
        "--no-budget", action="store_true", help="key without a budget (to isolate its cost)"
    )
    ap.add_argument("--no-sqlite", action="store_true", help="skip SQLite")
    ap.add_argument(
        "--metrics-off",
        action="store_true",
        help="also a SQLite server with METERING_METRICS=false (prints on/off CPU ratios)",
    )
    ap.add_argument("--compare-litellm", type=Path, metavar="VENV", help="a LiteLLM proxy venv")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/proxy needs wrk (apt-get install wrk)")
    concs = [int(c) for c in args.concurrency.split(",")]
    modes = args.modes.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="metering-bench-"))
    # From a folder of its own: `python -m metering` run from a checkout would import the
    # checkout instead of the interpreter's installed version.
    os.chdir(workdir)
    upstream_port = free_port()
    upstream = start(
        [
            sys.executable,
            str(BENCH / "fake_upstream.py"),
            "--port",
            str(upstream_port),
            "--chunks",
            "7",
        ],
        log=workdir / "upstream.log",
    )
    servers: dict[str, tuple[subprocess.Popen[bytes], int, str, str | None]] = {}
    try:
        wait_port(upstream_port, upstream)
        if not args.no_sqlite:
            url = f"sqlite:///{workdir / 'bench.db'}"
            proc, port, key = serve_metering(url, upstream_port, workdir, budget=not args.no_budget)
            servers["metering-sqlite"] = (proc, port, key, url)
        if args.metrics_off:
            url = f"sqlite:///{workdir / 'bench-off.db'}"
            proc, port, key = serve_metering(
                url, upstream_port, workdir, budget=not args.no_budget, METERING_METRICS="false"
            )
            servers["metering-nometrics"] = (proc, port, key, url)
        if args.postgres:
            url = create_pg_database(PG_DB)
            proc, port, key = serve_metering(url, upstream_port, workdir, budget=not args.no_budget)
            servers["metering-postgres"] = (proc, port, key, url)
        if args.compare_litellm:
            proc, port, key = serve_litellm(args.compare_litellm, upstream_port, workdir)
            servers["litellm"] = (proc, port, key, None)
        sent = dict.fromkeys(servers, 0)
        for name, (_proc, port, key, _url) in servers.items():
            for mode in modes:
                body = dict(PROMPT, stream=True) if mode == "stream" else PROMPT
                sent[name] += run_wrk(port, "/v1/completions", body, key, 16, args.warmup)[
                    "requests"
                ]
        rounds: list[list[Point]] = []
        for _ in range(args.rounds):
            points: list[Point] = []
            for mode in modes:
                for conc in concs:  # interleaved: direct, then each server, at each point
                    points.append(
                        measure(
                            "direct",
                            mode,
                            conc,
                            upstream_port,
                            "",
                            args.duration,
                            None,
                            upstream.pid,
                        )
                    )
                    for name, (proc, port, key, _) in servers.items():
                        p = measure(
                            name, mode, conc, port, key, args.duration, proc.pid, upstream.pid
                        )
                        sent[name] += p.requests
                        points.append(p)
            rounds.append(points)
        result = median_points(rounds)
        print(
            f"# bench/proxy {time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} cores · "
            f"{args.duration:g}s per point · {args.rounds} round(s) (medians) · wrk -t1"
        )
        print("# +p50/+p99: added to the upstream direct at the same c; cpu ms/req: server tree")
        print_table(result)
        print_litellm_ratios(result)
        print_metrics_ratios(result)
        for name, (proc, _port, _key, url) in servers.items():
            stop(proc)
            if url is not None:
                print(f"# {name}: {count_records(url)} usage records (~{sent[name]} requests sent)")
    finally:
        for proc, *_ in servers.values():
            stop(proc)
        stop(upstream)
        if args.postgres:
            drop_pg_database(PG_DB)
        if args.keep:
            print(f"# logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
