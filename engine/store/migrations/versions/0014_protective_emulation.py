"""Emulated protective orders (issue 17 items 3-4): orders.emulated, orders.trigger_of.

`emulated`: an order the OMS holds and triggers itself (engine/emulation.py) because its venue
lacks the link or the trail; a restart re-arms it from here instead of asking the venue, which
never saw it. `trigger_of`: on the market order an emulated order sent when triggered, that
order's client id, so a restart knows the stop already fired. Existing rows: not emulated, NULL.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 03:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('orders', sa.Column('emulated', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column('orders', sa.Column('trigger_of', sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('trigger_of')
        batch.drop_column('emulated')
