"""One AccountRisk per account, across bots and processes, through the store (issue 14 item 2).

Why. Several bots trade one broker account, in one runtime or in several processes. The
account's limits (gross exposure, open orders, daily loss, drawdown) and its kill switch must
bind them together; an AccountRisk per bot (what the runtime had) lets each bot spend the
whole account's limit on its own.

How. `SharedAccountRisk` is the AccountRisk the RiskEngine already talks to, with its figures in
the store:
- every bot publishes its *share* of the account (one row of account_risk_bots): its worst-case
  gross exposure, its open orders, its equity, its UTC day's start equity and high-water mark
  (from its own monitors), and a wall-clock heartbeat. It does so at every order it checks (a
  passed order is published with the order counted), whenever its monitors see equity, and
  whenever the runtime calls `publish` (after each input: cheap, a write only when the share
  changed or the heartbeat is due);
- an order's account checks read the other bots' shares, in every process, under the lock of the
  account's state row (account_risk_state, held from the first account check to the publish):
  two bots cannot both take the last unit of a limit;
- the account's state (the account kill switch, a daily-loss REDUCING, a drawdown HALTED) is
  that row: a change made anywhere is seen by every bot at its next check, and reported to this
  object's state listeners when it arrives from elsewhere (so a runtime can flatten its bots);
- the account's daily loss is the sum of its bots' day P&L (equity - day start); its drawdown is
  sum(high water - equity) against sum(high water), which overstates the account's drawdown when
  its bots peaked at different times (it fails safe) and, unlike a high-water mark of the summed
  equity, does not jump when a bot joins or leaves;
- a share whose heartbeat is older than `stale_after_ns` belongs to a bot that died: it is
  ignored (it must not block the account forever) and reported (`stale`, a warning in the log,
  and `read_account` for the API).

One instance per (process, store, account, limits): `account_risk_for`. Bots of one account whose
configs give different account limits get one instance each; they still bind each other through
the store, each held to its own limits.

Clocks. Heartbeats are wall-clock ns (`now`, injectable): a replayed bot's clock is years old.
State changes are stamped with the clock of whoever changed them, as StateChange.ts is.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlite3

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from engine.errors import StoreUnavailable
from engine.risk import (DAILY_LOSS, MAX_DRAWDOWN, NEW_DAY, AccountLimits, AccountRisk, RiskEngine, StateChange,
                         TradingState)
from engine.store.models import AccountRiskBotRow, AccountRiskStateRow, BotConfigRow, VenuePositionsRow
from engine.store.prepared import Prepared, SqliteWriter, usable

if TYPE_CHECKING:
    from engine.risk import _Candidate

log = logging.getLogger(__name__)

SECOND_NS = 1_000_000_000
STALE_AFTER_NS = 120 * SECOND_NS   # a share not refreshed for this long is a dead bot's
HEARTBEAT_EVERY_NS = 15 * SECOND_NS  # `publish` rewrites an unchanged share this often
ZERO = Decimal(0)
BOTS, STATE, VENUE = AccountRiskBotRow.__table__, AccountRiskStateRow.__table__, VenuePositionsRow.__table__
PROCESS = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"[:128]


def account_key(db: Engine | Connection, bot_id: str, account_name: str) -> str:
    """The store's key for the account a bot config names. Account names are unique per owner,
    not globally ("binance" of two traders are two accounts), so a bot with an API owner keys
    by "<owner id>:<name>" (as `owner_account_key`); a bot the runtime runs on its own by the name."""
    query = (select(BotConfigRow.owner_id).where(BotConfigRow.runtime_id == bot_id)
             .order_by(BotConfigRow.version.desc()).limit(1))
    if isinstance(db, Engine):
        with db.connect() as connection:
            owner = connection.execute(query).scalar()
    else:
        owner = db.execute(query).scalar()
    return account_name if owner is None else owner_account_key(owner, account_name)


def owner_account_key(owner_id: int, account_name: str) -> str:
    return f"{owner_id}:{account_name}"


@dataclass(frozen=True, slots=True)
class Share:
    """One bot's share of its account, as published."""

    bot_id: str
    process: str
    exposure: Decimal | None
    open_orders: int
    equity: Decimal | None
    day_start: Decimal | None
    high_water: Decimal | None
    day: int | None
    heartbeat_ns: int

    @property
    def day_pnl(self) -> Decimal:
        return ZERO if self.equity is None or self.day_start is None else self.equity - self.day_start

    @property
    def drawdown(self) -> Decimal:
        return ZERO if self.equity is None or self.high_water is None else max(self.high_water - self.equity, ZERO)


@dataclass(frozen=True, slots=True)
class StoredState:
    state: TradingState
    reason: str
    changed_ts: int
    day: int | None
    pnl_base: Decimal
    drawdown_base: Decimal


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as the store has it: its state, its bots' live shares, and the stale ones."""

    key: str
    state: StoredState
    shares: list[Share]
    stale: list[Share]

    def exposure(self, exclude: str | None = None) -> Decimal | None:
        total = ZERO
        for share in self.shares:
            if share.bot_id == exclude:
                continue
            if share.exposure is None:
                return None
            total += share.exposure
        return total

    def open_orders(self, exclude: str | None = None) -> int:
        return sum(share.open_orders for share in self.shares if share.bot_id != exclude)

    @property
    def day_pnl(self) -> Decimal:
        """The bots' day P&L summed, less what a resume accepted on the same day."""
        total = sum((share.day_pnl for share in self.shares), ZERO)
        return total - self.state.pnl_base if self.state.day is not None and self.day == self.state.day else total

    @property
    def day(self) -> int | None:
        days = [share.day for share in self.shares if share.day is not None]
        return max(days) if days else None

    @property
    def drawdown(self) -> Decimal:
        return max(sum((share.drawdown for share in self.shares), ZERO) - self.state.drawdown_base, ZERO)

    @property
    def high_water(self) -> Decimal:
        return sum((share.high_water for share in self.shares if share.high_water is not None), ZERO)


# -- the store: plain functions, used by SharedAccountRisk and by the API --------------------------

def _new_state(key: str) -> dict[str, Any]:
    return {"account_key": key, "state": TradingState.ACTIVE.value, "reason": "", "changed_ts": 0, "day": None,
            "pnl_base": ZERO, "drawdown_base": ZERO, "seq": 0}


def _ensure_state(db: Engine, key: str) -> None:
    """The account's state row, ACTIVE, unless it exists (in a transaction of its own: another
    process may be making it too)."""
    with db.connect() as connection:
        if connection.execute(select(STATE.c.account_key).where(STATE.c.account_key == key)).first() is not None:
            return
    try:
        with db.begin() as connection:
            connection.execute(insert(STATE).values(**_new_state(key)))
    except IntegrityError:  # another process made it first
        pass


def _lock(connection: Connection, key: str) -> None:
    """Take the account's lock until the transaction ends: a write to its state row (PostgreSQL
    locks the row; SQLite the database, in the transaction's first statement, so no read snapshot
    taken before the lock is ever upgraded)."""
    if connection.execute(update(STATE).where(STATE.c.account_key == key).values(seq=STATE.c.seq + 1)).rowcount == 0:
        connection.execute(insert(STATE).values(**_new_state(key)))


def _read(connection: Connection, key: str, now_ns: int, stale_after_ns: int) -> AccountView:
    row = connection.execute(select(*STATE_COLUMNS).where(STATE.c.account_key == key)).first()
    rows = connection.execute(select(*SHARE_COLUMNS).where(BOTS.c.account_key == key).order_by(BOTS.c.bot_id))
    return _view(key, None if row is None else tuple(row), [tuple(r) for r in rows], now_ns, stale_after_ns)


# the columns _view reads, in its order (the SQLite fast path selects the same)
STATE_COLUMNS = (STATE.c.state, STATE.c.reason, STATE.c.changed_ts, STATE.c.day, STATE.c.pnl_base,
                 STATE.c.drawdown_base)
SHARE_COLUMNS = (BOTS.c.bot_id, BOTS.c.process, BOTS.c.exposure, BOTS.c.open_orders, BOTS.c.equity,
                 BOTS.c.day_start, BOTS.c.high_water, BOTS.c.day, BOTS.c.heartbeat_ns)


def _view(key: str, state_row: tuple[Any, ...] | None, share_rows: list[tuple[Any, ...]], now_ns: int,
          stale_after_ns: int) -> AccountView:
    """The account from its state row and its share rows (columns as STATE_COLUMNS, SHARE_COLUMNS;
    money already Decimal)."""
    if state_row is None:
        state = NO_STATE
    else:
        name, reason, changed_ts, day, pnl_base, drawdown_base = state_row
        state = StoredState(TradingState(name), reason, changed_ts, day, pnl_base, drawdown_base)
    return _classify(key, state, [Share(*r) for r in share_rows], now_ns, stale_after_ns)


NO_STATE = StoredState(TradingState.ACTIVE, "", 0, None, ZERO, ZERO)  # what a missing state row reads as


def _classify(key: str, state: StoredState, shares: list[Share], now_ns: int, stale_after_ns: int) -> AccountView:
    """The account from its state and its shares (in bot id order): a share whose heartbeat is older
    than `stale_after_ns` at `now_ns` is a dead bot's, listed apart."""
    live, stale = [], []
    for share in shares:
        (stale if now_ns - share.heartbeat_ns > stale_after_ns else live).append(share)
    return AccountView(key, state, live, stale)


def _decimal(value: Any) -> Decimal | None:
    """A money column as the driver returns it on SQLite (canonical text: models.ExactDecimal)."""
    return None if value is None else value if isinstance(value, Decimal) else Decimal(value)


# What the account checks of this process wrote of each account's rows, on any held connection: a
# count per account key, moved by every such write (`_SqliteChecks._wrote`). A bot's cached read of
# its account (`_Seen`) is reused only while the count has not moved since: two bots on one thread
# write on one connection (engine/store/prepared.py), and a connection's own writes do not move
# SQLite's data_version.
_WRITES: dict[str, int] = {}
_WRITE_SEQ = itertools.count(1)


class _Seen:
    """What a bot's held connection last read of its account under the account's lock (the state and
    every share, in bot id order), with the bot's own share writes since laid over it.

    Exact, so an account check may take it instead of reading again, while
    (a) it is the same connection: one given up after a failure (a failed write-ahead) took its
        open transaction, the bot's last share with it;
    (b) no other connection has committed since the read: SQLite's `PRAGMA data_version` is then
        unchanged on this connection; it changes when another connection, of this process or any
        other, commits, and not for this connection's own commits (the bot's journal, signals...,
        which write no account row; https://sqlite.org/pragma.html#pragma_data_version). Read inside
        the transaction holding the lock, it is the version of what the transaction sees;
    (c) no other check of this process has written the account's rows since (`_WRITES`);
    (d) every write laid over it was committed: a transaction rolled back with its connection kept
        (`abort`, `close`, a stray one `_connection` ends) drops the entry.
    `own` is the bot's share as the store has it (None: no row), which a check's publish, under the
    lock that checked the entry, updates column by column (`_SqliteChecks.publish`)."""

    __slots__ = ("connection", "version", "writes", "state", "shares", "own")

    def __init__(self, connection: sqlite3.Connection, version: int, writes: int, state: StoredState,
                 shares: list[Share], bot_id: str) -> None:
        self.connection = connection  # held on purpose: a new connection can never be taken for this one
        self.version = version
        self.writes = writes
        self.state = state
        self.shares = shares
        self.own = next((share for share in shares if share.bot_id == bot_id), None)

    def lay(self, share: Share) -> None:
        """The bot's own share as just written: in place of its row, or added in bot id order (as the
        read orders them: SQLite orders text by its UTF-8 bytes, which is Python's code point order)."""
        shares = self.shares.copy()  # a list once returned is never changed
        own = self.own
        for i, old in enumerate(shares):
            if old is own:
                shares[i] = share
                break
        else:
            shares = [s for s in shares if s.bot_id != share.bot_id]
            bisect.insort(shares, share, key=_bot_id)
        self.shares = shares
        self.own = share


def _bot_id(share: Share) -> str:
    return share.bot_id


class _SqliteChecks:
    """The account's store traffic on SQLite in a file, at the driver (engine/store/prepared.py):
    an order's check (the state row's lock first, then the reads, the share's write, one commit),
    a bot's equity judgement and its share's publication, each the same transaction as the
    SQLAlchemy path, on a connection each bot keeps, with statements compiled once.
    Why: the check runs for every order between the decision and the venue, the equity judgement at
    every bar close (the same tick may send an order), and through SQLAlchemy each costs about a
    millisecond of CPU (statements built per call, a second connection whose commits make the held
    one re-read its pages).

    A passed check's commit may be carried (`publish(carry=True)`): the lock and the share stay in
    the open transaction, which the bot's journal commits with the order's write-ahead.

    Under the lock, the account's rows are read only when another connection committed since this
    bot's connection last read them (`_Seen`): a bot alone on its account, or whose partners are
    idle, checks an order with the lock and one PRAGMA, not two reads and their parsing. A row read
    again unchanged is not parsed again (`_parsed`)."""

    def __init__(self, db: Engine, key: str) -> None:
        self.db = db
        self.key = key
        self._held: dict[str, SqliteWriter] = {}  # bot id -> its connection (bots run on their own threads)
        self._seen: dict[str, _Seen] = {}         # bot id -> its connection's last read of the account
        self._parsed: dict[str, tuple[Any, Share]] = {}  # bot id -> its share row as last read, parsed
        self._parsed_state: tuple[Any, StoredState] | None = None  # the state row as last read, parsed
        self._locked: dict[str, _Seen] = {}  # bot id -> the entry its open check's lock checked (`begin`)
        self._updates: dict[tuple[str, ...], Prepared] = {}  # changed share columns -> their UPDATE
        prepare = self._prepare = SqliteWriter(db).prepare
        where_share = self._where_share = (BOTS.c.account_key == bindparam("k")) & (BOTS.c.bot_id == bindparam("b"))
        self._lock = prepare(update(STATE).where(STATE.c.account_key == bindparam("k"))
                             .values(seq=STATE.c.seq + 1), ("k",))
        self._insert_state = prepare(insert(STATE), tuple(_new_state(key)))
        self._state = prepare(select(*STATE_COLUMNS).where(STATE.c.account_key == bindparam("k")), ("k",))
        self._shares = prepare(select(*SHARE_COLUMNS).where(BOTS.c.account_key == bindparam("k"))
                               .order_by(BOTS.c.bot_id), ("k",))
        self._update_share = prepare(update(BOTS).where(where_share), ("k", "b", *SHARE_VALUES))
        self._insert_share = prepare(insert(BOTS), ("account_key", "bot_id", *SHARE_VALUES))
        self._set_state = prepare(update(STATE).where(STATE.c.account_key == bindparam("k")),
                                  ("k", "state", "reason", "changed_ts", "day"))
        self._key = {"k": key}

    def writer(self, bot_id: str) -> SqliteWriter:
        """The bot's writer (its thread's held connection, checked out on first use)."""
        writer = self._held.get(bot_id)
        if writer is None:
            writer = self._held[bot_id] = SqliteWriter(self.db)
        return writer

    def _connection(self, writer: SqliteWriter, bot_id: str) -> sqlite3.Connection:
        """The held connection, outside any transaction: a carried one (a passed check whose
        write-ahead never came, not expected) is committed, as it would have been on its own;
        anything else left open is rolled back (and what it wrote forgotten: `_wrote`)."""
        connection = writer.connection()
        if connection.in_transaction:
            if writer.carrying:
                writer.settle(commit=True)
            else:
                connection.rollback()
                self._wrote(bot_id, None)
        return connection

    def _rows(self, bot_id: str, connection: sqlite3.Connection, made: bool = False
              ) -> tuple[StoredState, list[Share]]:
        """The account's state and shares (in bot id order) under the lock this transaction holds:
        the bot's last read when it is still exact (`_Seen`), else read now (and kept); `made`: a
        missing state row is inserted (ACTIVE, what a missing row reads as)."""
        version = connection.execute("PRAGMA data_version").fetchone()[0]
        seen = self._seen.get(bot_id)
        if (seen is not None and seen.connection is connection and seen.version == version
                and seen.writes == _WRITES.get(self.key, 0)):
            return seen.state, seen.shares
        state, shares = self._read(bot_id, connection, made)
        self._seen[bot_id] = _Seen(connection, version, _WRITES.get(self.key, 0), state, shares, bot_id)
        return state, shares

    def _read(self, bot_id: str, connection: sqlite3.Connection, made: bool = False
              ) -> tuple[StoredState, list[Share]]:
        """The account's state row and share rows as the store has them now, parsed (a row read
        again unchanged: its last parse, `_parsed`)."""
        key = self._key
        row = connection.execute(self._state.sql, self._state.row(key)).fetchone()
        if row is None and made:
            connection.execute(self._insert_state.sql, self._insert_state.row(_new_state(self.key)))
            self._wrote(bot_id, connection)
        rows = connection.execute(self._shares.sql, self._shares.row(key)).fetchall()
        parsed = self._parsed
        if len(parsed) > len(rows) + 64:  # bots gone from the account
            parsed.clear()
        shares = []
        for r in rows:
            last = parsed.get(r[0])
            if last is not None and last[0] == r:
                shares.append(last[1])
                continue
            b, p, x, o, e, d, h, day, hb = r
            share = Share(b, p, _decimal(x), o, _decimal(e), _decimal(d), _decimal(h), day, hb)
            parsed[b] = (r, share)
            shares.append(share)
        return self._stored(row), shares

    def _stored(self, row: Any) -> StoredState:
        if row is None:
            return NO_STATE
        last = self._parsed_state
        if last is not None and last[0] == row:
            return last[1]
        name, reason, changed_ts, day, pnl_base, drawdown_base = row
        state = StoredState(TradingState(name), reason, changed_ts, day, _decimal(pnl_base), _decimal(drawdown_base))
        self._parsed_state = (row, state)
        return state

    def _write_share(self, connection: sqlite3.Connection, share: Share) -> None:
        values = _share_values(share)
        if connection.execute(self._update_share.sql,
                              self._update_share.row({"k": self.key, "b": share.bot_id, **values})).rowcount == 0:
            connection.execute(self._insert_share.sql, self._insert_share.row(
                {"account_key": self.key, "bot_id": share.bot_id, **values}))
        self._wrote(share.bot_id, connection, share)

    def _wrote(self, bot_id: str, connection: sqlite3.Connection | None, share: Share | None = None) -> None:
        """After `bot_id`'s connection wrote the account's rows (or rolled back what it wrote: no
        `connection`): every other read of them cached in this process stops being taken
        (`_WRITES`); the bot's own takes `share` as written if it was exact until now, else is dropped."""
        key = self.key
        before = _WRITES.get(key, 0)
        after = _WRITES[key] = next(_WRITE_SEQ)
        seen = self._seen.get(bot_id)
        if seen is None:
            return
        if share is not None and seen.connection is connection and seen.writes == before:
            seen.lay(share)
            seen.writes = after
        else:
            del self._seen[bot_id]

    @contextmanager
    def _guarded(self, writer: SqliteWriter, bot_id: str, sql: str) -> Iterator[None]:
        """Around a driver call: on an error the connection is given up (its transaction, the lock,
        with it), and a driver error is raised as SQLAlchemy's class, as the SQLAlchemy path raises."""
        try:
            yield
        except BaseException as error:
            self._failed(writer, bot_id, sql, error)
            raise

    def _failed(self, writer: SqliteWriter, bot_id: str, sql: str, error: BaseException) -> None:
        """After `error`: the connection is given up (what its transaction wrote is gone with it); a
        driver error is raised as SQLAlchemy's class, as the SQLAlchemy path raises (anything else
        is left to the caller to raise as it is)."""
        writer.discard()
        self._wrote(bot_id, None)
        self._locked.pop(bot_id, None)
        if isinstance(error, sqlite3.Error):
            raise DBAPIError.instance(sql, None, error, sqlite3.Error) from error

    def begin(self, bot_id: str, now_ns: int, stale_after_ns: int) -> AccountView:
        """Take the account's lock (held until `publish` or `abort`) and read the account under it.
        On SQLite the lock is the database's write lock, which BEGIN IMMEDIATE takes with the
        transaction's read snapshot (as the SQLAlchemy path's first-statement UPDATE of the state
        row does, without writing a page: one page less in the commit that follows); a missing
        state row is made, as `_lock` does."""
        writer = self.writer(bot_id)
        try:  # as `_guarded` does (inline: this is on every order's path)
            connection = self._connection(writer, bot_id)
            connection.execute("BEGIN IMMEDIATE")
            state, shares = self._rows(bot_id, connection, made=True)
        except BaseException as error:
            self._failed(writer, bot_id, self._lock.sql, error)
            raise
        self._locked[bot_id] = self._seen[bot_id]
        return _classify(self.key, state, shares, now_ns, stale_after_ns)

    def publish(self, share: Share, carry: bool = False) -> None:
        """Write the checking bot's share and commit, which releases the lock; `carry`: leave the
        transaction open for the bot's journal to commit with the order's write-ahead. Only the
        columns that changed are written when the bot's row as the store has it is known exactly
        (`_Seen.own`, checked under this lock by `begin`); none when nothing changed."""
        bot_id = share.bot_id
        writer = self._held[bot_id]
        seen = self._locked.pop(bot_id, None)
        sql = self._update_share.sql
        try:  # as `_guarded` does (inline: this is on every order's path)
            connection = writer.connection()
            own = None if seen is None else seen.own
            if (own is None or seen is not self._seen.get(bot_id) or seen.connection is not connection
                    or seen.writes != _WRITES.get(self.key, 0)):
                self._write_share(connection, share)
            else:
                changed = _changed(own, share)
                if changed:
                    update_share = self._updates.get(changed)
                    if update_share is None:
                        update_share = self._updates[changed] = self._prepare(
                            update(BOTS).where(self._where_share), ("k", "b", *changed))
                    sql = update_share.sql
                    values = {"k": self.key, "b": bot_id}
                    for name in changed:
                        values[name] = getattr(share, name)
                    if connection.execute(sql, update_share.row(values)).rowcount == 0:  # not expected
                        self._write_share(connection, share)
                    else:
                        self._wrote(bot_id, connection, share)
            if carry:
                writer.carry()
            else:
                connection.commit()
        except BaseException as error:
            self._failed(writer, bot_id, sql, error)
            raise

    def write_share(self, share: Share) -> None:
        """The bot's share in a transaction of its own (no lock: the bot's own row)."""
        writer = self.writer(share.bot_id)
        with self._guarded(writer, share.bot_id, self._update_share.sql):
            connection = self._connection(writer, share.bot_id)
            self._write_share(connection, share)
            connection.commit()

    def judge(self, bot_id: str, share: Share | None, ts: int, now_ns: int, stale_after_ns: int,
              judge: Callable[[AccountView], tuple[TradingState, str, int | None] | None]
              ) -> tuple[AccountView, tuple[TradingState, str, int | None] | None]:
        """Under the account's lock: write the bot's share (if any), read the account, and write
        the state `judge` decides from it (state, reason, day; changed at `ts`), in one transaction."""
        writer = self.writer(bot_id)
        with self._guarded(writer, bot_id, self._lock.sql):
            connection = self._connection(writer, bot_id)
            key = self._key
            if connection.execute(self._lock.sql, self._lock.row(key)).rowcount == 0:
                connection.execute(self._insert_state.sql, self._insert_state.row(_new_state(self.key)))
                self._wrote(bot_id, connection)
            if share is not None:
                self._write_share(connection, share)
            state, shares = self._rows(bot_id, connection)
            view = _classify(self.key, state, shares, now_ns, stale_after_ns)
            change = judge(view)
            if change is not None:
                state_name, reason, day = change
                connection.execute(self._set_state.sql, self._set_state.row(
                    {"k": self.key, "state": state_name.value, "reason": reason[:200], "changed_ts": ts, "day": day}))
                self._wrote(bot_id, connection)
            connection.commit()
        return view, change

    def abort(self, bot_id: str) -> None:
        """Roll back a check that will not publish: the lock goes with it."""
        writer = self._held.get(bot_id)
        self._locked.pop(bot_id, None)
        if writer is None:
            return
        self._wrote(bot_id, None)  # whatever the transaction wrote is gone
        try:
            connection = writer.connection()
            if connection.in_transaction:
                writer.settle(commit=False)
                if connection.in_transaction:
                    connection.rollback()
        except sqlite3.Error:
            writer.discard()

    def close(self, bot_id: str) -> None:
        """The bot stopped here: a check still carried (its write-ahead never came) is rolled back,
        and its connection goes back to the pool."""
        writer = self._held.pop(bot_id, None)
        self._locked.pop(bot_id, None)
        self._wrote(bot_id, None)
        if writer is not None:
            try:
                writer.settle(commit=False)
            finally:
                writer.close()


SHARE_VALUES = ("process", "exposure", "open_orders", "equity", "day_start", "high_water", "day", "heartbeat_ns")


def _changed(last: Share, share: Share) -> tuple[str, ...]:
    """The share columns (SHARE_VALUES order) whose value differs between two shares of one bot.
    Money compares as numbers: equal amounts are stored as the same canonical text (ExactDecimal).
    Written out field by field on purpose (every passed order check runs it): 0.34 us, against 1.0-1.4
    us for a loop over SHARE_VALUES with attrgetter (measured at stop 25's review); keep the two in step."""
    changed = []
    if share.process != last.process:
        changed.append("process")
    if share.exposure != last.exposure:
        changed.append("exposure")
    if share.open_orders != last.open_orders:
        changed.append("open_orders")
    if share.equity != last.equity:
        changed.append("equity")
    if share.day_start != last.day_start:
        changed.append("day_start")
    if share.high_water != last.high_water:
        changed.append("high_water")
    if share.day != last.day:
        changed.append("day")
    if share.heartbeat_ns != last.heartbeat_ns:
        changed.append("heartbeat_ns")
    return tuple(changed)


def _share_values(share: Share) -> dict[str, Any]:
    return {"process": share.process, "exposure": share.exposure, "open_orders": share.open_orders,
            "equity": share.equity, "day_start": share.day_start, "high_water": share.high_water,
            "day": share.day, "heartbeat_ns": share.heartbeat_ns}


def _write_share(connection: Connection, key: str, share: Share) -> None:
    values = _share_values(share)
    where = (BOTS.c.account_key == key) & (BOTS.c.bot_id == share.bot_id)
    if connection.execute(update(BOTS).where(where).values(**values)).rowcount == 0:
        connection.execute(insert(BOTS).values(account_key=key, bot_id=share.bot_id, **values))


def _write_state(connection: Connection, key: str, state: TradingState, reason: str, ts: int,
                 day: int | None = None, pnl_base: Decimal | None = None,
                 drawdown_base: Decimal | None = None) -> None:
    values: dict[str, Any] = {"state": state.value, "reason": reason[:200], "changed_ts": ts, "day": day}
    if pnl_base is not None:
        values["pnl_base"] = pnl_base
    if drawdown_base is not None:
        values["drawdown_base"] = drawdown_base
    connection.execute(update(STATE).where(STATE.c.account_key == key).values(**values))


def read_account(db: Engine, key: str, now_ns: int | None = None,
                 stale_after_ns: int = STALE_AFTER_NS) -> AccountView:
    """The account's state and its bots' shares (the API's view; stale shares listed apart)."""
    with db.connect() as connection:
        return _read(connection, key, time.time_ns() if now_ns is None else now_ns, stale_after_ns)


def kill_account(db: Engine, key: str, reason: str, ts: int | None = None) -> None:
    """The account kill switch from outside any runtime (the API): HALTED in the store, which every
    bot of the account, in every process, sees at its next check (ACCOUNT:TRADING_HALTED)."""
    ts = time.time_ns() if ts is None else ts
    _ensure_state(db, key)
    with db.begin() as connection:
        _lock(connection, key)
        _write_state(connection, key, TradingState.HALTED, f"KILL_SWITCH:{reason}", ts)


def resume_account(db: Engine, key: str, who: str, ts: int | None = None,
                   now_ns: int | None = None, stale_after_ns: int = STALE_AFTER_NS) -> None:
    """A person lifts the account's halt: ACTIVE, losses counted afresh from the bots' current
    shares (what AccountRisk.resume does with its monitors)."""
    ts = time.time_ns() if ts is None else ts
    _ensure_state(db, key)
    with db.begin() as connection:
        _lock(connection, key)
        _resume(connection, key, who, ts, time.time_ns() if now_ns is None else now_ns, stale_after_ns)


def _resume(connection: Connection, key: str, who: str, ts: int, now_ns: int, stale_after_ns: int) -> None:
    view = _read(connection, key, now_ns, stale_after_ns)
    raw_pnl = sum((share.day_pnl for share in view.shares), ZERO)
    raw_drawdown = sum((share.drawdown for share in view.shares), ZERO)
    _write_state(connection, key, TradingState.ACTIVE, f"RESUMED_BY:{who}", ts, view.day, raw_pnl, raw_drawdown)


def record_venue_positions(db: Engine, key: str, positions: dict[str, Decimal], ts: int) -> None:
    """The venue's positions on the account as reconciliation saw them, replacing the last snapshot
    (a symbol left out is flat). The API then shows what on the account is not the bots':
    external = venue - sum of the bots'. Quantities must be finite decimals, named if not."""
    clean: dict[str, str] = {}
    for symbol, qty in positions.items():
        if not isinstance(symbol, str) or not symbol or len(symbol) > 64:
            raise ValueError(f"record_venue_positions: positions has a bad symbol {symbol!r}")
        if not isinstance(qty, (Decimal, int)) or isinstance(qty, bool) or not Decimal(qty).is_finite():
            raise ValueError(f"record_venue_positions: positions[{symbol!r}] must be a finite Decimal")
        if qty:
            clean[symbol] = format(Decimal(qty).normalize(), "f")
    with db.begin() as connection:
        if connection.execute(update(VENUE).where(VENUE.c.account_key == key)
                              .values(ts=ts, positions=clean)).rowcount == 0:
            connection.execute(insert(VENUE).values(account_key=key, ts=ts, positions=clean))


def venue_positions(db: Engine | Connection, key: str) -> tuple[int, dict[str, Decimal]] | None:
    """(ts, {symbol: qty}) of the last venue snapshot, or None when there is none."""
    query = select(VENUE.c.ts, VENUE.c.positions).where(VENUE.c.account_key == key)
    if isinstance(db, Engine):
        with db.connect() as connection:
            row = connection.execute(query).first()
    else:
        row = db.execute(query).first()
    return None if row is None else (row.ts, {s: Decimal(q) for s, q in row.positions.items()})


# -- the AccountRisk ---------------------------------------------------------------------------------

class SharedAccountRisk(AccountRisk):
    """An AccountRisk whose bots may live in any process on the same store (module docstring)."""

    def __init__(self, db: Engine, key: str, limits: AccountLimits = AccountLimits(),
                 now: Callable[[], int] = time.time_ns, stale_after_ns: int = STALE_AFTER_NS,
                 heartbeat_every_ns: int = HEARTBEAT_EVERY_NS, process: str = PROCESS) -> None:
        if not key or len(key) > 128:
            raise ValueError("account key must be 1 to 128 characters")
        if stale_after_ns <= 0:
            raise ValueError("stale_after_ns must be positive")
        self.db = db
        self.key = key
        self.now = now
        self.stale_after_ns = stale_after_ns
        self.heartbeat_every_ns = heartbeat_every_ns
        self.process = process
        self.stale: dict[str, int] = {}       # bot id -> heartbeat of each share last seen stale
        self._view: dict[str, AccountView] = {}   # per checking bot: what its account checks read
        self._open: dict[str, Connection | None] = {}  # per checking bot: the connection holding the lock
        # (None: the SQLite fast path's own connection holds it, `_checks`)
        self._checks = _SqliteChecks(db, key) if usable(db) else None
        self._published: dict[str, Share] = {}
        self._journals: dict[str, Any] = {}  # per bot: the journal that commits its passed checks (`commit_with`)
        self._untold: dict[str, StateChange] = {}  # per checking bot: a change to tell once its lock is gone
        self._warned: set[tuple[str, int]] = set()
        super().__init__(limits)
        try:
            _ensure_state(db, key)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        self.refresh()

    # -- registration --------------------------------------------------------------------------------
    def register(self, engine: RiskEngine) -> None:
        """A bot (re)starting in this process replaces its previous engine: the bot lease lets one
        runner have a bot at a time, so the old engine is a stopped run's."""
        self.engines[engine.bot_id] = engine

    def commit_with(self, engine: RiskEngine, journal: Any) -> None:
        """Let `journal` (the bot's SqlJournal, whose flush the OMS calls right after a passed check,
        before the venue sees the order) commit the bot's passed checks: the account's lock and the
        bot's share stay in the check's transaction, and the order's write-ahead commits them.
        One commit per order instead of two, and the share counting an order is durable exactly
        when the order is. Applies only when both write on the same held connection (SQLite file,
        the bot's thread); otherwise each check commits on its own, as before. None: stop."""
        if journal is None:
            self._journals.pop(engine.bot_id, None)
        else:
            self._journals[engine.bot_id] = journal

    def release(self, engine: RiskEngine) -> None:
        """The bot stopped here. Its share is deleted when it holds nothing and has no order
        working; otherwise it stays (orders kept at the venue still count) until it goes stale."""
        if self.engines.get(engine.bot_id) is engine:
            del self.engines[engine.bot_id]
        self._journals.pop(engine.bot_id, None)
        if self._checks is not None:
            self._checks.close(engine.bot_id)
        share = self._share(engine)
        with self._store() as connection:
            if share is not None and share.open_orders == 0 and not any(engine.positions().values()):
                connection.execute(delete(BOTS).where((BOTS.c.account_key == self.key)
                                                      & (BOTS.c.bot_id == engine.bot_id)))
            elif share is not None:
                _write_share(connection, self.key, share)
        self._published.pop(engine.bot_id, None)

    # -- the state ---------------------------------------------------------------------------------
    def set_state(self, new: TradingState, ts: int, reason: str) -> None:
        """Written to the store first (every bot of the account obeys it), then taken here. A halt or
        REDUCING the store cannot take is still taken here (a kill switch must stop this process's
        bots whatever the store does), and logged; trading again (ACTIVE) needs the store."""
        try:
            with self._store() as connection:
                _lock(connection, self.key)
                _write_state(connection, self.key, new, reason, ts)
        except StoreUnavailable as exc:
            if new is TradingState.ACTIVE:
                raise
            log.error("account %s: %s set here only, not in the store (other processes' bots do not see it): %s",
                      self.key, new.value, exc)
        super().set_state(new, ts, reason)

    def resume(self, ts: int, who: str) -> None:
        with self._store() as connection:
            _lock(connection, self.key)
            _resume(connection, self.key, who, ts, self.now(), self.stale_after_ns)
            state = _read(connection, self.key, self.now(), self.stale_after_ns).state
        self._adopt(state)

    def refresh(self) -> AccountView:
        """Read the account now (its state is taken here, listeners told of a change)."""
        with self._store() as connection:
            view = self._read(connection)
        self._adopt(view.state)
        return view

    def _adopt(self, stored: StoredState) -> None:
        """Take the store's state; a change made elsewhere reaches this object's listeners."""
        self._tell(self._take(stored))

    def _take(self, stored: StoredState) -> StateChange | None:
        """The store's state, taken without telling anyone yet: inside a check the account's lock
        is held, and a listener (a runtime flattening its bots) must not run under it."""
        if stored.state is self.state:
            return None
        change = StateChange(stored.changed_ts, self.state, stored.state, stored.reason, self.scope)
        self.state = stored.state
        self.state_changes.append(change)
        return change

    def _tell(self, change: StateChange | None) -> None:
        if change is not None:
            for listener in self.listeners:
                listener(change)

    def on_equity(self, equity: Decimal, ts: int) -> None:
        """Ignored: a shared account's equity is its bots' shares, which each RiskEngine publishes
        when its own monitors see its equity (on_bot_equity). One bot's equity fed here would
        be taken for the whole account's."""

    # -- the checks (RiskEngine calls these) ---------------------------------------------------------
    def begin_check(self, engine: RiskEngine) -> None:
        bot_id = engine.bot_id
        if bot_id in self._open or bot_id in self._untold:
            self.abort_check(engine)  # a check that never ended (not expected): do not keep its lock
        if self._checks is not None:
            journal = self._journals.get(bot_id)
            if journal is not None:  # its commit may carry this check: its guards run before the lock
                journal.run_guards()
            try:
                view = self._checks.begin(bot_id, self.now(), self.stale_after_ns)
            except SQLAlchemyError as exc:
                raise self._unavailable(exc) from None
            if view.stale or self.stale:
                self._report(view.stale, bot_id)
            self._opened(engine, None, view)
            return
        connection = self.db.connect()
        try:
            connection.begin()
            _lock(connection, self.key)
            view = self._read(connection, exclude=engine.bot_id)
        except SQLAlchemyError as exc:
            connection.close()
            raise self._unavailable(exc) from None
        except BaseException:
            connection.close()
            raise
        self._opened(engine, connection, view)

    def _opened(self, engine: RiskEngine, connection: Connection | None, view: AccountView) -> None:
        self._open[engine.bot_id] = connection
        self._view[engine.bot_id] = view
        change = self._take(view.state)
        if change is not None:
            self._untold[engine.bot_id] = change

    def others_exposure(self, engine: RiskEngine) -> Decimal | None:
        return self._others(engine).exposure(exclude=engine.bot_id)

    def others_open_orders(self, engine: RiskEngine) -> int:
        return self._others(engine).open_orders(exclude=engine.bot_id)

    def end_check(self, engine: RiskEngine, candidate: _Candidate, reason: str | None) -> None:
        """Publish the bot's share, with the order when it passed, and release the lock."""
        if engine.bot_id not in self._open:
            return
        connection = self._open.pop(engine.bot_id)
        self._view.pop(engine.bot_id, None)
        committed = False
        try:
            if reason is None:
                exposure, orders = candidate.exposure_after, len(candidate.working_orders) + 1
            else:
                exposure, orders = engine.gross_exposure(), len(candidate.working_orders)
            share = self._make_share(engine, exposure, orders)
            if connection is None:
                assert self._checks is not None
                self._checks.publish(share, carry=self._carried(engine, reason))
            else:
                _write_share(connection, self.key, share)
                connection.commit()
            self._published[engine.bot_id] = share
            committed = True
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        finally:
            if connection is not None:
                connection.close()  # rolls back unless committed
            elif not committed and self._checks is not None:
                self._checks.abort(engine.bot_id)  # the lock must not outlive a failed check
            self._tell(self._untold.pop(engine.bot_id, None))

    def abort_check(self, engine: RiskEngine) -> None:
        opened = engine.bot_id in self._open
        connection = self._open.pop(engine.bot_id, None)
        self._view.pop(engine.bot_id, None)
        if connection is not None:
            connection.close()  # rolls back: the lock goes with it
        elif opened and self._checks is not None:
            self._checks.abort(engine.bot_id)
        self._tell(self._untold.pop(engine.bot_id, None))

    def _carried(self, engine: RiskEngine, reason: str | None) -> bool:
        """Whether this check's commit is left to the bot's journal (`commit_with`): only a passed
        order's (the OMS flushes the journal next; a denied one may never be flushed), only with no
        state change to tell (a listener must not run under the lock), only on the same connection."""
        if reason is not None or engine.bot_id in self._untold:
            return False
        journal = self._journals.get(engine.bot_id)
        assert self._checks is not None
        return journal is not None and journal.carries_with(self._checks.writer(engine.bot_id))

    def _others(self, engine: RiskEngine) -> AccountView:
        view = self._view.get(engine.bot_id)
        if view is None:  # asked outside a check: read now
            with self._store() as connection:
                view = self._read(connection, exclude=engine.bot_id)
        return view

    # -- publishing --------------------------------------------------------------------------------
    def publish(self, engine: RiskEngine, force: bool = False) -> bool:
        """The bot's share as its books have it now. Called by the bot's own thread (after each input
        is flushed): written when it changed or its heartbeat is due, else nothing. True if written."""
        share = self._share(engine)
        if share is None:
            return False
        last = self._published.get(engine.bot_id)
        if (not force and last is not None and share.heartbeat_ns - last.heartbeat_ns < self.heartbeat_every_ns
                and _same(share, last)):
            return False
        if self._checks is not None:
            try:
                self._checks.write_share(share)
            except SQLAlchemyError as exc:
                raise self._unavailable(exc) from None
        else:
            with self._store() as connection:
                _write_share(connection, self.key, share)
        self._published[engine.bot_id] = share
        return True

    def on_bot_equity(self, engine: RiskEngine, ts: int) -> None:
        """A bot's monitors saw its equity: publish its share, then judge the account's day P&L and
        drawdown over every bot's share, under the account's lock, and take what follows."""
        share = self._share(engine)

        def decide(view: AccountView) -> tuple[TradingState, str, int | None] | None:
            """The state to write (state, reason, the day a daily-loss halt is for), or None."""
            change = self._judge(view, ts)
            return None if change is None else (*change, view.day if change[1] == DAILY_LOSS else None)

        if self._checks is not None:  # SQLite file: the bot's held connection, statements built once
            try:
                view, decided = self._checks.judge(engine.bot_id, share, ts, self.now(), self.stale_after_ns, decide)
            except SQLAlchemyError as exc:
                raise self._unavailable(exc) from None
            self._report(view.stale, None)
        else:
            with self._store() as connection:
                _lock(connection, self.key)
                if share is not None:
                    _write_share(connection, self.key, share)
                view = self._read(connection)
                decided = decide(view)
                if decided is not None:
                    _write_state(connection, self.key, *decided[:2], ts, decided[2])
        stored = view.state if decided is None else StoredState(
            decided[0], decided[1], ts, view.day, view.state.pnl_base, view.state.drawdown_base)
        if share is not None:
            self._published[engine.bot_id] = share
        self._adopt(stored)

    def _judge(self, view: AccountView, ts: int) -> tuple[TradingState, str] | None:
        """As EquityMonitor + _Monitored.on_equity, over the summed shares: a new day lifts a daily
        loss REDUCING; drawdown HALTS (and wins); a daily loss sets REDUCING on an ACTIVE account."""
        stored = view.state
        state = stored.state
        if (state is TradingState.REDUCING and stored.reason == DAILY_LOSS and stored.day is not None
                and view.day is not None and view.day > stored.day):
            state = TradingState.ACTIVE
            result: tuple[TradingState, str] | None = (state, NEW_DAY)
        else:
            result = None
        pct, loss_limit = self.limits.max_drawdown_pct, self.limits.daily_loss_limit
        high_water = view.high_water
        if (pct is not None and state is not TradingState.HALTED and high_water > 0
                and view.drawdown * 100 >= pct * high_water):
            return TradingState.HALTED, MAX_DRAWDOWN
        if loss_limit is not None and state is TradingState.ACTIVE and -view.day_pnl >= loss_limit:
            return TradingState.REDUCING, DAILY_LOSS
        return result

    # -- helpers -----------------------------------------------------------------------------------
    def _share(self, engine: RiskEngine) -> Share | None:
        """The bot's share from its own books; None before the engine is bound to them."""
        try:
            orders = len(engine.open_orders())
            exposure = engine.gross_exposure()
        except RuntimeError:  # not bound yet (RiskEngine._unbound)
            return None
        return self._make_share(engine, exposure, orders)

    def _make_share(self, engine: RiskEngine, exposure: Decimal | None, open_orders: int) -> Share:
        monitor = engine.monitor
        seen = monitor.equity is not None
        return Share(engine.bot_id, self.process, exposure, open_orders, monitor.equity,
                     monitor.day_start if seen else None, monitor.high_water if seen else None,
                     monitor.day if seen else None, self.now())

    def _read(self, connection: Connection, exclude: str | None = None) -> AccountView:
        view = _read(connection, self.key, self.now(), self.stale_after_ns)
        self._report(view.stale, exclude)
        return view

    def _report(self, stale: list[Share], exclude: str | None) -> None:
        """Stale shares are ignored; each is logged once (per heartbeat) and kept in `stale`."""
        self.stale = {share.bot_id: share.heartbeat_ns for share in stale if share.bot_id != exclude}
        for share in stale:
            if (share.bot_id, share.heartbeat_ns) not in self._warned and share.bot_id != exclude:
                self._warned.add((share.bot_id, share.heartbeat_ns))
                age_s = (self.now() - share.heartbeat_ns) / SECOND_NS
                log.warning("account %s: bot %s's share (process %s) was last published %.0f s ago: ignored "
                            "as a dead bot's (exposure %s, open orders %d)", self.key, share.bot_id,
                            share.process, age_s, share.exposure, share.open_orders)

    @contextmanager
    def _store(self) -> Iterator[Connection]:
        try:
            with self.db.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: SQLAlchemyError) -> StoreUnavailable:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return StoreUnavailable(f"account {self.key}: the account's risk state cannot be read or written: {reason}")


def _same(a: Share, b: Share) -> bool:
    return (a.exposure, a.open_orders, a.equity, a.day_start, a.high_water, a.day) == (
        b.exposure, b.open_orders, b.equity, b.day_start, b.high_water, b.day)


# -- one per (process, store, account, limits) --------------------------------------------------------

_REGISTRY: dict[tuple[str, str, AccountLimits], SharedAccountRisk] = {}
_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def account_risk_for(engine_or_url: Engine | str, key: str, limits: AccountLimits = AccountLimits(),
                     **options: Any) -> SharedAccountRisk:
    """The process's SharedAccountRisk of an account on a store: every bot of the account in this
    process gets the same one (with the same account limits), and bots in other processes on the
    same store are bound to it through the store. `options` (now, stale_after_ns...) go to
    SharedAccountRisk when this call creates it; an existing one is returned as it is."""
    from engine.store.db import make_engine  # the URL form only

    if isinstance(engine_or_url, str):
        url = engine_or_url
        with _LOCK:
            db = _ENGINES.get(url)
            if db is None:
                db = _ENGINES[url] = make_engine(url)
    else:
        db = engine_or_url
        url = db.url.render_as_string(hide_password=False)
    registry_key = (url, key, limits)
    with _LOCK:
        found = _REGISTRY.get(registry_key)
        if found is None:
            found = _REGISTRY[registry_key] = SharedAccountRisk(db, key, limits, **options)
        return found
