"""Broker accounts: credentials go in encrypted (Fernet, TICKBRIDGE_ACCOUNTS_KEY) and never come
out; a GET shows the name, venue, creation time and a masked hint.

POST and PUT check the credentials against the venue before storing them
(brokers.factory.validate_credentials: alpaca api_key + secret_key, optional paper; ccxt a known
exchange and what its requiredCredentials asks for; mt5 a numeric login, password, server; paper
none), so a typo is a 422 naming the field (`credentials.secret_key`) now, not a bot that cannot
log in later. No answer or error repeats a credential's value."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from api import audit
from api.deps import Ctx, Db, PathId, Trader
from api.errors import ApiError, not_found
from api.routers import account_books
from api.security import mask
from brokers.factory import validate_credentials
from engine.store.models import BotConfigRow, BrokerAccountRow

router = APIRouter(prefix="/accounts", tags=["accounts"])


CREDENTIALS = Field(default_factory=dict, max_length=16,
                    description="the venue's fields, stored encrypted: alpaca {api_key, secret_key, paper?}; ccxt "
                                "{exchange, api_key, secret, password? (okx, kucoin...), sandbox?}; mt5 {login, "
                                "password, server, bridge_host?, bridge_port?, path?}; paper {}",
                    examples=[{"exchange": "binance", "api_key": "your-key", "secret": "your-secret"}])
HINT_FIELDS = ("api_key", "login", "wallet_address")  # what identifies an account; never a secret


class AccountIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    venue: Literal["paper", "ccxt", "alpaca", "mt5"]
    credentials: dict[str, Any] = CREDENTIALS


class AccountUpdate(BaseModel):
    venue: Literal["paper", "ccxt", "alpaca", "mt5"]
    credentials: dict[str, Any] = CREDENTIALS


class AccountOut(BaseModel):
    id: int
    name: str
    venue: str
    owner_id: int
    hint: str
    created_at: datetime


def _hint(credentials: dict[str, str]) -> str:
    shown = next((credentials[name] for name in HINT_FIELDS if credentials.get(name)), "")
    return mask(shown) if shown else ""


def _owned(db: Any, caller: Any, account_id: int) -> BrokerAccountRow:
    row = db.get(BrokerAccountRow, account_id)
    if row is None or not (caller.is_admin or row.owner_id == caller.user_id):
        raise not_found(f"account {account_id}")
    return row


@router.post("", response_model=AccountOut, status_code=201, summary="add a broker account")
def create_account(body: AccountIn, caller: Trader, ctx: Ctx, db: Db) -> BrokerAccountRow:
    if body.name == "default":
        raise ApiError(422, "'default' is the built-in paper account", field="name")
    if db.scalar(select(BrokerAccountRow.id).where(BrokerAccountRow.owner_id == caller.user_id,
                                                   BrokerAccountRow.name == body.name)) is not None:
        raise ApiError(409, f"account {body.name!r} exists", field="name")
    credentials = validate_credentials(body.venue, body.credentials)
    row = BrokerAccountRow(owner_id=caller.user_id, name=body.name, venue=body.venue,
                           secret=ctx.vault.seal(json.dumps(credentials)), hint=_hint(credentials))
    db.add(row)
    db.flush()
    audit.record(db, caller.username, "account.create", f"account:{row.id}", {"name": body.name, "venue": body.venue})
    db.commit()
    return row


@router.get("", response_model=list[AccountOut], summary="the caller's accounts (admin: all)")
def list_accounts(caller: Trader, db: Db) -> list[BrokerAccountRow]:
    query = select(BrokerAccountRow).order_by(BrokerAccountRow.id)
    if not caller.is_admin:
        query = query.where(BrokerAccountRow.owner_id == caller.user_id)
    return list(db.scalars(query))


@router.get("/{account_id}", response_model=AccountOut)
def get_account(account_id: PathId, caller: Trader, db: Db) -> BrokerAccountRow:
    return _owned(db, caller, account_id)


@router.put("/{account_id}", response_model=AccountOut, summary="replace an account's venue and credentials")
def update_account(account_id: PathId, body: AccountUpdate, caller: Trader, ctx: Ctx, db: Db) -> BrokerAccountRow:
    row = _owned(db, caller, account_id)
    credentials = validate_credentials(body.venue, body.credentials)
    if body.venue != row.venue:
        for config in db.scalars(select(BotConfigRow).where(BotConfigRow.owner_id == row.owner_id,
                                                            BotConfigRow.deleted_at.is_(None))):
            if config.config.get("account") == row.name:
                raise ApiError(409, f"bot {config.bot_id!r} trades on this {row.venue} account", field="venue")
    row.venue, row.secret, row.hint = body.venue, ctx.vault.seal(json.dumps(credentials)), _hint(credentials)
    audit.record(db, caller.username, "account.update", f"account:{row.id}", {"name": row.name, "venue": body.venue})
    db.commit()
    return row


@router.delete("/{account_id}", status_code=204, summary="delete an account no bot uses")
def delete_account(account_id: PathId, caller: Trader, db: Db,
                   force: Annotated[bool, Query(description="delete even if a bot config names it")] = False) -> None:
    row = _owned(db, caller, account_id)
    if not force:
        for config in db.scalars(select(BotConfigRow).where(BotConfigRow.owner_id == row.owner_id,
                                                            BotConfigRow.deleted_at.is_(None))):
            if config.config.get("account") == row.name:
                raise ApiError(409, f"bot {config.bot_id!r} uses account {row.name!r}")
    db.delete(row)
    audit.record(db, caller.username, "account.delete", f"account:{account_id}", {"name": row.name})
    db.commit()


# an account's books across its bots, and its kill switch (issue 14): a module of their own, under this prefix
router.include_router(account_books.router)
