"""An account's books across its bots (issue 14 item 2), and the account kill switch.

An account is the sum of its bots plus the rest. GET /accounts/{id}/pnl shows, for one broker
account of the caller's (an admin: anyone's):
- each bot whose latest config trades on it (by the account's name, in its owner's bots): its
  positions, realized P&L and fees (from its books in the store), its last bar-close equity and
  unrealized P&L, and its share of the account's risk (engine.account_risk: exposure, open
  orders, day P&L, whether its heartbeat went stale);
- per symbol: the bots' positions summed, the venue's position where the runtime recorded a
  snapshot after reconciliation, and external = venue - bots (what other programs or a person
  hold on the account). Without a venue snapshot `venue` and `external` are null: unknown;
- the account's risk state (ACTIVE, REDUCING, HALTED) and why.

POST /accounts/{id}/kill halts the account in the store: every bot on it, in every process, is
refused any order at its next check (ACCOUNT:TRADING_HALTED); the bots this runtime runs are also
killed (cancel all, flatten, halt) as by POST /bots/{id}/kill. POST /accounts/{id}/resume lifts
the account's halt (each killed bot is resumed on its own). Both: traders and admins, audited.
Money and quantities are decimal strings; times ISO 8601 UTC with the integer ns beside them.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api import audit
from api.deps import Ctx, Db, PathId, Principal, Trader
from api.errors import ApiError, not_found
from engine.account_risk import kill_account, owner_account_key, read_account, resume_account, venue_positions
from engine.errors import TickbridgeError
from engine.store.models import BotConfigRow, BrokerAccountRow, EquityPointRow, PositionRow
from live import books

router = APIRouter(tags=["accounts"])
ZERO = Decimal(0)


class AccountKillIn(BaseModel):
    reason: str = Field("manual", min_length=1, max_length=128)


def _owned(db: Session, caller: Principal, account_id: int) -> BrokerAccountRow:
    row = db.get(BrokerAccountRow, account_id)
    if row is None or not (caller.is_admin or row.owner_id == caller.user_id):
        raise not_found(f"account {account_id}")
    return row


def account_bots(db: Session, account: BrokerAccountRow) -> list[BotConfigRow]:
    """The latest config of each of the owner's bots that trades on this account (retired bots
    too: what they left at the venue is still theirs, not external)."""
    latest = (select(BotConfigRow.runtime_id, func.max(BotConfigRow.version).label("v"))
              .where(BotConfigRow.owner_id == account.owner_id).group_by(BotConfigRow.runtime_id).subquery())
    rows = db.scalars(select(BotConfigRow).join(latest, (latest.c.runtime_id == BotConfigRow.runtime_id)
                                                & (latest.c.v == BotConfigRow.version))
                      .order_by(BotConfigRow.bot_id, BotConfigRow.runtime_id))
    return [row for row in rows if row.config.get("account") == account.name]


def _ns(name: str, value: int | None) -> dict[str, Any]:
    return {name: books.iso_ns(value), f"{name}_ns": value}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _bot_books(db: Session, row: BotConfigRow, share: Any, stale: bool) -> dict[str, Any]:
    positions = list(db.scalars(select(PositionRow).where(PositionRow.bot_id == row.runtime_id)
                                .order_by(PositionRow.symbol)))
    point = db.scalar(select(EquityPointRow).where(EquityPointRow.bot_id == row.runtime_id)
                      .order_by(EquityPointRow.ts.desc()).limit(1))
    risk = None
    if share is not None:
        risk = {"exposure": _text(share.exposure), "open_orders": share.open_orders, "equity": _text(share.equity),
                "day_pnl": str(share.day_pnl), "stale": stale, "process": share.process,
                **_ns("heartbeat", share.heartbeat_ns)}
    return {
        "bot_id": row.bot_id, "runtime_id": row.runtime_id, "retired": row.deleted_at is not None,
        "positions": [{"symbol": p.symbol, "qty": str(p.qty), "avg_price": _text(p.avg_price),
                       "realized_pnl": str(p.realized_pnl), "fees": str(p.fees), **_ns("updated_ts", p.updated_ts)}
                      for p in positions if p.qty],
        "realized": str(sum((p.realized_pnl for p in positions), ZERO)),
        "fees": str(sum((p.fees for p in positions), ZERO)),
        "equity": None if point is None else str(point.equity),
        "unrealized": None if point is None else str(point.unrealized),
        **_ns("equity_ts", None if point is None else point.ts),
        "risk": risk,
    }


@router.get("/{account_id}/pnl", summary="the account's bots: positions and P&L per bot and summed, the venue's "
                                          "positions and external = venue - bots, and the account's risk state")
def account_pnl(account_id: PathId, caller: Trader, ctx: Ctx, db: Db) -> dict[str, Any]:
    account = _owned(db, caller, account_id)
    key = owner_account_key(account.owner_id, account.name)
    view = read_account(ctx.engine, key, now_ns=time.time_ns())
    shares = {s.bot_id: (s, False) for s in view.shares} | {s.bot_id: (s, True) for s in view.stale}
    bots = [_bot_books(db, row, *shares.get(row.runtime_id, (None, False))) for row in account_bots(db, account)]
    held: dict[str, Decimal] = {}
    for bot in bots:
        for position in bot["positions"]:
            held[position["symbol"]] = held.get(position["symbol"], ZERO) + Decimal(position["qty"])
    snapshot = venue_positions(ctx.engine, key)
    venue = None if snapshot is None else snapshot[1]
    symbols = sorted(held.keys() | (venue or {}).keys())
    summed = []
    for symbol in symbols:
        mine = held.get(symbol, ZERO)
        at_venue = None if venue is None else venue.get(symbol, ZERO)
        summed.append({"symbol": symbol, "bots": str(mine), "venue": _text(at_venue),
                       "external": None if at_venue is None else str(at_venue - mine)})
    unrealized = [Decimal(b["unrealized"]) for b in bots if b["unrealized"] is not None]
    state = view.state
    return {
        "account_id": account.id, "name": account.name, "venue": account.venue,
        "state": {"state": state.state.value, "reason": state.reason, **_ns("changed_ts", state.changed_ts or None)},
        "bots": bots,
        "positions": summed,
        **_ns("venue_ts", None if snapshot is None else snapshot[0]),
        "realized": str(sum((Decimal(b["realized"]) for b in bots), ZERO)),
        "fees": str(sum((Decimal(b["fees"]) for b in bots), ZERO)),
        "unrealized": str(sum(unrealized, ZERO)),
        "day_pnl": str(view.day_pnl),
        "stale_bots": [s.bot_id for s in view.stale],
    }


@router.post("/{account_id}/kill", summary="account kill switch: every bot on the account halts at its next "
                                            "check, in every process; the bots running here are killed too")
def kill(account_id: PathId, caller: Trader, ctx: Ctx, db: Db, body: AccountKillIn | None = None) -> dict[str, Any]:
    account = _owned(db, caller, account_id)
    reason = (body or AccountKillIn()).reason
    kill_account(ctx.engine, owner_account_key(account.owner_id, account.name), reason)
    running = set(ctx.bot_control.running())
    killed, failed = [], {}
    for row in account_bots(db, account):
        if row.runtime_id not in running:
            continue
        try:
            ctx.bot_control.kill(row.runtime_id, reason)
            killed.append(row.bot_id)
        except TickbridgeError as exc:  # the account is halted anyway: say which bot was not flattened
            failed[row.bot_id] = books.scrub(str(exc))
    audit.record(db, caller.username, "account.kill", f"account:{account.id}",
                 {"reason": reason, "killed": killed, "failed": failed})
    db.commit()
    return {"account_id": account.id, "action": "kill", "state": "HALTED", "killed": killed, "failed": failed}


@router.post("/{account_id}/resume", summary="lift the account's halt (killed bots are resumed one by one)")
def resume(account_id: PathId, caller: Trader, ctx: Ctx, db: Db) -> dict[str, Any]:
    account = _owned(db, caller, account_id)
    key = owner_account_key(account.owner_id, account.name)
    if read_account(ctx.engine, key).state.state.value == "ACTIVE":
        raise ApiError(409, f"account {account.id} is not halted")
    resume_account(ctx.engine, key, caller.username)
    audit.record(db, caller.username, "account.resume", f"account:{account.id}", {})
    db.commit()
    return {"account_id": account.id, "action": "resume", "state": "ACTIVE"}
