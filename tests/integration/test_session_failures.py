"""A paper session stops cleanly, never trading blind, when its store fails; bad ticks don't
stop it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from engine.errors import StoreUnavailable
from engine.market import Tick
from engine.session import PaperSession, SessionConfig
from engine.store.db import make_engine, upgrade
from strategies.base import StrategyParams
from tests.e2e.crash_bot import EURUSD, ClockFlip

SECOND = 1_000_000_000


def quotes(n: int, start: int = 0) -> list[tuple[int, Tick]]:
    return [(start + i, Tick("EURUSD", (start + i) * SECOND, bid=1.1, ask=1.10002)) for i in range(n)]


def session(tmp_path, url: str) -> PaperSession:
    strategy = ClockFlip(StrategyParams(fixed_size=Decimal(1000)), 5 * SECOND)
    return PaperSession(SessionConfig("s1", url, str(tmp_path / "venue.log")), EURUSD, strategy)


def test_corrupt_database_stops_the_bot_before_it_starts(tmp_path):
    path = tmp_path / "store.db"
    path.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StoreUnavailable, match="not usable"):
        session(tmp_path, f"sqlite:///{path}")


def test_database_lost_mid_run_stops_trading_and_sends_nothing_unjournaled(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    bot = session(tmp_path, url)
    bot.start()
    bot.run(quotes(12))
    sent_before = len(bot.venue.book.orders)
    assert sent_before > 0
    with make_engine(url).begin() as connection:  # the store breaks under the running bot
        connection.execute(text("DROP TABLE order_events"))
    with pytest.raises(StoreUnavailable, match="trading stopped"):
        bot.run(quotes(12, start=12))
    # the order that could not be journaled as PENDING_SUBMIT never reached the venue
    assert len(bot.venue.book.orders) == sent_before


def test_malformed_ticks_are_counted_and_dropped_and_the_bot_lives_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    bot = session(tmp_path, url)
    bot.start()
    stream = quotes(6)
    stream[2] = (2, Tick("EURUSD", 2 * SECOND, bid=float("nan"), ask=1.1))
    stream[3] = (3, Tick("EURUSD", 1 * SECOND, bid=1.1, ask=1.10002))   # out of order
    stream[4] = (4, Tick("EURUSD", 4 * SECOND, bid=-1.0, ask=1.1))
    assert bot.run(stream) == 6
    assert sum(bot.guard.dropped.values()) == 3 and bot.guard.accepted == 3
    assert bot.checkpoint == 5
