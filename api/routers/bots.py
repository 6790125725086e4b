"""Bot configs (validated by the runtime's own parser, versioned), control, publication, and
per-bot store data.

A config is the runtime's BotConfig as JSON; a refused one is 422 naming the dotted field
("params.fast", "cash", "risk.default_bot.max_order_qty"). Risk limits arrive as data (`risk:
{account: {...}, default_bot: {...}}`, engine.risk's schema): the API never reads a file a caller
names. Every PUT stores a new version; GET returns the latest, ?version=N an older one. Start,
stop and kill go to the injected BotControl.

Ids. A bot's `id` is a name in its owner's namespace: two traders may both have a "spy-sma", and
creating one never tells you whether someone else has that name. The store and the runtime know
the bot by its `runtime_id` (bots.id, orders, fills, signals, client order ids): the name itself
when no other bot has it, else `<name[:50]>-<8 hex of sha256(owner_id:name)>`. Owners address
their bots by name; admins, who see every owner's, by runtime id. Signals carry the runtime id.

Times. Every market time in these responses is ISO 8601 UTC with nine fractional digits
("2014-05-05T00:00:01.123456789Z": nothing of the engine's nanoseconds is lost), and the integer
nanoseconds stay beside it under the same name plus `_ns` (`ts` and `ts_ns`, `ts_init` and
`ts_init_ns`, `last_tick_ts` and `last_tick_ts_ns`). Money and quantities are decimal strings.

Following. GET /equity?every=bar is the equity, cash, P&L and position at every bar close, paged
by time (?after=<ts_ns>&limit=); without `every` it is the daily closes, as before. /status says
why a stopped bot stopped (stop_reason, stop_message) and what it still holds, from the store, so
it survives a restart of the API. Start answers 409 for a bot whose replay feed is exhausted and
for one a kill halted (POST /resume lifts the halt); kill flattens a stopped bot too. POST /reset
archives a stopped paper bot's books (GET /archives lists them; ?archive=N reads one through
/orders, /fills, /positions, /pnl and /equity) and lets it start clean.

Publication. Subscribers can only follow a bot its owner has published (POST /bots/{id}/publish;
/unpublish withdraws it, and its subscribers stop receiving its signals). GET /bots/published
lists the published bots, by runtime id, for anyone logged in.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import audit
from api.deps import (MAX_ID, Caller, Ctx, Db, Principal, QueryId, Trader, addressed_bot, latest_config, latest_named,
                      owned_bot)
from api.errors import ApiError, not_found
from engine.errors import ConfigError, TickbridgeError
from engine.store.journal import settle_if_left
from live import books
from live.config import BotConfig, parse_bot_config
from engine.store.models import (AccountChargeRow, BotArchiveRow, BotConfigRow, BotLeaseRow, BotRow, BrokerAccountRow,
                                 DailyPnlRow, EquityPointRow, FillRow, OrderRow, PositionRow, SignalRow, UserRow)

router = APIRouter(prefix="/bots", tags=["bots"])

CONFIG_BODY = Body(description="a bot config: id (a name of yours), strategy, params, symbol, venue, account, bar, "
                               "cash, price_increment, size_increment, commission, risk (limits as data: "
                               "{account: {...}, default_bot: {...}}), on_stop",
                   examples=[{"id": "spy-sma", "strategy": "sma_cross", "params": {"fast": 10, "slow": 30},
                              "symbol": "SPY", "venue": "paper", "risk": {"default_bot": {"max_order_qty": 100}}}])
ConfigBody = Annotated[dict[str, Any], CONFIG_BODY]
Limit = Annotated[int, Query(ge=1, le=1000)]
Archive = Annotated[int | None, Query(ge=1, le=MAX_ID, description="read the books a reset archived (GET /archives)")]
NS_COLUMNS = frozenset({"ts", "ts_init", "ts_last", "updated_ts", "last_tick_ts"})
MAX_NS = 2**63 - 1
RESERVED = {"published"}   # GET /bots/published is the list of published bots, not a bot of that name
SUFFIXED_TRIES = 8
UPDATE_TRIES = 5      # lost version races a PUT retries before answering 409


class BotOut(BaseModel):
    id: str = Field(description="the bot's name, unique among its owner's bots")
    runtime_id: str = Field(description="the bot's global id: in signals, orders, fills; admins and subscribers use it")
    version: int
    owner: str
    published: bool
    config: dict[str, Any]
    created_at: datetime
    created_by: str


class PublishedOut(BaseModel):
    runtime_id: str
    owner: str
    strategy: str
    symbol: str
    published_at: datetime


class KillIn(BaseModel):
    reason: str = Field("manual", min_length=1, max_length=128)


class Versions(BaseModel):
    id: str
    versions: list[int]


def _out(db: Session, row: BotConfigRow) -> BotOut:
    owner = db.get(UserRow, row.owner_id)
    bot = db.get(BotRow, row.runtime_id)
    return BotOut(id=row.bot_id, runtime_id=row.runtime_id, version=row.version,
                  owner=owner.username if owner else "?", published=bot is not None and bot.published_at is not None,
                  config=row.config, created_at=row.created_at, created_by=row.created_by)


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


def _runnable(row: BotConfigRow) -> BotConfig:
    """The config the runtime runs: the stored one under the bot's runtime id. A version stored
    before risk limits became data may name a risk file; the API reads no file on a config's
    say-so, so that version cannot start (the path is not repeated back)."""
    if isinstance(row.config.get("risk"), str):
        raise ConfigError("risk", "this version of the bot's config names a risk file, which the API does not "
                                  "read: store the limits as data (PUT the config with risk: {default_bot: {...}})")
    return parse_bot_config({**row.config, "id": row.runtime_id})


def _claimable(db: Session, runtime_id: str) -> bool:
    """No bot config uses the id, and no bot the runtime ran on its own (without an API owner)
    has history under it: a bot with orders, signals or a checkpoint is never handed over."""
    if db.scalar(select(BotConfigRow.id).where(BotConfigRow.runtime_id == runtime_id).limit(1)) is not None:
        return False
    bot = db.get(BotRow, runtime_id)
    if bot is None:
        return True
    return bot.checkpoint < 0 and all(
        db.scalar(select(table.bot_id).where(table.bot_id == runtime_id).limit(1)) is None
        for table in (OrderRow, SignalRow))


def _allocate_runtime_id(db: Session, owner_id: int, name: str) -> str:
    """The name when it is free as a global id, else `<name[:50]>-<8 hex>` from the owner and the
    name (stable: the same owner and name give the same id), salted further only on a collision."""
    if _claimable(db, name):
        return name
    for n in range(SUFFIXED_TRIES):
        salt = f"{owner_id}:{name}" + (f":{n}" if n else "")
        candidate = f"{name[:50]}-{hashlib.sha256(salt.encode()).hexdigest()[:8]}"
        if _claimable(db, candidate):
            return candidate
    raise ApiError(409, "no free runtime id for this name: choose another name", field="id")


@router.post("", response_model=BotOut, status_code=201, summary="create a bot (version 1)")
def create_bot(raw: ConfigBody, caller: Trader, db: Db) -> BotOut:
    config = _validated(db, caller, raw, caller.user_id)
    if config.id in RESERVED:
        raise ConfigError("id", f"{config.id!r} is reserved: choose another name")
    if latest_named(db, caller.user_id, config.id) is not None:  # the caller's own namespace only
        raise ApiError(409, f"you already have a bot named {config.id!r}", field="id")
    try:  # every write, the flush included: a concurrent create of the name fails in either one
        runtime_id = _allocate_runtime_id(db, caller.user_id, config.id)
        runtime = _as_json(config) | {"id": runtime_id}
        bot = db.get(BotRow, runtime_id)
        if bot is None:
            db.add(BotRow(id=runtime_id, name=config.id, strategy=config.strategy, account_id=config.account,
                          config=runtime, status="STOPPED", next_order_seq=0, checkpoint=-1))
            db.flush()  # before the config row that refers to it
        else:  # a row without history (a signal sink's placeholder): adopt it
            bot.name, bot.strategy, bot.account_id, bot.config = config.id, config.strategy, config.account, runtime
        row = BotConfigRow(bot_id=config.id, runtime_id=runtime_id, version=1, owner_id=caller.user_id,
                           config=_as_json(config), created_by=caller.username)
        db.add(row)
        audit.record(db, caller.username, "bot.create", f"bot:{runtime_id}", {"version": 1, "name": config.id})
        db.commit()
    except IntegrityError:  # another request took the name or the runtime id between our check and now
        db.rollback()
        raise ApiError(409, f"bot {config.id!r} was created concurrently: retry", field="id") from None
    return _out(db, row)


def _latest_rows(db: Session, owner_id: int | None) -> list[BotConfigRow]:
    latest = (select(BotConfigRow.runtime_id, func.max(BotConfigRow.version).label("v"))
              .group_by(BotConfigRow.runtime_id).subquery())
    query = (select(BotConfigRow).join(latest, (latest.c.runtime_id == BotConfigRow.runtime_id)
                                       & (latest.c.v == BotConfigRow.version))
             .where(BotConfigRow.deleted_at.is_(None)))
    if owner_id is not None:
        query = query.where(BotConfigRow.owner_id == owner_id)
    return list(db.scalars(query.order_by(BotConfigRow.bot_id, BotConfigRow.runtime_id)))


@router.get("", response_model=list[BotOut], summary="the caller's bots (admin: all), latest versions")
def list_bots(caller: Trader, db: Db) -> list[BotOut]:
    return [_out(db, r) for r in _latest_rows(db, None if caller.is_admin else caller.user_id)]


@router.get("/published", response_model=list[PublishedOut],
            summary="bots their owners have published, by runtime id: what a subscriber can follow")
def published(caller: Caller, db: Db) -> list[PublishedOut]:
    bots = {b.id: b for b in db.scalars(select(BotRow).where(BotRow.published_at.is_not(None)))}
    out = []
    for row in _latest_rows(db, None):
        bot = bots.get(row.runtime_id)
        if bot is not None and bot.published_at is not None:
            owner = db.get(UserRow, row.owner_id)
            out.append(PublishedOut(runtime_id=row.runtime_id, owner=owner.username if owner else "?",
                                    strategy=str(row.config.get("strategy", "")),
                                    symbol=str(row.config.get("symbol", "")), published_at=bot.published_at))
    return sorted(out, key=lambda p: p.runtime_id)


@router.get("/{bot_id}", response_model=BotOut, summary="a bot's latest config, or ?version=N")
def get_bot(bot_id: str, caller: Trader, db: Db,
            version: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> BotOut:
    row = owned_bot(db, caller, bot_id)
    if version is not None:
        old = db.scalar(select(BotConfigRow).where(BotConfigRow.runtime_id == row.runtime_id,
                                                   BotConfigRow.version == version))
        if old is None:
            raise not_found(f"version {version} of bot {bot_id!r}")
        row = old
    return _out(db, row)


@router.get("/{bot_id}/versions", response_model=Versions)
def versions(bot_id: str, caller: Trader, db: Db) -> Versions:
    row = owned_bot(db, caller, bot_id)
    found = db.scalars(select(BotConfigRow.version).where(BotConfigRow.runtime_id == row.runtime_id)
                       .order_by(BotConfigRow.version))
    return Versions(id=bot_id, versions=list(found))


@router.put("/{bot_id}", response_model=BotOut, summary="store a new version of a bot's config")
def update_bot(bot_id: str, raw: ConfigBody, caller: Trader, db: Db) -> BotOut:
    """Concurrent PUTs of one bot race for the same next version (unique per runtime id): the
    loser re-reads the latest version and stores after it, so every PUT gets a version of its
    own; after UPDATE_TRIES lost races the caller is told to retry (409), never a 500."""
    for _ in range(UPDATE_TRIES):
        current = owned_bot(db, caller, bot_id)
        config = _validated(db, caller, {"id": current.bot_id, **raw}, current.owner_id)
        if config.id != current.bot_id:
            raise ConfigError("id", f"a bot's id cannot change (it is {current.bot_id!r})")
        try:
            row = BotConfigRow(bot_id=current.bot_id, runtime_id=current.runtime_id, version=current.version + 1,
                               owner_id=current.owner_id, config=_as_json(config), created_by=caller.username)
            db.add(row)
            bot = db.get(BotRow, current.runtime_id)
            if bot is not None:
                bot.strategy, bot.account_id = config.strategy, config.account
                bot.config = _as_json(config) | {"id": current.runtime_id}
            audit.record(db, caller.username, "bot.update", f"bot:{current.runtime_id}", {"version": row.version})
            db.commit()
        except IntegrityError:  # another PUT stored this version first: read the new latest, try again
            db.rollback()
            continue
        return _out(db, row)
    raise ApiError(409, f"bot {bot_id!r} is being updated concurrently: retry", field="id")


def _held_by_runtime(ctx: Any, runtime_id: str) -> bool:
    """A halted bot whose runner still consumes its feed is not in running(), but the runtime
    holds it (and its lease): deleting it would leave it unreachable through the API."""
    try:
        return bool(ctx.bot_control.status(runtime_id).get("active"))
    except TickbridgeError:  # never run here: nothing holds it
        return False


@router.delete("/{bot_id}", status_code=204, summary="retire a stopped bot (its history stays; it is unpublished)")
def delete_bot(bot_id: str, caller: Trader, ctx: Ctx, db: Db) -> None:
    current = owned_bot(db, caller, bot_id)
    if current.runtime_id in ctx.bot_control.running() or _held_by_runtime(ctx, current.runtime_id):
        raise ApiError(409, f"bot {bot_id!r} is running: stop it first")
    now = datetime.now(timezone.utc)
    for row in db.scalars(select(BotConfigRow).where(BotConfigRow.runtime_id == current.runtime_id)):
        row.deleted_at = now
    bot = db.get(BotRow, current.runtime_id)
    if bot is not None:
        bot.published_at = None
    audit.record(db, caller.username, "bot.delete", f"bot:{current.runtime_id}")
    db.commit()


def _set_published(db: Session, caller: Principal, bot_id: str, publish: bool) -> BotOut:
    row = owned_bot(db, caller, bot_id)
    bot = db.get(BotRow, row.runtime_id)
    if bot is None:  # every bot created through the API has its row; one without cannot be followed
        raise not_found(f"bot {bot_id!r}")
    if publish and bot.published_at is None:
        bot.published_at = datetime.now(timezone.utc)
    elif not publish:
        bot.published_at = None
    audit.record(db, caller.username, "bot.publish" if publish else "bot.unpublish", f"bot:{row.runtime_id}")
    db.commit()
    return _out(db, row)


@router.post("/{bot_id}/publish", response_model=BotOut,
             summary="publish the bot's signals: subscribers may follow it (by its runtime id)")
def publish(bot_id: str, caller: Trader, db: Db) -> BotOut:
    return _set_published(db, caller, bot_id, True)


@router.post("/{bot_id}/unpublish", response_model=BotOut,
             summary="withdraw the bot: its subscribers stop receiving its signals")
def unpublish(bot_id: str, caller: Trader, db: Db) -> BotOut:
    return _set_published(db, caller, bot_id, False)


def _control(db: Session, caller: Principal, action: str, row: BotConfigRow, call: Any,
             detail: dict[str, Any]) -> dict[str, Any]:
    try:
        call()
    except ConfigError:
        raise
    except TickbridgeError as exc:
        raise ApiError(409, f"{action} {row.bot_id!r}: {exc}") from None
    audit.record(db, caller.username, f"bot.{action}", f"bot:{row.runtime_id}", detail)
    db.commit()
    return {"bot_id": row.bot_id, "runtime_id": row.runtime_id, "action": action}


@router.post("/{bot_id}/start", summary="start (or resume) the bot's latest config")
def start(bot_id: str, caller: Trader, ctx: Ctx, db: Db) -> dict[str, Any]:
    row = owned_bot(db, caller, bot_id)
    config = _runnable(row)
    return _control(db, caller, "start", row, lambda: ctx.bot_control.start(config), {"version": row.version})


@router.post("/{bot_id}/stop", summary="stop cleanly (open orders cancelled or kept per on_stop)")
def stop(bot_id: str, caller: Trader, ctx: Ctx, db: Db) -> dict[str, Any]:
    row = owned_bot(db, caller, bot_id)
    return _control(db, caller, "stop", row, lambda: ctx.bot_control.stop(row.runtime_id), {})


@router.post("/{bot_id}/kill", summary="kill switch: cancel all, flatten, halt")
def kill(bot_id: str, caller: Trader, ctx: Ctx, db: Db, body: KillIn | None = None) -> dict[str, Any]:
    row = owned_bot(db, caller, bot_id)
    reason = (body or KillIn()).reason
    return _control(db, caller, "kill", row, lambda: ctx.bot_control.kill(row.runtime_id, reason), {"reason": reason})


@router.post("/{bot_id}/resume", summary="lift a kill's halt: a halted bot may be started again (or, still "
                                           "running, trades again)")
def resume(bot_id: str, caller: Trader, ctx: Ctx, db: Db) -> dict[str, Any]:
    row = owned_bot(db, caller, bot_id)
    return _control(db, caller, "resume", row, lambda: ctx.bot_control.resume(row.runtime_id), {})


@router.post("/{bot_id}/reset", summary="archive a stopped paper bot's books (orders, fills, position, P&L, "
                                          "equity points, signals) and let it start clean")
def reset(bot_id: str, caller: Trader, ctx: Ctx, db: Db) -> dict[str, Any]:
    row = owned_bot(db, caller, bot_id)
    report: dict[str, Any] = {}
    detail: dict[str, Any] = {}

    def call() -> None:
        report.update(ctx.bot_control.reset(row.runtime_id, caller.username))
        detail["archive_id"] = report.get("archive_id")

    out = _control(db, caller, "reset", row, call, detail)
    db.expire_all()  # the runtime wrote the archive on its own connection
    return out | {"archive": _archive_number(db, row.runtime_id, report.get("archive_id")), **report,
                  "bot_id": row.bot_id, "runtime_id": row.runtime_id}


def _archive_number(db: Session, runtime_id: str, archive_id: str | None) -> int | None:
    ids = list(db.scalars(select(BotArchiveRow.archive_bot_id).where(BotArchiveRow.bot_id == runtime_id)
                          .order_by(BotArchiveRow.id)))
    return ids.index(archive_id) + 1 if archive_id in ids else None


def _json_ready(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def _with_iso_times(values: dict[str, Any]) -> dict[str, Any]:
    """Each nanosecond time as ISO 8601 under its name, the integer beside it as <name>_ns."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in NS_COLUMNS and (value is None or isinstance(value, int)):
            out[key], out[f"{key}_ns"] = books.iso_ns(value), value
        else:
            out[key] = value
    return out


NOT_RUNNING = ("not running in this runtime, nor in any other: the runtime that ran it ended without stopping "
               "it (killed or crashed); start it again to resume")


def _lease_holder(db: Session, runtime_id: str) -> str | None:
    """The runtime that holds the bot's lease now (live.lease), None when none does. After a
    SIGKILL the store still says RUNNING (nothing wrote the stop); only a runtime that renews
    the bot's lease actually runs it, so a bot without a live lease is stopped (V.md #10)."""
    lease = db.get(BotLeaseRow, runtime_id, populate_existing=True)
    if lease is None:
        return None
    expires = lease.expires_at if lease.expires_at.tzinfo else lease.expires_at.replace(tzinfo=timezone.utc)
    return lease.owner if expires > datetime.now(timezone.utc) else None


@router.get("/{bot_id}/status", summary="the runtime's view of the bot: state, why it stopped, what it holds")
def status(bot_id: str, caller: Trader, ctx: Ctx, db: Db) -> dict[str, Any]:
    row = owned_bot(db, caller, bot_id)
    stored = books.stored_status(db.connection(), row.runtime_id) or {}
    try:
        current = dict(ctx.bot_control.status(row.runtime_id))
    except TickbridgeError:  # a bot this runtime never started: what the store says
        current = {"bot_id": row.runtime_id, "state": stored.get("state", "STOPPED")}
    if current.get("state") == "RUNNING" and not current.get("active") and _lease_holder(db, row.runtime_id) is None:
        # the store's word from a runtime that died running it: nothing runs it here or elsewhere
        current.update(state="STOPPED", stop_reason="CRASHED", stop_message=NOT_RUNNING, active=False)
    for key in ("stop_reason", "stop_message", "stopped_at", "holdings", "halted", "resets"):
        if key in stored:
            current.setdefault(key, stored[key])
    for key in ("error", "stop_message"):
        if isinstance(current.get(key), str):
            current[key] = books.scrub(current[key])
    current.setdefault("halted", current.get("state") == "HALTED")
    current.setdefault("last_tick_ts", None)
    current["risk"] = _risk_out(current.get("risk"))
    return _json_ready(_with_iso_times(current))


def _risk_out(risk: Any) -> dict[str, Any] | None:
    """The runner's risk state (live.runner.risk_state) with its times as the API writes times
    (ISO beside _ns); None for a bot this runtime has not run since it started (nothing measured)."""
    if not isinstance(risk, dict):
        return None
    out = dict(risk)
    since = out.pop("since", None)
    out["since"], out["since_ns"] = books.iso_ns(since), since
    if isinstance(out.get("last_denial"), dict):
        out["last_denial"] = _with_iso_times(out["last_denial"])
    return out


@router.get("/{bot_id}/archives", summary="the books each reset of the bot archived, oldest first")
def archives(bot_id: str, caller: Trader, db: Db) -> list[dict[str, Any]]:
    runtime_id = _readable(db, caller, bot_id)
    return books.archives(db.connection(), runtime_id)


# --- what the bot did, read from the store ---

def _row(obj: Any) -> dict[str, Any]:
    out = {}
    for column in obj.__table__.columns:
        value = getattr(obj, column.key)
        out[column.key] = str(value) if isinstance(value, Decimal) else value
    return _with_iso_times(out)


def _readable(db: Session, caller: Principal, bot_id: str, archive: int | None = None) -> str:
    """The runtime id whose store data the caller may read: an owner's bot by name (deleted ones
    too: their history stays), for an admin any bot by runtime id, API-made or not. `archive`:
    the id the bot's N-th reset filed its books under instead."""
    if caller.is_admin:
        if latest_config(db, bot_id) is None and db.get(BotRow, bot_id) is None:
            raise not_found(f"bot {bot_id!r}")
        runtime_id = bot_id
    else:
        row = addressed_bot(db, caller, bot_id)
        if row is None:
            raise not_found(f"bot {bot_id!r}")
        runtime_id = row.runtime_id
    if archive is None:
        settle_if_left(db, runtime_id)  # a record a crash left is part of the books
        return runtime_id
    ids = list(db.scalars(select(BotArchiveRow.archive_bot_id).where(BotArchiveRow.bot_id == runtime_id)
                          .order_by(BotArchiveRow.id)))
    if archive > len(ids):
        raise not_found(f"archive {archive} of bot {bot_id!r}")
    return ids[archive - 1]


@router.get("/{bot_id}/orders", summary="orders, newest first")
def orders(bot_id: str, caller: Trader, db: Db, limit: Limit = 100,
           state: Annotated[str | None, Query(max_length=20)] = None,
           offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0, archive: Archive = None) -> list[dict[str, Any]]:
    runtime_id = _readable(db, caller, bot_id, archive)
    query = select(OrderRow).where(OrderRow.bot_id == runtime_id)
    if state:
        query = query.where(OrderRow.state == state)
    rows = db.scalars(query.order_by(OrderRow.ts_init.desc(), OrderRow.client_order_id.desc())
                      .offset(offset).limit(limit))
    return [_row(r) for r in rows]


@router.get("/{bot_id}/fills", summary="fills (trades), paged by id: ?after_id=")
def fills(bot_id: str, caller: Trader, db: Db, limit: Limit = 100,
          after_id: QueryId = 0, archive: Archive = None) -> list[dict[str, Any]]:
    runtime_id = _readable(db, caller, bot_id, archive)
    rows = db.scalars(select(FillRow).where(FillRow.bot_id == runtime_id, FillRow.id > after_id)
                      .order_by(FillRow.id).limit(limit))
    return [_row(r) for r in rows]


@router.get("/{bot_id}/positions")
def positions(bot_id: str, caller: Trader, db: Db, archive: Archive = None) -> list[dict[str, Any]]:
    runtime_id = _readable(db, caller, bot_id, archive)
    return [_row(r) for r in db.scalars(select(PositionRow).where(PositionRow.bot_id == runtime_id)
                                        .order_by(PositionRow.symbol))]


@router.get("/{bot_id}/pnl", summary="realized P&L and fees (positions) and P&L per UTC day")
def pnl(bot_id: str, caller: Trader, db: Db, archive: Archive = None) -> dict[str, Any]:
    runtime_id = _readable(db, caller, bot_id, archive)
    positions_ = list(db.scalars(select(PositionRow).where(PositionRow.bot_id == runtime_id)))
    realized = sum((p.realized_pnl for p in positions_), Decimal(0))
    fees = sum((p.fees for p in positions_), Decimal(0))
    days = db.scalars(select(DailyPnlRow).where(DailyPnlRow.bot_id == runtime_id).order_by(DailyPnlRow.day))
    # account-level charges booked into the bot (funding, crypto fees posted apart from fills):
    # already in `realized`; shown on their own so the P&L says what the venue charged
    # (summed here, exactly: SQLite keeps the amounts as text)
    charges = sum(db.scalars(select(AccountChargeRow.value).where(AccountChargeRow.bot_id == runtime_id,
                                                                  AccountChargeRow.booked.is_(True))), Decimal(0))
    return {"bot_id": runtime_id, "realized": str(realized), "fees": str(fees), "charges": str(charges),
            "days": [{"day": d.day.isoformat(), "realized": str(d.realized), "unrealized": str(d.unrealized),
                      "fees": str(d.fees), "equity_close": str(d.equity_close)} for d in days]}


@router.get("/{bot_id}/equity", summary="equity curve: at each UTC day's close, or ?every=bar at every bar close "
                                          "(paged: ?after=<ts_ns of the last point you have>&limit=)")
def equity(bot_id: str, caller: Trader, db: Db, every: Literal["day", "bar"] = "day", limit: Limit = 1000,
           after: Annotated[int, Query(ge=-1, le=MAX_NS, description="bar points after this time (ns)")] = -1,
           archive: Archive = None) -> list[dict[str, Any]]:
    runtime_id = _readable(db, caller, bot_id, archive)
    if every == "bar":
        points = db.scalars(select(EquityPointRow).where(EquityPointRow.bot_id == runtime_id, EquityPointRow.ts > after)
                            .order_by(EquityPointRow.ts).limit(limit))
        return [{"ts": books.iso_ns(p.ts), "ts_ns": p.ts, "equity": str(p.equity), "cash": str(p.cash),
                 "realized": str(p.realized), "unrealized": str(p.unrealized), "position": str(p.position)}
                for p in points]
    days = db.scalars(select(DailyPnlRow).where(DailyPnlRow.bot_id == runtime_id).order_by(DailyPnlRow.day))
    return [{"day": d.day.isoformat(), "equity": str(d.equity_close)} for d in days]


