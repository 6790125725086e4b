"""The notification tables (migration 0015), declared in Core here rather than in
engine/store/models.py: notifications are the API's concern and the engine must not know them
(as backtest/sweep_store.py does for research). The columns match the migration.

  notification_rules       what a user asked to be told, and where; `secret` is Fernet-encrypted
                           (the webhook's HMAC key, or the Telegram bot token), never returned;
                           `last_price` is a price alert's last seen price (crossing detection)
  notification_deliveries  one row per (rule, event): UNIQUE, so reading an event twice (a
                           restart, two API workers) never makes a second delivery; its status,
                           attempts so far and the time of the next one; `claimed_by/claimed_until_ns`
                           is the claim of the worker sending it (a conditional update)
  notification_attempts    the delivery log: one row per attempt (status, HTTP status, error
                           text without secrets, next attempt time)
  notification_cursors     how far each event source has been read (fills, signals, bots, risk):
                           advanced in the transaction that inserts the deliveries it produced
"""

from __future__ import annotations

from sqlalchemy import (JSON, BigInteger, Boolean, Column, DateTime, ForeignKey, Integer, MetaData, String, Table,
                        UniqueConstraint)

from engine.store.models import MONEY, NAMING, UserRow

metadata = MetaData(naming_convention=NAMING)

RULES = Table(
    "notification_rules", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner_id", ForeignKey(UserRow.__table__.c.id), nullable=False, index=True),  # another MetaData
    Column("name", String(64), nullable=False),
    Column("kind", String(16), nullable=False),              # fill | signal | bot_state | daily_loss | price
    Column("bot_id", String(64), nullable=True),             # runtime id; NULL: any bot the owner may see
    Column("symbol", String(64), nullable=True),
    Column("level", MONEY, nullable=True),                   # price alerts
    Column("direction", String(8), nullable=True),           # above | below (price alerts)
    Column("stop_reasons", JSON, nullable=True),             # bot_state: which stop reasons
    Column("channel", String(16), nullable=False),           # webhook | telegram | email
    Column("target", JSON, nullable=False),                  # url / chat_id / address: no secret here
    Column("secret", String(1024), nullable=True),           # Fernet token of the HMAC key or bot token
    Column("enabled", Boolean, nullable=False),
    Column("last_price", MONEY, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
)

DELIVERIES = Table(
    "notification_deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_id", ForeignKey("notification_rules.id"), nullable=False, index=True),
    Column("owner_id", Integer, nullable=False, index=True),
    Column("event_key", String(128), nullable=False),        # "signal:42", "fill:7", "test:<hex>"...
    Column("event_kind", String(16), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("status", String(12), nullable=False),            # pending | sending | sent | failed | skipped
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_ns", BigInteger, nullable=False, index=True),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until_ns", BigInteger, nullable=True),
    Column("last_http_status", Integer, nullable=True),
    Column("last_error", String(512), nullable=True),
    Column("created_ns", BigInteger, nullable=False),
    Column("sent_ns", BigInteger, nullable=True),
    UniqueConstraint("rule_id", "event_key", name="uq_notification_deliveries_rule_event"),
)

ATTEMPTS = Table(
    "notification_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", ForeignKey("notification_deliveries.id"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("status", String(12), nullable=False),            # sent | retry | failed | skipped
    Column("http_status", Integer, nullable=True),
    Column("error", String(512), nullable=True),
    Column("at_ns", BigInteger, nullable=False),
    Column("next_attempt_ns", BigInteger, nullable=True),
)

CURSORS = Table(
    "notification_cursors", metadata,
    Column("source", String(32), primary_key=True),
    Column("position", BigInteger, nullable=False),
)
