"""The gateway's one instrumentation seam: it tells an ``Observer`` what happened, in the
spirit of stamina's instrumentation hooks, instead of threading counters through every
constructor. ``NullObserver`` (the default) does nothing; ``gateway.metrics`` turns the
events into Prometheus metrics.
"""

from __future__ import annotations

from typing import Protocol

from metering.core.records import UsageRow


class Observer(Protocol):
    def refused(self, route: str, status: int, error_type: str) -> None:
        """A request refused before the upstream (4xx/5xx of ours; nothing recorded)."""

    def recorded(
        self, route: str, record: UsageRow, *, key_name: str, upstream_seconds: float | None
    ) -> None:
        """A call's record was committed or journaled (its ``status`` says how the call
        ended: ``success``, ``upstream_error``, ``timeout``…); ``upstream_seconds``: the
        time at the upstream (None: it was never called)."""


class NullObserver:
    def refused(self, route: str, status: int, error_type: str) -> None:
        return None

    def recorded(
        self, route: str, record: UsageRow, *, key_name: str, upstream_seconds: float | None
    ) -> None:
        return None
