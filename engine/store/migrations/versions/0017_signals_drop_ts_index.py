"""Drop ix_signals_ts: no query filters signals by market time alone (issue 18, tick -> submit).

A running bot's signal row is written inside its order's write-ahead commit (engine/store/signals.py),
the commit between a decision and the venue. On SQLite each index a row lands in is one more page
written to the WAL by that commit. Every reader of `signals` goes by id (the feed's cursor, the
primary key) or by bot (ix_signals_bot_id, whose SQLite entries are ordered by id within a bot, so
"this bot's signals after id N" stays an index range); the one ordering by `ts` is within a bot
(SqlSignals.load), served by the bot index too. The ts index was written on every signal and read
by nothing.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 13:20:00.000000
"""
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_index('ix_signals_ts')


def downgrade() -> None:
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.create_index('ix_signals_ts', ['ts'], unique=False)
