"""Login, refresh-token rotation, logout, API keys, and who am I.

A login starts a session: a refresh-token family. Its access tokens carry the family (claim
`fam`), and api.deps.authenticate refuses them once the family is revoked, so a logout (this
session), a logout-all (every session of the caller) or a reused rotated refresh token ends the
session's access tokens at once rather than when they expire. Logins are limited per client and
locked per account name after repeated failures (api.ratelimit), the same way for unknown names.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone


from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api import audit
from api.deps import Caller, Ctx, Db, PathId, family_revoked
from api.errors import ApiError, not_found
from api.ratelimit import limited
from api.security import access_token, digest, new_api_key, new_opaque, verify_password
from api.settings import Settings
from engine.store.models import ApiKeyRow, RefreshTokenRow, UserRow

router = APIRouter(prefix="/auth", tags=["auth"])


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class Me(BaseModel):
    id: int
    username: str
    role: str


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked: bool


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="shown once: only its hash is stored")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # SQLite drops the zone


def _issue(db: Session, settings: Settings, user: UserRow, family: str) -> Tokens:
    refresh = new_opaque()
    db.add(RefreshTokenRow(user_id=user.id, family=family, token_hash=digest(refresh),
                           expires_at=_now() + timedelta(seconds=settings.refresh_ttl_s)))
    return Tokens(access_token=access_token(settings.jwt_secret, user.id, user.role, settings.access_ttl_s, family),
                  refresh_token=refresh, expires_in=settings.access_ttl_s)


def _revoke_family(db: Session, family: str) -> None:
    db.execute(update(RefreshTokenRow).where(RefreshTokenRow.family == family, RefreshTokenRow.revoked_at.is_(None))
               .values(revoked_at=_now()))


@router.post("/token", response_model=Tokens, dependencies=[Depends(limited("auth"))],
             summary="log in: an access token and a refresh token")
def login(body: Login, ctx: Ctx, db: Db) -> Tokens:
    ctx.auth_limiter.check_login(body.username)  # 429 while the name is locked; counts this attempt
    user = db.scalar(select(UserRow).where(UserRow.username == body.username))
    if not verify_password(user.password_hash if user else None, body.password) or user is None or user.disabled:
        raise ApiError(401, "wrong username or password")
    ctx.auth_limiter.login_succeeded(body.username)
    tokens = _issue(db, ctx.settings, user, uuid.uuid4().hex)
    audit.record(db, user.username, "auth.login", f"user:{user.id}")
    db.commit()
    return tokens


def _in_reuse_grace(db: Session, row: RefreshTokenRow, grace_s: float) -> bool:
    """A token rotated less than `grace_s` ago, presented again (see `rotate`)."""
    db.refresh(row)
    used = row.used_at
    return used is not None and row.revoked_at is None and (_now() - _aware(used)).total_seconds() <= grace_s


@router.post("/refresh", response_model=Tokens, dependencies=[Depends(limited("auth"))],
             summary="rotate a refresh token; reusing a rotated one revokes its whole family")
def refresh(body: RefreshIn, ctx: Ctx, db: Db) -> Tokens:
    return rotate(body, ctx, db)


def rotate(body: RefreshIn, ctx: Ctx, db: Db, grace_s: float = 0.0) -> Tokens:
    """Rotate a refresh token; a rotated one presented again revokes its family. `grace_s`: a
    rotated token presented again within that many seconds of its use yields a sibling token
    instead. Only the dashboard's cookie session passes one (api.dashboard.session): a browser that
    changes page while a refresh is in flight loses the answer's Set-Cookie and sends the old cookie
    once more, and revoking the session for that logged traders out; that cookie is HttpOnly and
    SameSite=Strict, no script can read it, so a replay within seconds is that race, not a thief.
    The API's own /auth/refresh keeps no grace: its tokens live in client code."""
    row = db.scalar(select(RefreshTokenRow).where(RefreshTokenRow.token_hash == digest(body.refresh_token)))
    if row is None or row.revoked_at is not None or _aware(row.expires_at) <= _now() \
            or db.scalar(select(family_revoked(row.family))):
        raise ApiError(401, "refresh token is not valid")
    user = db.get(UserRow, row.user_id)
    # claim the token in one conditional UPDATE: of two concurrent uses only one can rotate it,
    # and the other is a reuse (before, both got a valid branch of the family)
    claimed = row.used_at is None and db.execute(
        update(RefreshTokenRow).where(RefreshTokenRow.id == row.id, RefreshTokenRow.used_at.is_(None),
                                      RefreshTokenRow.revoked_at.is_(None))
        .values(used_at=_now())).rowcount == 1
    if not claimed and grace_s > 0 and _in_reuse_grace(db, row, grace_s):
        claimed = True  # the same client's concurrent refresh (a page change mid-refresh): a sibling token
    if not claimed:  # a rotated token came back: it was stolen, or the client is confused
        _revoke_family(db, row.family)
        audit.record(db, user.username if user else "?", "auth.refresh_reuse", f"user:{row.user_id}",
                     {"family": row.family})
        db.commit()
        raise ApiError(401, "refresh token was already used; its session is revoked, log in again")
    if user is None or user.disabled:
        db.rollback()
        raise ApiError(401, "refresh token is not valid")
    tokens = _issue(db, ctx.settings, user, row.family)
    db.commit()
    return tokens


@router.post("/logout", status_code=204, dependencies=[Depends(limited("auth"))],
             summary="revoke a refresh token's family")
def logout(body: RefreshIn, db: Db) -> None:
    row = db.scalar(select(RefreshTokenRow).where(RefreshTokenRow.token_hash == digest(body.refresh_token)))
    if row is None:
        raise ApiError(401, "refresh token is not valid")
    _revoke_family(db, row.family)
    user = db.get(UserRow, row.user_id)
    audit.record(db, user.username if user else "?", "auth.logout", f"user:{row.user_id}", {"family": row.family})
    db.commit()


@router.post("/logout-all", status_code=204,
             summary="log out everywhere: revoke every session (refresh family) of the caller")
def logout_all(caller: Caller, db: Db) -> None:
    """Every refresh token of the caller stops working, and so does every access token issued
    with them (this request's own too). API keys are separate credentials: revoke them one by one."""
    revoked = db.execute(update(RefreshTokenRow).where(RefreshTokenRow.user_id == caller.user_id,
                                                       RefreshTokenRow.revoked_at.is_(None))
                         .values(revoked_at=_now())).rowcount
    audit.record(db, caller.username, "auth.logout_all", f"user:{caller.user_id}", {"tokens": revoked})
    db.commit()


@router.get("/me", response_model=Me)
def me(caller: Caller) -> Me:
    return Me(id=caller.user_id, username=caller.username, role=caller.role)


def _key_out(row: ApiKeyRow) -> dict[str, object]:
    return {"id": row.id, "name": row.name, "prefix": row.prefix, "created_at": row.created_at,
            "revoked": row.revoked_at is not None}


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201,
             summary="create an API key for the caller (the key is shown once)")
def create_key(body: ApiKeyIn, caller: Caller, db: Db) -> dict[str, object]:
    key = new_api_key()
    row = ApiKeyRow(user_id=caller.user_id, name=body.name, prefix=key[:10], key_hash=digest(key))
    db.add(row)
    db.flush()
    audit.record(db, caller.username, "api_key.create", f"api_key:{row.id}", {"name": body.name})
    db.commit()
    return {**_key_out(row), "key": key}


@router.get("/api-keys", response_model=list[ApiKeyOut])
def list_keys(caller: Caller, db: Db) -> list[dict[str, object]]:
    rows = db.scalars(select(ApiKeyRow).where(ApiKeyRow.user_id == caller.user_id).order_by(ApiKeyRow.id))
    return [_key_out(r) for r in rows]


@router.delete("/api-keys/{key_id}", status_code=204)
def revoke_key(key_id: PathId, caller: Caller, db: Db) -> None:
    row = db.get(ApiKeyRow, key_id)
    if row is None or row.user_id != caller.user_id:
        raise not_found(f"API key {key_id}")
    if row.revoked_at is None:
        row.revoked_at = _now()
    audit.record(db, caller.username, "api_key.revoke", f"api_key:{row.id}")
    db.commit()
