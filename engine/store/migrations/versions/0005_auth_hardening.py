"""Auth hardening: login limits shared by every API worker and kept across restarts.

auth_rate_counters   requests per client and bucket in a window that starts at the first one
auth_login_failures  failed logins per account (keyed by the username's SHA-256, so a password
                     typed into the username field is never stored) and the lockout they earned

Logout needs no schema change: access tokens carry their refresh family, whose revocation is
already in refresh_tokens (indexed by family).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 17:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auth_rate_counters',
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('window_start_ms', sa.BigInteger(), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_auth_rate_counters'))
    )
    op.create_index(op.f('ix_auth_rate_counters_window_start_ms'), 'auth_rate_counters', ['window_start_ms'],
                    unique=False)
    op.create_table('auth_login_failures',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('locked_until_ms', sa.BigInteger(), nullable=False),
    sa.Column('last_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_auth_login_failures'))
    )
    op.create_index(op.f('ix_auth_login_failures_last_ms'), 'auth_login_failures', ['last_ms'], unique=False)


def downgrade() -> None:
    op.drop_table('auth_login_failures')
    op.drop_table('auth_rate_counters')
