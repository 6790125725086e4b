"""Research runs: one row per parameter sweep, optuna search or walk-forward optimisation
(settings, best parameters and stats, overfitting figures, path of the full JSON).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 18:20:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweeps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('strategy', sa.String(length=64), nullable=False),
    sa.Column('data', sa.String(length=512), nullable=False),
    sa.Column('objective', sa.String(length=32), nullable=False),
    sa.Column('space', sa.JSON(), nullable=False),
    sa.Column('trials', sa.Integer(), nullable=False),
    sa.Column('best_params', sa.JSON(), nullable=False),
    sa.Column('best_value', sa.Float(), nullable=True),
    sa.Column('best_stats', sa.JSON(), nullable=False),
    sa.Column('overfitting', sa.JSON(), nullable=False),
    sa.Column('result_path', sa.String(length=512), nullable=False),
    sa.Column('elapsed_s', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sweeps'))
    )


def downgrade() -> None:
    op.drop_table('sweeps')
