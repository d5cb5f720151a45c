"""budget alerts: webhooks and their outbox

``budget_alerts``: a webhook of one budget (thresholds in % of its limit, body style,
signing secret). ``budget_alert_events``: the outbox, written in the settlement's
transaction, once per (alert, budget, threshold, period start), delivered at least once
by ``metering serve``. Both start empty; nothing else changes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 07:16:24.585930

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'budget_alerts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('budget_id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('thresholds', sa.String(length=200), nullable=False),
        sa.Column('payload', sa.String(length=16), nullable=False),
        sa.Column('secret', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['budget_id'], ['budgets.id'], name=op.f('fk_budget_alerts_budget_id_budgets'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_alerts')),
    )
    with op.batch_alter_table('budget_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_budget_alerts_budget_id'), ['budget_id'], unique=False)

    op.create_table(
        'budget_alert_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=32), nullable=False),
        sa.Column('alert_id', sa.Integer(), nullable=False),
        sa.Column('budget_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('threshold_pct', sa.Integer(), nullable=False),
        sa.Column('period_start', sa.DateTime(), nullable=False),
        sa.Column('next_reset', sa.DateTime(), nullable=True),
        sa.Column('spent_nano', sa.BigInteger(), nullable=False),
        sa.Column('limit_nano', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ['alert_id'], ['budget_alerts.id'],
            name=op.f('fk_budget_alert_events_alert_id_budget_alerts'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['budget_id'], ['budgets.id'], name=op.f('fk_budget_alert_events_budget_id_budgets'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_alert_events')),
        sa.UniqueConstraint(
            'alert_id', 'budget_id', 'threshold_pct', 'period_start',
            name='uq_budget_alert_events_once',
        ),
        sa.UniqueConstraint('event_id', name=op.f('uq_budget_alert_events_event_id')),
    )
    with op.batch_alter_table('budget_alert_events', schema=None) as batch_op:
        batch_op.create_index(
            'ix_budget_alert_events_due', ['status', 'next_attempt_at'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('budget_alert_events', schema=None) as batch_op:
        batch_op.drop_index('ix_budget_alert_events_due')
    op.drop_table('budget_alert_events')
    with op.batch_alter_table('budget_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_budget_alerts_budget_id'))
    op.drop_table('budget_alerts')
