"""/api/v1/notifications: a user's notification rules and their delivery log.

  POST   /notifications/rules             create (201); a webhook's generated secret is in this
                                          answer only; a Telegram token is never shown
  GET    /notifications/rules             the caller's rules
  GET    /notifications/rules/{id}        one (404 when not the caller's: not revealed)
  PUT    /notifications/rules/{id}        replace; a secret or token omitted keeps the stored one
                                          (same channel type)
  DELETE /notifications/rules/{id}        204; the log stays
  POST   /notifications/rules/{id}/test   send a test message now (one attempt), answer its result
  GET    /notifications/deliveries        the caller's delivery log, newest first, with attempts;
                                          page with ?before=<the last id you got>

Every change is audited (audit_log) without secrets. Roles: traders and admins may watch every
kind; subscribers `signal` and `price` (403 naming `kind` otherwise), told only what their plan
lets them see (api.notify.events).
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from api import audit
from api.deps import MAX_ID, Caller, Ctx, Db, PathId, Principal, addressed_bot, latest_config
from api.errors import ApiError, not_found
from api.notify.dispatcher import Dispatcher
from api.notify.rules import SUBSCRIBER_KINDS, RuleIn, UnsafeTarget, check_target
from api.notify.store import ATTEMPTS, DELIVERIES, RULES

router = APIRouter(prefix="/notifications", tags=["notifications"])


class RuleOut(BaseModel):
    id: int
    name: str
    kind: str
    bot_id: str | None
    symbol: str | None
    level: Decimal | None
    direction: str | None
    stop_reasons: list[str] | None
    channel: dict[str, Any]
    enabled: bool
    created_at: datetime
    secret: str | None = None   # a generated webhook secret, in the create answer only


class AttemptOut(BaseModel):
    attempt: int
    status: str
    http_status: int | None
    error: str | None
    at_ns: int
    next_attempt_ns: int | None


class DeliveryOut(BaseModel):
    id: int
    rule_id: int
    event_key: str
    event_kind: str
    channel: str
    status: str
    attempts: int
    next_attempt_ns: int
    last_http_status: int | None
    last_error: str | None
    created_ns: int
    sent_ns: int | None
    payload: dict[str, Any]
    log: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: int | None


def _own_rule(db: Session, caller: Principal, rule_id: int) -> Any:
    row = db.execute(select(RULES).where(RULES.c.id == rule_id)).first()
    if row is None or row.deleted_at is not None or (row.owner_id != caller.user_id and not caller.is_admin):
        raise not_found(f"notification rule {rule_id}")
    return row


def _bot_name(db: Session, caller: Principal, runtime_id: str | None) -> str | None:
    """The bot as the caller names it: an owner by name, anyone else by runtime id."""
    if runtime_id is None or caller.role != "trader":
        return runtime_id
    config = latest_config(db, runtime_id)
    return config.bot_id if config is not None and config.owner_id == caller.user_id else runtime_id


def _out(db: Session, caller: Principal, row: Any, secret: str | None = None) -> RuleOut:
    return RuleOut(id=row.id, name=row.name, kind=row.kind, bot_id=_bot_name(db, caller, row.bot_id),
                   symbol=row.symbol, level=row.level, direction=row.direction, stop_reasons=row.stop_reasons,
                   channel={"type": row.channel, **row.target}, enabled=row.enabled, created_at=row.created_at,
                   secret=secret)


def _values(body: RuleIn, caller: Principal, ctx: Any, db: Session, previous: Any | None) -> tuple[dict[str, Any],
                                                                                                     str | None]:
    """The row's values from a valid body (checks that need the store or the settings here:
    role, bot, webhook address, SMTP); and a generated webhook secret to show once."""
    if caller.role == "subscriber" and body.kind not in SUBSCRIBER_KINDS:
        raise ApiError(403, f"subscribers may be notified of {' and '.join(SUBSCRIBER_KINDS)} only", field="kind")
    bot_id = body.bot_id
    if bot_id is not None and caller.role != "subscriber":  # an owner's name (an admin's runtime id)
        config = addressed_bot(db, caller, bot_id)
        if config is None or config.deleted_at is not None:
            raise ApiError(404, f"bot {bot_id!r} not found", field="bot_id")
        bot_id = config.runtime_id
    channel = body.channel
    target: dict[str, Any]
    generated = None
    same_type = previous is not None and previous.channel == channel.type and previous.secret is not None
    if channel.type == "webhook":
        try:
            check_target(channel.url, ctx.settings.notify_allowed_networks)
        except UnsafeTarget as refused:
            raise ApiError(422, str(refused), field="channel.webhook.url") from None
        target = {"url": channel.url}
        if channel.secret is not None:
            secret = ctx.vault.seal(channel.secret.get_secret_value())
        elif same_type:
            secret = previous.secret
        else:
            generated = secrets.token_urlsafe(32)
            secret = ctx.vault.seal(generated)
    elif channel.type == "telegram":
        target = {"chat_id": channel.chat_id}
        if channel.bot_token is not None:
            secret = ctx.vault.seal(channel.bot_token.get_secret_value())
        elif same_type:
            secret = previous.secret
        else:
            raise ApiError(422, "a Telegram rule needs the bot's token", field="channel.telegram.bot_token")
    else:
        if not ctx.settings.smtp_host:
            raise ApiError(422, "email is not available: this server has no SMTP server configured", field="channel")
        target, secret = {"address": channel.address}, None
    values = {"name": body.name, "kind": body.kind, "bot_id": bot_id, "symbol": body.symbol, "level": body.level,
              "direction": body.direction, "stop_reasons": body.stop_reasons, "channel": channel.type,
              "target": target, "secret": secret, "enabled": body.enabled}
    return values, generated


def _audit_detail(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in values.items() if k not in ("secret", "target")}


@router.post("/rules", response_model=RuleOut, status_code=201, summary="create a notification rule")
def create_rule(body: RuleIn, caller: Caller, ctx: Ctx, db: Db) -> RuleOut:
    values, generated = _values(body, caller, ctx, db, None)
    rule_id = db.execute(insert(RULES).values(owner_id=caller.user_id, created_at=datetime.now(timezone.utc),
                                              **values)).inserted_primary_key[0]
    audit.record(db, caller.username, "notification_rule.create", f"notification_rule:{rule_id}",
                 {**_audit_detail(values), "channel": values["channel"]})
    db.commit()
    return _out(db, caller, _own_rule(db, caller, rule_id), generated)


@router.get("/rules", response_model=list[RuleOut], summary="the caller's notification rules")
def list_rules(caller: Caller, db: Db) -> list[RuleOut]:
    rows = db.execute(select(RULES).where(RULES.c.owner_id == caller.user_id, RULES.c.deleted_at.is_(None))
                      .order_by(RULES.c.id)).all()
    return [_out(db, caller, r) for r in rows]


@router.get("/rules/{rule_id}", response_model=RuleOut, summary="one notification rule")
def get_rule(rule_id: PathId, caller: Caller, db: Db) -> RuleOut:
    return _out(db, caller, _own_rule(db, caller, rule_id))


@router.put("/rules/{rule_id}", response_model=RuleOut, summary="replace a notification rule")
def replace_rule(rule_id: PathId, body: RuleIn, caller: Caller, ctx: Ctx, db: Db) -> RuleOut:
    previous = _own_rule(db, caller, rule_id)
    values, generated = _values(body, caller, ctx, db, previous)
    if values["kind"] != previous.kind or values["level"] != previous.level or values["bot_id"] != previous.bot_id \
            or values["symbol"] != previous.symbol:
        values["last_price"] = None  # a new alert: its crossings count from the next price
    db.execute(update(RULES).where(RULES.c.id == rule_id).values(**values))
    audit.record(db, caller.username, "notification_rule.update", f"notification_rule:{rule_id}",
                 {**_audit_detail(values), "channel": values["channel"]})
    db.commit()
    return _out(db, caller, _own_rule(db, caller, rule_id), generated)


@router.delete("/rules/{rule_id}", status_code=204, summary="delete a notification rule (its log stays)")
def delete_rule(rule_id: PathId, caller: Caller, db: Db) -> None:
    _own_rule(db, caller, rule_id)
    db.execute(update(RULES).where(RULES.c.id == rule_id).values(deleted_at=datetime.now(timezone.utc),
                                                                 enabled=False))
    audit.record(db, caller.username, "notification_rule.delete", f"notification_rule:{rule_id}")
    db.commit()


def _dispatcher(ctx: Any) -> Dispatcher:
    found = ctx.extra.get("notify")
    return found if found is not None else Dispatcher(ctx.engine, ctx.settings, ctx.vault)


@router.post("/rules/{rule_id}/test", response_model=DeliveryOut, summary="send a test message through the rule")
def test_rule(rule_id: PathId, caller: Caller, ctx: Ctx, db: Db) -> DeliveryOut:
    rule = _own_rule(db, caller, rule_id)
    now = time.time_ns()
    delivery_id = db.execute(insert(DELIVERIES).values(
        rule_id=rule.id, owner_id=rule.owner_id, event_key=f"test:{secrets.token_hex(8)}", event_kind="test",
        payload={"text": f"tickbridge test notification for rule {rule.id} ({rule.kind})"}, channel=rule.channel,
        status="pending", attempts=0, next_attempt_ns=now, created_ns=now)).inserted_primary_key[0]
    audit.record(db, caller.username, "notification_rule.test", f"notification_rule:{rule_id}",
                 {"delivery_id": delivery_id})
    db.commit()
    dispatcher = _dispatcher(ctx)
    claimed = dispatcher.claim(delivery_id, now)
    if claimed is not None:  # a test is one attempt, answered here: a failure is final
        dispatcher.deliver(claimed, max_attempts=1)
    return _deliveries(db, [delivery_id])[0]


def _deliveries(db: Session, ids: list[int]) -> list[DeliveryOut]:
    rows = db.execute(select(DELIVERIES).where(DELIVERIES.c.id.in_(ids)).order_by(DELIVERIES.c.id.desc())).all()
    log: dict[int, list[AttemptOut]] = {}
    for a in db.execute(select(ATTEMPTS).where(ATTEMPTS.c.delivery_id.in_(ids)).order_by(ATTEMPTS.c.id)):
        log.setdefault(a.delivery_id, []).append(AttemptOut(attempt=a.attempt, status=a.status,
                                                            http_status=a.http_status, error=a.error, at_ns=a.at_ns,
                                                            next_attempt_ns=a.next_attempt_ns))
    return [DeliveryOut(id=r.id, rule_id=r.rule_id, event_key=r.event_key, event_kind=r.event_kind,
                        channel=r.channel, status=r.status, attempts=r.attempts, next_attempt_ns=r.next_attempt_ns,
                        last_http_status=r.last_http_status, last_error=r.last_error, created_ns=r.created_ns,
                        sent_ns=r.sent_ns, payload=r.payload, log=log.get(r.id, [])) for r in rows]


@router.get("/deliveries", response_model=DeliveryPage, summary="the caller's delivery log, newest first")
def list_deliveries(caller: Caller, db: Db,
                    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="the last id of the previous "
                                                                                     "page")] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    rule_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                    status: Annotated[str | None, Query(pattern="^(pending|sending|sent|failed|skipped)$")] = None,
                    ) -> DeliveryPage:
    query = select(DELIVERIES.c.id).where(DELIVERIES.c.owner_id == caller.user_id)
    if before is not None:
        query = query.where(DELIVERIES.c.id < before)
    if rule_id is not None:
        query = query.where(DELIVERIES.c.rule_id == rule_id)
    if status is not None:
        query = query.where(DELIVERIES.c.status == status)
    ids = list(db.scalars(query.order_by(DELIVERIES.c.id.desc()).limit(limit)))
    items = _deliveries(db, ids) if ids else []
    return DeliveryPage(items=items, next_cursor=items[-1].id if len(items) == limit else None)
