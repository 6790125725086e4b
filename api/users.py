"""Creating users: shared by POST /api/v1/users and `tickbridge users create`.

A password must be at least 8 characters, differ from the username, and not be one of the 30,000
most common passwords (zxcvbn's list, from leaked-password corpora; compared case-insensitively):
those are the first an attacker tries, and the per-account lockout allows a handful of tries.
"""

from __future__ import annotations

import re
from functools import cache

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
    problem = password_problem(username, password)
    if problem:
        raise ApiError(422, problem, field="password")
    if db.scalar(select(UserRow.id).where(UserRow.username == username)) is not None:
        raise ApiError(409, f"user {username!r} exists", field="username")
    user = UserRow(username=username, role=role, password_hash=hash_password(password), disabled=False)
    db.add(user)
    db.flush()
    return user


def password_problem(username: str, password: str) -> str | None:
    """Why a password is refused (never quoting it), or None."""
    if len(password) < MIN_PASSWORD:
        return f"at least {MIN_PASSWORD} characters"
    lowered = password.lower()
    if lowered == username.lower():
        return "must differ from the username"
    if lowered in common_passwords():
        return "is one of the most common passwords; choose another"
    return None


@cache
def common_passwords() -> frozenset[str]:
    """zxcvbn's ranked list of common passwords (lower case), loaded on first use (~1 MB)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])
