"""Bot leases: one runner per bot across processes. A runtime holds a bot's row while it runs it
(owner "<hostname>:<pid>:<uuid4>"), renews it every few seconds, and deletes it on a clean stop;
another runtime may take the bot over only once the lease has expired (its owner died).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 17:10:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('bot_leases',
    sa.Column('bot_id', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=False),
    sa.Column('acquired_at', TS, nullable=False),
    sa.Column('heartbeat_at', TS, nullable=False),
    sa.Column('expires_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('bot_id', name=op.f('pk_bot_leases'))
    )


def downgrade() -> None:
    op.drop_table('bot_leases')
