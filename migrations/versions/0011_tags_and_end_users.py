"""tags and end users

Attribution (README, Attribution): ``usage_records`` and ``calls_in_flight`` get the
request's end user, its scope and its tags (null: none, as every row already there);
``key_tags`` holds a key's default tags; ``tags`` and ``record_tags`` index the records'
tags; ``daily_end_user_rollups`` and ``daily_tag_rollups`` split the daily rollup by end
user and by tag. The rows already in ``daily_rollups`` are copied into both (no end
user, no tag), so each new rollup equals the sum of the records from the start.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 11:05:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0011'
down_revision: Union[str, None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SUMS = (
    'prompt_tokens', 'prompt_text_tokens', 'prompt_audio_tokens', 'prompt_image_tokens',
    'cached_read_tokens', 'cached_write_tokens', 'cached_write_1h_tokens',
    'completion_tokens', 'completion_text_tokens', 'completion_audio_tokens',
    'completion_image_tokens', 'accepted_prediction_tokens', 'rejected_prediction_tokens',
    'reasoning_tokens', 'citation_tokens', 'search_queries', 'total_tokens',
    'input_cost', 'cache_read_cost', 'cache_write_cost', 'output_cost', 'reasoning_cost',
    'citation_cost', 'search_cost', 'request_cost', 'adjustment_cost', 'total_cost',
)  # fmt: skip
GROUP = ('day', 'key_id', 'team_id', 'customer_id', 'provider', 'model')


def _attribution_columns() -> list[sa.Column]:
    return [
        sa.Column('end_user', sa.String(length=128), nullable=True),
        sa.Column('end_user_scope', sa.String(length=32), nullable=True),
        sa.Column('tags', sa.Text(), nullable=True),
    ]


def _usage_columns() -> list[sa.Column]:
    cached_1h = 'cached_write_1h_tokens'
    return [
        sa.Column(name, sa.BigInteger(), nullable=False,
                  **({'server_default': sa.text('0')} if name == cached_1h else {}))
        for name in SUMS
    ]  # fmt: skip


def _rollup(name: str, *, tag: bool) -> None:
    extra = [sa.Column('tag', sa.String(length=64), nullable=False)] if tag else []
    unique = [*GROUP, 'end_user_scope', 'end_user', *(['tag'] if tag else [])]
    op.create_table(
        name,
        *_usage_columns(),
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('key_id', sa.Integer(), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('provider', sa.String(length=100), nullable=False),
        sa.Column('model', sa.String(length=300), nullable=False),
        sa.Column('end_user_scope', sa.String(length=32), nullable=False),
        sa.Column('end_user', sa.String(length=128), nullable=False),
        *extra,
        sa.Column('requests', sa.BigInteger(), nullable=False),
        sa.Column('errors', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{name}')),
        sa.UniqueConstraint(*unique, name=f'uq_{name}_group'),
    )
    columns = ', '.join([*GROUP, 'end_user_scope', 'end_user', *(['tag'] if tag else []),
                         'requests', 'errors', *SUMS])  # fmt: skip
    blanks = "'', ''" + (", ''" if tag else '')
    values = ', '.join([*GROUP]) + f', {blanks}, ' + ', '.join(['requests', 'errors', *SUMS])
    op.execute(f'INSERT INTO {name} ({columns}) SELECT {values} FROM daily_rollups')


def upgrade() -> None:
    # Plain ADD COLUMN (nullable), never a batch copy of these tables.
    for table in ('usage_records', 'calls_in_flight'):
        for column in _attribution_columns():
            op.add_column(table, column)
    op.create_table(
        'key_tags',
        sa.Column('key_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ['key_id'], ['virtual_keys.id'], name=op.f('fk_key_tags_key_id_virtual_keys'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('key_id', 'tag', name=op.f('pk_key_tags')),
    )
    op.create_table(
        'tags',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_tags')),
    )
    op.create_table(
        'record_tags',
        sa.Column('record_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ['record_id'], ['usage_records.id'],
            name=op.f('fk_record_tags_record_id_usage_records'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(['tag'], ['tags.name'], name=op.f('fk_record_tags_tag_tags')),
        sa.PrimaryKeyConstraint('record_id', 'tag', name=op.f('pk_record_tags')),
    )
    op.create_index('ix_record_tags_tag_record', 'record_tags', ['tag', 'record_id'])
    _rollup('daily_end_user_rollups', tag=False)
    _rollup('daily_tag_rollups', tag=True)
    op.create_index('ix_daily_tag_rollups_tag_day', 'daily_tag_rollups', ['tag', 'day'])


def downgrade() -> None:
    op.drop_index('ix_daily_tag_rollups_tag_day', table_name='daily_tag_rollups')
    op.drop_table('daily_tag_rollups')
    op.drop_table('daily_end_user_rollups')
    op.drop_index('ix_record_tags_tag_record', table_name='record_tags')
    op.drop_table('record_tags')
    op.drop_table('tags')
    op.drop_table('key_tags')
    for table in ('calls_in_flight', 'usage_records'):
        for column in reversed(_attribution_columns()):
            op.drop_column(table, column.name)
