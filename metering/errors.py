"""The exception tree. Every error a user can meet says what happened and what to do.

    MeteringError
     ├── InvalidInput            bad input: CLI argument, file, request field
     │    ├── MoneyError         an amount that is not a non-negative decimal
     │    ├── UsageError         token counts that are negative / not whole numbers
     │    ├── PricingError       a price that cannot be used
     │    ├── SheetError         a price file that cannot be read
     │    └── UnboundedRequest   a request whose worst-case cost cannot be bounded
     ├── NotFound                an unknown key, team, customer or model
     ├── Conflict                the change contradicts what is stored
     ├── BudgetExceeded          a key, team or customer budget would be exceeded (402)
     ├── DatabaseUnavailable     the metering database cannot be reached
     ├── RequestRefused          the gateway refuses a request (SPEC §4: status + type)
     └── UpstreamError           the upstream gateway could not be used (502)
          └── UpstreamTimeout    it did not answer in time (504)

The CLI turns any MeteringError into one line on stderr and exit status 1;
the gateway maps its own subclasses to the HTTP errors of SPEC §4.
"""

from __future__ import annotations

from datetime import datetime


class MeteringError(Exception):
    """Root of every error metering raises on purpose."""


class InvalidInput(MeteringError, ValueError):
    """Input that cannot be used as given."""


class MoneyError(InvalidInput):
    """An amount that cannot be money: not a number, not finite, or negative."""


class UsageError(InvalidInput):
    """A usage object with counts that cannot be tokens."""


class PricingError(InvalidInput):
    """A price entry that cannot be used (negative rate, unknown field)."""


class SheetError(InvalidInput):
    """A price file that cannot be read; the message names the file and the entry."""


class NotFound(MeteringError, LookupError):
    """Something named by the user does not exist."""


class Conflict(MeteringError):
    """The requested change contradicts stored data."""


class DatabaseUnavailable(MeteringError):
    """The metering database cannot be reached or used."""


class RequestRefused(MeteringError):
    """A request the gateway refuses before (or instead of) forwarding it.

    Carries the HTTP status and the SPEC §4 error ``type`` (e.g. 402
    ``budget_exceeded``); the message says what to do next."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.code = code
        self.retry_after = retry_after  # seconds, sent as Retry-After (429)


class UpstreamError(MeteringError):
    """The upstream gateway was unreachable or returned unreadable data."""


class UpstreamTimeout(UpstreamError):
    """The upstream gateway did not answer within ``METERING_UPSTREAM_TIMEOUT``."""


class UnboundedRequest(InvalidInput):
    """A request whose worst-case cost cannot be bounded (no max_tokens and no model limit)."""


class BudgetExceeded(MeteringError):
    """A budget (key, team or customer) would be exceeded; the gateway answers 402.

    Carries the refusing budget so the message and the HTTP body can name it."""

    def __init__(
        self,
        message: str,
        *,
        owner_type: str,
        owner_id: int,
        owner_name: str,
        limit_nano: int,
        spent_nano: int,
        reserved_nano: int,
        requested_nano: int,
        next_reset: datetime | None,
    ) -> None:
        super().__init__(message)
        self.owner_type = owner_type
        self.owner_id = owner_id
        self.owner_name = owner_name
        self.limit_nano = limit_nano
        self.spent_nano = spent_nano
        self.reserved_nano = reserved_nano
        self.requested_nano = requested_nano
        self.next_reset = next_reset
