"""A bot's books as a person follows and manages them: why it stopped, what it still holds, its
books archived by a reset, and the wording of all that in currency units and ISO 8601 times.

Everything here reads or writes the store only, never a running bot's OMS, so it answers the same
for a bot this process runs, one another process runs, and one no process runs (after a restart
of the API, the stop reason and the holdings are still there).

Stop reasons (bots.stop_reason): END_OF_FEED (a replay ran out of ticks), STOPPED (a person or a
shutdown stopped it), KILLED (the kill switch: halted until resumed), STORE_ERROR (the store
failed or was lost: trading stopped rather than trade unjournaled), LEASE_LOST (another runtime
took the bot over), ERROR (anything else, e.g. books that do not reconcile).

A reset archives a stopped bot's books: its orders, fills, position, daily P&L, equity points and
signals move under an archive bot id (a bots row with status ARCHIVED, listed in bot_archives), so
nothing is deleted and the history stays readable by that id; the bot keeps its id and config,
restarts from the start of its feed with its initial cash, and its client order ids continue
where they were (bots.next_order_seq), so no id is ever used twice. Its paper venue is named
afresh (bots.resets), since a fresh venue numbers its executions from 1 again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select, update

from engine.errors import TickbridgeError
from engine.orders import TERMINAL_STATES
from engine.store.journal import settle_if_left, settle_write_ahead
from engine.store.models import (BotArchiveRow, BotRow, DailyPnlRow, EquityPointRow, FillRow, OrderRow, PositionRow,
                                 SignalRow)

END_OF_FEED, STOPPED, KILLED = "END_OF_FEED", "STOPPED", "KILLED"
STORE_ERROR, LEASE_LOST, ERROR = "STORE_ERROR", "LEASE_LOST", "ERROR"
STOP_REASONS = (END_OF_FEED, STOPPED, KILLED, STORE_ERROR, LEASE_LOST, ERROR)
ARCHIVED = "ARCHIVED"
_TERMINAL = tuple(s.value for s in TERMINAL_STATES)
_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:)?[/\\](?:[\w.\-~]+[/\\])*[\w.\-~]*")


# -- wording -------------------------------------------------------------------------------------------
def iso_ns(ns: int | None) -> str | None:
    """Nanoseconds since the epoch as ISO 8601 UTC with all nine fractional digits, so the text
    loses nothing: 1399248001123456789 -> "2014-05-05T00:00:01.123456789Z"."""
    if ns is None:
        return None
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def currency_of(symbol: str) -> str:
    """The currency a paper bot's cash and P&L are counted in: the quote currency of the symbol
    (EURUSD -> USD, BTC/USDT -> USDT), USD for a share or an index."""
    if "/" in symbol:
        return symbol.rsplit("/", 1)[1].split(":")[0].upper()
    if len(symbol) == 6 and symbol.isalpha():
        return symbol[3:].upper()
    return "USD"


def money(value: Decimal | int | None, currency: str) -> str:
    """An amount for a person: at least cents, never a raw integer, with its currency."""
    amount = Decimal(value or 0)
    text = f"{amount:.2f}" if amount == amount.quantize(Decimal("0.01")) else format(amount.normalize(), "f")
    return f"{text} {currency}"


def quantity(value: Decimal) -> str:
    return "0" if value == 0 else format(Decimal(value).normalize(), "f")


def scrub(message: str) -> str:
    """A message for the API and the status row: file paths become "<path>" (a status is read by
    people who do not own the server's file system)."""
    return _PATH.sub("<path>", message)


# -- why it stopped, what it holds ----------------------------------------------------------------------
def reason_of(error: BaseException) -> str:
    """The stop reason an exception that ended a bot stands for."""
    from sqlalchemy.exc import SQLAlchemyError

    from engine.errors import StoreUnavailable

    tag = getattr(error, "stop_reason", None)
    if tag == "lease_lost":
        return LEASE_LOST
    if tag == "store_lost" or isinstance(error, (StoreUnavailable, SQLAlchemyError)):
        return STORE_ERROR
    return ERROR


@dataclass(slots=True)
class Holdings:
    """What a bot still holds by the store: non-zero positions and orders not yet ended."""

    positions: list[dict[str, Any]] = field(default_factory=list)
    open_orders: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "open_orders": self.open_orders}

    def describe(self) -> str:
        held = [f"{p['qty']} {p['symbol']}" for p in self.positions]
        if self.open_orders:
            n = len(self.open_orders)
            held.append(f"{n} open order{'s' if n != 1 else ''}")
        return "holds " + " and ".join(held) if held else "holds nothing"


def holdings(connection: Any, bot_id: str) -> Holdings:
    settle_if_left(connection, bot_id)  # an order a crash left in its write-ahead record counts
    positions = connection.execute(select(PositionRow).where(PositionRow.bot_id == bot_id)
                                   .order_by(PositionRow.symbol)).all()
    orders = connection.execute(select(OrderRow).where(OrderRow.bot_id == bot_id, OrderRow.state.not_in(_TERMINAL))
                                .order_by(OrderRow.ts_init, OrderRow.client_order_id)).all()
    return Holdings(
        [{"symbol": p.symbol, "qty": quantity(p.qty), "avg_price": None if p.avg_price is None else str(p.avg_price),
          "realized_pnl": str(p.realized_pnl), "currency": currency_of(p.symbol)} for p in positions if p.qty != 0],
        [{"client_order_id": o.client_order_id, "symbol": o.symbol, "side": o.side, "type": o.type,
          "qty": None if o.qty is None else quantity(o.qty), "filled_qty": quantity(o.filled_qty or Decimal(0)),
          "limit_price": None if o.limit_price is None else str(o.limit_price),
          "stop_price": None if o.stop_price is None else str(o.stop_price), "state": o.state,
          "ts_init": iso_ns(o.ts_init), "ts_init_ns": o.ts_init} for o in orders])


def record_stop(engine: Any, bot_id: str, reason: str, message: str, state: str | None = None) -> None:
    """Write why the bot stopped (and its state, when given) onto its row; best effort: the store
    may be what failed, and then the reason stays in this runtime's status only."""
    from sqlalchemy.exc import SQLAlchemyError

    values: dict[str, Any] = {"stop_reason": reason, "stop_message": scrub(message)[:512],
                              "stopped_at": datetime.now(timezone.utc)}
    if state is not None:
        values["status"] = state
    try:
        with engine.begin() as connection:
            connection.execute(update(BotRow.__table__).where(BotRow.id == bot_id).values(**values))
    except SQLAlchemyError:
        pass


def clear_stop(engine: Any, bot_id: str) -> None:
    """The bot runs again: no stop reason until its next stop."""
    with engine.begin() as connection:
        connection.execute(update(BotRow.__table__).where(BotRow.id == bot_id)
                           .values(stop_reason=None, stop_message=None, stopped_at=None))


def stored_status(connection: Any, bot_id: str) -> dict[str, Any] | None:
    """The bot's status as the store has it (None when the store has no such bot)."""
    bot = connection.execute(select(BotRow).where(BotRow.id == bot_id)).first()
    if bot is None:
        return None
    return {"bot_id": bot_id, "state": bot.status, "halted": bot.status == "HALTED",
            "stop_reason": bot.stop_reason, "stop_message": bot.stop_message,
            "stopped_at": None if bot.stopped_at is None else _utc(bot.stopped_at).isoformat().replace("+00:00", "Z"),
            "checkpoint": bot.checkpoint, "resets": bot.resets, "holdings": holdings(connection, bot_id).as_dict()}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


# -- reset ----------------------------------------------------------------------------------------------
class BotRunning(TickbridgeError):
    """A reset (which moves a bot's books) asked of a bot that runs."""

    def __init__(self, bot_id: str) -> None:
        self.bot_id = bot_id
        super().__init__(f"bot {bot_id!r} is running: stop it before resetting it")


class NotResettable(TickbridgeError):
    def __init__(self, bot_id: str, why: str) -> None:
        self.bot_id = bot_id
        super().__init__(f"bot {bot_id!r} cannot be reset: {why}")


@dataclass(slots=True)
class ResetReport:
    """What a reset archived, in the units a person reads."""

    bot_id: str
    archive_id: str
    orders: int
    fills: int
    open_orders: int
    positions: list[tuple[str, Decimal]]
    realized: Decimal
    fees: Decimal
    currency: str
    equity_points: int
    days: int
    signals: int
    was_halted: bool

    def message(self) -> str:
        held = ", ".join(f"position {quantity(q)} {s}" for s, q in self.positions) or "no position"
        text = (f"bot {self.bot_id!r} reset: archived {self.orders} orders ({self.open_orders} open), "
                f"{self.fills} fills, {held}, realized {money(self.realized, self.currency)}, "
                f"fees {money(self.fees, self.currency)}, {self.equity_points} equity points, "
                f"{self.days} daily rows, {self.signals} signals under {self.archive_id!r}; "
                "it starts clean from the start of its feed")
        return text + (" (its kill-switch halt is lifted)" if self.was_halted else "")

    def as_dict(self) -> dict[str, Any]:
        return {"bot_id": self.bot_id, "archive_id": self.archive_id, "orders": self.orders, "fills": self.fills,
                "open_orders": self.open_orders,
                "positions": [{"symbol": s, "qty": quantity(q)} for s, q in self.positions],
                "realized": money(self.realized, self.currency), "fees": money(self.fees, self.currency),
                "equity_points": self.equity_points, "days": self.days, "signals": self.signals,
                "halt_lifted": self.was_halted, "message": self.message()}


def archive_id_for(bot_id: str, n: int) -> str:
    """The id the n-th reset files a bot's books under (bots.id holds 64 characters)."""
    candidate = f"{bot_id}~r{n}"
    if len(candidate) <= 64:
        return candidate
    return f"{bot_id[:40]}~{hashlib.sha256(bot_id.encode()).hexdigest()[:12]}~r{n}"


def _sequence(client_order_id: str, bot_id: str) -> int:
    tail = client_order_id[len(bot_id) + 1:] if client_order_id.startswith(bot_id + "-") else ""
    return int(tail) if tail.isdigit() else 0


def archive_books(engine: Any, bot_id: str, actor: str) -> ResetReport:
    """Move the bot's books under a new archive id and rewind the bot, in one transaction. The
    caller makes sure no runtime runs the bot (it holds the bot's lease)."""
    settle_write_ahead(engine, bot_id)  # a crash's last write-ahead record is part of the books archived
    with engine.begin() as connection:
        bot = connection.execute(select(BotRow).where(BotRow.id == bot_id).with_for_update()).first()
        if bot is None:
            from live.control import UnknownBot

            raise UnknownBot(bot_id)
        if bot.status == ARCHIVED:
            raise NotResettable(bot_id, "it is an archive of another bot's books")
        n = (bot.resets or 0) + 1
        archive_id = archive_id_for(bot_id, n)
        if connection.execute(select(BotRow.id).where(BotRow.id == archive_id)).first() is not None:
            raise NotResettable(bot_id, f"its archive id {archive_id!r} is taken")

        def count(table: Any, *where: Any) -> int:
            return int(connection.execute(select(func.count()).select_from(table).where(
                table.bot_id == bot_id, *where)).scalar() or 0)

        order_ids = connection.execute(select(OrderRow.client_order_id).where(OrderRow.bot_id == bot_id)).scalars()
        next_seq = max([bot.next_order_seq or 0] + [_sequence(cid, bot_id) for cid in order_ids])
        positions = connection.execute(select(PositionRow).where(PositionRow.bot_id == bot_id)).all()
        symbol = positions[0].symbol if positions else str((bot.config or {}).get("symbol", ""))
        report = ResetReport(
            bot_id, archive_id, count(OrderRow), count(FillRow), count(OrderRow, OrderRow.state.not_in(_TERMINAL)),
            [(p.symbol, p.qty) for p in positions if p.qty != 0],
            sum((p.realized_pnl for p in positions), Decimal(0)), sum((p.fees for p in positions), Decimal(0)),
            currency_of(symbol), count(EquityPointRow), count(DailyPnlRow), count(SignalRow),
            bot.status == "HALTED")
        connection.execute(insert(BotRow.__table__).values(
            id=archive_id, name=bot.name, strategy=bot.strategy, account_id=bot.account_id, config=bot.config,
            status=ARCHIVED, next_order_seq=next_seq, checkpoint=bot.checkpoint, resets=n,
            stop_reason=bot.stop_reason, stop_message=bot.stop_message, stopped_at=bot.stopped_at))
        for table in (OrderRow, FillRow, PositionRow, DailyPnlRow, EquityPointRow, SignalRow):
            connection.execute(update(table.__table__).where(table.bot_id == bot_id).values(bot_id=archive_id))
        connection.execute(update(BotRow.__table__).where(BotRow.id == bot_id).values(
            status="STOPPED", checkpoint=-1, next_order_seq=next_seq, resets=n, stop_reason=None,
            stop_message=None, stopped_at=None))
        connection.execute(insert(BotArchiveRow.__table__).values(
            bot_id=bot_id, archive_bot_id=archive_id, actor=actor[:64], summary=report.as_dict(),
            created_at=datetime.now(timezone.utc)))
    return report


def archives(connection: Any, bot_id: str) -> list[dict[str, Any]]:
    rows = connection.execute(select(BotArchiveRow).where(BotArchiveRow.bot_id == bot_id)
                              .order_by(BotArchiveRow.id)).all()
    return [{"archive": i, "archive_id": r.archive_bot_id, "actor": r.actor,
             "created_at": _utc(r.created_at).isoformat().replace("+00:00", "Z"), "summary": r.summary}
            for i, r in enumerate(rows, 1)]
