"""A throwaway PostgreSQL cluster a test owns (initdb in a temporary folder, its own port),
so that a test can stop and start a database server without touching the shared one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.process import free_port


def server_binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class Cluster:
    """``home``: a new folder of its own (its parents must be traversable by the
    postgres user when the tests run as root, so not under pytest's tmp_path)."""

    def __init__(self, home: Path) -> None:
        bin_dir = server_binaries()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
        self.bin = bin_dir
        self.home = home
        self.data = home / "data"
        self.port = free_port()
        # initdb refuses to run as root: the cluster belongs to the postgres user then.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        home.mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(home, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bin / tool), *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr.decode(errors='replace')}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.home, ignore_errors=True)
