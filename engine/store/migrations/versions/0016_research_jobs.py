"""Sweep jobs in the API (issue 19): backtest_jobs.kind, "backtest" or "sweep".

A sweep submitted through the API is a job like a backtest (request, status, result JSON, owner),
so it lives in the same table: the per-user quota counts queued and running jobs of both kinds in
one query, and a restart marks both failed. Existing rows are backtests.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 06:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('backtest_jobs', sa.Column('kind', sa.String(length=16), nullable=False,
                                             server_default='backtest'))


def downgrade() -> None:
    with op.batch_alter_table('backtest_jobs') as batch:
        batch.drop_column('kind')
