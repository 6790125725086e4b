"""Account-level charges (issues 15, 16): the `charges` table.

Funding (Binance USD-M), crypto fees posted apart from their fills (Alpaca CFEE), swap and
interest are no fills: each is kept here once per account and venue id (account_id + charge_id
unique), booked into the one bot that solely held the symbol at the time, or reported as the
account's (external). See engine/charges.py and engine/store/models.py AccountChargeRow.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 03:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

from engine.store.models import ExactDecimal  # exact money: NUMERIC(38,18) on PostgreSQL, text on SQLite


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('charges',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=128), nullable=False),
    sa.Column('charge_id', sa.String(length=128), nullable=False),
    sa.Column('bot_id', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('symbol', sa.String(length=64), nullable=False),
    sa.Column('asset', sa.String(length=16), nullable=False),
    sa.Column('amount', ExactDecimal(), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('booked', sa.Boolean(), nullable=False),
    sa.Column('value', ExactDecimal(), nullable=True),
    sa.Column('price', ExactDecimal(), nullable=True),
    sa.Column('fill_seq', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charges')),
    sa.UniqueConstraint('account_id', 'charge_id', name='uq_charges_account_id_charge_id')
    )
    op.create_index(op.f('ix_charges_bot_id'), 'charges', ['bot_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_charges_bot_id'), table_name='charges')
    op.drop_table('charges')
