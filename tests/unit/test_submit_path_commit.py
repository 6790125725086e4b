"""The tick -> submit path's store traffic on SQLite (issue 18): an order's account check commits with
the order's write-ahead (one transaction: both durable, or neither), a denied check commits on its
own, and the equity judgement at a bar close writes what the SQLAlchemy path writes. Real SQLite files;
no timing asserted.
"""

from __future__ import annotations

import sqlite3
import struct
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from engine.account_risk import SharedAccountRisk, read_account
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType
from engine.risk import AccountLimits, TradingState
from engine.store import prepared
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal
from tests.unit.test_risk import Desk

KEY = "7:binance"


def store(path: Path) -> str:
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


def shares(path: Path) -> dict[str, tuple]:
    """The account's shares as another connection sees them (committed rows only)."""
    with sqlite3.connect(path) as connection:
        return {b: (x, o) for b, x, o in connection.execute(
            "SELECT bot_id, exposure, open_orders FROM account_risk_bots WHERE account_key = ?", (KEY,))}


def orders(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [r[0] for r in connection.execute("SELECT client_order_id FROM orders ORDER BY rowid")]


def lock_is_free(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("UPDATE account_risk_state SET seq = seq + 1")
        other.commit()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def a_bot(tmp_path: Path, limits: AccountLimits = AccountLimits(max_gross_exposure=Decimal(10_000))
          ) -> tuple[Path, Desk, SqlJournal, SharedAccountRisk]:
    path = tmp_path / "s.db"
    url = store(path)
    account = SharedAccountRisk(make_engine(url), KEY, limits)
    desk = Desk(account=account, bot_id="one")
    journal = SqlJournal(make_engine(url), "one", "PAPER")
    account.commit_with(desk.engine, journal)  # as live/runner.py does for a bot's own journal
    return path, desk, journal, account


def pending(desk: Desk, journal: SqlJournal, order: Order) -> None:
    """What the OMS does once the check passed: the order PENDING_SUBMIT, the write-ahead flush."""
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, desk.clock.ts))
    journal.flush()


def test_a_passed_check_commits_with_the_orders_write_ahead(tmp_path):
    path, desk, journal, account = a_bot(tmp_path)
    order = desk.order("BUY", "2")
    assert desk.engine.check(order, desk.portfolio) is None
    assert "one" not in shares(path)        # not committed yet: the journal's next flush carries it
    assert not lock_is_free(path)           # the account's lock is held until then
    pending(desk, journal, order)
    assert shares(path)["one"] == ("200", 1) and orders(path) == [order.client_order_id]
    assert journal.commits == 1 and lock_is_free(path)
    account.release(desk.engine)
    journal.close()


def test_a_failed_write_ahead_takes_the_checks_share_with_it(tmp_path):
    path, desk, journal, account = a_bot(tmp_path)
    order = desk.order("BUY", "2")
    assert desk.engine.check(order, desk.portfolio) is None
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, desk.clock.ts))
    stranger = Fill("x-1", "one-999", "TEST", OrderSide.BUY, 1, 100, 0, 0, 2, 2, 5)
    journal.record_fill(order, stranger)    # an order the store never saw: its foreign key fails
    with pytest.raises(IntegrityError):
        journal.flush()
    assert shares(path) == {} and orders(path) == []   # neither the share nor the order
    assert lock_is_free(path)
    assert desk.check("BUY", "1") is None   # a fresh connection: the next check works
    account.release(desk.engine)
    journal.close()


def test_a_denied_check_commits_at_once(tmp_path):
    path, desk, journal, account = a_bot(tmp_path, AccountLimits(max_gross_exposure=Decimal(100)))
    assert desk.check("BUY", "2") == "ACCOUNT:MAX_GROSS_EXPOSURE"  # 200 > 100: the OMS flushes nothing
    assert shares(path)["one"] == ("0", 0) and lock_is_free(path)
    assert journal.commits == 0
    account.release(desk.engine)
    journal.close()


def test_a_check_whose_write_ahead_never_came_is_rolled_back_when_the_bot_stops(tmp_path):
    path, desk, journal, account = a_bot(tmp_path)
    assert desk.check("BUY", "2") is None
    account.release(desk.engine)            # the bot stopped before its flush (an error between)
    assert lock_is_free(path)
    journal.close()


def test_the_equity_judgement_at_the_driver_writes_the_accounts_state(tmp_path):
    path = tmp_path / "e.db"
    url = store(path)
    account = SharedAccountRisk(make_engine(url), KEY, AccountLimits(daily_loss_limit=Decimal(50)))
    assert account._checks is not None
    desk = Desk(account=account, bot_id="one")
    desk.engine.on_equity(Decimal(1000), 10)
    desk.engine.on_equity(Decimal(940), 20)   # down 60 on the day: the account is REDUCING, at ts 20
    view = read_account(make_engine(url), KEY)
    assert (view.state.state, view.state.reason, view.state.changed_ts) == (TradingState.REDUCING, "DAILY_LOSS", 20)
    assert view.state.day == view.day is not None
    assert [s.equity for s in view.shares] == [Decimal(940)]
    assert account.state is TradingState.REDUCING
    assert lock_is_free(path)
    account.release(desk.engine)


def wal_frames(path: Path) -> int:
    """The frames in the WAL now (mxFrame of the wal-index header in the -shm file)."""
    with open(f"{path}-shm", "rb") as shm:
        return struct.unpack_from("=I", shm.read(32), 16)[0]


def write_aheads(journal: SqlJournal, start: int, n: int, after_input: bool) -> None:
    for i in range(start, start + n):
        order = Order(f"b-{i:08d}", "b", "EURUSD", OrderSide.BUY, OrderType.MARKET, Decimal(1000), i)
        journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, i))
        journal.set_checkpoint(i)
        journal.flush()
        if after_input:
            journal.after_input()


def test_the_wal_is_checkpointed_between_inputs_not_inside_a_write_ahead(tmp_path, monkeypatch):
    monkeypatch.setattr(prepared, "HELD_AUTOCHECKPOINT", 400)     # small: the bound shows in a short test
    monkeypatch.setattr(prepared, "IDLE_CHECKPOINT_COMMITS", 10)
    path = tmp_path / "w.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    write_aheads(journal, 0, 30, after_input=False)
    assert wal_frames(path) > 100       # no commit checkpointed below the held bound (SQLite's default would)
    most = 0
    for start in range(30, 330, 10):
        write_aheads(journal, start, 10, after_input=True)
        most = max(most, wal_frames(path))
    assert most <= 150                  # checkpointed between inputs: the WAL restarts every ten commits
    for start in range(330, 930, 10):   # an owner that never calls after_input
        write_aheads(journal, start, 10, after_input=False)
        most = max(most, wal_frames(path))
    assert 150 < most <= 400 + 50       # SQLite's own bound still holds
    assert len(orders(path)) == 930
    journal.close()
    with sqlite3.connect(path) as connection:  # the connection went back to its pool as it came
        assert connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
    engine.dispose()
