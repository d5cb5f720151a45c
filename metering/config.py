"""Settings from the environment (``METERING_*``); a CLI flag of the same meaning wins."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///metering.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERING_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    upstream_url: str = "http://127.0.0.1:8080"
    upstream_api_key: SecretStr | None = None
    upstream_timeout: float = Field(default=600.0, gt=0)  # seconds
    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Who wins when the upstream reports a cost: "reported" (default) or "computed".
    billing_policy: Literal["reported", "computed"] = "reported"
    # How long a cached key/budget/price lookup may be stale, in seconds.
    cache_ttl: float = Field(default=1.0, ge=0)
    # Where records that cannot be committed are journaled (``storage.journal``); None:
    # beside the SQLite file, else ./metering-journal.
    journal_dir: Path | None = None
    # Liveness of serving processes (README, Reliability), in seconds: each heartbeats this
    # often; one silent for ``stale_after_seconds`` is dead and its calls in flight are
    # recorded as interrupted by the sweep, run at startup and every ``sweep_seconds``.
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    stale_after_seconds: float = Field(default=30.0, gt=0)
    sweep_seconds: float = Field(default=10.0, gt=0)
    # GET /metrics (README, Metrics): on or off, a bearer token it requires (none: open),
    # and whether the cost carries a per-key label.
    metrics: bool = True
    metrics_token: SecretStr | None = None
    metrics_key_labels: bool = True

    @field_validator("upstream_url")
    @classmethod
    def _upstream_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{value!r} is not an http:// or https:// URL with a host "
                "(e.g. http://127.0.0.1:8080)"
            )
        return value

    @model_validator(mode="after")
    def _liveness(self) -> Settings:
        if self.stale_after_seconds < 3 * self.heartbeat_seconds:
            raise ValueError(
                "METERING_STALE_AFTER_SECONDS must be at least 3 × METERING_HEARTBEAT_SECONDS "
                "(else a live process can be declared dead)"
            )
        return self
