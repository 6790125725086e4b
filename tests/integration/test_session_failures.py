"""A paper bot (the one BotRunner, as the runtime builds it) stops cleanly, never trading blind,
when its store fails; bad ticks don't stop it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from engine.errors import StoreUnavailable
from engine.portfolio import Portfolio
from engine.market import Tick
from engine.store.db import make_engine, upgrade
from strategies.base import StrategyParams
from tests.e2e.crash_bot import EURUSD, ClockFlip, session_bot
from tests.unit.test_write_ahead_record import unsettled

SECOND = 1_000_000_000


def quotes(n: int, start: int = 0) -> list[tuple[int, Tick]]:
    return [(start + i, Tick("EURUSD", (start + i) * SECOND, bid=1.1, ask=1.10002)) for i in range(n)]


def session(tmp_path, url: str, ticks=()):
    strategy = ClockFlip(StrategyParams(fixed_size=Decimal(1000)), 5 * SECOND)
    return session_bot("s1", url, tmp_path / "venue.log", strategy, ticks, "0.0001")


def test_corrupt_database_stops_the_bot_before_it_starts(tmp_path):
    path = tmp_path / "store.db"
    path.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StoreUnavailable, match="not usable"):
        session(tmp_path, f"sqlite:///{path}")


def test_database_lost_mid_run_stops_trading_and_sends_nothing_unjournaled(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    sent = {}

    def stream():
        yield from quotes(12)
        sent["before"] = len(bot.venue.book.orders)
        with make_engine(url).begin() as connection:  # the store breaks under the running bot
            connection.execute(text("DROP TABLE order_events"))
        yield from quotes(12, start=12)

    bot = session(tmp_path, url, stream())
    with pytest.raises(StoreUnavailable, match="trading stopped"):
        bot.run()
    assert sent["before"] > 0
    # The write-ahead appends one record to the bot's log (engine/store/write_ahead.py), which the
    # broken store does not touch: the next order reaches the venue journaled in it; the settle after
    # the venue call fails on the dropped table and the bot stops there. Nothing unjournaled was sent.
    after = list(bot.venue.book.orders)[sent["before"]:]
    assert len(after) == 1
    (records,) = unsettled(tmp_path / "store.db").values()
    assert [after[0].encode() in payload for _, payload in records] == [True]


def test_malformed_ticks_are_counted_and_dropped_and_the_bot_lives_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    stream = quotes(6)
    stream[2] = (2, Tick("EURUSD", 2 * SECOND, bid=float("nan"), ask=1.1))
    stream[3] = (3, Tick("EURUSD", 1 * SECOND, bid=1.1, ask=1.10002))   # out of order
    stream[4] = (4, Tick("EURUSD", 4 * SECOND, bid=-1.0, ask=1.1))
    bot = session(tmp_path, url, stream)
    assert bot.run()["ticks"] == 6
    assert sum(bot.guard.dropped.values()) == 3 and bot.guard.accepted == 3
    assert bot.checkpoint == 5


def test_a_new_utc_day_books_the_previous_days_pnl_and_an_account_snapshot(tmp_path):
    from sqlalchemy import select

    from engine.store.models import AccountSnapshotRow, DailyPnlRow

    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    day = 86_400
    stream = [(i, Tick("EURUSD", (day - 30 + i) * SECOND, bid=1.1 + i * 1e-5, ask=1.10002 + i * 1e-5))
              for i in range(60)]  # 30 s before midnight to 30 s after
    bot = session(tmp_path, url, stream)
    bot.run()
    with make_engine(url).connect() as connection:
        days = connection.execute(select(DailyPnlRow.__table__)).all()
        snapshots = connection.execute(select(AccountSnapshotRow.__table__)).all()
    assert len(days) == 1 and str(days[0].day) == "1970-01-01" and len(snapshots) == 1
    fees = sum(f.fee for f in bot.oms.fills if f.ts < day * SECOND)
    assert days[0].fees == fees and fees > 0
    # the snapshot is the books as of midnight: replaying the day's fills gives the same cash and P&L
    replay = Portfolio.for_instrument(Decimal(10_000), EURUSD)
    for f in bot.oms.fills:
        if f.ts < day * SECOND:
            replay.apply_fill(EURUSD, f.side.sign, f.qty_raw, f.price_raw, f.fee_raw, f.ts)
    assert snapshots[0].cash == replay.cash
    assert snapshots[0].realized_pnl == EURUSD.scales.cash(replay.realized_pnl_raw) == days[0].realized
    assert days[0].equity_close == snapshots[0].equity
