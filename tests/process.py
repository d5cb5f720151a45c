"""``metering serve`` as a real process on a free loopback port, for the tests that
need one (gateway, reliability) and the soak: start it, wait for ``/health``, stop it
by PID (SIGTERM, then SIGKILL) or kill it outright (a crash).

The server's stderr (its log) goes to a file when ``log_path`` is given — never to
an undrained pipe, which a chatty server could fill and block on.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2

START_DEADLINE_SECONDS = 30
UPSTREAM_API_KEY = "upstream-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    environ = {
        **os.environ,
        "METERING_DATABASE_URL": db_url,
        "METERING_UPSTREAM_API_KEY": UPSTREAM_API_KEY,
        **env,
    }
    log = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115 (owned by Popen)
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "metering",
                "serve",
                "--port",
                str(port),
                "--upstream",
                upstream,
                *extra_args,
            ],
            env=environ,
            stdout=log or subprocess.DEVNULL,
            stderr=log or subprocess.PIPE,
        )
    finally:
        if log is not None:
            log.close()
    url = f"http://127.0.0.1:{port}"
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
                return url, process
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(process)
            raise RuntimeError("metering serve did not start")
        time.sleep(0.05)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    if process.stderr is not None:
        process.stderr.close()


def kill_server(process: subprocess.Popen[bytes]) -> None:
    """A crash: SIGKILL, no shutdown hook runs."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    if process.stderr is not None:
        process.stderr.close()
