"""Helpers the benches share: ports, child processes (stopped by PID), /proc CPU ticks,
throwaway PostgreSQL databases, the ``metering`` CLI as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g}s")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_pids(pid: int) -> list[int]:
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(pid: int) -> float:  # not money: seconds of CPU
    """utime+stime of ``pid`` and its live descendants (and their reaped children)."""
    ticks = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # after the command: state=0, ppid=1 … utime=11, stime=12, cutime=13, cstime=14
        ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / CLK_TCK


def start(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process (its PID only; uvicorn stops its own workers), then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        for p in reversed(tree_pids(proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        proc.wait(timeout)


def metering(args: Sequence[str], env: dict[str, str]) -> str:
    """Run the ``metering`` CLI of this interpreter; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "metering", *args], env=env, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"metering {' '.join(args)} failed: {done.stderr.decode()[-2000:]}")
    return done.stdout.decode()


def create_pg_database(name: str) -> str:
    """A fresh (dropped and re-created) PostgreSQL database; its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def budgeted_key(env: dict[str, str], name: str = "bench", *, budget: bool = True) -> str:
    """A virtual key with a monthly budget far above what a bench can spend; its secret."""
    secret = json.loads(metering(["keys", "create", name, "--format", "json"], env))["key"]
    if budget:
        metering(
            ["budgets", "set", "--key", name, "--limit", "1000000", "--period", "monthly"], env
        )
    return str(secret)


def _peak_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def timed_metering(
    args: Sequence[str], env: dict[str, str], out: Path
) -> tuple[float, int, str]:  # not money: seconds
    """Run ``metering ARGS`` (stdout to ``out``): wall seconds, its peak RSS in MB, the last
    line it printed. The peak is the child's VmHWM polled every 20 ms (rusage's maxrss
    would count the parent's memory the child had between fork and exec)."""
    t0 = time.perf_counter()
    peak = 0
    with open(out, "wb") as fh, open(out.with_suffix(".err"), "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "metering", *args], env=env, stdout=fh, stderr=err
        )
        while True:
            pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _peak_rss_kb(proc.pid))
            time.sleep(0.02)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        message = out.with_suffix(".err").read_text()[-2000:]
        raise RuntimeError(f"metering {' '.join(args)} failed: {message}")
    lines = out.read_text().strip().splitlines()
    return wall, peak // 1024, lines[-1] if lines else ""
