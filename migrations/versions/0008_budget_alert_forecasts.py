"""budget alert forecasts

``budget_alerts.forecast``: the alert also tells when its budget's period is on course
to pass the limit (false for the alerts already there, and for a writer of the previous
version: the server default). ``budget_alert_events.forecast_nano``: a forecast event's
projected spend (null for the others).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 07:52:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # A plain ADD COLUMN, never a batch copy of the table: on SQLite, dropping the old
    # budget_alerts would delete every event (ON DELETE CASCADE, foreign keys on).
    op.add_column(
        'budget_alerts',
        sa.Column('forecast', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column('budget_alert_events', sa.Column('forecast_nano', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+) for the same reason.
    op.drop_column('budget_alert_events', 'forecast_nano')
    op.drop_column('budget_alerts', 'forecast')
