"""Protective orders (issue 17): orders.parent_id, oco_group, trail_distance, trail_percent.

A bracket's stop-loss and take-profit are children of their entry (parent_id) and one OCO group
(oco_group); a trailing stop keeps its trail (a distance in price units or a percent). Journaled
with the order, so a restart restores the links. Existing rows are plain orders: all NULL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 01:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

from engine.store.models import ExactDecimal  # exact money: NUMERIC(38,18) on PostgreSQL, text on SQLite


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('orders', sa.Column('parent_id', sa.String(length=64), nullable=True))
    op.add_column('orders', sa.Column('oco_group', sa.String(length=64), nullable=True))
    op.add_column('orders', sa.Column('trail_distance', ExactDecimal(), nullable=True))
    op.add_column('orders', sa.Column('trail_percent', ExactDecimal(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('trail_percent')
        batch.drop_column('trail_distance')
        batch.drop_column('oco_group')
        batch.drop_column('parent_id')
