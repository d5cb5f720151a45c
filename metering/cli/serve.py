"""``metering serve``: the metering gateway under uvicorn."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import click

from metering.cli.context import CliContext, pass_context


def _setting_name(loc: tuple[int | str, ...], upstream_url: str | None) -> str:
    if not loc:
        return ""
    if loc == ("upstream_url",) and upstream_url:
        return "--upstream: "
    return f"METERING_{'_'.join(map(str, loc)).upper()}: "


@click.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--upstream",
    "upstream_url",
    default=None,
    help="Base URL of the upstream gateway [env: METERING_UPSTREAM_URL].",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Worker processes (more than 1: each has its own connections and caches).",
)
@click.option("--log-level", default="info", show_default=True, help="uvicorn log level.")
@pass_context
def serve(
    ctx: CliContext,
    host: str,
    port: int,
    upstream_url: str | None,
    workers: int,
    log_level: str,
) -> None:
    """Run the metering proxy: authenticate, meter and forward completions upstream."""
    import uvicorn
    from pydantic import ValidationError

    from metering.config import Settings
    from metering.errors import InvalidInput
    from metering.gateway import create_app
    from metering.runtime import tune_gc

    os.environ["METERING_DATABASE_URL"] = ctx.database_url
    if upstream_url:
        os.environ["METERING_UPSTREAM_URL"] = upstream_url
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(_setting_name(e["loc"], upstream_url) + e["msg"].removeprefix(
            "Value error, ") for e in exc.errors())  # fmt: skip
        raise InvalidInput(f"invalid configuration: {problems}") from None
    # Migrate an empty database and sync shipped prices once, before any worker starts.
    ctx.engine()
    ctx.close()
    click.echo(
        f"metering: serving on http://{host}:{port} → upstream {settings.upstream_url}",
        err=True,
    )
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
    }
    if workers > 1:
        # Every worker counts into this folder; a scrape of any adds them up (README, Metrics).
        made = None
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            made = tempfile.mkdtemp(prefix="metering-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
        try:
            uvicorn.run(
                "metering.gateway.asgi:app_from_env", factory=True, workers=workers, **common
            )
        finally:
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
        return
    from metering.storage.checkpoint import SAFETY_NET_PAGES
    from metering.storage.engine import make_engine

    engine = make_engine(settings.database_url, wal_autocheckpoint=SAFETY_NET_PAGES)
    app = create_app(settings, engine, budgets=True)
    tune_gc()
    uvicorn.run(app, **common)
