"""Bot configs (validated by the runtime's own parser, versioned), control, and per-bot store data.

A config is the runtime's BotConfig as JSON; a refused one is 422 naming the dotted field
("params.fast", "cash"). Every PUT stores a new version; GET returns the latest, ?version=N an
older one. Start, stop and kill go to the injected BotControl.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit
from api.deps import MAX_ID, Ctx, Db, Principal, QueryId, Trader, latest_config, owned_bot, owned_bot_ids
from api.errors import ApiError, not_found
from engine.errors import ConfigError, TickbridgeError
from engine.runtime.config import BotConfig, parse_bot_config
from engine.store.models import (BotConfigRow, BotRow, BrokerAccountRow, DailyPnlRow, FillRow, OrderRow, PositionRow,
                                 UserRow)

router = APIRouter(prefix="/bots", tags=["bots"])

CONFIG_BODY = Body(description="a bot config: id, strategy, params, symbol, venue, account, bar, cash, "
                               "price_increment, size_increment, commission, risk, on_stop",
                   examples=[{"id": "spy-sma", "strategy": "sma_cross", "params": {"fast": 10, "slow": 30},
                              "symbol": "SPY", "venue": "paper"}])
ConfigBody = Annotated[dict[str, Any], CONFIG_BODY]
Limit = Annotated[int, Query(ge=1, le=1000)]


class BotOut(BaseModel):
    id: str
    version: int
    owner: str
    config: dict[str, Any]
    created_at: datetime
    created_by: str


class KillIn(BaseModel):
    reason: str = Field("manual", min_length=1, max_length=128)


class Versions(BaseModel):
    id: str
    versions: list[int]


def _out(db: Session, row: BotConfigRow) -> BotOut:
    owner = db.get(UserRow, row.owner_id)
    return BotOut(id=row.bot_id, version=row.version, owner=owner.username if owner else "?", config=row.config,
                  created_at=row.created_at, created_by=row.created_by)


def _validated(db: Session, caller: Principal, raw: dict[str, Any], owner_id: int) -> BotConfig:
    config = parse_bot_config(raw)
    if config.account != "default":
        account = db.scalar(select(BrokerAccountRow).where(BrokerAccountRow.owner_id == owner_id,
                                                           BrokerAccountRow.name == config.account))
        if account is None:
            raise ConfigError("account", f"no broker account named {config.account!r} belongs to the bot's owner")
        if account.venue != config.venue:
            raise ConfigError("venue", f"account {config.account!r} is a {account.venue} account")
    return config


def _as_json(config: BotConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


@router.post("", response_model=BotOut, status_code=201, summary="create a bot (version 1)")
def create_bot(raw: ConfigBody, caller: Trader, db: Db) -> BotOut:
    config = _validated(db, caller, raw, caller.user_id)
    if db.scalar(select(BotConfigRow.id).where(BotConfigRow.bot_id == config.id).limit(1)) is not None:
        raise ApiError(409, f"bot {config.id!r} exists", field="id")
    bot = db.get(BotRow, config.id)
    if bot is None:
        db.add(BotRow(id=config.id, name=config.id, strategy=config.strategy, account_id=config.account,
                      config=_as_json(config), status="STOPPED", next_order_seq=0, checkpoint=-1))
        db.flush()
    elif bot.checkpoint >= 0 or db.scalar(select(OrderRow.client_order_id).where(OrderRow.bot_id == config.id)
                                          .limit(1)) is not None:
        # a bot the runtime already ran without an API owner: refuse rather than hand its history over
        raise ApiError(409, f"bot {config.id!r} exists in the store without an owner", field="id")
    row = BotConfigRow(bot_id=config.id, version=1, owner_id=caller.user_id, config=_as_json(config),
                       created_by=caller.username)
    db.add(row)
    audit.record(db, caller.username, "bot.create", f"bot:{config.id}", {"version": 1})
    db.commit()
    return _out(db, row)


@router.get("", response_model=list[BotOut], summary="the caller's bots (admin: all), latest versions")
def list_bots(caller: Trader, db: Db) -> list[BotOut]:
    ids = owned_bot_ids(db, caller)
    rows = [latest_config(db, b) for b in (ids if ids is not None else
                                           db.scalars(select(BotConfigRow.bot_id).distinct()))]
    return [_out(db, r) for r in sorted((r for r in rows if r and r.deleted_at is None), key=lambda r: r.bot_id)]


@router.get("/{bot_id}", response_model=BotOut, summary="a bot's latest config, or ?version=N")
def get_bot(bot_id: str, caller: Trader, db: Db, version: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> BotOut:
    row = owned_bot(db, caller, bot_id)
    if version is not None:
        old = db.scalar(select(BotConfigRow).where(BotConfigRow.bot_id == bot_id, BotConfigRow.version == version))
        if old is None:
            raise not_found(f"version {version} of bot {bot_id!r}")
        row = old
    return _out(db, row)


@router.get("/{bot_id}/versions", response_model=Versions)
def versions(bot_id: str, caller: Trader, db: Db) -> Versions:
    owned_bot(db, caller, bot_id)
    found = db.scalars(select(BotConfigRow.version).where(BotConfigRow.bot_id == bot_id)
                       .order_by(BotConfigRow.version))
    return Versions(id=bot_id, versions=list(found))


@router.put("/{bot_id}", response_model=BotOut, summary="store a new version of a bot's config")
def update_bot(bot_id: str, raw: ConfigBody, caller: Trader, db: Db) -> BotOut:
    current = owned_bot(db, caller, bot_id)
    config = _validated(db, caller, {"id": bot_id, **raw}, current.owner_id)
    if config.id != bot_id:
        raise ConfigError("id", f"a bot's id cannot change (path says {bot_id!r})")
    row = BotConfigRow(bot_id=bot_id, version=current.version + 1, owner_id=current.owner_id,
                       config=_as_json(config), created_by=caller.username)
    db.add(row)
    bot = db.get(BotRow, bot_id)
    if bot is not None:
        bot.strategy, bot.account_id, bot.config = config.strategy, config.account, _as_json(config)
    audit.record(db, caller.username, "bot.update", f"bot:{bot_id}", {"version": row.version})
    db.commit()
    return _out(db, row)


@router.delete("/{bot_id}", status_code=204, summary="retire a stopped bot (its history stays)")
def delete_bot(bot_id: str, caller: Trader, ctx: Ctx, db: Db) -> None:
    owned_bot(db, caller, bot_id)
    if bot_id in ctx.bot_control.running():
        raise ApiError(409, f"bot {bot_id!r} is running: stop it first")
    now = datetime.now(timezone.utc)
    for row in db.scalars(select(BotConfigRow).where(BotConfigRow.bot_id == bot_id)):
        row.deleted_at = now
    audit.record(db, caller.username, "bot.delete", f"bot:{bot_id}")
    db.commit()


def _control(db: Session, caller: Principal, action: str, bot_id: str, call: Any, detail: dict[str, Any]) -> dict[str, Any]:
    try:
        call()
    except ConfigError:
        raise
    except TickbridgeError as exc:
        raise ApiError(409, f"{action} {bot_id!r}: {exc}") from None
    audit.record(db, caller.username, f"bot.{action}", f"bot:{bot_id}", detail)
    db.commit()
    return {"bot_id": bot_id, "action": action}


@router.post("/{bot_id}/start", summary="start (or resume) the bot's latest config")
def start(bot_id: str, caller: Trader, ctx: Ctx, db: Db) -> dict[str, Any]:
    row = owned_bot(db, caller, bot_id)
    config = parse_bot_config(row.config)
    return _control(db, caller, "start", bot_id, lambda: ctx.bot_control.start(config), {"version": row.version})


@router.post("/{bot_id}/stop", summary="stop cleanly (open orders cancelled or kept per on_stop)")
def stop(bot_id: str, caller: Trader, ctx: Ctx, db: Db) -> dict[str, Any]:
    owned_bot(db, caller, bot_id)
    return _control(db, caller, "stop", bot_id, lambda: ctx.bot_control.stop(bot_id), {})


@router.post("/{bot_id}/kill", summary="kill switch: cancel all, flatten, halt")
def kill(bot_id: str, caller: Trader, ctx: Ctx, db: Db, body: KillIn | None = None) -> dict[str, Any]:
    owned_bot(db, caller, bot_id)
    reason = (body or KillIn()).reason
    return _control(db, caller, "kill", bot_id, lambda: ctx.bot_control.kill(bot_id, reason), {"reason": reason})


@router.get("/{bot_id}/status", summary="the runtime's view of the bot")
def status(bot_id: str, caller: Trader, ctx: Ctx, db: Db) -> dict[str, Any]:
    owned_bot(db, caller, bot_id)
    try:
        return ctx.bot_control.status(bot_id)
    except TickbridgeError:  # a bot this runtime never started
        return {"bot_id": bot_id, "state": "STOPPED"}


# --- what the bot did, read from the store ---

def _row(obj: Any) -> dict[str, Any]:
    out = {}
    for column in obj.__table__.columns:
        value = getattr(obj, column.key)
        out[column.key] = str(value) if isinstance(value, Decimal) else value
    return out


def _readable(db: Session, caller: Principal, bot_id: str) -> None:
    ids = owned_bot_ids(db, caller)
    if ids is not None and bot_id not in ids:
        raise not_found(f"bot {bot_id!r}")
    if ids is None and latest_config(db, bot_id) is None and db.get(BotRow, bot_id) is None:
        raise not_found(f"bot {bot_id!r}")


@router.get("/{bot_id}/orders", summary="orders, newest first")
def orders(bot_id: str, caller: Trader, db: Db, limit: Limit = 100,
           state: Annotated[str | None, Query(max_length=20)] = None,
           offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[dict[str, Any]]:
    _readable(db, caller, bot_id)
    query = select(OrderRow).where(OrderRow.bot_id == bot_id)
    if state:
        query = query.where(OrderRow.state == state)
    rows = db.scalars(query.order_by(OrderRow.ts_init.desc(), OrderRow.client_order_id.desc())
                      .offset(offset).limit(limit))
    return [_row(r) for r in rows]


@router.get("/{bot_id}/fills", summary="fills (trades), paged by id: ?after_id=")
def fills(bot_id: str, caller: Trader, db: Db, limit: Limit = 100,
          after_id: QueryId = 0) -> list[dict[str, Any]]:
    _readable(db, caller, bot_id)
    rows = db.scalars(select(FillRow).where(FillRow.bot_id == bot_id, FillRow.id > after_id)
                      .order_by(FillRow.id).limit(limit))
    return [_row(r) for r in rows]


@router.get("/{bot_id}/positions")
def positions(bot_id: str, caller: Trader, db: Db) -> list[dict[str, Any]]:
    _readable(db, caller, bot_id)
    return [_row(r) for r in db.scalars(select(PositionRow).where(PositionRow.bot_id == bot_id)
                                        .order_by(PositionRow.symbol))]


@router.get("/{bot_id}/pnl", summary="realized P&L and fees (positions) and P&L per UTC day")
def pnl(bot_id: str, caller: Trader, db: Db) -> dict[str, Any]:
    _readable(db, caller, bot_id)
    positions_ = list(db.scalars(select(PositionRow).where(PositionRow.bot_id == bot_id)))
    realized = sum((p.realized_pnl for p in positions_), Decimal(0))
    fees = sum((p.fees for p in positions_), Decimal(0))
    days = db.scalars(select(DailyPnlRow).where(DailyPnlRow.bot_id == bot_id).order_by(DailyPnlRow.day))
    return {"bot_id": bot_id, "realized": str(realized), "fees": str(fees),
            "days": [{"day": d.day.isoformat(), "realized": str(d.realized), "unrealized": str(d.unrealized),
                      "fees": str(d.fees), "equity_close": str(d.equity_close)} for d in days]}


@router.get("/{bot_id}/equity", summary="equity curve: the equity at each UTC day's close")
def equity(bot_id: str, caller: Trader, db: Db) -> list[dict[str, Any]]:
    _readable(db, caller, bot_id)
    days = db.scalars(select(DailyPnlRow).where(DailyPnlRow.bot_id == bot_id).order_by(DailyPnlRow.day))
    return [{"day": d.day.isoformat(), "equity": str(d.equity_close)} for d in days]


