"""The write-ahead record table: one row per bot between an order's write-ahead commit and the
commit after its venue call (issue 18, tick -> submit; engine/store/write_ahead.py).

Before, the write-ahead commit wrote the order's rows into their tables: on SQLite, eight pages of
the WAL (orders and two indexes, order_events and its index, the bots row, ...), ~40 us of the
~120 us between a tick and the venue. Now it writes one row here (one page: no rowid, keyed by
bot) and the rows reach their tables right after the venue call.

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
                    sa.Column('payload', sa.LargeBinary(), nullable=False),
                    sa.PrimaryKeyConstraint('bot_id'),
                    sqlite_with_rowid=False)


def downgrade() -> None:
    # a row left here is an order some bot may have sent: refuse to drop it unseen
    rows = op.get_bind().execute(sa.text("SELECT count(*) FROM write_ahead")).scalar()
    if rows:
        raise RuntimeError(f"write_ahead holds {rows} unsettled record(s): start their bots once (a bot's "
                           "start moves its record into the tables), then downgrade")
    op.drop_table('write_ahead')
