"""Initial schema: instruments, bots, orders, order events, fills, positions, account snapshots,
daily P&L, signals, audit log.

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 04:16:54.289580
"""
from alembic import op
import sqlalchemy as sa

from engine.store.models import ExactDecimal  # exact money: NUMERIC(38,18) on PostgreSQL, text on SQLite


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_snapshots',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('cash', ExactDecimal(), nullable=False),
    sa.Column('equity', ExactDecimal(), nullable=False),
    sa.Column('realized_pnl', ExactDecimal(), nullable=False),
    sa.Column('unrealized_pnl', ExactDecimal(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_snapshots'))
    )
    with op.batch_alter_table('account_snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_snapshots_account_id'), ['account_id'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_table('bots',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('strategy', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('next_order_seq', sa.BigInteger(), nullable=False),
    sa.Column('checkpoint', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bots'))
    )
    op.create_table('daily_pnl',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('bot_id', sa.String(length=64), nullable=True),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('realized', ExactDecimal(), nullable=False),
    sa.Column('unrealized', ExactDecimal(), nullable=False),
    sa.Column('fees', ExactDecimal(), nullable=False),
    sa.Column('equity_close', ExactDecimal(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_daily_pnl')),
    sa.UniqueConstraint('account_id', 'bot_id', 'day', name='uq_daily_pnl_account_bot_day')
    )
    op.create_table('instruments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('symbol', sa.String(length=64), nullable=False),
    sa.Column('venue', sa.String(length=32), nullable=False),
    sa.Column('asset_class', sa.String(length=16), nullable=False),
    sa.Column('price_increment', ExactDecimal(), nullable=False),
    sa.Column('size_increment', ExactDecimal(), nullable=False),
    sa.Column('min_qty', ExactDecimal(), nullable=False),
    sa.Column('max_qty', ExactDecimal(), nullable=True),
    sa.Column('multiplier', ExactDecimal(), nullable=False),
    sa.Column('quote_currency', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instruments')),
    sa.UniqueConstraint('symbol', 'venue', name='uq_instruments_symbol_venue')
    )
    op.create_table('orders',
    sa.Column('client_order_id', sa.String(length=64), nullable=False),
    sa.Column('bot_id', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=64), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('qty', ExactDecimal(), nullable=True),
    sa.Column('limit_price', ExactDecimal(), nullable=True),
    sa.Column('stop_price', ExactDecimal(), nullable=True),
    sa.Column('tif', sa.String(length=4), nullable=False),
    sa.Column('reduce_only', sa.Boolean(), nullable=False),
    sa.Column('equity_fraction', ExactDecimal(), nullable=True),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('venue_order_id', sa.String(length=64), nullable=True),
    sa.Column('filled_qty', ExactDecimal(), nullable=False),
    sa.Column('avg_fill_price', ExactDecimal(), nullable=True),
    sa.Column('reason', sa.String(length=128), nullable=True),
    sa.Column('external', sa.Boolean(), nullable=False),
    sa.Column('ts_init', sa.BigInteger(), nullable=False),
    sa.Column('ts_last', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['bot_id'], ['bots.id'], name=op.f('fk_orders_bot_id_bots')),
    sa.PrimaryKeyConstraint('client_order_id', name=op.f('pk_orders'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_bot_state', ['bot_id', 'state'], unique=False)

    op.create_table('positions',
    sa.Column('bot_id', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=64), nullable=False),
    sa.Column('qty', ExactDecimal(), nullable=False),
    sa.Column('avg_price', ExactDecimal(), nullable=True),
    sa.Column('realized_pnl', ExactDecimal(), nullable=False),
    sa.Column('fees', ExactDecimal(), nullable=False),
    sa.Column('cash', ExactDecimal(), nullable=False),
    sa.Column('updated_ts', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['bot_id'], ['bots.id'], name=op.f('fk_positions_bot_id_bots')),
    sa.PrimaryKeyConstraint('bot_id', 'symbol', name=op.f('pk_positions'))
    )
    op.create_table('signals',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('bot_id', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=64), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('direction', sa.Integer(), nullable=False),
    sa.Column('target_weight', ExactDecimal(), nullable=True),
    sa.Column('confidence', ExactDecimal(), nullable=True),
    sa.Column('model_id', sa.String(length=64), nullable=True),
    sa.Column('model_version', sa.String(length=32), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['bot_id'], ['bots.id'], name=op.f('fk_signals_bot_id_bots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signals'))
    )
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signals_bot_id'), ['bot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_signals_ts'), ['ts'], unique=False)

    op.create_table('fills',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('venue', sa.String(length=32), nullable=False),
    sa.Column('execution_id', sa.String(length=64), nullable=False),
    sa.Column('client_order_id', sa.String(length=64), nullable=False),
    sa.Column('bot_id', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=64), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('qty', ExactDecimal(), nullable=False),
    sa.Column('price', ExactDecimal(), nullable=False),
    sa.Column('fee', ExactDecimal(), nullable=False),
    sa.Column('liquidity', sa.String(length=8), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['bot_id'], ['bots.id'], name=op.f('fk_fills_bot_id_bots')),
    sa.ForeignKeyConstraint(['client_order_id'], ['orders.client_order_id'],
                            name=op.f('fk_fills_client_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fills')),
    sa.UniqueConstraint('venue', 'execution_id', name='uq_fills_venue_execution_id')
    )
    with op.batch_alter_table('fills', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fills_bot_id'), ['bot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fills_client_order_id'), ['client_order_id'], unique=False)

    op.create_table('order_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('client_order_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['client_order_id'], ['orders.client_order_id'],
                            name=op.f('fk_order_events_client_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_events'))
    )
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_events_client_order_id'), ['client_order_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_events_client_order_id'))

    op.drop_table('order_events')
    with op.batch_alter_table('fills', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fills_client_order_id'))
        batch_op.drop_index(batch_op.f('ix_fills_bot_id'))

    op.drop_table('fills')
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signals_ts'))
        batch_op.drop_index(batch_op.f('ix_signals_bot_id'))

    op.drop_table('signals')
    op.drop_table('positions')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_bot_state')

    op.drop_table('orders')
    op.drop_table('instruments')
    op.drop_table('daily_pnl')
    op.drop_table('bots')
    op.drop_table('audit_log')
    with op.batch_alter_table('account_snapshots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_snapshots_account_id'))

    op.drop_table('account_snapshots')
