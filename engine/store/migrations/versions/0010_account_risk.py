"""One account's risk across bots and processes (issue 14): account_risk_bots,
account_risk_state and venue_positions.

Each bot publishes its share of its account (exposure, open orders, equity, the day's start and
high-water mark, a wall-clock heartbeat) so that every bot on the account, in any process, is
bound by one set of account limits; the account's state (the account kill switch, a daily-loss
REDUCING) lives in one row all of them read; the venue's positions after reconciliation let the
API tell the bots' positions from the account's external ones.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 00:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

from engine.store.models import ExactDecimal  # exact money: NUMERIC(38,18) on PostgreSQL, text on SQLite


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_risk_bots',
    sa.Column('account_key', sa.String(length=128), nullable=False),
    sa.Column('bot_id', sa.String(length=64), nullable=False),
    sa.Column('process', sa.String(length=128), nullable=False),
    sa.Column('exposure', ExactDecimal(), nullable=True),
    sa.Column('open_orders', sa.Integer(), nullable=False),
    sa.Column('equity', ExactDecimal(), nullable=True),
    sa.Column('day_start', ExactDecimal(), nullable=True),
    sa.Column('high_water', ExactDecimal(), nullable=True),
    sa.Column('day', sa.BigInteger(), nullable=True),
    sa.Column('heartbeat_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account_key', 'bot_id', name=op.f('pk_account_risk_bots'))
    )
    op.create_table('account_risk_state',
    sa.Column('account_key', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('changed_ts', sa.BigInteger(), nullable=False),
    sa.Column('day', sa.BigInteger(), nullable=True),
    sa.Column('pnl_base', ExactDecimal(), nullable=False),
    sa.Column('drawdown_base', ExactDecimal(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account_key', name=op.f('pk_account_risk_state'))
    )
    op.create_table('venue_positions',
    sa.Column('account_key', sa.String(length=128), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('positions', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('account_key', name=op.f('pk_venue_positions'))
    )


def downgrade() -> None:
    op.drop_table('venue_positions')
    op.drop_table('account_risk_state')
    op.drop_table('account_risk_bots')
