"""A live bot warms up from its venue's history: started late (or restarted hours later), it takes
the bars its strategy needs from MarketDataFeed.history, so its first live bar is decided on the
indicators a backtest over the same bars has there, not on NaN until enough new bars arrive.

The venue is MetaTrader 5's fake terminal (tests/fakes/mt5_fake.py) serving real EUR/USD minute
bars (FXCM ticks, data/README.md) through the real MT5Feed; orders go to a paper venue.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import numpy as np
import pandas as pd
import pandas_ta as ta
import pytest
from sqlalchemy import func, select

from backtest.data import load_bars, load_ticks, ticks_to_bars
from brokers.factory import EnvCredentials, open_venue
from brokers.mt5.feed import TIMEFRAMES, MT5Feed
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.market import Tick
from engine.oms import OrderManager
from engine.orders import OrderSide
from engine.portfolio import Portfolio
from live.config import FeedConfig, parse_bot_config
from live.driver import StrategyDriver
from live.manager import BotManager
from engine.store.db import make_engine, upgrade
from engine.store.models import OrderRow, SignalRow
from models.signals import MemorySignals
from strategies.base import cross_above_mask
from strategies.sma_cross import SmaCross, SmaCrossParams
from tests.conftest import DATA
from tests.fakes.mt5_fake import FakeMT5

MINUTE = 60_000_000_000
FAST, SLOW = 10, 30
EURUSD = Instrument("EURUSD", price_increment=Decimal("0.00001"), size_increment=Decimal("1"))


@pytest.fixture(scope="module")
def minute_bars() -> pd.DataFrame:
    """A real day of EUR/USD minute bars (bid/ask mids)."""
    return ticks_to_bars(load_ticks(DATA / "ticks" / "EURUSD_fxcm_20140505.csv.gz"), "1min")


def first_cross_after_warm_up(bars: pd.DataFrame) -> int:
    """The first bar c whose window of SLOW + 1 bars ending at it has the fast SMA crossing above
    the slow one at its last bar: warmed up on bars c-SLOW-1 .. c-1, the bot must buy at bar c."""
    for c in range(SLOW + 1, len(bars)):
        window = bars["close"].iloc[c - SLOW - 1:c + 1]
        fast, slow = ta.sma(window, length=FAST).to_numpy(), ta.sma(window, length=SLOW).to_numpy()
        if cross_above_mask(fast, slow)[-1] and fast[-1] - slow[-1] > 1e-6:  # a clear cross, not a tie
            return c
    raise AssertionError("no cross in the data")


def rates(bars: pd.DataFrame, shift_ns: int) -> list[tuple]:
    """The terminal's M1 rates for `bars`, moved by `shift_ns` (server time = UTC here)."""
    return [(int((t + shift_ns) // 1_000_000_000), o, h, low, c, 1, 0, 0) for t, o, h, low, c in zip(
        bars.index.as_unit("ns").asi8.tolist(), *(bars[k].tolist() for k in ("open", "high", "low", "close")))]


def terminal(bars: pd.DataFrame, shift_ns: int) -> FakeMT5:
    fake = FakeMT5()
    fake.add_symbol("EURUSD", 1.38, 1.38002, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    fake.set_rates("EURUSD", TIMEFRAMES["M1"], rates(bars, shift_ns))
    fake.initialize(login=5001, password="secret", server="FakeBroker-Demo")
    return fake


class LongMemory(SmaCross):
    """sma_cross asking for 200 bars of history: long enough to hold crossings of its own."""

    def warmup_bars(self) -> int:
        return 200


def paper_driver(cls: type[SmaCross] = SmaCross, bar: str = "1min") -> tuple[StrategyDriver, SmaCross, MemorySignals]:
    clock = SimulatedClock()
    oms = OrderManager("warm", clock, SimulatedVenue(EURUSD, Decimal(10_000)),
                       Portfolio.for_instrument(Decimal(10_000), EURUSD), {"EURUSD": EURUSD})
    strategy = cls(SmaCrossParams(fast=FAST, slow=SLOW, fixed_size=Decimal(1000)))
    strategy.attach(None, "EURUSD")  # type: ignore[arg-type]
    strategy.connect(oms)
    sink = MemorySignals()
    return StrategyDriver(strategy, oms, "EURUSD", bar, sink), strategy, sink


def live_bar(driver: StrategyDriver, start_ns: int, price: float) -> None:
    """Ticks that make a bar at `start_ns` closing at `price`, closed by the next minute's first tick."""
    driver.oms.clock.ts = start_ns + 1
    driver.on_tick(Tick("EURUSD", start_ns + 1, price, price))
    driver.oms.clock.ts = start_ns + MINUTE + 1
    driver.on_tick(Tick("EURUSD", start_ns + MINUTE + 1, price, price))


def test_a_bot_started_late_decides_its_first_live_bar_on_the_venues_history(minute_bars):
    c = first_cross_after_warm_up(minute_bars)
    now = int(minute_bars.index[c].value) + 5_000_000_000  # 5 s into bar c: bars before it are closed
    fake = terminal(minute_bars.iloc[:c + 5], 0)              # the terminal also has bar c, still forming
    driver, strategy, sink = paper_driver()

    assert driver.warm_up(MT5Feed(fake, server_utc_offset_s=0), "mt5", now) == SLOW + 1
    assert driver.history.time[-1] == int(minute_bars.index[c - 1].value)  # up to the last closed bar
    assert not driver.oms.orders and not sink.signals  # the history is not traded

    live_bar(driver, int(minute_bars.index[c].value), float(minute_bars["close"].iloc[c]))
    orders = list(driver.oms.orders.values())
    assert [o.side for o in orders] == [OrderSide.BUY], "the cross at the first live bar was not acted on"
    assert [s.direction for s in sink.signals] == [1]

    # the values it decided on are a backtest's over the same bars, to the last bit
    same_bars = minute_bars["close"].iloc[c - SLOW - 1:c + 1]
    for live, length in ((strategy.fast_ma, FAST), (strategy.slow_ma, SLOW)):
        batch = ta.sma(same_bars, length=length, talib=False).to_numpy()  # as Strategy.I calls it
        assert np.array_equal(np.asarray(live), batch, equal_nan=True)

    # without the warm-up the same live bar finds no slow SMA and does nothing
    cold, _, cold_sink = paper_driver()
    live_bar(cold, int(minute_bars.index[c].value), float(minute_bars["close"].iloc[c]))
    assert not cold.oms.orders and not cold_sink.signals


def test_a_warm_up_does_not_change_what_the_bot_last_decided(minute_bars):
    """The history's own crossings are not the bot's decisions: its target stays the one restored
    from its stored signals, and no signal is published for them."""
    c = first_cross_after_warm_up(minute_bars)
    fake = terminal(minute_bars.iloc[:c + 200], 0)
    driver, strategy, sink = paper_driver(LongMemory)
    driver.restore_direction([])
    now = int(minute_bars.index[c + 199].value) + 1
    assert driver.warm_up(MT5Feed(fake, server_utc_offset_s=0), "mt5", now) == 200
    history = minute_bars["close"].iloc[c:c + 200]
    fast = ta.sma(history, length=FAST, talib=False).to_numpy()  # as Strategy.I calls it
    slow = ta.sma(history, length=SLOW, talib=False).to_numpy()
    assert cross_above_mask(fast, slow).any()  # the history did cross
    assert strategy.target is None and driver.last_direction is None and not sink.signals and not driver.oms.orders


def test_the_history_asked_for_reaches_back_over_a_weekend():
    """Markets close: 200 hourly bars before a Monday morning start in the week before."""
    hourly = load_bars(DATA / "fx" / "EURUSD_1h.csv")
    monday = next(k for k in range(300, len(hourly)) if hourly.index[k].day_of_week == 0 and hourly.index[k].hour == 9)
    fake = FakeMT5()
    fake.add_symbol("EURUSD", 1.1, 1.10002)
    fake.set_rates("EURUSD", TIMEFRAMES["H1"], rates(hourly.iloc[:monday + 3], 0))
    fake.initialize(login=5001, password="secret", server="FakeBroker-Demo")
    driver, _, _ = paper_driver(LongMemory, "1h")
    now = int(hourly.index[monday].value) + 60_000_000_000
    assert driver.warm_up(MT5Feed(fake, server_utc_offset_s=0), "mt5", now) == 200
    assert driver.history.time == hourly.index[monday - 200:monday].as_unit("ns").asi8.tolist()


def test_a_venue_without_history_leaves_the_bot_waiting_for_new_bars(minute_bars, caplog):
    fake = terminal(minute_bars.iloc[:0], 0)
    driver, _, _ = paper_driver()
    with caplog.at_level(logging.WARNING, logger="live.driver"):
        assert driver.warm_up(MT5Feed(fake, server_utc_offset_s=0), "mt5", int(minute_bars.index[100].value)) == 0
        assert driver.warm_up(MT5Feed(fake), "ccxt-but-unknown", int(minute_bars.index[100].value)) == 0
    assert len(driver.history) == 0
    assert "no history timeframe known for venue 'ccxt-but-unknown'" in caplog.text


# -- the runtime: a live bot's start takes the history before its first tick ---------------------
CREDENTIALS = EnvCredentials({"TICKBRIDGE_ACCOUNT_FX_LOGIN": "5001", "TICKBRIDGE_ACCOUNT_FX_PASSWORD": "secret",
                              "TICKBRIDGE_ACCOUNT_FX_SERVER": "FakeBroker-Demo"})
BOT = {"id": "mt5-warm", "strategy": "sma_cross", "symbol": "EURUSD", "venue": "mt5", "account": "fx", "bar": "1min",
       "params": {"fast": FAST, "slow": SLOW, "fixed_size": "0.10", "units": "fractional"}}


def wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the bot did not get there"
        time.sleep(0.05)


def test_a_live_bot_warms_up_from_the_terminal_and_buys_the_cross_at_its_first_live_bar(minute_bars, tmp_path):
    c = first_cross_after_warm_up(minute_bars)
    this_minute = time.time_ns() // MINUTE * MINUTE
    shift = this_minute - int(minute_bars.index[c].value)  # the real day moved so that bar c is now
    fake = terminal(minute_bars.iloc[:c], shift)
    fake.now_msc = (this_minute + 1_000_000_000) // 1_000_000
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    bots = BotManager(FeedConfig(path="data/ticks/"), url, tmp_path, record=False,
                      venues=lambda config: open_venue(config.venue, config.account, [config.symbol], [CREDENTIALS],
                                                       mt5_api=fake))
    close = round(float(minute_bars["close"].iloc[c]), 5)
    with bots:
        bots.start(parse_bot_config(BOT))
        wait_until(lambda: bots.status(BOT["id"])["bars"] == SLOW + 1)  # warmed up before any tick
        for k, ms in enumerate((this_minute // 1_000_000 + 2_000, (this_minute + MINUTE) // 1_000_000 + 2_000)):
            fake.set_tick("EURUSD", close, round(close + 0.00002, 5), time_msc=ms)
            wait_until(lambda k=k: bots.status(BOT["id"])["ticks"] >= k + 1)
        wait_until(lambda: count(url, OrderRow.__table__) >= 1)
        bots.stop(BOT["id"])
    assert count(url, SignalRow.__table__) == 1


def count(url: str, table) -> int:
    with make_engine(url).connect() as connection:
        return connection.execute(select(func.count()).select_from(table).where(table.c.bot_id == BOT["id"])).scalar()
