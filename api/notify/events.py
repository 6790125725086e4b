"""Where notifications come from: the store, read as an outbox, and turned into deliveries.

Sources (each read from a persisted cursor in notification_cursors):
  fills      fills.id                  -> `fill` and `price` (the fill price) events
  signals    signals.id                -> `signal` and `price` (the bar close it was taken at)
  bots       bots.stopped_at (wall clock, read back a few seconds for writers that commit late)
                                       -> `bot_state` (a stop and its reason)
  risk       account_risk_state rows held for DAILY_LOSS (few rows: read whole each time; their
             `changed_ts` is the bot's clock, a replay's years-old time, so no cursor on it)
                                       -> `daily_loss`

One scan is one transaction: the deliveries it makes, the price alerts' last prices and the
cursors' new positions commit together, so a restart of the API neither loses an event (the
cursor moved only with its deliveries) nor repeats one (a delivery is UNIQUE per (rule, event
key), inserted ignoring duplicates). The cursor moves by a conditional update (WHERE position =
the position read): a second worker scanning the same rows at the same time loses that race,
rolls its whole scan back, and reads on from the new position next time. A cursor first seen
starts at the source's end: history is never announced.

Who is told what: each rule's owner sees exactly what the API shows them, by the API's own rules
(api.deps): signals through `signal_scope` (a subscriber: published bots they subscribe to, after
their plan's delay from publication; a signal's delivery is due then, not earlier), fills, stops
and prices of fills through `owned_bot_ids` (their own bots; an admin every bot), daily losses on
the accounts they own. The dispatcher checks again at send time (a subscription cancelled, a bot
unpublished, a plan changed meanwhile).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from api.deps import Principal, SignalScope, owned_bot_ids, signal_scope
from api.notify.store import CURSORS, DELIVERIES, RULES
from api.settings import Settings
from engine.store.models import AccountRiskStateRow, BotRow, FillRow, SignalRow, UserRow

FILLS, SIGNALS, BOTS = FillRow.__table__, SignalRow.__table__, BotRow.__table__
RISK = AccountRiskStateRow.__table__
BATCH = 500
STOP_LOOKBACK_NS = 10 * 1_000_000_000  # bots' stops committed late are still seen (duplicates are ignored)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, as a rule is matched against it and a channel words it."""

    key: str                                  # unique per event: "fill:12", "bot:b1:1764470000000000000"
    kind: str                                 # fill | signal | bot_state | daily_loss
    payload: dict[str, Any]
    bot_id: str | None = None
    symbol: str | None = None
    price: Decimal | None = None              # a price alert's input (fills, signals)
    published_ns: int | None = None           # signals: plan delays count from here
    account_key: str | None = None            # daily_loss: "<owner id>:<account>"
    stop_reason: str | None = None


@dataclass(slots=True)
class Audience:
    """What one rule owner may see, computed once per scan with the API's rules."""

    principal: Principal
    scope: SignalScope
    managed: set[str] | None                  # None: every bot (admin)

    def manages(self, bot_id: str | None) -> bool:
        return self.managed is None or (bot_id is not None and bot_id in self.managed)

    def signal_delay(self, bot_id: str | None) -> int | None:
        """ns after publication when this owner may see a signal of `bot_id`; None: never."""
        if self.scope.everything:
            return 0
        return None if bot_id is None else self.scope.delays.get(bot_id)


def audience(connection: Connection, owner_id: int, settings: Settings) -> Audience | None:
    user = connection.execute(select(UserRow.__table__).where(UserRow.__table__.c.id == owner_id)).first()
    if user is None or user.disabled:
        return None
    principal = Principal(user.id, user.username, user.role)
    with Session(bind=connection) as db:
        scope = signal_scope(db, principal, settings)
        managed = owned_bot_ids(db, principal)
    return Audience(principal, scope, None if managed is None else set(managed))


# -- reading the sources ---------------------------------------------------------------------------------
def canonical(value: Decimal) -> Decimal:
    """One spelling per amount, as the store keeps it (100.0 -> 100, 1E+2 -> 100), so a price
    reads the same in every message whether it came from an event or back from the store."""
    value = value.normalize()
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value  # type: ignore[operator]


def _fill_event(row: Any) -> Event:
    payload = {"bot_id": row.bot_id, "symbol": row.symbol, "side": row.side, "qty": str(row.qty),
               "price": str(row.price), "fee": str(row.fee), "client_order_id": row.client_order_id,
               "ts": row.ts}
    return Event(f"fill:{row.id}", "fill", payload, row.bot_id, row.symbol, price=canonical(Decimal(row.price)))


def _signal_event(row: Any) -> Event:
    price = (row.payload or {}).get("price")
    payload = {"signal_id": row.id, "bot_id": row.bot_id, "symbol": row.symbol, "direction": row.direction,
               "ts": row.ts, "published_ns": row.published_ns, "price": None if price is None else str(price),
               "target_weight": None if row.target_weight is None else str(row.target_weight),
               "confidence": None if row.confidence is None else str(row.confidence)}
    # a float bar close (the signal port's type) read as its shortest repr: 401.5 -> Decimal("401.5")
    exact = None if price is None else canonical(Decimal(repr(price) if isinstance(price, float) else str(price)))
    return Event(f"signal:{row.id}", "signal", payload, row.bot_id, row.symbol, price=exact,
                 published_ns=row.published_ns)


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _bot_event(row: Any) -> Event:
    stopped = _ns(row.stopped_at)
    payload = {"bot_id": row.id, "state": row.status, "stop_reason": row.stop_reason,
               "message": row.stop_message, "stopped_ns": stopped}
    return Event(f"bot:{row.id}:{stopped}", "bot_state", payload, row.id, None, stop_reason=row.stop_reason)


def _risk_event(row: Any) -> Event:
    payload = {"account": row.account_key.split(":", 1)[-1], "state": row.state, "reason": row.reason,
               "changed_ts": row.changed_ts, "day": row.day}
    return Event(f"risk:{row.account_key}:{row.state}:{row.day}:{row.changed_ts}", "daily_loss", payload,
                 account_key=row.account_key)


def _cursor(connection: Connection, source: str, start: Any) -> int:
    """The source's cursor; a new one starts at `start()` (its end now: history is not announced)."""
    position = connection.execute(select(CURSORS.c.position).where(CURSORS.c.source == source)).scalar()
    if position is not None:
        return int(position)
    value = int(start() or 0)
    connection.execute(_insert_ignoring(connection, CURSORS).values(source=source, position=value))
    return int(connection.execute(select(CURSORS.c.position).where(CURSORS.c.source == source)).scalar_one())


def _insert_ignoring(connection: Connection, table: Any) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


class LostRace(Exception):
    """Another worker advanced a cursor first: this scan is rolled back whole."""


def _advance(connection: Connection, source: str, old: int, new: int) -> None:
    if new == old:
        return
    moved = connection.execute(update(CURSORS).where(CURSORS.c.source == source, CURSORS.c.position == old)
                               .values(position=new)).rowcount
    if moved != 1:
        raise LostRace(source)


def read_events(connection: Connection) -> list[Event]:
    """New events of every source, oldest first per source; the cursors advance in `connection`'s
    transaction (LostRace when another worker advanced one meanwhile)."""
    events: list[Event] = []
    after = _cursor(connection, "fills", lambda: connection.execute(select(func.max(FILLS.c.id))).scalar())
    rows = connection.execute(select(FILLS).where(FILLS.c.id > after).order_by(FILLS.c.id).limit(BATCH)).all()
    events += [_fill_event(r) for r in rows]
    _advance(connection, "fills", after, rows[-1].id if rows else after)

    after = _cursor(connection, "signals", lambda: connection.execute(select(func.max(SIGNALS.c.id))).scalar())
    rows = connection.execute(select(SIGNALS).where(SIGNALS.c.id > after).order_by(SIGNALS.c.id).limit(BATCH)).all()
    events += [_signal_event(r) for r in rows]
    _advance(connection, "signals", after, rows[-1].id if rows else after)

    after = _cursor(connection, "bots", time.time_ns)
    since = datetime.fromtimestamp((after - STOP_LOOKBACK_NS) / 1e9, tz=timezone.utc) - timedelta(microseconds=1)
    rows = connection.execute(select(BOTS).where(BOTS.c.stopped_at.is_not(None), BOTS.c.stopped_at > since,
                                                 BOTS.c.stop_reason.is_not(None))
                              .order_by(BOTS.c.stopped_at)).all()
    stops = [_bot_event(r) for r in rows]
    events += [e for e in stops if e.payload["stopped_ns"] > after - STOP_LOOKBACK_NS]
    _advance(connection, "bots", after, max([after] + [e.payload["stopped_ns"] for e in stops]))

    rows = connection.execute(select(RISK).where(RISK.c.reason == "DAILY_LOSS",
                                                 RISK.c.state.in_(("REDUCING", "HALTED")))).all()
    events += [_risk_event(r) for r in rows]
    return events


# -- matching rules --------------------------------------------------------------------------------------
@dataclass(slots=True)
class Scan:
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    prices: dict[int, Decimal] = field(default_factory=dict)   # rule id -> its new last price


def _filters(rule: Any, event: Event) -> bool:
    return ((rule.bot_id is None or rule.bot_id == event.bot_id)
            and (rule.symbol is None or rule.symbol == event.symbol))


def crossed(previous: Decimal | None, price: Decimal, level: Decimal, direction: str) -> bool:
    """A crossing of `level`: from below to at-or-above (above), from above to at-or-below
    (below). The first price a rule sees crosses nothing (where it came from is not known), and
    staying beyond the level is not a new crossing: one crossing, one notification."""
    if previous is None:
        return False
    if direction == "above":
        return previous < level <= price
    return previous > level >= price


def match(rules: list[Any], audiences: dict[int, Audience | None], events: list[Event], now_ns: int) -> Scan:
    scan = Scan()
    last = {r.id: r.last_price for r in rules if r.kind == "price"}
    for event in events:
        for rule in rules:
            seen = audiences.get(rule.owner_id)
            if seen is None:
                continue
            due = _due(rule, event, seen, now_ns)
            if rule.kind == "price":
                if due is None or event.price is None or not _filters(rule, event):
                    continue
                previous, last[rule.id] = last[rule.id], event.price
                scan.prices[rule.id] = event.price
                if not crossed(previous, event.price, rule.level, rule.direction):
                    continue
                payload = {"price": str(event.price), "previous": str(previous), "level": str(rule.level),
                           "direction": rule.direction, "source": event.key, "bot_id": event.bot_id,
                           "symbol": event.symbol}
                scan.deliveries.append(_delivery(rule, f"price:{event.key}", "price", payload, due, now_ns))
            elif due is not None and rule.kind == event.kind:
                scan.deliveries.append(_delivery(rule, event.key, event.kind, event.payload, due, now_ns))
    return scan


def _due(rule: Any, event: Event, seen: Audience, now_ns: int) -> int | None:
    """When `rule`'s owner may be told of `event` (ns), or None: never."""
    if not _filters(rule, event):
        return None
    if event.kind == "signal":
        delay = seen.signal_delay(event.bot_id)
        return None if delay is None else max(now_ns, (event.published_ns or 0) + delay)
    if event.kind in ("fill", "bot_state"):
        if not seen.manages(event.bot_id):
            return None
        if event.kind == "bot_state" and event.stop_reason not in (rule.stop_reasons or ()):
            return None
        return now_ns
    if event.kind == "daily_loss":
        owner = (event.account_key or "").split(":", 1)[0]
        return now_ns if seen.principal.is_admin or owner == str(seen.principal.user_id) else None
    return None


def _delivery(rule: Any, key: str, kind: str, payload: dict[str, Any], due: int, now_ns: int) -> dict[str, Any]:
    return {"rule_id": rule.id, "owner_id": rule.owner_id, "event_key": key, "event_kind": kind, "payload": payload,
            "channel": rule.channel, "status": "pending", "attempts": 0, "next_attempt_ns": due,
            "created_ns": now_ns}


def scan_once(connection: Connection, settings: Settings, now_ns: int | None = None) -> int:
    """Read new events, insert their deliveries and move the cursors, in `connection`'s open
    transaction; returns how many deliveries were new."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    events = read_events(connection)
    if not events:
        return 0
    rules = connection.execute(select(RULES).where(RULES.c.enabled.is_(True), RULES.c.deleted_at.is_(None))
                               .order_by(RULES.c.id)).all()
    if not rules:
        return 0
    audiences = {owner: audience(connection, owner, settings) for owner in {r.owner_id for r in rules}}
    scan = match(rules, audiences, events, now_ns)
    for rule_id, price in scan.prices.items():
        connection.execute(update(RULES).where(RULES.c.id == rule_id).values(last_price=price))
    new = 0
    for row in scan.deliveries:
        new += connection.execute(_insert_ignoring(connection, DELIVERIES).values(**row)).rowcount or 0
    return new


def visible_now(connection: Connection, settings: Settings, owner_id: int, kind: str, payload: dict[str, Any],
                now_ns: int) -> tuple[bool, int]:
    """At send time: may the owner still be told (subscription, publication, plan), and not
    before when (ns)? Tests and non-bot events pass."""
    if kind in ("test", "daily_loss"):
        return True, now_ns
    seen = audience(connection, owner_id, settings)
    if seen is None:
        return False, now_ns
    bot_id = payload.get("bot_id")
    source = str(payload.get("source", "signal:" if kind == "signal" else ""))
    if kind == "signal" or source.startswith("signal:"):
        delay = seen.signal_delay(bot_id)
        if delay is None:
            return False, now_ns
        published = payload.get("published_ns")
        if published is None and source.startswith("signal:"):
            published = connection.execute(select(SIGNALS.c.published_ns)
                                           .where(SIGNALS.c.id == int(source.split(":", 1)[1]))).scalar()
        return True, max(now_ns, int(published or 0) + delay)
    return seen.manages(bot_id), now_ns
