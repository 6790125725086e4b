"""Creating users: shared by POST /api/v1/users and `tickbridge users create`."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import ROLES
from api.errors import ApiError
from api.security import hash_password
from engine.store.models import UserRow

USERNAME = re.compile(r"[A-Za-z0-9_.@-]{3,64}")
MIN_PASSWORD = 8


def create_user(db: Session, username: str, role: str, password: str) -> UserRow:
    """A new user (flushed, not committed), or ApiError naming the refused field."""
    if not USERNAME.fullmatch(username):
        raise ApiError(422, "3-64 characters of letters, digits and _.@-", field="username")
    if role not in ROLES:
        raise ApiError(422, f"one of {', '.join(ROLES)}", field="role")
    if len(password) < MIN_PASSWORD:
        raise ApiError(422, f"at least {MIN_PASSWORD} characters", field="password")
    if db.scalar(select(UserRow.id).where(UserRow.username == username)) is not None:
        raise ApiError(409, f"user {username!r} exists", field="username")
    user = UserRow(username=username, role=role, password_hash=hash_password(password), disabled=False)
    db.add(user)
    db.flush()
    return user
