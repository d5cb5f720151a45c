"""SQLAlchemy 2 typed models, one module per concern (``base``, ``ledger``, ``alerts``,
``admin``, ``attribution``), all importable from here. Every change needs an alembic
revision (tests run ``alembic check``). Amounts are integer nano-USD (``*_cost``,
``*_nano``); timestamps are naive UTC."""

from metering.storage.models.admin import (
    AdminToken,
    AuditEntry,
    IdempotentResponse,
)
from metering.storage.models.alerts import (
    BudgetAlert,
    BudgetAlertEvent,
)
from metering.storage.models.attribution import (
    DailyEndUserRollup,
    DailyTagRollup,
    KeyTag,
    RecordTag,
    Tag,
)
from metering.storage.models.base import (
    COST_COLUMNS,
    NAMING_CONVENTION,
    TOKEN_COLUMNS,
    Base,
    UsageColumns,
)
from metering.storage.models.ledger import (
    Budget,
    BudgetEvent,
    BudgetSettlement,
    CallInFlight,
    Customer,
    DailyRollup,
    PriceVersionRow,
    RateWindow,
    RepriceAudit,
    Reservation,
    ServingProcess,
    Team,
    UsageRecord,
    VirtualKey,
)

__all__ = [
    "COST_COLUMNS",
    "NAMING_CONVENTION",
    "TOKEN_COLUMNS",
    "AdminToken",
    "AuditEntry",
    "Base",
    "Budget",
    "BudgetAlert",
    "BudgetAlertEvent",
    "BudgetEvent",
    "BudgetSettlement",
    "CallInFlight",
    "Customer",
    "DailyEndUserRollup",
    "DailyRollup",
    "DailyTagRollup",
    "IdempotentResponse",
    "KeyTag",
    "PriceVersionRow",
    "RateWindow",
    "RecordTag",
    "RepriceAudit",
    "Reservation",
    "ServingProcess",
    "Tag",
    "Team",
    "UsageColumns",
    "UsageRecord",
    "VirtualKey",
]
