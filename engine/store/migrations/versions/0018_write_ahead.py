"""The write-ahead settled mark: per bot, the sequence number of the last write-ahead record run
into the tables (issue 18, tick -> submit; engine/store/write_ahead.py).

Before, the write-ahead commit wrote the order's rows into their tables: on SQLite, eight pages of
the WAL (orders and two indexes, order_events and its index, the signal and its index, the bots
row), ~40 us of the ~130 us between a tick and the venue. Now the rows are appended as one record
to the bot's log beside the store before the venue call, and run into the tables right after it,
in the transaction that moves this mark.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 16:00:00.000000
"""
import sqlalchemy as sa
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('write_ahead',
                    sa.Column('bot_id', sa.String(length=64), nullable=False),
                    sa.Column('settled', sa.BigInteger(), server_default='0', nullable=False),
                    sa.Column('settled_size', sa.BigInteger(), server_default='0', nullable=False),
                    sa.PrimaryKeyConstraint('bot_id'),
                    sqlite_with_rowid=False)


def downgrade() -> None:
    # Records past a bot's mark may be waiting in its log; a tree before 0018 would never run them.
    # The downgrade cannot read the logs (they are files beside a SQLite store): start each bot once
    # on this version first (its start runs its records), then downgrade.
    op.drop_table('write_ahead')
