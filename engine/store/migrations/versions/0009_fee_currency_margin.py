"""Fees in any currency: fills.fee_currency and fills.fee_native (issue 14).

A venue may charge a fee in the coin bought or in a third currency (BNB). The fill keeps that
currency and the amount as charged; `fills.fee` holds the fee's value in the account currency at
the fill's time, so a restart replays the books without needing the rate again. Existing rows are
fees in the cash currency: fee_currency '' and fee_native NULL.

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-29 21:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

from engine.store.models import ExactDecimal  # exact money: NUMERIC(38,18) on PostgreSQL, text on SQLite


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('fills', sa.Column('fee_currency', sa.String(length=16), server_default='', nullable=False))
    op.add_column('fills', sa.Column('fee_native', ExactDecimal(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('fills') as batch:
        batch.drop_column('fee_native')
        batch.drop_column('fee_currency')
