"""The write-ahead path at the driver (issue 18 item 4): the journal, the signals and the account's
check on SQLite run statements compiled once on a held connection (engine/store/prepared.py). What
must hold is that this is only faster: the rows are the ones the SQLAlchemy path writes, to the
character; a signal a running bot publishes is committed with its order's write-ahead; a failed
commit leaves nothing behind and no lock held. Real SQLite files throughout; no timing asserted.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from engine.account_risk import SharedAccountRisk, read_account
from engine.instrument import Instrument
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.risk import AccountLimits
from engine.signals import Signal
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal
from engine.store.signals import SqlSignals
from tests.unit.test_risk import Desk

EURUSD = Instrument("EURUSD", price_increment=Decimal("0.00001"), size_increment=Decimal("1"))
TABLES = {  # what each table must hold alike (ids and wall-clock stamps aside)
    "orders": "*", "order_events": "client_order_id, state, ts, reason", "positions": "*",
    "fills": "venue, execution_id, client_order_id, bot_id, symbol, side, qty, price, fee, liquidity, ts, "
             "fee_currency, fee_native",
    "equity_points": "bot_id, ts, equity, cash, realized, unrealized, position",
    "signals": "bot_id, symbol, ts, direction, target_weight, confidence, model_id, model_version, payload",
    "account_snapshots": "account_id, ts, cash, equity, realized_pnl, unrealized_pnl",
    "daily_pnl": "account_id, bot_id, day, realized, unrealized, fees, equity_close", "bots": "id, checkpoint",
}


def store(path: Path) -> str:
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


def rows(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as connection:
        return {t: connection.execute(f"SELECT {c} FROM {t} ORDER BY rowid").fetchall() for t, c in TABLES.items()}


def a_session(journal: SqlJournal, signals: SqlSignals) -> None:
    """A bot's store traffic: a signal, an order through its states (amended on the way), a fill,
    the position, an equity point, a day's close, checkpoints; several flushes."""
    portfolio = Portfolio.for_instrument(Decimal(10_000), EURUSD)
    signals.publish(Signal("b", "EURUSD", 5, 1, Decimal("0.7"), Decimal("0.25"), 0.7, 0.3, 1.1, 3, 2))
    order = Order("b-00000001", "b", "EURUSD", OrderSide.BUY, OrderType.LIMIT, Decimal(5000), 5,
                  limit_price=Decimal("1.10012"))
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, 5))
    journal.set_checkpoint(4)
    journal.flush()
    journal.record_event(order, order.transition(OrderState.ACCEPTED, 6))
    journal.flush()
    order.limit_price, order.qty = Decimal("1.10020"), Decimal(4000)   # amended: the update carries these
    fill = Fill("x-1", order.client_order_id, "EURUSD", OrderSide.BUY, 1500, 110020, 0, 0, 5, 2, 7)
    portfolio.book_fill(EURUSD, fill)
    order.filled_qty, order.avg_fill_price = Decimal(1500), Decimal("1.1002")
    journal.record_event(order, order.transition(OrderState.PARTIALLY_FILLED, 7))
    journal.record_fill(order, fill)
    fill = Fill("x-2", order.client_order_id, "EURUSD", OrderSide.BUY, 2500, 110020, 0, 0, 5, 2, 8)
    portfolio.book_fill(EURUSD, fill)
    order.filled_qty = Decimal(4000)
    journal.record_event(order, order.transition(OrderState.FILLED, 8))
    journal.record_fill(order, fill)
    journal.record_position(portfolio, "EURUSD", 8)
    journal.record_equity(60, Decimal("10000.5"), Decimal("5599.2"), Decimal("0"), Decimal("0.5"), Decimal(4000))
    journal.record_day("default", date(2014, 5, 5), {"ts": 9, "cash": Decimal("5599.2"), "equity": Decimal("10000.5"),
                                                      "realized_pnl": Decimal(0), "unrealized_pnl": Decimal("0.5")},
                       {"realized": Decimal(0), "unrealized": Decimal("0.5"), "fees": Decimal(0),
                        "equity_close": Decimal("10000.5")})
    journal.set_checkpoint(9)
    journal.flush()


def test_the_driver_path_writes_what_the_sqlalchemy_path_writes(tmp_path):
    fast_path, slow_path = tmp_path / "fast.db", tmp_path / "slow.db"
    fast_engine, slow_engine = make_engine(store(fast_path)), make_engine(store(slow_path))
    fast, slow = SqlJournal(fast_engine, "b", "PAPER"), SqlJournal(slow_engine, "b", "PAPER")
    assert fast._writer is not None
    slow._writer = None  # the SQLAlchemy path, as PostgreSQL takes
    fast_signals, slow_signals = SqlSignals(fast_engine), SqlSignals(slow_engine)
    fast_signals.defer_to(fast)   # as a running bot's (live/runner.py)
    a_session(fast, fast_signals)
    a_session(slow, slow_signals)
    fast.close()
    written = rows(fast_path)
    assert written == rows(slow_path)
    assert written["orders"] and written["fills"] and written["signals"] and written["daily_pnl"]
    assert written["bots"] == [("b", 9)]
    assert written["positions"][0][2:4] == ("4000", "1.1002")   # exact decimal text, as ExactDecimal writes it
    fast_engine.dispose()
    slow_engine.dispose()


def test_a_deferred_signal_commits_with_the_next_write_ahead(tmp_path):
    path = tmp_path / "s.db"
    engine = make_engine(store(path))
    journal, signals = SqlJournal(engine, "b", "PAPER"), SqlSignals(engine)
    signals.defer_to(journal)
    signals.publish(Signal("b", "EURUSD", 5, -1, None, Decimal(1), 0.0, 0.0, 1.1, 0, 0))
    assert journal.pending   # it asks for a commit: the runner flushes at the end of the input
    assert rows(path)["signals"] == []
    order = Order("b-00000001", "b", "EURUSD", OrderSide.SELL, OrderType.MARKET, Decimal(1000), 5)
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, 5))
    journal.flush()   # the OMS's write-ahead, before the venue sees the order
    written = rows(path)
    assert [r[3] for r in written["signals"]] == [-1] and [r[0] for r in written["orders"]] == ["b-00000001"]
    assert journal.commits == 1 and not journal.pending
    journal.close()
    engine.dispose()


def test_a_failed_commit_leaves_nothing_and_no_lock(tmp_path):
    path = tmp_path / "f.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    order = Order("b-00000001", "b", "EURUSD", OrderSide.BUY, OrderType.MARKET, Decimal(1000), 5)
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, 5))
    stranger = Fill("x-1", "b-99999999", "EURUSD", OrderSide.BUY, 1000, 110000, 0, 0, 5, 2, 5)
    journal.record_fill(order, stranger)   # an order the store never saw: its foreign key fails
    with pytest.raises(IntegrityError):    # SQLAlchemy's class: the runner's `except SQLAlchemyError` holds
        journal.flush()
    assert rows(path)["orders"] == []      # the order of the same transaction went with it
    assert journal.pending                 # still buffered: nothing was reported written
    other = sqlite3.connect(path, timeout=0)   # no lock left behind: another writer gets in at once
    other.execute("UPDATE bots SET checkpoint = 3 WHERE id = 'b'")
    other.commit()
    other.close()
    engine.dispose()


def test_a_store_gone_read_only_is_an_sqlalchemy_error(tmp_path):
    path = tmp_path / "r.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    journal.set_checkpoint(1)
    journal.flush()
    journal._writer.connection().execute("PRAGMA query_only = 1")  # type: ignore[union-attr]
    journal.set_checkpoint(2)
    with pytest.raises(SQLAlchemyError):
        journal.flush()
    journal.set_checkpoint(3)   # the broken connection was given up: a fresh one writes
    journal.flush()
    assert rows(path)["bots"] == [("b", 3)]
    journal.close()
    engine.dispose()


def test_the_account_check_at_the_driver_reads_and_publishes_as_the_store_has_it(tmp_path):
    url = store(tmp_path / "a.db")
    limits = AccountLimits(max_gross_exposure=Decimal(1425))
    one_account, two_account = (SharedAccountRisk(make_engine(url), "7:binance", limits) for _ in range(2))
    assert one_account._checks is not None
    one, two = Desk(account=one_account, bot_id="one"), Desk(account=two_account, bot_id="two")
    one.positions["TEST"] = Decimal("10.25")
    assert one.check("BUY", "2") is None                            # publishes 1,225 (10.25 held + 2 working)
    shares = {s.bot_id: s for s in read_account(make_engine(url), "7:binance").shares}
    assert shares["one"].exposure == Decimal(1225) and shares["one"].open_orders == 1
    assert two.check("BUY", "3") == "ACCOUNT:MAX_GROSS_EXPOSURE"    # 1,225 + 300 > 1,425
    assert two.check("BUY", "2") is None                            # 1,225 + 200 = 1,425: read exactly
    other = sqlite3.connect(tmp_path / "a.db", timeout=0)   # each check released the account's lock
    other.execute("UPDATE account_risk_state SET seq = seq + 1")
    other.commit()
    other.close()
