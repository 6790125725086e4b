"""The audit log: one row per state-changing API call, written in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine.store.models import AuditRow


def record(session: Session, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None) -> None:
    session.add(AuditRow(actor=actor, action=action, subject=subject, detail=detail or {}))
