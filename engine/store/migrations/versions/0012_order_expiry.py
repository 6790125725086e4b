"""Pending-order expiry (issue 16 item 4, issue 17): orders.expire_ns.

A GTD order (tif "GTD") carries the moment it expires, ns UTC; the venue ends it then (MT5:
ORDER_TIME_SPECIFIED with the expiration in the server's time). Journaled with the order so a
restart knows the deadline. Existing rows never expire: NULL.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 02:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('orders', sa.Column('expire_ns', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('expire_ns')
