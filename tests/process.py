"""``metering serve`` as a real process on a free loopback port, for the tests that
need one (gateway, reliability) and the soak: start it, wait for ``/health``, stop it
by PID (SIGTERM, then SIGKILL) or kill it outright (a crash).

The server's stderr (its log) goes to a file when ``log_path`` is given — never to
an undrained pipe, which a chatty server could fill and block on.

``spawn_warm_server`` starts the interpreter and its imports ahead of time and waits;
``WarmServer.serve`` then runs ``metering serve`` in it — the whole of serve's own
startup (schema check, registration, sweep, bind) but not Python's: a loop of crashes
and restarts spends its time on the crashes.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2

START_DEADLINE_SECONDS = 30
UPSTREAM_API_KEY = "upstream-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_outside_ephemeral() -> int:
    """A free port below the kernel's ephemeral range: no outgoing connection can take it
    while a warm server waits seconds before binding it (a ``free_port`` could be)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(10_000, max(low, 10_001))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def start_server(
    db_url: str,
    upstream: str,
    *,
    log_path: Path | None = None,
    port: int | None = None,
    extra_args: tuple[str, ...] = (),
    **env: str,
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``metering serve`` and wait until its ``/health`` answers 200."""
    port = port or free_port()
    args = ["-m", "metering", "serve", "--port", str(port), "--upstream", upstream, *extra_args]
    process = _spawn(args, db_url, log_path=log_path, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(process, url, log_path)
    return url, process


def _spawn(
    args: list[str],
    db_url: str,
    *,
    log_path: Path | None,
    env: dict[str, str],
    stdin: int | None = None,
) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "METERING_DATABASE_URL": db_url,
        "METERING_UPSTREAM_API_KEY": UPSTREAM_API_KEY,
        **env,
    }
    log = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115 (owned by Popen)
    try:
        return subprocess.Popen(
            [sys.executable, *args],
            env=environ,
            stdin=stdin,
            stdout=log or subprocess.DEVNULL,
            stderr=log or subprocess.PIPE,
        )
    finally:
        if log is not None:
            log.close()


def wait_healthy(process: subprocess.Popen[bytes], url: str, log_path: Path | None) -> None:
    """Until ``url`` answers ``/health`` with 200 (raises if the process exits first)."""
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while True:
        if process.poll() is not None:
            output = (
                log_path.read_text(errors="replace")
                if log_path is not None
                else process.stderr.read().decode()  # type: ignore[union-attr]
            )
            raise RuntimeError(f"metering serve exited: {output}")
        try:
            if httpx2.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(process)
            raise RuntimeError("metering serve did not start")
        time.sleep(0.05)


# What ``metering serve`` imports, done before it is told to start.
_WARM = """
import sys
import uvicorn, uvicorn.loops.auto, uvicorn.protocols.http.auto, uvicorn.lifespan.on
import metering.cli.serve, metering.gateway, metering.gateway.budget_gate
import metering.storage.checkpoint, metering.storage.database, metering.runtime
sys.stdin.readline()
from metering.cli import main
main(["serve", *sys.argv[1:]], prog_name="metering")
"""


@dataclass
class WarmServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path | None

    def serve(self) -> tuple[str, subprocess.Popen[bytes]]:
        """Run ``metering serve`` in the waiting process; wait until it is healthy."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.close()
        wait_healthy(self.process, self.url, self.log_path)
        return self.url, self.process


def spawn_warm_server(
    db_url: str, upstream: str, *, log_path: Path | None = None, **env: str
) -> WarmServer:
    """An interpreter with serve's imports done, waiting for ``serve()`` (see the doc)."""
    port = free_port_outside_ephemeral()
    args = ["-c", _WARM, "--port", str(port), "--upstream", upstream]
    process = _spawn(args, db_url, log_path=log_path, env=env, stdin=subprocess.PIPE)
    return WarmServer(process, f"http://127.0.0.1:{port}", log_path)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    _close_pipes(process)


def kill_server(process: subprocess.Popen[bytes]) -> None:
    """A crash: SIGKILL, no shutdown hook runs."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    _close_pipes(process)


def _close_pipes(process: subprocess.Popen[bytes]) -> None:
    for pipe in (process.stdin, process.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()
