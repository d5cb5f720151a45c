"""admin API: tokens, audit log, idempotent responses

``admin_tokens``: the admin API's tokens (sha256 digest, display prefix, scopes,
revocation). ``audit_log``: every change made through the CLI or the admin API.
``idempotent_responses``: stored answers to admin POSTs sent with an Idempotency-Key.
All three start empty; nothing else changes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:05:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0010'
down_revision: Union[str, None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'admin_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('token_prefix', sa.String(length=32), nullable=False),
        sa.Column('scopes', sa.String(length=400), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_tokens')),
        sa.UniqueConstraint('name', name=op.f('uq_admin_tokens_name')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_admin_tokens_token_hash')),
    )
    op.create_table(
        'audit_log',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=400), nullable=False),
        sa.Column('before', sa.Text(), nullable=True),
        sa.Column('after', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    )
    op.create_index(op.f('ix_audit_log_at'), 'audit_log', ['at'], unique=False)
    op.create_table(
        'idempotent_responses',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=False),
        sa.Column('idempotency_key', sa.String(length=200), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['token_id'], ['admin_tokens.id'],
            name=op.f('fk_idempotent_responses_token_id_admin_tokens'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotent_responses')),
        sa.UniqueConstraint(
            'token_id', 'idempotency_key',
            name=op.f('uq_idempotent_responses_token_id_idempotency_key'),
        ),
    )
    op.create_index(
        op.f('ix_idempotent_responses_created_at'), 'idempotent_responses', ['created_at'],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f('ix_idempotent_responses_created_at'), table_name='idempotent_responses')
    op.drop_table('idempotent_responses')
    op.drop_index(op.f('ix_audit_log_at'), table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_table('admin_tokens')
