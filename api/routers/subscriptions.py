"""Subscriptions: a subscriber follows a published bot's signals.

Plans are entitlements, not choices: a subscriber's plan is `users.plan` ("free": delayed by
TICKBRIDGE_FREE_DELAY_S after each signal is published; "pro": real time), set only by an admin
(PUT /users/{id}/plan, audited) or a billing hook acting as one. It is per user, not per
subscription: one plan covers every bot the user follows, and a change applies to every
subscription at once (streams pick it up when they reconnect). A subscription request carrying a
`plan` is refused with 403. The `plan` shown on a subscription is the user's plan now; the row's
own `plan` column only records the plan the user had when subscribing.

Subscribers name bots by runtime id (GET /bots/published lists them). A bot that is not published
(or was deleted) answers 404, as one that does not exist; one unpublished later stops reaching its
subscribers (api.deps.signal_scope and the stream poller check publication).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit
from api.deps import NS, Caller, Ctx, Db, PathId, Subscriber, latest_config, plan_delay_ns
from api.errors import ApiError, not_found
from engine.store.models import BotRow, SubscriptionRow, UserRow

router = APIRouter(prefix="/subscriptions", tags=["subscriptions"])


class SubscriptionIn(BaseModel):
    bot_id: str = Field(min_length=1, max_length=64, description="the runtime id of a published bot")
    plan: Any = Field(None, description="not accepted (403): plans are set by an admin, PUT /users/{id}/plan")


class SubscriptionOut(BaseModel):
    id: int
    bot_id: str
    plan: str
    delay_s: float
    created_at: datetime
    active: bool


def _plan(db: Session, user_id: int) -> str:
    return db.scalar(select(UserRow.plan).where(UserRow.id == user_id)) or "free"


def _out(row: SubscriptionRow, plan: str, delay_ns: int) -> SubscriptionOut:
    return SubscriptionOut(id=row.id, bot_id=row.bot_id, plan=plan, delay_s=delay_ns / NS,
                           created_at=row.created_at, active=row.cancelled_at is None)


@router.post("", response_model=SubscriptionOut, status_code=201, summary="subscribe to a published bot's signals")
def subscribe(body: SubscriptionIn, caller: Subscriber, ctx: Ctx, db: Db) -> SubscriptionOut:
    if "plan" in body.model_fields_set:
        raise ApiError(403, "plans are set by an admin", field="plan")
    config = latest_config(db, body.bot_id)
    bot = db.get(BotRow, body.bot_id) if config is not None else None
    if config is None or config.deleted_at is not None or bot is None or bot.published_at is None:
        raise ApiError(404, f"bot {body.bot_id!r} not found", field="bot_id")  # unpublished: as if absent
    active = db.scalar(select(SubscriptionRow).where(SubscriptionRow.user_id == caller.user_id,
                                                     SubscriptionRow.bot_id == body.bot_id,
                                                     SubscriptionRow.cancelled_at.is_(None)))
    if active is not None:
        raise ApiError(409, f"already subscribed to {body.bot_id!r} (subscription {active.id})", field="bot_id")
    plan = _plan(db, caller.user_id)
    row = SubscriptionRow(user_id=caller.user_id, bot_id=body.bot_id, plan=plan)
    db.add(row)
    db.flush()
    audit.record(db, caller.username, "subscription.create", f"subscription:{row.id}",
                 {"bot_id": body.bot_id, "plan": plan})
    db.commit()
    return _out(row, plan, plan_delay_ns(plan, ctx.settings))


@router.get("", response_model=list[SubscriptionOut], summary="the caller's subscriptions")
def list_subscriptions(caller: Caller, ctx: Ctx, db: Db, include_cancelled: bool = False) -> list[SubscriptionOut]:
    query = select(SubscriptionRow).where(SubscriptionRow.user_id == caller.user_id)
    if not include_cancelled:
        query = query.where(SubscriptionRow.cancelled_at.is_(None))
    plan = _plan(db, caller.user_id)
    delay = plan_delay_ns(plan, ctx.settings)
    return [_out(r, plan, delay) for r in db.scalars(query.order_by(SubscriptionRow.id))]


@router.delete("/{subscription_id}", status_code=204, summary="cancel a subscription")
def cancel(subscription_id: PathId, caller: Caller, db: Db) -> None:
    row = db.get(SubscriptionRow, subscription_id)
    if row is None or (row.user_id != caller.user_id and not caller.is_admin) or row.cancelled_at is not None:
        raise not_found(f"subscription {subscription_id}")
    row.cancelled_at = datetime.now(timezone.utc)
    audit.record(db, caller.username, "subscription.cancel", f"subscription:{row.id}", {"bot_id": row.bot_id})
    db.commit()
