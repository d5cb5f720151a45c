"""``GET /metrics`` in the Prometheus text format (``prometheus-client``), fed by the
gateway's observer seam (``gateway.observer``). Names and labels: README, Metrics.

Counters and histograms live in this process's own registry; under ``metering serve
--workers N`` every worker writes them to ``PROMETHEUS_MULTIPROC_DIR`` (set by ``serve``)
and a scrape of any worker adds them all up (prometheus-client's multiprocess mode).
Budget gauges are read from the database at each scrape (one read of the budgets), so
they are right across workers and hosts and present for every budget from the start.
Low cardinality by design: no request ids, never a secret; the per-key label of the
cost can be turned off (``METERING_METRICS_KEY_LABELS=false``).
Prometheus samples are float64: these figures are for dashboards and alerts; the exact
amounts are ``metering spend``'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from metering.core.money import format_usd
from metering.core.records import UsageRow
from metering.gateway.recorder import RecordWriter
from metering.storage.budgets import BudgetStatus, budget_status
from metering.storage.keys import utcnow

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_EPOCH = datetime(1970, 1, 1)  # naive UTC, as the budgets' times
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TOKEN_CLASSES = ("input", "cache_read", "cache_write", "output", "reasoning")
MAX_REMEMBERED_SERIES = 10_000  # labelled children kept for reuse; then made afresh


def token_classes(record: UsageRow) -> dict[str, int]:
    """Non-overlapping token classes of a record; they add up to its ``total_tokens``."""
    cached = record.cached_read_tokens + record.cached_write_tokens
    return {
        "input": record.prompt_tokens - cached,
        "cache_read": record.cached_read_tokens,
        "cache_write": record.cached_write_tokens,
        "output": record.completion_tokens - record.reasoning_tokens,
        "reasoning": record.reasoning_tokens,
    }


def _usd(nano: int) -> float:
    return float(format_usd(nano))  # not money: a Prometheus sample (float64 by the format)


class BudgetCollector(Collector):
    """Gauges per budget, read from the database at each scrape (so never stale)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _statuses(self) -> list[BudgetStatus]:
        with self._engine.connect() as conn:
            return budget_status(conn, now=utcnow(), forecast=False)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            statuses = self._statuses()
        except SQLAlchemyError:
            return  # the database is down: /health says so; no stale figures
        # ``scope``: an end user's customer or key; ``model``: the budget's model pattern
        # ('' = every model): an owner may have several budgets, two end users one id
        labels = ["owner_type", "owner", "scope", "model", "period"]
        families = {
            name: GaugeMetricFamily(f"metering_budget_{name}", doc, labels=labels)
            for name, doc in (
                ("limit_usd", "Budget limit (USD)"),
                ("spent_usd", "Spent in the current period (USD)"),
                ("reserved_usd", "Reserved by calls in flight (USD)"),
                ("remaining_usd", "Limit minus spent and reserved, at least 0 (USD)"),
                ("period_end_timestamp_seconds", "When the current period ends (Unix time)"),
            )
        }
        for s in statuses:
            values = [s.owner_type, s.owner_name, s.scope_name, s.model_pattern, s.period]
            families["limit_usd"].add_metric(values, _usd(s.limit_nano))
            families["spent_usd"].add_metric(values, _usd(s.spent_nano))
            families["reserved_usd"].add_metric(values, _usd(s.reserved_nano))
            families["remaining_usd"].add_metric(values, _usd(s.remaining_nano))
            if s.next_reset is not None:
                end = (s.next_reset - _EPOCH).total_seconds()
                families["period_end_timestamp_seconds"].add_metric(values, end)
        yield from families.values()


class GatewayCollector(Collector):
    """This process's journal backlog and writer queue (``app.writer``)."""

    def __init__(self, writer: RecordWriter) -> None:
        self._writer = writer

    def collect(self) -> Iterator[GaugeMetricFamily]:
        journal = self._writer.journal
        pending = GaugeMetricFamily(
            "metering_journal_pending_records", "Journaled records not yet replayed (this process)"
        )
        pending.add_metric([], journal.pending if journal is not None else 0)
        queue = GaugeMetricFamily(
            "metering_writer_queue_depth", "Records and reservations waiting for the writer"
        )
        queue.add_metric([], self._writer.queue_depth)
        yield pending
        yield queue


@dataclass(frozen=True, slots=True)
class _Series:
    requests: Any
    tokens: tuple[Any, ...]  # one child per TOKEN_CLASSES entry
    cost: Any
    upstream: Any
    added: Any


class PrometheusObserver:
    """The ``Observer`` that counts into Prometheus metrics; ``render()`` is a scrape."""

    def __init__(self, engine: Engine, writer: RecordWriter, *, key_labels: bool = True) -> None:
        self._multiproc = os.environ.get(MULTIPROC_ENV) or None
        self._key_labels = key_labels
        # Values: in this process's registry, or (multiprocess mode) in the shared folder.
        self.registry = CollectorRegistry()  # no auto-describe: nothing is read until a scrape
        registry = self.registry
        self._requests = Counter(
            "metering_requests", "Metered calls by route, provider, model and HTTP status",
            ["route", "provider", "model", "code"], registry=registry,
        )  # fmt: skip
        self._refused = Counter(
            "metering_refused_requests", "Requests refused before the upstream",
            ["route", "code", "type"], registry=registry,
        )  # fmt: skip
        self._upstream_errors = Counter(
            "metering_upstream_errors", "Calls that ended in an upstream failure, by kind",
            ["route", "kind"], registry=registry,
        )  # fmt: skip
        self._tokens = Counter(
            "metering_tokens", "Tokens by non-overlapping class (they add up to the total)",
            ["provider", "model", "class"], registry=registry,
        )  # fmt: skip
        cost_labels = ["provider", "model", "key"] if key_labels else ["provider", "model"]
        self._cost = Counter(
            "metering_cost_usd", "Billed cost (USD)", cost_labels, registry=registry
        )
        self._upstream_seconds = Histogram(
            "metering_upstream_seconds", "Time at the upstream", ["route"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self._added_seconds = Histogram(
            "metering_added_seconds", "Latency metering adds to a call (total − upstream)",
            ["route"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self._children: dict[tuple[str, ...], _Series] = {}
        self._budgets = BudgetCollector(engine)
        self._gateway = GatewayCollector(writer)
        if self._multiproc is None:
            registry.register(self._budgets)
            registry.register(self._gateway)

    def refused(self, route: str, status: int, error_type: str) -> None:
        self._refused.labels(route, str(status), error_type).inc()

    def _series(self, route: str, record: UsageRow, code: str, key_name: str) -> _Series:
        """The labelled children of one (route, provider, model, code, key), made once:
        ``labels()`` costs more than the increments (a few µs a call)."""
        ident = (route, record.provider, record.model, code, key_name)
        series = self._children.get(ident)
        if series is None:
            provider, model = record.provider, record.model
            cost = (provider, model, key_name) if self._key_labels else (provider, model)
            series = _Series(
                requests=self._requests.labels(route, provider, model, code),
                tokens=tuple(self._tokens.labels(provider, model, c) for c in TOKEN_CLASSES),
                cost=self._cost.labels(*cost),
                upstream=self._upstream_seconds.labels(route),
                added=self._added_seconds.labels(route),
            )
            if len(self._children) >= MAX_REMEMBERED_SERIES:
                self._children.clear()
            self._children[ident] = series
        return series

    def recorded(
        self, route: str, record: UsageRow, *, key_name: str, upstream_seconds: float | None
    ) -> None:
        code = str(record.http_status) if record.http_status is not None else "none"
        series = self._series(route, record, code, key_name)
        series.requests.inc()
        if record.status != "success":
            self._upstream_errors.labels(route, record.status).inc()
        for child, count in zip(series.tokens, token_classes(record).values(), strict=True):
            if count:
                child.inc(count)
        if record.total_cost:
            series.cost.inc(_usd(record.total_cost))
        if upstream_seconds is not None:
            series.upstream.observe(upstream_seconds)
            if record.latency_ms is not None:
                series.added.observe(max(record.latency_ms / 1000 - upstream_seconds, 0.0))

    def render(self) -> bytes:
        """One scrape: every worker's counters (multiprocess mode) or this process's, the
        budget gauges and this process's journal/writer gauges."""
        if self._multiproc is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._multiproc)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
        registry.register(self._budgets)
        registry.register(self._gateway)
        return generate_latest(registry)
