"""Users, managed by admins, including their subscription plan: an entitlement (free: delayed
signals, pro: real time) that only an admin, or a billing hook holding an admin's key, sets."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from api import audit
from api.deps import Admin, Db, PathId
from api.errors import not_found
from api.users import create_user
from engine.store.models import UserRow

router = APIRouter(prefix="/users", tags=["users"])


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    role: Literal["admin", "trader", "subscriber"]
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    disabled: bool
    plan: str
    created_at: datetime


class PlanIn(BaseModel):
    plan: Literal["free", "pro"]


@router.post("", response_model=UserOut, status_code=201, summary="create a user (admin)")
def create(body: UserIn, caller: Admin, db: Db) -> UserRow:
    user = create_user(db, body.username, body.role, body.password)
    audit.record(db, caller.username, "user.create", f"user:{user.id}", {"username": user.username, "role": user.role})
    db.commit()
    return user


@router.get("", response_model=list[UserOut], summary="list users (admin)")
def list_users(caller: Admin, db: Db) -> list[UserRow]:
    return list(db.scalars(select(UserRow).order_by(UserRow.id)))


@router.put("/{user_id}/plan", response_model=UserOut, summary="set a user's subscription plan (admin, audited)")
def set_plan(user_id: PathId, body: PlanIn, caller: Admin, db: Db) -> UserRow:
    user = db.get(UserRow, user_id)
    if user is None:
        raise not_found(f"user {user_id}")
    before, user.plan = user.plan, body.plan
    audit.record(db, caller.username, "user.plan", f"user:{user.id}", {"from": before, "to": body.plan})
    db.commit()
    return user
