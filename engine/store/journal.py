"""The durable order journal: the OMS's write-ahead log in SQL.

The OMS reports every transition and fill here. Writes are batched in memory and made durable by
`write_ahead()`, which the OMS calls before any order is handed to a venue (and `settle()` after
the venue call): so an order is durable as PENDING_SUBMIT before a venue can have seen it (the
write-ahead rule), and everything that happened before that point is durable too. On a SQLite
file the write-ahead is one record appended to the bot's log and the settle moves it into the
tables (engine/store/write_ahead.py); elsewhere both are `flush()`. The runtime also flushes after each market-data
input it fully processes, with the input's sequence number as the bot's checkpoint, in the same
transaction. Group commit is what makes this fast: one commit per input, not one per event.

Equity points (one per bar close) ride along: `record_equity` buffers them and they are written
by whichever commit comes next, without asking for one of their own (`pending` ignores them), so
following a bot costs no commit. A point is committed with or before the checkpoint of the input
after its bar, so a restart, which processes the inputs after the checkpoint again, writes each
point exactly once (a repeat would be ignored anyway: one point per bot and time).

`load()` reads a bot back: its counters, its orders, its fills in the order they were booked,
and the account-level charges booked into it (engine.charges), each with its place among the fills.

Charges are not buffered: `record_charge` decides a charge in its own transaction, because the
decision is the account's, not this bot's: one row per account and venue id, so whichever bot or
restart sees a charge first, it is booked once (an external row may still be claimed, atomically,
by the symbol's sole holder: UPDATE ... WHERE booked is false, which only one claimant can win).
The bot books the charge in memory only after that commit; a restart rebuilds the books from the
rows, so memory can never hold a charge the store does not.

A commit is only trusted if it went where a restart will look. Two checks guard that, both
before `flush()` returns (so before any order it journaled can be handed to a venue):
- `guards`, run before the commit: the runtime adds its bot lease here, so a bot another
  runtime took over writes nothing more into that bot's rows and sends nothing more;
- the store file's identity (SQLite), checked after the commit: a store deleted or replaced
  under the bot swallows commits silently, and only the file's identity tells (StoreLost).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from engine.charges import AccountCharge, ChargeKind
from engine.instrument import Instrument
from engine.money import Scales, to_raw
from engine.orders import Fill, Liquidity, Order, OrderEvent, OrderSide, OrderState, OrderType, TimeInForce
from engine.portfolio import Portfolio
from engine.signals import announce_stored
from engine.store.db import StoreFileWatch, sqlite_file
from engine.store.prepared import Prepared, SqliteWriter, usable
from engine.store import write_ahead
from engine.store.signals import NOTIFY
from engine.store.models import (AccountChargeRow, AccountSnapshotRow, BotRow, DailyPnlRow, EquityPointRow, FillRow,
                                 OrderEventRow, OrderRow, PositionRow, SignalRow, WriteAheadRow)

ORDERS, EVENTS, FILLS, BOTS, POSITIONS = (OrderRow.__table__, OrderEventRow.__table__, FillRow.__table__,
                                         BotRow.__table__, PositionRow.__table__)
SNAPSHOTS, DAYS, POINTS = AccountSnapshotRow.__table__, DailyPnlRow.__table__, EquityPointRow.__table__
CHARGES, SIGNALS, WRITE_AHEAD = AccountChargeRow.__table__, SignalRow.__table__, WriteAheadRow.__table__
# the columns each buffered row carries (the prepared statements are compiled for exactly these)
ORDER_KEYS = ("client_order_id", "bot_id", "symbol", "side", "type", "qty", "limit_price", "stop_price", "tif",
              "reduce_only", "equity_fraction", "tag", "state", "venue_order_id", "filled_qty", "avg_fill_price",
              "reason", "external", "ts_init", "ts_last", "parent_id", "oco_group", "trail_distance",
              "trail_percent", "expire_ns", "emulated", "trigger_of")
EVENT_KEYS = ("client_order_id", "state", "ts", "reason")
FILL_KEYS = ("venue", "execution_id", "client_order_id", "bot_id", "symbol", "side", "qty", "price", "fee",
             "liquidity", "ts", "fee_currency", "fee_native")
ORDER_UPDATE_KEYS = ("cid", "state", "filled_qty", "qty", "avg_fill_price", "reason", "limit_price", "stop_price",
                     "ts_last")
POSITION_KEYS = ("bot_id", "symbol", "qty", "avg_price", "realized_pnl", "fees", "cash", "updated_ts")
POINT_KEYS = ("bot_id", "ts", "equity", "cash", "realized", "unrealized", "position")


def _statements(engine: Engine, bot_id: str) -> dict[str, Any]:
    """The journal's writes by name, built once per journal (constructing them per flush costs more
    than the commit). The names are also what a write-ahead record stores (engine/store/write_ahead.py)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    upsert = dialect.insert(POSITIONS)
    return {
        "signals": insert(SIGNALS),
        "orders": insert(ORDERS),
        "order_updates": update(ORDERS).where(ORDERS.c.client_order_id == bindparam("cid")).values(
            state=bindparam("state"), filled_qty=bindparam("filled_qty"), qty=bindparam("qty"),
            avg_fill_price=bindparam("avg_fill_price"), reason=bindparam("reason"), ts_last=bindparam("ts_last"),
            limit_price=bindparam("limit_price"), stop_price=bindparam("stop_price")),  # amend changes these
        "events": insert(EVENTS),
        "fills": dialect.insert(FILLS).on_conflict_do_nothing(),  # a fill seen twice (venue + execution id): ignored
        "positions": upsert.on_conflict_do_update(
            index_elements=["bot_id", "symbol"],
            set_={k: upsert.excluded[k] for k in POSITION_KEYS if k not in ("bot_id", "symbol")}),
        "snapshots": insert(SNAPSHOTS),
        "days": insert(DAYS),
        "points": dialect.insert(POINTS).on_conflict_do_nothing(),  # one point per bot and time
        "checkpoint": update(BOTS).where(BOTS.c.id == bot_id).values(checkpoint=bindparam("checkpoint")),
    }


# what a write-ahead record may hold, by statement: its exact keys, or the columns its keys come from
RECORD_SHAPES: dict[str, tuple[str, ...] | frozenset[str]] = {
    "signals": frozenset(SIGNALS.c.keys()) - {"id"}, "orders": ORDER_KEYS, "order_updates": ORDER_UPDATE_KEYS,
    "events": EVENT_KEYS, "fills": FILL_KEYS, "positions": POSITION_KEYS,
    "snapshots": frozenset(SNAPSHOTS.c.keys()) - {"id"}, "days": frozenset(DAYS.c.keys()) - {"id"},
    "points": POINT_KEYS, "checkpoint": ("checkpoint",),
}


def _order_values(order: Order) -> dict[str, Any]:
    ts_last = order.events[-1].ts if order.events else order.ts_init
    return {
        "client_order_id": order.client_order_id, "bot_id": order.bot_id, "symbol": order.symbol,
        "side": order.side.value, "type": order.type.value, "qty": order.qty,
        "limit_price": order.limit_price, "stop_price": order.stop_price, "tif": order.tif.value,
        "reduce_only": order.reduce_only, "equity_fraction": order.equity_fraction, "tag": order.tag,
        "state": order.state.value, "venue_order_id": order.venue_order_id, "filled_qty": order.filled_qty,
        "avg_fill_price": order.avg_fill_price, "reason": order.reason, "external": order.tag == "external",
        "ts_init": order.ts_init, "ts_last": ts_last, "parent_id": order.parent_id, "oco_group": order.oco_group,
        "trail_distance": order.trail_distance, "trail_percent": order.trail_percent,
        "expire_ns": order.expire_ns, "emulated": order.emulated, "trigger_of": order.trigger_of,
    }


@dataclass(frozen=True, slots=True)
class BookedCharge:
    """A charge in a bot's books: its raw value was `value` (account cash), a base-asset charge
    was valued at `price`, and it was booked after the bot's first `fill_seq` fills."""

    charge: AccountCharge
    value: Decimal
    price: Decimal | None
    fill_seq: int


@dataclass(slots=True)
class StoredBot:
    """What a restart needs: counters, every order, every fill (in booking order), the charges
    booked into the bot (in booking order)."""

    next_order_seq: int
    checkpoint: int
    orders: list[Order]
    fills: list[Fill]
    charges: list[BookedCharge] = field(default_factory=list)


class SqlJournal:
    """OrderJournal on SQLAlchemy Core, for one bot on one venue."""

    def __init__(self, engine: Engine, bot_id: str, venue: str, account_id: str = "default") -> None:
        self.engine = engine
        self.bot_id = bot_id
        self.venue = venue
        self._new_orders: dict[str, Order] = {}
        self._dirty_orders: dict[str, Order] = {}
        self._events: list[dict[str, Any]] = []
        self._fills: list[dict[str, Any]] = []
        self._checkpoint: int | None = None
        self._positions: dict[str, dict[str, Any]] = {}
        self._snapshots: list[dict[str, Any]] = []
        self._days: list[dict[str, Any]] = []
        self._points: list[dict[str, Any]] = []
        self._signals: list[dict[str, Any]] = []  # rows of engine.store.signals, deferred to this commit
        self._known: set[str] = set()
        self.commits = 0
        self.guards: list[Callable[[], None]] = []  # each raises to refuse a commit (a lost lease)
        self._ensure_bot(account_id)
        self.watch = StoreFileWatch.of(engine.url)  # the file just opened; None unless SQLite on disk
        self._sql = _statements(engine, bot_id)
        # SQLite in a file: the same statements, compiled once and run at the driver on a held
        # connection (engine/store/prepared.py); the write-ahead commit is the latency of every order
        self._writer: SqliteWriter | None = SqliteWriter(engine) if usable(engine) else None
        self._prepared: dict[tuple[str, tuple[str, ...]], Prepared] = {}
        # the last write-ahead record (engine/store/write_ahead.py) until `settle` puts it in the tables
        self._record: list[tuple[Prepared, list[tuple[Any, ...]]]] = []
        self._record_signals = False  # the record holds signal rows: their readers wake once it is settled
        # where the records go: a log beside the store file (SQLite files only, with the writer)
        self._log = write_ahead.RecordLog(self.watch.path, bot_id) \
            if self._writer is not None and self.watch is not None else None
        # the last record's number: the settled mark, once what a crash left past it was run (here,
        # before any transaction of this thread can be open: that runs under SQLite's write lock)
        self._seq = settle_write_ahead(engine, bot_id) if self._log is not None else 0

    def _ensure_bot(self, account_id: str) -> None:
        with self.engine.begin() as connection:
            exists = connection.execute(select(BOTS.c.id).where(BOTS.c.id == self.bot_id)).first()
            if exists is None:
                connection.execute(insert(BOTS).values(id=self.bot_id, name=self.bot_id, account_id=account_id,
                                                       config={}, status="STOPPED", next_order_seq=0,
                                                       checkpoint=-1))

    # -- OrderJournal ----------------------------------------------------------------------------
    def record_event(self, order: Order, event: OrderEvent) -> None:
        cid = order.client_order_id
        if cid not in self._known:
            self._known.add(cid)
            self._new_orders[cid] = order
        elif cid not in self._new_orders:
            self._dirty_orders[cid] = order
        self._events.append({"client_order_id": cid, "state": event.state.value, "ts": event.ts,
                             "reason": event.reason})

    def record_fill(self, order: Order, fill: Fill) -> None:
        self._fills.append({
            "venue": self.venue, "execution_id": fill.execution_id, "client_order_id": fill.client_order_id,
            "bot_id": self.bot_id, "symbol": fill.symbol, "side": fill.side.value, "qty": fill.qty,
            "price": fill.price, "fee": fill.fee, "liquidity": fill.liquidity.value, "ts": fill.ts,
            "fee_currency": fill.fee_currency, "fee_native": fill.fee_native if fill.fee_currency else None,
        })

    def record_position(self, portfolio: Portfolio, symbol: str, ts: int) -> None:
        """Snapshot a position and the account's cash, written with the next flush."""
        position = portfolio.positions[symbol]
        self._positions[symbol] = {
            "bot_id": self.bot_id, "symbol": symbol, "qty": position.quantity, "avg_price": position.avg_price,
            "realized_pnl": position.scales.cash(position.realized_pnl), "fees": position.scales.cash(position.fees),
            "cash": portfolio.cash, "updated_ts": ts,
        }

    def record_day(self, account_id: str, day: date, snapshot: dict[str, Any], day_pnl: dict[str, Any]) -> None:
        """An account snapshot and the closing day's P&L, written with the next flush."""
        self._snapshots.append({"account_id": account_id, **snapshot})
        self._days.append({"account_id": account_id, "bot_id": self.bot_id, "day": day, **day_pnl})

    def record_equity(self, ts: int, equity: Decimal, cash: Decimal, realized: Decimal, unrealized: Decimal,
                      position: Decimal) -> None:
        """The books at a bar close, written with the next commit (it does not ask for one)."""
        self._points.append({"bot_id": self.bot_id, "ts": ts, "equity": equity, "cash": cash,
                             "realized": realized, "unrealized": unrealized, "position": position})

    def record_signal(self, row: dict[str, Any]) -> None:
        """A published signal's row (SqlSignals.defer_to), written with the next flush, which it asks for."""
        self._signals.append(row)

    def set_checkpoint(self, sequence: int) -> None:
        self._checkpoint = sequence

    @property
    def pending(self) -> bool:
        return bool(self._new_orders or self._dirty_orders or self._events or self._fills or self._positions
                    or self._snapshots or self._days or self._signals or self._record)

    def flush(self) -> None:
        """Commit everything recorded since the last flush, in one transaction (with the account
        check this thread carries, if any: `carried`), the last write-ahead record's rows first."""
        carried = self._writer is not None and self._writer.carrying
        if not self.pending and self._checkpoint is None and not self._points and not carried:
            return
        if not carried:  # a carried transaction ran the guards before it opened (`run_guards`)
            for guard in self.guards:
                guard()
        if self._writer is not None:
            self._writer.write([(p, rows) for _, _, p, rows in self._batches()],
                               first=self._apply_record if self._record else None)
        else:
            self._flush_sqlalchemy()
        self._committed(bool(self._signals) or self._record_signals)
        self._record = []
        self._record_signals = False

    def write_ahead(self) -> None:
        """The write-ahead commit of an order (engine/oms.py calls this, then the venue, then
        `settle`): everything recorded so far durable before a venue can have seen the order.

        On a SQLite file the rows go into one record appended to the bot's log (engine/store/
        write_ahead.py: one write(2) instead of a commit of eight WAL pages) and reach their tables
        with `settle`, right after the venue call: readers in other processes, subscribers to the
        bot's signals included, see them then. A carried account check is committed here, after
        the append, so the account's other bots see this bot's share before the venue call.
        Elsewhere (PostgreSQL, in-memory SQLite, a value the record cannot hold, a record not yet
        settled) this is `flush`."""
        writer = self._writer
        if writer is None or self._log is None or self._record:
            self.flush()
            return
        record, stored = [], []
        for name, keys, prepared, rows in self._batches():
            tuples = [prepared.row(r) for r in rows]
            record.append((prepared, tuples))
            stored.append((name, keys, tuples))
        try:
            payload = write_ahead.encode(stored, RECORD_SHAPES)
        except (TypeError, ValueError, OverflowError):  # a value the record cannot hold: the tables directly
            self.flush()
            return
        if not writer.carrying:  # a carried transaction ran the guards before it opened (`run_guards`)
            for guard in self.guards:
                guard()
        seq = self._seq + 1
        self._log.append(seq, payload)  # durable from here, against a killed process
        self._seq = seq
        if writer.carrying:
            writer.settle(commit=True)  # the account's lock and this bot's share, before the venue call
        self._record_signals = bool(self._signals)
        self._committed(False)  # the signal rows are in the record: their readers wake at the settle
        self._record = record

    def settle(self) -> None:
        """After the venue call of a `write_ahead`: the record's rows (and whatever the venue call
        reported meanwhile) into their tables, the record deleted, one commit. Nothing to do when
        the write-ahead wrote the tables itself."""
        if self._record:
            self.flush()
            log = self._log
            if log is not None and log.size > write_ahead.LOG_LIMIT:
                log.truncate_settled()  # every record this runtime appended is settled now

    def _apply_record(self, connection: Any) -> None:
        """`first` of a settling write: take this bot's record and run its rows, unless another
        process took it first (a restart's load: then it ran them, and running them again here
        would book them twice)."""
        assert self._log is not None
        if connection.execute(_CLAIM, (self._seq, self._log.size, self.bot_id, self._seq)).rowcount == 1:
            for prepared, tuples in self._record:
                connection.executemany(prepared.sql, tuples)

    def _committed(self, signals: bool) -> None:
        """After a commit: trust it only if it went to our file, wake the signals' readers if
        `signals` reached their table, clear what was recorded."""
        if self.watch is not None:
            self.watch.check()  # the commit went to a deleted file if the path is not ours anymore
        if signals:
            announce_stored()  # signal rows were in this commit (SqlSignals.defer_to): wake their readers
        self.commits += 1
        self._new_orders.clear()
        self._dirty_orders.clear()
        self._events.clear()
        self._fills.clear()
        self._positions.clear()
        self._snapshots.clear()
        self._days.clear()
        self._points.clear()
        self._signals.clear()
        self._checkpoint = None

    def after_input(self) -> None:
        """The bot is done with an input (its commit made): the WAL's upkeep, here rather than
        inside a write-ahead commit (SqliteWriter.checkpoint_if_due). Nothing off SQLite files."""
        if self._writer is not None:
            self._writer.checkpoint_if_due()

    def run_guards(self) -> None:
        """The commit guards, for a writer about to open a transaction this journal's next flush
        will commit (engine/account_risk.py): they run before its lock is taken, because a guard
        may write through another connection (a lease renewal), which would wait for that lock."""
        for guard in self.guards:
            guard()

    def carries_with(self, writer: SqliteWriter) -> bool:
        """Whether a transaction `writer` carries is committed by this journal's next flush (the
        same SQLite file, the same thread: one held connection, engine/store/prepared.py)."""
        return self._writer is not None and self._writer.joins(writer)

    def close(self) -> None:
        """Give back the connection the SQLite path holds (the owner calls this before disposing
        the engine; a journal dropped without it returns the connection when collected)."""
        if self._writer is not None:
            self._writer.close()
        if self._log is not None:
            if not self._record:
                self._log.truncate_settled()  # a clean stop leaves an empty log (only this writer's, settled)
            self._log.close()

    def _dirty_rows(self) -> list[dict[str, Any]]:
        return [{"cid": o.client_order_id, "state": o.state.value, "filled_qty": o.filled_qty, "qty": o.qty,
                 "avg_fill_price": o.avg_fill_price, "reason": o.reason, "limit_price": o.limit_price,
                 "stop_price": o.stop_price, "ts_last": o.events[-1].ts if o.events else o.ts_init}
                for o in self._dirty_orders.values()]

    def _flush_sqlalchemy(self) -> None:
        with self.engine.begin() as connection:
            for name, rows in self._rows():
                connection.execute(self._sql[name], rows)
                if name == "signals" and connection.dialect.name == "postgresql":
                    connection.execute(NOTIFY)  # readers in other processes (engine.store.signals)

    def _rows(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """What a flush writes, by statement name (`_statements`), in the order it writes it."""
        rows: list[tuple[str, list[dict[str, Any]]]] = []
        if self._signals:
            rows.append(("signals", self._signals))
        if self._new_orders:
            rows.append(("orders", [_order_values(o) for o in self._new_orders.values()]))
        if self._dirty_orders:
            rows.append(("order_updates", self._dirty_rows()))
        if self._events:
            rows.append(("events", self._events))
        if self._fills:
            rows.append(("fills", self._fills))
        if self._positions:
            rows.append(("positions", list(self._positions.values())))
        if self._snapshots:
            rows.append(("snapshots", self._snapshots))
        if self._days:
            rows.append(("days", self._days))
        if self._points:
            rows.append(("points", self._points))
        if self._checkpoint is not None:
            rows.append(("checkpoint", [{"checkpoint": self._checkpoint}]))
        return rows

    def _batches(self) -> list[tuple[str, tuple[str, ...], Prepared, list[dict[str, Any]]]]:
        """`_rows` with each statement compiled for its rows' keys, once (the SQLite writer's path)."""
        batches = []
        for name, rows in self._rows():
            shape = RECORD_SHAPES[name]
            keys = shape if type(shape) is tuple else tuple(rows[0])
            prepared = self._prepared.get((name, keys))
            if prepared is None:
                assert self._writer is not None
                prepared = self._prepared[(name, keys)] = self._writer.prepare(self._sql[name], keys)
            batches.append((name, keys, prepared, rows))
        return batches

    # -- account-level charges -----------------------------------------------------------------
    def record_charge(self, account_id: str, charge: AccountCharge, booked: bool, value: Decimal | None = None,
                      price: Decimal | None = None, fill_seq: int | None = None) -> bool:
        """Decide `charge` for the account, durably, now (module docstring). `booked`: this bot
        claims it (its sole holder), with its value, valuation price and place among its fills;
        otherwise it is recorded as the account's (external) unless someone already recorded it.
        True only when this call made it this bot's: the caller books it then, and only then."""
        row = {"account_id": account_id, "charge_id": charge.charge_id, "bot_id": self.bot_id,
               "kind": str(charge.kind), "symbol": charge.symbol, "asset": charge.asset, "amount": charge.amount,
               "ts": charge.ts, "booked": booked, "value": value if booked else None,
               "price": price if booked else None, "fill_seq": fill_seq if booked else None}
        if booked:
            for guard in self.guards:  # a bot another runtime took over books nothing more
                guard()
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        with self.engine.begin() as connection:
            # RETURNING, not rowcount: PostgreSQL's driver reports -1 for an INSERT that returns rows
            inserted = connection.execute(dialect.insert(CHARGES).values(**row).on_conflict_do_nothing()
                                          .returning(CHARGES.c.id)).first()
            if not booked:
                return False
            if inserted is not None:
                return True
            claimed = connection.execute(
                update(CHARGES).where(CHARGES.c.account_id == account_id, CHARGES.c.charge_id == charge.charge_id,
                                      CHARGES.c.booked.is_(False))
                .values(bot_id=self.bot_id, booked=True, value=value, price=price, fill_seq=fill_seq)
                .returning(CHARGES.c.id)).first()
            return claimed is not None

    def charge_rows(self, account_id: str) -> dict[str, tuple[bool, str | None]]:
        """The account's recorded charges: charge id -> (booked, bot id)."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(CHARGES.c.charge_id, CHARGES.c.booked, CHARGES.c.bot_id)
                                      .where(CHARGES.c.account_id == account_id)).all()
        return {r.charge_id: (bool(r.booked), r.bot_id) for r in rows}

    # -- reading back ----------------------------------------------------------------------------
    def load(self, instruments: dict[str, Instrument]) -> StoredBot:
        settled = settle_write_ahead(self.engine, self.bot_id)  # records a crash left: the books' too
        if self._log is not None and not self._record:
            self._seq = max(self._seq, settled)
        with self.engine.connect() as connection:
            bot = connection.execute(select(BOTS).where(BOTS.c.id == self.bot_id)).one()
            order_rows = connection.execute(select(ORDERS).where(ORDERS.c.bot_id == self.bot_id)
                                            .order_by(ORDERS.c.ts_init, ORDERS.c.client_order_id)).all()
            fill_rows = connection.execute(select(FILLS).where(FILLS.c.bot_id == self.bot_id)
                                           .order_by(FILLS.c.id)).all()
            charge_rows = connection.execute(select(CHARGES).where(CHARGES.c.bot_id == self.bot_id,
                                                                   CHARGES.c.booked.is_(True))
                                             .order_by(CHARGES.c.fill_seq, CHARGES.c.id)).all()
        orders = [_order_from_row(r) for r in order_rows]
        self._known.update(o.client_order_id for o in orders)
        # the id sequence is the highest the bot ever journaled: every id is stored (write-ahead)
        # before it can be used, so this never hands out an id twice
        next_seq = max([bot.next_order_seq] + [_sequence_of(o.client_order_id, self.bot_id) or 0 for o in orders])
        fills = [_fill_from_row(r, instruments[r.symbol].scales) for r in fill_rows]
        charges = [BookedCharge(AccountCharge(r.charge_id, ChargeKind(r.kind), r.symbol, r.asset, Decimal(r.amount),
                                              r.ts), Decimal(r.value), None if r.price is None else Decimal(r.price),
                                r.fill_seq or 0) for r in charge_rows]
        return StoredBot(next_seq, bot.checkpoint, orders, fills, charges)


def _sequence_of(client_order_id: str, bot_id: str) -> int | None:
    prefix = bot_id + "-"
    if client_order_id.startswith(prefix) and client_order_id[len(prefix):].isdigit():
        return int(client_order_id[len(prefix):])
    return None


def _order_from_row(row: Any) -> Order:
    return Order(
        client_order_id=row.client_order_id, bot_id=row.bot_id, symbol=row.symbol, side=OrderSide(row.side),
        type=OrderType(row.type), qty=row.qty, ts_init=row.ts_init, limit_price=row.limit_price,
        stop_price=row.stop_price, tif=TimeInForce(row.tif), reduce_only=row.reduce_only,
        equity_fraction=row.equity_fraction, tag=row.tag, state=OrderState(row.state),
        venue_order_id=row.venue_order_id, filled_qty=row.filled_qty or Decimal(0),
        avg_fill_price=row.avg_fill_price, reason=row.reason, parent_id=row.parent_id, oco_group=row.oco_group,
        trail_distance=row.trail_distance, trail_percent=row.trail_percent, expire_ns=row.expire_ns,
        emulated=bool(row.emulated), trigger_of=row.trigger_of,
    )


def _fill_from_row(row: Any, scales: Scales) -> Fill:
    """A stored fill back on its instrument's raw grid."""
    return Fill(row.execution_id, row.client_order_id, row.symbol, OrderSide(row.side),
                to_raw(Decimal(row.qty), scales.qty_dp), to_raw(Decimal(row.price), scales.price_dp),
                to_raw(Decimal(row.fee), scales.cash_dp), scales.qty_dp, scales.price_dp, scales.cash_dp, row.ts,
                Liquidity(row.liquidity), *_fee_native(row))


def _fee_native(row: Any) -> tuple[str, int, int]:
    """(fee_currency, fee_native_raw, fee_native_dp) of a stored fill; ("", 0, 0) for a cash fee."""
    if not row.fee_currency or row.fee_native is None:
        return "", 0, 0
    native = Decimal(row.fee_native).normalize()
    dp = max(0, -int(native.as_tuple().exponent))  # type: ignore[arg-type]
    return row.fee_currency, int(native.scaleb(dp)), dp


# a store's file per URL, for readers that look for a log on every request (resolve() walks the path)
_database_file = lru_cache(maxsize=64)(sqlite_file)


# the settle's claim of a record: the mark moves only past records no one ran yet
_CLAIM = "UPDATE write_ahead SET settled = ?, settled_size = ? WHERE bot_id = ? AND settled < ?"


def settle_if_left(connection: Any, bot_id: str) -> None:
    """`settle_write_ahead` for `bot_id` when its log may hold records past its mark: a stat of the
    log and a read of its mark on the caller's own connection (a SQLAlchemy Connection or Session),
    so a reader serving many clients (the API) reads no log and takes no second pooled connection
    unless a crash left records (or a bot is inside its venue call)."""
    bind = connection.get_bind() if hasattr(connection, "get_bind") else connection.engine
    database = _database_file(str(bind.url))
    if database is None:
        return
    try:
        size = os.stat(write_ahead.log_path(database, bot_id)).st_size
    except FileNotFoundError:
        return
    known = connection.execute(select(WRITE_AHEAD.c.settled_size).where(WRITE_AHEAD.c.bot_id == bot_id)).scalar()
    if size and size != known:
        settle_write_ahead(bind, bot_id)


def settle_write_ahead(engine: Engine, bot_id: str) -> int:
    """Run the records of `bot_id`'s write-ahead log past its settled mark (engine/store/write_ahead.py)
    into their tables, in order, and move the mark; returns the mark. For whoever reads a bot's
    books from the store (its restart's load, a reset, the API's and the manager's reads): a
    record holds an order a venue may have seen. 0 on PostgreSQL and in-memory SQLite (no log).

    One transaction under SQLite's write lock (BEGIN IMMEDIATE), the mark read inside it: the bot,
    settling its own record at the same time, finds the mark moved and does not run it again
    (SqlJournal._apply_record). The log is only read here, never changed. A log that cannot be read
    back, or rows the tables refuse (a constraint: the rows are checked by the tables only at the
    settle, after the venue call), raise WriteAheadUnreadable and leave everything as it was."""
    watch = StoreFileWatch.of(engine.url) if engine.dialect.name == "sqlite" else None
    if watch is None:
        return 0
    log = write_ahead.RecordLog(watch.path, bot_id)
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            mark = connection.execute("SELECT settled FROM write_ahead WHERE bot_id = ?", (bot_id,)).fetchone()
            records, seen = log.read_seen()  # inside the lock: the bot cannot settle meanwhile
            if mark is None:
                if records:  # a journal makes its mark before its first record: this log is another store's
                    raise write_ahead.WriteAheadUnreadable(
                        f"bot {bot_id}'s write-ahead log beside the store holds records this store never "
                        "marked (the store file was replaced or recreated while the log stayed): move the "
                        "store's -write-ahead directory aside, or put the store it belongs to back; the bot "
                        "does not start")
                connection.execute("INSERT INTO write_ahead (bot_id, settled, settled_size) VALUES (?, 0, 0)",
                                   (bot_id,))
            settled = 0 if mark is None else mark[0]
            for seq, payload in records:
                if seq <= settled:
                    continue
                for sql, tuples in _checked(engine, bot_id, payload):
                    try:
                        connection.executemany(sql, tuples)
                    except sqlite3.IntegrityError as error:  # the tables refuse a row: a bug, not a busy store
                        raise write_ahead.WriteAheadUnreadable(
                            f"bot {bot_id}'s write-ahead record {seq} cannot be applied to the tables ({error}): "
                            "the log stays as it is for inspection, and the bot does not start") from None
                settled = seq
            # the size as read, torn bytes included: `settle_if_left` reads the log again only once it changed
            connection.execute("UPDATE write_ahead SET settled = ?, settled_size = ? WHERE bot_id = ?",
                               (settled, seen, bot_id))
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
    finally:
        raw.close()
    return int(settled)


def _checked(engine: Engine, bot_id: str, payload: bytes) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """A stored record's statements and parameter tuples, each tuple as wide as its statement and
    holding the statement's own values (the bot's id) where the statement has them."""
    statements = _statements(engine, bot_id)
    runs = []
    for name, keys, tuples in write_ahead.decode(payload, RECORD_SHAPES, bot_id):
        prepared = Prepared(engine, statements[name], keys)
        own = prepared.own_values()
        if any(len(t) != prepared.width or any(t[i] != v for i, v in own) for t in tuples):
            raise write_ahead.WriteAheadUnreadable(f"bot {bot_id}'s write-ahead record does not fit its {name} "
                                                   "statement: the log stays as it is for inspection, and the "
                                                   "bot does not start")
        runs.append((prepared.sql, tuples))
    return runs
