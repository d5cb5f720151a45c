"""Budget alert delivery: the outbox (``storage.alerts``) → webhooks, at least once.

``AlertDeliverer`` is an asyncio task of ``metering serve`` (``GatewayApp`` starts and
stops it). Every ``poll_seconds`` it reads whether an event is due; if so it claims a
batch (each leased past the send's timeout, its attempt counted, committed: another
process skips it — PostgreSQL ``FOR UPDATE SKIP LOCKED`` — until the lease ends), POSTs
each body with its event id and HMAC-SHA256 signature (``core.alerts``), and marks it
delivered on a 2xx, or due again after an exponential backoff, or failed after
``max_attempts``. An event claimed by a process that dies is sent again when its lease
ends: receivers dedupe by ``x-metering-event-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta

import aiohttp
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from metering.core.alerts import EVENT_HEADER, SIGNATURE_HEADER, body, retry_delay, sign
from metering.errors import DatabaseUnavailable
from metering.storage.alerts import TEST, Delivery, claim_due, finish_attempt, has_due
from metering.storage.keys import utcnow

log = logging.getLogger("metering.alerts")

POLL_SECONDS = 1.0
TIMEOUT_SECONDS = 10.0
MAX_ATTEMPTS = 10  # over about 17 minutes with the default backoff
BASE_DELAY_SECONDS = 2.0
CAP_DELAY_SECONDS = 600.0
LEASE_MARGIN_SECONDS = 30.0  # a claim outlives its send's timeout by this much
BATCH = 20


class AlertDeliverer:
    def __init__(
        self,
        engine: Engine,
        *,
        poll_seconds: float = POLL_SECONDS,
        timeout_seconds: float = TIMEOUT_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        base_delay_seconds: float = BASE_DELAY_SECONDS,
        cap_delay_seconds: float = CAP_DELAY_SECONDS,
        lease_seconds: float | None = None,
    ) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.base_delay_seconds = base_delay_seconds
        self.cap_delay_seconds = cap_delay_seconds
        self.lease_seconds = (
            lease_seconds if lease_seconds is not None else timeout_seconds + LEASE_MARGIN_SECONDS
        )
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Deliver in the background until ``stop``."""
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run_forever())

    async def stop(self) -> None:
        """Let a round in progress finish (its claims marked: nothing left leased), then
        stop; cancelled if it takes longer than one send's timeout."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            # Past the timeout wait_for cancels it: its claims are sent when their leases end.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, timeout=self.timeout_seconds + 5)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _run_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.deliver_due()
            except (SQLAlchemyError, DatabaseUnavailable) as exc:  # the next poll retries
                log.warning("alert delivery paused: %s", exc)
            except Exception:  # never stop delivering (nor the server) over one round; logged
                log.exception("alert delivery round failed (retried at the next poll)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.poll_seconds)

    async def deliver_due(self, event_ids: Sequence[str] | None = None) -> int:
        """Claim and send what is due now (``event_ids``: only these); how many were
        delivered."""
        delivered = 0
        while True:
            claimed = await asyncio.to_thread(self._claim, event_ids)
            if not claimed:
                return delivered
            delivered += await self.send_claimed(claimed)

    async def send_claimed(self, claimed: Sequence[Delivery]) -> int:
        """Send events already claimed (``storage.alerts.claim_due``) and mark each; how
        many were delivered."""
        outcomes = await asyncio.gather(*(self._send(d) for d in claimed))
        await asyncio.to_thread(self._finish, claimed, outcomes)
        return sum(error is None for _, error in outcomes)

    def _claim(self, event_ids: Sequence[str] | None) -> list[Delivery]:
        now = utcnow()
        if event_ids is None:
            with self.engine.connect() as conn:
                if not has_due(conn, now=now):
                    return []
        lease = self.lease_seconds
        with self.engine.begin() as conn:
            return claim_due(conn, now=now, lease_seconds=lease, limit=BATCH, event_ids=event_ids)

    async def _send(self, delivery: Delivery) -> tuple[int | None, str | None]:
        """POST one event: (HTTP status, None) if the receiver took it, else the error."""
        content = body(delivery.event, delivery.payload)
        headers = {
            "content-type": "application/json",
            "user-agent": "metering-alerts",
            EVENT_HEADER: delivery.event.event_id,
            SIGNATURE_HEADER: sign(delivery.secret, content),
        }
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.post(delivery.url, data=content, headers=headers) as reply:
                await reply.read()
                if 200 <= reply.status < 300:
                    return reply.status, None
                return reply.status, f"HTTP {reply.status}"
        except TimeoutError:
            return None, f"no answer within {self.timeout_seconds} s"
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]

    def _finish(
        self, claimed: Sequence[Delivery], outcomes: Sequence[tuple[int | None, str | None]]
    ) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            for delivery, (status, error) in zip(claimed, outcomes, strict=True):
                retry_at = None
                if error is not None:
                    last = delivery.event.kind == TEST or delivery.attempts >= self.max_attempts
                    log.warning(
                        "alert %d event %s attempt %d to %s failed%s: %s",
                        delivery.event.alert_id,
                        delivery.event.event_id,
                        delivery.attempts,
                        delivery.url,
                        " (giving up)" if last else "",
                        error,
                    )
                    if not last:
                        delay = retry_delay(
                            delivery.attempts,
                            base_seconds=self.base_delay_seconds,
                            cap_seconds=self.cap_delay_seconds,
                        )
                        retry_at = now + timedelta(seconds=delay)
                finish_attempt(
                    conn,
                    delivery.event.event_id,
                    now=now,
                    http_status=status,
                    error=error,
                    retry_at=retry_at,
                )
