"""Bots you can follow: equity points at every bar close, why a bot stopped (bots.stop_reason,
stop_message, stopped_at), and resets that archive a bot's books (bot_archives; bots.resets
names the bot's paper venue after each reset, so the fresh venue's execution ids never collide
with the archived fills').

Existing rows: no bot has a stop reason (it is written at the next stop), none was reset.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 21:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

from engine.store.models import ExactDecimal


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
MONEY = ExactDecimal()


def upgrade() -> None:
    op.add_column('bots', sa.Column('stop_reason', sa.String(length=16), nullable=True))
    op.add_column('bots', sa.Column('stop_message', sa.String(length=512), nullable=True))
    op.add_column('bots', sa.Column('stopped_at', TS, nullable=True))
    op.add_column('bots', sa.Column('resets', sa.Integer(), server_default='0', nullable=False))
    op.create_table('equity_points',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('bot_id', sa.String(length=64), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('equity', MONEY, nullable=False),
    sa.Column('cash', MONEY, nullable=False),
    sa.Column('realized', MONEY, nullable=False),
    sa.Column('unrealized', MONEY, nullable=False),
    sa.Column('position', MONEY, nullable=False),
    sa.ForeignKeyConstraint(['bot_id'], ['bots.id'], name=op.f('fk_equity_points_bot_id_bots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_equity_points')),
    sa.UniqueConstraint('bot_id', 'ts', name='uq_equity_points_bot_id_ts')
    )
    op.create_index(op.f('ix_equity_points_bot_id'), 'equity_points', ['bot_id'], unique=False)
    op.create_table('bot_archives',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('bot_id', sa.String(length=64), nullable=False),
    sa.Column('archive_bot_id', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['bot_id'], ['bots.id'], name=op.f('fk_bot_archives_bot_id_bots')),
    sa.ForeignKeyConstraint(['archive_bot_id'], ['bots.id'], name=op.f('fk_bot_archives_archive_bot_id_bots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bot_archives'))
    )
    op.create_index(op.f('ix_bot_archives_bot_id'), 'bot_archives', ['bot_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_bot_archives_bot_id'), table_name='bot_archives')
    op.drop_table('bot_archives')
    op.drop_index(op.f('ix_equity_points_bot_id'), table_name='equity_points')
    op.drop_table('equity_points')
    # plain ALTER TABLE DROP COLUMN (SQLite >= 3.35): a batch copy of bots would drop a table other
    # tables' foreign keys point at
    op.drop_column('bots', 'resets')
    op.drop_column('bots', 'stopped_at')
    op.drop_column('bots', 'stop_message')
    op.drop_column('bots', 'stop_reason')
