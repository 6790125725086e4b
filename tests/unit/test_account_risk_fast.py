"""The shared account check's shortcuts on SQLite (engine/account_risk.py, issue 18 item 4) answer as
the full read does.

Under the account's lock a check takes the account's rows it read last time, without reading them,
when `PRAGMA data_version` says no other connection committed since and no other check of this
process wrote them (`_Seen`), and it writes only the columns of its share that changed. Every test
here runs with `shadowed`: each time a check or an equity judgement takes the account's rows (cached
or read), the same transaction reads them in full with plain SQL and parses them independently, and
the two must be equal; so a cache gone stale fails the test where it is taken, whatever the order's
outcome. The scenarios put in its way what can make it stale: another connection committing a share,
a kill or a resume between two checks, two bots on one thread sharing one connection, a write-ahead
that fails, a check that raises. Real SQLite files; no timing asserted.
"""

from __future__ import annotations

import random
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

import engine.account_risk as account_risk
from engine.account_risk import NO_STATE, Share, SharedAccountRisk, StoredState, kill_account, resume_account
from engine.orders import Fill, Order, OrderSide, OrderState
from engine.risk import AccountLimits, TradingState
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal
from engine.store.models import exact_text
from tests.unit.test_risk import Desk

KEY = "7:binance"
T0 = 1_800_000_000 * 1_000_000_000


class Wall:
    """The heartbeat clock: moves 1 us a call, so every share a check writes is new."""

    def __init__(self) -> None:
        self.ns = T0

    def __call__(self) -> int:
        self.ns += 1_000
        return self.ns


def decimal(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def full_read(connection: sqlite3.Connection, key: str) -> tuple[StoredState, list[Share]]:
    """The account's rows as `connection` sees them (its own open transaction included), parsed here."""
    row = connection.execute("SELECT state, reason, changed_ts, day, pnl_base, drawdown_base FROM account_risk_state "
                             "WHERE account_key = ?", (key,)).fetchone()
    state = NO_STATE if row is None else StoredState(TradingState(row[0]), row[1], row[2], row[3], decimal(row[4]),
                                                     decimal(row[5]))
    shares = [Share(b, p, decimal(x), o, decimal(e), decimal(d), decimal(h), day, hb)
              for b, p, x, o, e, d, h, day, hb in connection.execute(
                  "SELECT bot_id, process, exposure, open_orders, equity, day_start, high_water, day, heartbeat_ns "
                  "FROM account_risk_bots WHERE account_key = ? ORDER BY bot_id", (key,))]
    return state, shares


class Taken:
    """What the checks took: `rows` times the account's rows, `reads` of them read from the store."""

    def __init__(self) -> None:
        self.rows = 0
        self.reads = 0

    @property
    def cached(self) -> int:
        return self.rows - self.reads


@pytest.fixture
def shadowed(monkeypatch: pytest.MonkeyPatch) -> Taken:
    taken = Taken()
    rows, read = account_risk._SqliteChecks._rows, account_risk._SqliteChecks._read

    def checked_rows(self, bot_id, connection, made=False):  # type: ignore[no-untyped-def]
        state, shares = rows(self, bot_id, connection, made)
        assert (state, shares) == full_read(connection, self.key), "the cached account is not the store's"
        taken.rows += 1
        return state, shares

    def counted_read(self, bot_id, connection, made=False):  # type: ignore[no-untyped-def]
        taken.reads += 1
        return read(self, bot_id, connection, made)

    monkeypatch.setattr(account_risk._SqliteChecks, "_rows", checked_rows)
    monkeypatch.setattr(account_risk._SqliteChecks, "_read", counted_read)
    return taken


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    upgrade(f"sqlite:///{path}")
    return path


def shared(path: Path, limits: AccountLimits, wall: Wall | None = None) -> SharedAccountRisk:
    account = SharedAccountRisk(make_engine(f"sqlite:///{path}"), KEY, limits, now=wall or Wall())
    assert account._checks is not None   # the SQLite driver path, whose shortcuts these are
    return account


def foreign_share(path: Path, bot_id: str, exposure: str, open_orders: int = 1, heartbeat_ns: int = T0) -> None:
    """A share committed by another connection (another process's bot)."""
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT OR REPLACE INTO account_risk_bots (account_key, bot_id, process, exposure, "
                           "open_orders, heartbeat_ns) VALUES (?, ?, 'elsewhere', ?, ?, ?)",
                           (KEY, bot_id, exposure, open_orders, heartbeat_ns))
    connection.close()


def stored_share(path: Path, bot_id: str) -> tuple:
    with sqlite3.connect(path) as connection:
        row = connection.execute("SELECT process, exposure, open_orders, equity, day_start, high_water, day, "
                                 "heartbeat_ns FROM account_risk_bots WHERE account_key = ? AND bot_id = ?",
                                 (KEY, bot_id)).fetchone()
    connection.close()
    return row


def as_stored(share: Share) -> tuple:
    """A share as the full write stores it (money as ExactDecimal's canonical text)."""
    return (share.process, exact_text(share.exposure), share.open_orders, exact_text(share.equity),
            exact_text(share.day_start), exact_text(share.high_water), share.day, share.heartbeat_ns)


def lock_is_free(path: Path) -> bool:
    """Whether another connection can take the write lock now (taken and rolled back: no commit,
    which would move every other connection's data_version)."""
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.rollback()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def pending(desk: Desk, journal: SqlJournal, order: Order) -> None:
    """What the OMS does once the check passed: the order PENDING_SUBMIT, the write-ahead flush."""
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, desk.clock.ts))
    journal.flush()


def test_a_bot_alone_reads_its_account_once_then_checks_with_its_cache(path, shadowed):
    desk = Desk(account=shared(path, AccountLimits(max_gross_exposure=Decimal(1500))), bot_id="one")
    for _ in range(5):
        assert desk.check("BUY", "1") is None
    assert (shadowed.rows, shadowed.reads) == (5, 1)   # the shortcut was taken, and answered as a read


def test_a_share_committed_elsewhere_between_two_checks_binds_the_next(path, shadowed):
    desk = Desk(account=shared(path, AccountLimits(max_gross_exposure=Decimal(1500))), bot_id="one")
    assert desk.check("BUY", "6") is None and desk.check("BUY", "6") is None   # cached by now
    foreign_share(path, "two", "1000")                   # another process's bot: 1,000
    assert desk.check("BUY", "6") == "ACCOUNT:MAX_GROSS_EXPOSURE"              # 1,000 + 600 > 1,500
    assert desk.check("BUY", "5") is None                                      # 1,000 + 500 = 1,500
    foreign_share(path, "two", "900")                    # it changes again
    assert desk.check("BUY", "6") is None
    assert shadowed.reads == 3 and shadowed.cached == 2


def test_a_kill_and_a_resume_written_elsewhere_are_seen_by_the_next_check(path, shadowed):
    account = shared(path, AccountLimits())
    desk = Desk(account=account, bot_id="one")
    assert desk.check("BUY", "1") is None and desk.check("BUY", "1") is None
    kill_account(make_engine(f"sqlite:///{path}"), KEY, "api:ann")
    assert desk.check("BUY", "1") == "ACCOUNT:TRADING_HALTED"
    assert account.state is TradingState.HALTED
    assert desk.check("BUY", "1") == "ACCOUNT:TRADING_HALTED"    # from the cache now: still halted
    resume_account(make_engine(f"sqlite:///{path}"), KEY, "ann")
    assert desk.check("BUY", "1") is None
    assert shadowed.cached >= 2


def test_two_bots_on_one_thread_share_a_connection_and_see_each_others_shares(path, shadowed):
    """Their checks commit on one connection, whose data_version does not move for its own commits:
    each write tells the other bot's cache (`_WRITES`)."""
    wall = Wall()
    first, second = (shared(path, AccountLimits(max_gross_exposure=Decimal(limit)), wall) for limit in (1500, 1600))
    one, two = Desk(account=first, bot_id="one"), Desk(account=second, bot_id="two")
    assert first._checks is not None and second._checks is not None
    one.rest("BUY", "5", limit="100.00")                 # 500 working
    assert first._checks.writer("one").connection() is second._checks.writer("two").connection()
    two.rest("BUY", "5", limit="100.00")                 # 500 + 500
    assert one.check("BUY", "6") == "ACCOUNT:MAX_GROSS_EXPOSURE"    # 500 own + 600 + 500 of two's > 1,500
    two.rest("BUY", "1", limit="100.00")                 # two: 600, its share written on one's connection
    assert one.check("BUY", "5") == "ACCOUNT:MAX_GROSS_EXPOSURE"    # 500 + 500 + 600 > 1,500 (500 of two's: 1,500)
    assert one.check("BUY", "4") is None                            # 500 + 400 + 600 = 1,500
    assert shadowed.reads >= 4


def test_a_failed_write_ahead_leaves_nothing_of_its_share_in_the_cache(path, shadowed):
    """The failed flush gives its connection up, the carried share with it; a fresh connection's
    data_version may well equal the old one's (here it does: nothing else wrote the file), so only
    the connection's identity tells the cache is not this connection's."""
    db = make_engine(f"sqlite:///{path}")   # one engine: every commit so far on the one held connection
    account = SharedAccountRisk(db, KEY, AccountLimits(max_gross_exposure=Decimal(10_000)), now=Wall())
    assert account._checks is not None
    desk = Desk(account=account, bot_id="one")
    journal = SqlJournal(db, "one", "PAPER")
    account.commit_with(desk.engine, journal)
    order = desk.order("BUY", "2")
    assert desk.engine.check(order, desk.portfolio) is None
    pending(desk, journal, order)                        # committed: the share's exposure is 200
    order = desk.order("BUY", "3")
    assert desk.engine.check(order, desk.portfolio) is None         # its share (300) is carried
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, desk.clock.ts))
    journal.record_fill(order, Fill("x-1", "one-999", "TEST", OrderSide.BUY, 1, 100, 0, 0, 2, 2, 5))
    cached = account._checks._seen["one"]
    with pytest.raises(IntegrityError):                  # an order the store never saw: the flush fails
        journal.flush()
    fresh = account._checks.writer("one").connection()
    assert fresh is not cached.connection and cached.own is not None and cached.own.exposure == 300
    assert fresh.execute("PRAGMA data_version").fetchone()[0] == cached.version   # the case in point
    assert stored_share(path, "one")[1] == "200" and lock_is_free(path)   # the carried share went with it
    journal.close()                                      # it keeps what it failed to write: a new one
    journal = SqlJournal(make_engine(f"sqlite:///{path}"), "one", "PAPER")
    account.commit_with(desk.engine, journal)
    for _ in range(3):                                   # the shadow compares each with the store
        order = desk.order("BUY", "1")
        assert desk.engine.check(order, desk.portfolio) is None
        pending(desk, journal, order)
    assert stored_share(path, "one") == as_stored(account._published["one"])
    account.release(desk.engine)
    journal.close()


def test_a_check_that_raises_is_rolled_back_and_forgotten(path, shadowed, monkeypatch):
    account = shared(path, AccountLimits(max_gross_exposure=Decimal(1500)))
    desk = Desk(account=account, bot_id="one")
    assert desk.check("BUY", "2") is None and desk.check("BUY", "2") is None
    before = stored_share(path, "one")

    def fails(_engine: object) -> Decimal:
        raise RuntimeError("a book read failed")

    monkeypatch.setattr(account, "others_exposure", fails)
    with pytest.raises(RuntimeError, match="a book read failed"):
        desk.check("BUY", "2")
    monkeypatch.undo()
    assert lock_is_free(path) and stored_share(path, "one") == before
    assert desk.check("BUY", "2") is None


def test_the_share_is_written_column_by_column_as_the_full_write_would(path, shadowed):
    account = shared(path, AccountLimits(max_gross_exposure=Decimal(10**6), daily_loss_limit=Decimal(10**5)))
    assert account._checks is not None
    desk = Desk(account=account, bot_id="one")
    journal = SqlJournal(make_engine(f"sqlite:///{path}"), "one", "PAPER")
    account.commit_with(desk.engine, journal)
    rng = random.Random(18)
    monitor = desk.engine.monitor
    for i in range(60):
        if i % 7 == 3:                                   # the monitors see equity: a share of its own
            desk.engine.on_equity(Decimal(100_000) - Decimal(rng.randrange(0, 5000)) / 100, desk.clock.ts)
        if i % 5 == 4:
            desk.positions["TEST"] = Decimal(rng.randrange(0, 50))
        if i % 6 == 5 and monitor.equity is not None:   # any column the check's write may have to change
            column = rng.choice(["equity", "day_start", "high_water", "day"])
            if column == "day":
                monitor.day = (monitor.day or 0) + 1
            else:
                setattr(monitor, column, getattr(monitor, column) + Decimal(rng.randrange(1, 999)) / 100)
        if i == 50:
            account.process = "host:2:restarted"
        order = desk.order("BUY", str(rng.randrange(1, 20)), limit=f"{rng.randrange(9000, 10000) / 100:.2f}")
        assert desk.engine.check(order, desk.portfolio) is None
        pending(desk, journal, order)
        assert stored_share(path, "one") == as_stored(account._published["one"])
    assert account._checks._updates                      # the column-by-column UPDATE was taken
    assert shadowed.cached > shadowed.reads
    account.release(desk.engine)
    journal.close()


def test_interleaved_bots_and_writers_always_check_against_the_store(path, shadowed):
    """Random interleavings of two bots of one thread (one connection), a third process's writes,
    kills and resumes, equity judgements and publications: every account read a check takes equals
    the store's, and the outcome is what the limits over the store's shares say."""
    rng = random.Random(14)
    wall = Wall()
    limits = AccountLimits(max_gross_exposure=Decimal(3000), max_open_orders=6, daily_loss_limit=Decimal(10**6))
    accounts = [shared(path, limits, wall), shared(path, limits, wall)]
    desks = [Desk(account=accounts[0], bot_id="one"), Desk(account=accounts[1], bot_id="two")]
    journals = [SqlJournal(make_engine(f"sqlite:///{path}"), d.bot_id, "PAPER") for d in desks]
    for account, desk, journal in zip(accounts, desks, journals):
        account.commit_with(desk.engine, journal)
    outcomes = set()
    for _ in range(150):
        pick = rng.randrange(8)
        i = rng.randrange(2)
        desk, account, journal = desks[i], accounts[i], journals[i]
        if pick <= 2:
            order = desk.order("BUY", str(rng.randrange(1, 8)), limit="100.00")
            reason = desk.engine.check(order, desk.portfolio)
            outcomes.add(reason)
            if reason is None:
                pending(desk, journal, order)
                if rng.random() < 0.5 and len(desk.working) < 3:
                    desk.working.append(order)
        elif pick == 3 and rng.random() < 0.8:
            foreign_share(path, "three", str(rng.randrange(0, 1500)), rng.randrange(0, 3), wall.ns)
        elif pick == 3:                                  # a share deleted elsewhere (a bot's own included)
            with sqlite3.connect(path) as connection:
                connection.execute("DELETE FROM account_risk_bots WHERE bot_id = ?", (rng.choice(["one", "three"]),))
            connection.close()
        elif pick == 4 and desk.working:
            desk.working.pop(rng.randrange(len(desk.working)))
            account.publish(desk.engine)
        elif pick == 5:
            desk.engine.on_equity(Decimal(50_000 + rng.randrange(-500, 500)), desk.clock.ts)
        elif pick == 6 and rng.random() < 0.3:
            kill_account(make_engine(f"sqlite:///{path}"), KEY, "api:ann")
        elif pick == 6 or pick == 7:
            if any(a.state is not TradingState.ACTIVE for a in accounts) or rng.random() < 0.2:
                resume_account(make_engine(f"sqlite:///{path}"), KEY, "ann")
                for desk_ in desks:
                    desk_.engine.resume(desk_.clock.ts, "ann")
    assert None in outcomes and "ACCOUNT:MAX_GROSS_EXPOSURE" in outcomes
    assert shadowed.cached > 20 and shadowed.reads > 20    # both paths taken, many times
    for account, desk, journal in zip(accounts, desks, journals):
        account.release(desk.engine)
        journal.close()


def test_the_unrolled_column_comparison_covers_every_share_column_in_order():
    """account_risk._changed is written out field by field for speed: it must name each of
    SHARE_VALUES whose value differs, in that order, and nothing else (money compared as numbers)."""
    base = Share("b", "p", Decimal("1.0"), 1, Decimal(2), Decimal(3), Decimal(4), 5, 6)
    other = {"process": "q", "exposure": Decimal(7), "open_orders": 8, "equity": Decimal(9),
             "day_start": Decimal(10), "high_water": Decimal(11), "day": 12, "heartbeat_ns": 13}
    assert set(other) == set(account_risk.SHARE_VALUES)
    for name in account_risk.SHARE_VALUES:
        assert account_risk._changed(base, Share(**{**vars_of(base), name: other[name]})) == (name,)
    everything = Share(**{**vars_of(base), **other})
    assert account_risk._changed(base, everything) == account_risk.SHARE_VALUES
    assert account_risk._changed(base, Share(**{**vars_of(base), "exposure": Decimal("1.00")})) == ()


def vars_of(share: Share) -> dict:
    from dataclasses import fields
    return {f.name: getattr(share, f.name) for f in fields(share)}
