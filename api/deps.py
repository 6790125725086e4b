"""What every handler depends on: the app context, a DB session, the caller, and the access rules.

Authorization policy (one rule, applied everywhere):
  * 401 when the caller is not authenticated;
  * 403 when the caller's ROLE may never do this (a subscriber creating a bot, a trader creating
    users, a trader subscribing, a subscriber reading orders);
  * 404 when the role may, but the OBJECT is not the caller's (another trader's bot or account,
    another user's subscription, job or API key): its existence is not revealed, so a foreign
    object and a missing one answer alike.
Admins see and change everything. A subscriber sees signals of bots with an active subscription
only, and a free plan sees them `free_delay_s` after their (bar close) time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from concurrent.futures import ThreadPoolExecutor

from fastapi import Depends, Path, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ApiError, not_found
from api.metrics import Metrics
from api.ratelimit import RateLimiter
from api.security import Vault, decode_access, digest
from api.settings import Settings
from engine.runtime.control import BotControl
from engine.store.models import ApiKeyRow, BotConfigRow, SubscriptionRow, UserRow

ROLES = ("admin", "trader", "subscriber")
NS = 1_000_000_000


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    bot_control: BotControl
    vault: Vault
    auth_limiter: RateLimiter
    metrics: Metrics
    executor: ThreadPoolExecutor
    hub: Any = None                       # api.streaming.SignalHub, set at startup
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def context(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def session(ctx: Annotated[AppContext, Depends(context)]) -> Iterator[Session]:
    with ctx.sessions() as s:
        yield s


Ctx = Annotated[AppContext, Depends(context)]
Db = Annotated[Session, Depends(session)]

bearer = HTTPBearer(auto_error=False, description="an access token from POST /api/v1/auth/token")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (automation)")


def authenticate(db: Session, settings: Settings, token: str | None, api_key: str | None) -> Principal | None:
    """The principal behind an access token or an API key, or None."""
    if token:
        claims = decode_access(settings.jwt_secret, token)
        if claims is None:
            return None
        user = db.get(UserRow, int(claims["sub"])) if str(claims["sub"]).isdigit() else None
    elif api_key:
        row = db.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest(api_key), ApiKeyRow.revoked_at.is_(None)))
        user = db.get(UserRow, row.user_id) if row is not None else None
    else:
        return None
    if user is None or user.disabled:
        return None
    return Principal(user.id, user.username, user.role)


def principal(ctx: Ctx, db: Db,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
              api_key: Annotated[str | None, Depends(api_key_header)]) -> Principal:
    found = authenticate(db, ctx.settings, credentials.credentials if credentials else None, api_key)
    if found is None:
        raise ApiError(401, "not authenticated: send a bearer access token or an X-API-Key",
                       headers={"WWW-Authenticate": "Bearer"})
    return found


Caller = Annotated[Principal, Depends(principal)]


def require_role(*roles: str):  # type: ignore[no-untyped-def]
    def check(caller: Caller) -> Principal:
        if caller.role not in roles:
            raise ApiError(403, f"the {caller.role} role may not do this (needs {' or '.join(roles)})")
        return caller

    return check


Trader = Annotated[Principal, Depends(require_role("admin", "trader"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
Subscriber = Annotated[Principal, Depends(require_role("subscriber"))]


# --- ownership and visibility ---

def latest_config(db: Session, bot_id: str) -> BotConfigRow | None:
    return db.scalar(select(BotConfigRow).where(BotConfigRow.bot_id == bot_id)
                     .order_by(BotConfigRow.version.desc()).limit(1))


def owned_bot(db: Session, caller: Principal, bot_id: str) -> BotConfigRow:
    """The current config of a live (not deleted) bot the caller may manage, else 404."""
    row = latest_config(db, bot_id)
    if row is None or row.deleted_at is not None or not (caller.is_admin or row.owner_id == caller.user_id):
        raise not_found(f"bot {bot_id!r}")
    return row


def owned_bot_ids(db: Session, caller: Principal) -> list[str] | None:
    """Bots whose store data (orders, signals...) the caller may read as their manager; None = all."""
    if caller.is_admin:
        return None
    if caller.role != "trader":
        return []
    latest = (select(BotConfigRow.bot_id, func.max(BotConfigRow.version).label("v"))
              .group_by(BotConfigRow.bot_id).subquery())
    rows = db.execute(select(BotConfigRow.bot_id).join(latest, (latest.c.bot_id == BotConfigRow.bot_id)
                                                       & (latest.c.v == BotConfigRow.version))
                      .where(BotConfigRow.owner_id == caller.user_id)).scalars()
    return list(rows)


@dataclass(frozen=True, slots=True)
class SignalScope:
    """Which bots' signals a caller sees, and each one's delay in ns. `everything` for admins."""

    everything: bool
    delays: dict[str, int]

    def visible_now(self, bot_id: str, ts: int, now_ns: int) -> bool:
        if self.everything:
            return True
        delay = self.delays.get(bot_id)
        return delay is not None and ts + delay <= now_ns


def signal_scope(db: Session, caller: Principal, settings: Settings) -> SignalScope:
    if caller.is_admin:
        return SignalScope(True, {})
    delays: dict[str, int] = {}
    if caller.role == "trader":
        delays = {bot_id: 0 for bot_id in owned_bot_ids(db, caller) or []}
    free_ns = int(settings.free_delay_s * NS)
    for sub in db.scalars(select(SubscriptionRow).where(SubscriptionRow.user_id == caller.user_id,
                                                        SubscriptionRow.cancelled_at.is_(None))):
        delay = 0 if sub.plan == "pro" else free_ns
        delays[sub.bot_id] = min(delay, delays.get(sub.bot_id, delay))
    return SignalScope(False, delays)


def now_ns() -> int:
    return time.time_ns()


# integer ids as the store can hold them (SQLite and PostgreSQL BIGINT): a larger one is a 422
MAX_ID = 2**63 - 1
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int, Query(ge=0, le=MAX_ID)]
