"""Subscriptions: a subscriber follows a bot's signals, on plan free (delayed) or pro (real time)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from api import audit
from api.deps import Caller, Ctx, Db, PathId, Subscriber, latest_config
from api.errors import ApiError, not_found
from engine.store.models import SubscriptionRow

router = APIRouter(prefix="/subscriptions", tags=["subscriptions"])


class SubscriptionIn(BaseModel):
    bot_id: str = Field(min_length=1, max_length=64)
    plan: Literal["free", "pro"] = "free"


class SubscriptionOut(BaseModel):
    id: int
    bot_id: str
    plan: str
    delay_s: float
    created_at: datetime
    active: bool


def _out(row: SubscriptionRow, free_delay_s: float) -> SubscriptionOut:
    return SubscriptionOut(id=row.id, bot_id=row.bot_id, plan=row.plan,
                           delay_s=free_delay_s if row.plan == "free" else 0.0, created_at=row.created_at,
                           active=row.cancelled_at is None)


@router.post("", response_model=SubscriptionOut, status_code=201, summary="subscribe to a bot's signals")
def subscribe(body: SubscriptionIn, caller: Subscriber, ctx: Ctx, db: Db) -> SubscriptionOut:
    config = latest_config(db, body.bot_id)
    if config is None or config.deleted_at is not None:
        raise ApiError(404, f"bot {body.bot_id!r} not found", field="bot_id")
    active = db.scalar(select(SubscriptionRow).where(SubscriptionRow.user_id == caller.user_id,
                                                     SubscriptionRow.bot_id == body.bot_id,
                                                     SubscriptionRow.cancelled_at.is_(None)))
    if active is not None:
        raise ApiError(409, f"already subscribed to {body.bot_id!r} (subscription {active.id})", field="bot_id")
    row = SubscriptionRow(user_id=caller.user_id, bot_id=body.bot_id, plan=body.plan)
    db.add(row)
    db.flush()
    audit.record(db, caller.username, "subscription.create", f"subscription:{row.id}",
                 {"bot_id": body.bot_id, "plan": body.plan})
    db.commit()
    return _out(row, ctx.settings.free_delay_s)


@router.get("", response_model=list[SubscriptionOut], summary="the caller's subscriptions")
def list_subscriptions(caller: Caller, ctx: Ctx, db: Db, include_cancelled: bool = False) -> list[SubscriptionOut]:
    query = select(SubscriptionRow).where(SubscriptionRow.user_id == caller.user_id)
    if not include_cancelled:
        query = query.where(SubscriptionRow.cancelled_at.is_(None))
    return [_out(r, ctx.settings.free_delay_s) for r in db.scalars(query.order_by(SubscriptionRow.id))]


@router.delete("/{subscription_id}", status_code=204, summary="cancel a subscription")
def cancel(subscription_id: PathId, caller: Caller, db: Db) -> None:
    row = db.get(SubscriptionRow, subscription_id)
    if row is None or (row.user_id != caller.user_id and not caller.is_admin) or row.cancelled_at is not None:
        raise not_found(f"subscription {subscription_id}")
    row.cancelled_at = datetime.now(timezone.utc)
    audit.record(db, caller.username, "subscription.cancel", f"subscription:{row.id}", {"bot_id": row.bot_id})
    db.commit()
