"""Entitlements and owner-scoped bots: users.plan (set by an admin), signals.published_ns (plan
delays count from publication), bots.published_at (only published bots can be followed), and
bot_configs.runtime_id (the bot's global id; bot_configs.bot_id becomes a name unique per owner).

Existing rows: every user is on the free plan (a subscription's self-chosen plan no longer counts),
every signal was published at its market time, every bot is unpublished (its owner publishes it),
every bot's runtime id is its name (they were globally unique until now).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 17:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
NAME = sa.String(length=64)


def upgrade() -> None:
    op.add_column('users', sa.Column('plan', sa.String(length=8), server_default='free', nullable=False))
    op.add_column('bots', sa.Column('published_at', TS, nullable=True))

    op.add_column('signals', sa.Column('published_ns', sa.BigInteger(), nullable=True))
    op.execute("UPDATE signals SET published_ns = ts")
    with op.batch_alter_table('signals') as batch:
        batch.alter_column('published_ns', existing_type=sa.BigInteger(), nullable=False)

    op.add_column('bot_configs', sa.Column('runtime_id', NAME, nullable=True))
    op.execute("UPDATE bot_configs SET runtime_id = bot_id")
    with op.batch_alter_table('bot_configs') as batch:
        batch.alter_column('runtime_id', existing_type=NAME, nullable=False)
        batch.drop_constraint('fk_bot_configs_bot_id_bots', type_='foreignkey')
        batch.drop_constraint('uq_bot_configs_bot_id_version', type_='unique')
        batch.create_foreign_key(op.f('fk_bot_configs_runtime_id_bots'), 'bots', ['runtime_id'], ['id'])
        batch.create_unique_constraint('uq_bot_configs_owner_bot_version', ['owner_id', 'bot_id', 'version'])
        batch.create_unique_constraint('uq_bot_configs_runtime_id_version', ['runtime_id', 'version'])
        batch.create_index(op.f('ix_bot_configs_runtime_id'), ['runtime_id'], unique=False)


def downgrade() -> None:
    # before 0007 a bot's one id was global: the runtime id (a bot that got a suffixed runtime id
    # because another owner had its name keeps the suffix as its name)
    op.execute("UPDATE bot_configs SET bot_id = runtime_id")
    with op.batch_alter_table('bot_configs') as batch:
        batch.drop_index(op.f('ix_bot_configs_runtime_id'))
        batch.drop_constraint('uq_bot_configs_runtime_id_version', type_='unique')
        batch.drop_constraint('uq_bot_configs_owner_bot_version', type_='unique')
        batch.drop_constraint(op.f('fk_bot_configs_runtime_id_bots'), type_='foreignkey')
        batch.create_unique_constraint('uq_bot_configs_bot_id_version', ['bot_id', 'version'])
        batch.create_foreign_key(op.f('fk_bot_configs_bot_id_bots'), 'bots', ['bot_id'], ['id'])
        batch.drop_column('runtime_id')
    # plain ALTER TABLE DROP COLUMN (SQLite >= 3.35): a batch copy of bots or users would drop a
    # table other tables' foreign keys point at
    op.drop_column('signals', 'published_ns')
    op.drop_column('bots', 'published_at')
    op.drop_column('users', 'plan')
