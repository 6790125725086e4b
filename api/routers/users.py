"""Users, managed by admins."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from api import audit
from api.deps import Admin, Db
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
    created_at: datetime


@router.post("", response_model=UserOut, status_code=201, summary="create a user (admin)")
def create(body: UserIn, caller: Admin, db: Db) -> UserRow:
    user = create_user(db, body.username, body.role, body.password)
    audit.record(db, caller.username, "user.create", f"user:{user.id}", {"username": user.username, "role": user.role})
    db.commit()
    return user


@router.get("", response_model=list[UserOut], summary="list users (admin)")
def list_users(caller: Admin, db: Db) -> list[UserRow]:
    return list(db.scalars(select(UserRow).order_by(UserRow.id)))
