"""Notifications (issue 19 item 3): rules a user sets (what, and which channel), one delivery per
(rule, event) (unique: an event read twice is delivered once), the delivery log (one row per
attempt) and a cursor per event source. The tables are declared in api/notify/store.py (Core: the
engine does not know them); the columns here match it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 03:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

from engine.store.models import ExactDecimal


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

MONEY = ExactDecimal()  # NUMERIC(38, 18) on PostgreSQL, canonical text on SQLite
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('notification_rules',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('bot_id', sa.String(length=64), nullable=True),
    sa.Column('symbol', sa.String(length=64), nullable=True),
    sa.Column('level', MONEY, nullable=True),
    sa.Column('direction', sa.String(length=8), nullable=True),
    sa.Column('stop_reasons', sa.JSON(), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('target', sa.JSON(), nullable=False),
    sa.Column('secret', sa.String(length=1024), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('last_price', MONEY, nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('deleted_at', TS, nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_notification_rules_owner_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_rules'))
    )
    op.create_index(op.f('ix_notification_rules_owner_id'), 'notification_rules', ['owner_id'], unique=False)

    op.create_table('notification_deliveries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('event_key', sa.String(length=128), nullable=False),
    sa.Column('event_kind', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_ns', sa.BigInteger(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_until_ns', sa.BigInteger(), nullable=True),
    sa.Column('last_http_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=512), nullable=True),
    sa.Column('created_ns', sa.BigInteger(), nullable=False),
    sa.Column('sent_ns', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['rule_id'], ['notification_rules.id'],
                            name=op.f('fk_notification_deliveries_rule_id_notification_rules')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_deliveries')),
    sa.UniqueConstraint('rule_id', 'event_key', name='uq_notification_deliveries_rule_event')
    )
    op.create_index(op.f('ix_notification_deliveries_rule_id'), 'notification_deliveries', ['rule_id'])
    op.create_index(op.f('ix_notification_deliveries_owner_id'), 'notification_deliveries', ['owner_id'])
    op.create_index(op.f('ix_notification_deliveries_next_attempt_ns'), 'notification_deliveries',
                    ['next_attempt_ns'])

    op.create_table('notification_attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=512), nullable=True),
    sa.Column('at_ns', sa.BigInteger(), nullable=False),
    sa.Column('next_attempt_ns', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['notification_deliveries.id'],
                            name=op.f('fk_notification_attempts_delivery_id_notification_deliveries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_attempts'))
    )
    op.create_index(op.f('ix_notification_attempts_delivery_id'), 'notification_attempts', ['delivery_id'])

    op.create_table('notification_cursors',
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('source', name=op.f('pk_notification_cursors'))
    )


def downgrade() -> None:
    op.drop_table('notification_cursors')
    op.drop_index(op.f('ix_notification_attempts_delivery_id'), table_name='notification_attempts')
    op.drop_table('notification_attempts')
    op.drop_index(op.f('ix_notification_deliveries_next_attempt_ns'), table_name='notification_deliveries')
    op.drop_index(op.f('ix_notification_deliveries_owner_id'), table_name='notification_deliveries')
    op.drop_index(op.f('ix_notification_deliveries_rule_id'), table_name='notification_deliveries')
    op.drop_table('notification_deliveries')
    op.drop_index(op.f('ix_notification_rules_owner_id'), table_name='notification_rules')
    op.drop_table('notification_rules')
