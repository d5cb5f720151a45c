"""What the budget protocol's steps return (``storage.reservations``, ``budget_batch``):
plain values, in a module of their own so that both can import them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from metering.core.budget import refusal_message
from metering.errors import BudgetExceeded


@dataclass(frozen=True, slots=True)
class Refusal:
    """The budget that refused a reservation, as the 402 message needs it."""

    budget_id: int
    owner_type: str
    owner_id: int
    owner_name: str
    limit_nano: int
    spent_nano: int
    reserved_nano: int
    requested_nano: int
    next_reset: datetime | None
    model_pattern: str = ""  # '' = every model
    scope_name: str = ""  # an end user's: "customer 'acme'" | "key 'app'"

    def message(self) -> str:
        return refusal_message(
            owner_type=self.owner_type,
            owner_name=self.owner_name,
            limit_nano=self.limit_nano,
            spent_nano=self.spent_nano,
            reserved_nano=self.reserved_nano,
            requested_nano=self.requested_nano,
            next_reset=self.next_reset,
            model_pattern=self.model_pattern,
            scope_name=self.scope_name,
        )

    def error(self) -> BudgetExceeded:
        return BudgetExceeded(
            self.message(),
            owner_type=self.owner_type,
            owner_id=self.owner_id,
            owner_name=self.owner_name,
            limit_nano=self.limit_nano,
            spent_nano=self.spent_nano,
            reserved_nano=self.reserved_nano,
            requested_nano=self.requested_nano,
            next_reset=self.next_reset,
        )


@dataclass(frozen=True, slots=True)
class ReserveResult:
    accepted: bool
    amount_nano: int
    budget_ids: tuple[int, ...]  # where the amount is reserved (empty when refused)
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True)
class SettleResult:
    settled: bool  # False: this request was already settled (nothing changed)
    released_nano: int  # reservations given back
    charged_budget_ids: tuple[int, ...]
    soft_limit_crossed: tuple[int, ...]  # budgets whose soft limit this request crossed


@dataclass(frozen=True, slots=True)
class Released:
    reservations: int
    amount_nano: int
