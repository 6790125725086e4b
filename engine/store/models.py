"""The SQL schema: every order, transition, fill, position and P&L number the engine books.

Money and quantities are Numeric(38, 18) mapped to Decimal: exact on SQLite and PostgreSQL alike
(never Float). Market event times are BigInteger nanoseconds since the epoch (UTC), the engine's
own clock unit; wall-clock bookkeeping columns are timezone-aware DateTime. Users and
subscriptions arrive with the API and attach to bots by id.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, Date, DateTime, Dialect, ForeignKey, Index, Integer, MetaData,
                        Numeric, String, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import expression
from sqlalchemy.types import TypeDecorator, TypeEngine



class ExactDecimal(TypeDecorator[Decimal]):
    """Decimal stored exactly: NUMERIC(38, 18) on PostgreSQL, canonical text on SQLite.

    SQLite gives NUMERIC columns REAL affinity, so 123456789012.123456789 would come back as a
    float with 15-16 significant digits. Text keeps every digit; values are normalised on the way
    in so equal amounts compare equal.
    """

    impl = Numeric(38, 18)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, 18, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return exact_text(value)
        return None if value is None else Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value) if not isinstance(value, Decimal) else value.normalize() if value != 0 else Decimal(0)


def exact_text(value: Any) -> str | None:
    """An amount as ExactDecimal stores it on SQLite: normalised canonical text, "0" for any zero
    (engine/store/prepared.py binds with it directly, without TypeDecorator's calls per value)."""
    if value is None:
        return None
    value = Decimal(value)
    return format(value.normalize(), "f") if value != 0 else "0"


MONEY = ExactDecimal()
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _name_as_runtime_id(context: Any) -> str:
    """A bot config row written without a runtime id (older code, benchmarks) keeps its name."""
    return context.get_current_parameters()["bot_id"]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class InstrumentRow(Base):
    __tablename__ = "instruments"
    __table_args__ = (UniqueConstraint("symbol", "venue", name="uq_instruments_symbol_venue"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(64))
    venue: Mapped[str] = mapped_column(String(32))
    asset_class: Mapped[str] = mapped_column(String(16))
    price_increment: Mapped[Decimal] = mapped_column(MONEY)
    size_increment: Mapped[Decimal] = mapped_column(MONEY)
    min_qty: Mapped[Decimal] = mapped_column(MONEY)
    max_qty: Mapped[Decimal | None] = mapped_column(MONEY)
    multiplier: Mapped[Decimal] = mapped_column(MONEY)
    quote_currency: Mapped[str] = mapped_column(String(16))


class BotRow(Base):
    """A bot and its durable counters. The market-data checkpoint (the last input it fully
    processed) is committed with what that input caused. The client-order-id sequence is derived
    on load from the ids in `orders` (each is stored before it is used); `next_order_seq` is a
    floor for it, for bots whose old orders were archived."""

    __tablename__ = "bots"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    strategy: Mapped[str] = mapped_column(String(64), default="")
    account_id: Mapped[str] = mapped_column(String(64), default="default")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="STOPPED")
    next_order_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    checkpoint: Mapped[int] = mapped_column(BigInteger, default=-1)
    # set by the owner (POST /bots/{id}/publish): only a published bot can be followed (0007)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # why the bot last stopped (END_OF_FEED, STOPPED, KILLED, STORE_ERROR, LEASE_LOST, ERROR) and a
    # sentence for a person; NULL while it runs or before its first stop (0008)
    stop_reason: Mapped[str | None] = mapped_column(String(16))
    stop_message: Mapped[str | None] = mapped_column(String(512))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # how many times the bot's books were archived by a reset: names its current paper venue (0008)
    resets: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class WriteAheadRow(Base):
    """How far a bot's write-ahead records (engine/store/write_ahead.py: a log beside the store,
    one record per order, appended before the venue call) have been run into the tables: the
    sequence number of the last settled record. The settle that runs a record moves this mark in
    the same transaction, and only if it is below the record's number: so a record is run once,
    whoever settles it (the bot after its venue call, or the next reader after a crash) (0018)."""

    __tablename__ = "write_ahead"
    __table_args__ = {"sqlite_with_rowid": False}

    bot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    settled: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # the log's size in bytes when `settled` last moved: a reader whose stat of the log shows this
    # size (or an empty log) knows nothing waits in it without reading it
    settled_size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_bot_state", "bot_id", "state"),)

    client_order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id"))
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(16))
    qty: Mapped[Decimal | None] = mapped_column(MONEY)
    limit_price: Mapped[Decimal | None] = mapped_column(MONEY)
    stop_price: Mapped[Decimal | None] = mapped_column(MONEY)
    tif: Mapped[str] = mapped_column(String(4))
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False)
    equity_fraction: Mapped[Decimal | None] = mapped_column(MONEY)
    tag: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(20))
    venue_order_id: Mapped[str | None] = mapped_column(String(64))
    filled_qty: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    avg_fill_price: Mapped[Decimal | None] = mapped_column(MONEY)
    reason: Mapped[str | None] = mapped_column(String(128))
    external: Mapped[bool] = mapped_column(Boolean, default=False)
    ts_init: Mapped[int] = mapped_column(BigInteger)
    ts_last: Mapped[int] = mapped_column(BigInteger)
    # protective links (issue 17, 0011): a bracket child's parent, an OCO group, a trailing stop's trail
    parent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    oco_group: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trail_distance: Mapped[Decimal | None] = mapped_column(MONEY, nullable=True)
    trail_percent: Mapped[Decimal | None] = mapped_column(MONEY, nullable=True)
    # a GTD order's expiry, ns UTC (0012): a restart re-sends or reconciles it with its deadline
    expire_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # emulation (issue 17 item 3, 0014): held and triggered by the OMS, never at a venue; and on the
    # market order such an order sent when triggered, whose order it was
    emulated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=expression.false())
    trigger_of: Mapped[str | None] = mapped_column(String(64), nullable=True)


class OrderEventRow(Base):
    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(ForeignKey("orders.client_order_id"), index=True)
    state: Mapped[str] = mapped_column(String(20))
    ts: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(128))


class FillRow(Base):
    __tablename__ = "fills"
    __table_args__ = (UniqueConstraint("venue", "execution_id", name="uq_fills_venue_execution_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    venue: Mapped[str] = mapped_column(String(32))
    execution_id: Mapped[str] = mapped_column(String(64))
    client_order_id: Mapped[str] = mapped_column(ForeignKey("orders.client_order_id"), index=True)
    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(4))
    qty: Mapped[Decimal] = mapped_column(MONEY)
    price: Mapped[Decimal] = mapped_column(MONEY)
    fee: Mapped[Decimal] = mapped_column(MONEY)
    liquidity: Mapped[str] = mapped_column(String(8))
    ts: Mapped[int] = mapped_column(BigInteger)
    # a fee the venue charged outside the cash currency (issue 14): its currency and amount as
    # charged; `fee` then holds its value in the account currency at the fill's time
    fee_currency: Mapped[str] = mapped_column(String(16), default="", server_default="")
    fee_native: Mapped[Decimal | None] = mapped_column(MONEY, nullable=True)


class PositionRow(Base):
    __tablename__ = "positions"

    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    qty: Mapped[Decimal] = mapped_column(MONEY)
    avg_price: Mapped[Decimal | None] = mapped_column(MONEY)
    realized_pnl: Mapped[Decimal] = mapped_column(MONEY)
    fees: Mapped[Decimal] = mapped_column(MONEY)
    cash: Mapped[Decimal] = mapped_column(MONEY)
    updated_ts: Mapped[int] = mapped_column(BigInteger)


class AccountSnapshotRow(Base):
    __tablename__ = "account_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    ts: Mapped[int] = mapped_column(BigInteger)
    cash: Mapped[Decimal] = mapped_column(MONEY)
    equity: Mapped[Decimal] = mapped_column(MONEY)
    realized_pnl: Mapped[Decimal] = mapped_column(MONEY)
    unrealized_pnl: Mapped[Decimal] = mapped_column(MONEY)


class DailyPnlRow(Base):
    __tablename__ = "daily_pnl"
    __table_args__ = (UniqueConstraint("account_id", "bot_id", "day", name="uq_daily_pnl_account_bot_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    bot_id: Mapped[str | None] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    realized: Mapped[Decimal] = mapped_column(MONEY)
    unrealized: Mapped[Decimal] = mapped_column(MONEY)
    fees: Mapped[Decimal] = mapped_column(MONEY)
    equity_close: Mapped[Decimal] = mapped_column(MONEY)


class EquityPointRow(Base):
    """The bot's books at one bar close (0008): marked at the bar's close price, written by the
    runtime with the journal's next commit (so a point is durable with the checkpoint after it)."""

    __tablename__ = "equity_points"
    __table_args__ = (UniqueConstraint("bot_id", "ts", name="uq_equity_points_bot_id_ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id"), index=True)
    ts: Mapped[int] = mapped_column(BigInteger)          # the bar's end, ns since the epoch, UTC
    equity: Mapped[Decimal] = mapped_column(MONEY)
    cash: Mapped[Decimal] = mapped_column(MONEY)
    realized: Mapped[Decimal] = mapped_column(MONEY)
    unrealized: Mapped[Decimal] = mapped_column(MONEY)
    position: Mapped[Decimal] = mapped_column(MONEY)


class BotArchiveRow(Base):
    """One reset of a bot (0008): its orders, fills, position, daily P&L, equity points and signals
    were moved under `archive_bot_id` (a bots row of status ARCHIVED), where they stay readable."""

    __tablename__ = "bot_archives"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id"), index=True)
    archive_bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id"))
    actor: Mapped[str] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SignalRow(Base):
    __tablename__ = "signals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(64))
    ts: Mapped[int] = mapped_column(BigInteger)  # market time; no index of its own (0017: none read it)
    direction: Mapped[int] = mapped_column(Integer)
    target_weight: Mapped[Decimal | None] = mapped_column(MONEY)
    confidence: Mapped[Decimal | None] = mapped_column(MONEY)
    model_id: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # wall-clock ns when the row was written: plan delays count from here, not from `ts` (the
    # market time, which on a replayed bot is years old) (0007)
    published_ns: Mapped[int] = mapped_column(BigInteger, default=time.time_ns)


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ModelRow(Base):
    """A trained model version: the artifact's path and hash, what it was trained on, how it did."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    feature_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    train_start: Mapped[int] = mapped_column(BigInteger)
    train_end: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    artifact: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- the control API (issue 5): users, credentials, versioned bot configs, subscriptions, jobs ---


class UserRow(Base):
    """A person or automation account. `role` is admin, trader or subscriber; the password is an
    argon2 hash, never the password."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # the subscription plan, an entitlement only an admin sets: "free" (delayed) or "pro" (0007)
    plan: Mapped[str] = mapped_column(String(8), default="free", server_default="free")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKeyRow(Base):
    """An API key: its SHA-256 (keys are 256-bit random, so a fast hash suffices) and a short
    prefix to show in listings. The key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RefreshTokenRow(Base):
    """One refresh token of a rotation family, stored hashed. Using a token rotates it (marks it
    used and issues the next one of the family); presenting a used one again revokes the family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    family: Mapped[str] = mapped_column(String(32), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BrokerAccountRow(Base):
    """A broker account of one trader: credentials Fernet-encrypted (key from the environment),
    with a masked hint that is all the API ever shows of them."""

    __tablename__ = "broker_accounts"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_broker_accounts_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    venue: Mapped[str] = mapped_column(String(16))
    secret: Mapped[str] = mapped_column(String(4096))
    hint: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BotConfigRow(Base):
    """One version of a bot's config. Every update is a new row; the highest version is current.
    `owner_id` is the trader the bot belongs to; `deleted_at` retires the bot (its orders, fills
    and signals stay)."""

    __tablename__ = "bot_configs"
    __table_args__ = (UniqueConstraint("owner_id", "bot_id", "version", name="uq_bot_configs_owner_bot_version"),
                      UniqueConstraint("runtime_id", "version", name="uq_bot_configs_runtime_id_version"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bot_id: Mapped[str] = mapped_column(String(64), index=True)   # the name, unique per owner
    # the global id (bots.id, orders, signals, client order ids): the name when it was free, else
    # "<name[:50]>-<8 hex>" (0007)
    runtime_id: Mapped[str] = mapped_column(ForeignKey("bots.id"), index=True, default=_name_as_runtime_id)
    version: Mapped[int] = mapped_column(Integer)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SubscriptionRow(Base):
    """A subscriber following one bot's signals: plan free (delayed) or pro (real time)."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id"), index=True)
    plan: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BacktestJobRow(Base):
    """A research job submitted through the API: its request, state and (when done) result JSON.
    `kind` (0016) is "backtest" or "sweep": one table, so both kinds share the per-user quota, the
    pool and the restart rule without a join."""

    __tablename__ = "backtest_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="backtest", server_default="backtest")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BotLeaseRow(Base):
    """Who runs a bot (0006): one runner per bot across processes. `owner` is
    "<hostname>:<pid>:<uuid4>"; the owner renews `expires_at` every few seconds, and another runtime
    may take the bot over only after it passed (the owner died or stalled)."""

    __tablename__ = "bot_leases"

    bot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuthRateCounterRow(Base):
    """Auth requests of one client in one bucket (0005), counted in a window that opens at the
    client's first request: shared by every API worker, kept across restarts."""

    __tablename__ = "auth_rate_counters"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    hits: Mapped[int] = mapped_column(Integer)


class AuthLoginFailureRow(Base):
    """Login attempts against one account name (0005) and the lockout they earned. `key` is the
    SHA-256 of the username as typed (unknown names are counted alike, and a password typed into
    the username field is never stored)."""

    __tablename__ = "auth_login_failures"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    locked_until_ms: Mapped[int] = mapped_column(BigInteger)
    last_ms: Mapped[int] = mapped_column(BigInteger, index=True)


# --- one account's risk across bots and processes (issue 14, 0010) ---


class AccountRiskBotRow(Base):
    """One bot's share of its account (engine.account_risk): what it has at risk and how its day
    went, published by the process that runs it so the account's limits bind bots in every
    process. `heartbeat_ns` is wall-clock time: a row not refreshed for a while belongs to a bot
    that died, and is ignored (and reported) rather than blocking the account forever."""

    __tablename__ = "account_risk_bots"

    account_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    process: Mapped[str] = mapped_column(String(128))        # "<hostname>:<pid>:<uuid4>" of the publisher
    exposure: Mapped[Decimal | None] = mapped_column(MONEY)  # worst-case gross exposure; NULL: no price
    open_orders: Mapped[int] = mapped_column(Integer)
    equity: Mapped[Decimal | None] = mapped_column(MONEY)    # the bot's books at its last equity point
    day_start: Mapped[Decimal | None] = mapped_column(MONEY)  # its equity at its UTC day's start
    high_water: Mapped[Decimal | None] = mapped_column(MONEY)
    day: Mapped[int | None] = mapped_column(BigInteger)     # that UTC day, days since the epoch
    heartbeat_ns: Mapped[int] = mapped_column(BigInteger)


class AccountRiskStateRow(Base):
    """An account's trading state shared by all its bots (0010): ACTIVE, REDUCING or HALTED (the
    account kill switch), why and when. Every account check takes this row's lock first (`seq`
    is bumped), so two bots cannot both take the last of a limit. `pnl_base` and `drawdown_base`
    are what a person's resume accepted: losses count afresh from there."""

    __tablename__ = "account_risk_state"

    account_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200))
    changed_ts: Mapped[int] = mapped_column(BigInteger)   # the clock of whoever changed it, ns
    day: Mapped[int | None] = mapped_column(BigInteger)   # UTC day of a DAILY_LOSS change
    pnl_base: Mapped[Decimal] = mapped_column(MONEY)
    drawdown_base: Mapped[Decimal] = mapped_column(MONEY)
    seq: Mapped[int] = mapped_column(BigInteger)


class VenuePositionsRow(Base):
    """The venue's own positions on an account (0010), as the runtime's last reconciliation saw
    them: {symbol: decimal string}. One row per account, replaced whole, so a symbol missing
    from it is flat at the venue, and no row means the venue's positions are not known."""

    __tablename__ = "venue_positions"

    account_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger)
    positions: Mapped[dict[str, str]] = mapped_column(JSON)


class AccountChargeRow(Base):
    """An account-level charge (0013; engine.charges): funding, a fee posted apart from its fill,
    swap, interest. One row per charge and account, whoever saw it first (a poll, a restart,
    another bot of the account), so it is booked once: `booked` rows are in `bot_id`'s books
    (with `value`, what it was worth in the account's cash, and `fill_seq`, how many of the bot's
    fills preceded it, so a restart books it at the same place); the others are the account's,
    reported as external (`bot_id`: the bot that saw it), and a sole holder may still claim them."""

    __tablename__ = "charges"
    __table_args__ = (UniqueConstraint("account_id", "charge_id", name="uq_charges_account_id_charge_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(128))
    charge_id: Mapped[str] = mapped_column(String(128))
    bot_id: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    symbol: Mapped[str] = mapped_column(String(64))
    asset: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(MONEY)           # signed, in `asset`, as the venue booked it
    ts: Mapped[int] = mapped_column(BigInteger)              # ns UTC
    booked: Mapped[bool] = mapped_column(Boolean, default=False)
    value: Mapped[Decimal | None] = mapped_column(MONEY, nullable=True)  # booked: in the account's cash
    price: Mapped[Decimal | None] = mapped_column(MONEY, nullable=True)  # a base-asset charge's valuation price
    fill_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
