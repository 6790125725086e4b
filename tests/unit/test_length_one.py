"""An average over one bar is that bar: `sma_cross fast=1` (close against its SMA) is a legitimate
rule, and pandas-ta's sma and trima fail on length 1. Batch (Strategy.I), the fast path and a live
bot's indicators must all take it (issue 18)."""

from __future__ import annotations

import numpy as np
import pandas_ta as ta

from backtest.config import BacktestConfig
from backtest.data import load_bars
from backtest.runner import run_backtest
from live.bars import BarHistory
from live.indicators import LiveIndicators
from strategies.base import BarData, Strategy, StrategyParams
from strategies.sma_cross import SmaCross
from tests.conftest import DATA
from tests.unit.test_incremental_indicators import bar_of, same_bits

SPY = DATA / "stocks" / "SPY_daily.csv"


class OneBar(Strategy):
    name = "one_bar"

    def init(self) -> None:
        self.sma1 = self.I(ta.sma, self.data.Close, length=1)
        self.trima1 = self.I(ta.trima, self.data.Close, length=1)
        self.sma5 = self.I(ta.sma, self.data.Close, length=5)


def test_an_average_of_one_bar_is_the_bar_in_a_backtest():
    bars = load_bars(SPY).iloc[:300]
    strategy = OneBar(StrategyParams())
    strategy.attach(BarData(bars), "SPY")
    strategy.init()
    close = bars["close"].to_numpy(dtype=np.float64)
    assert np.array_equal(strategy.sma1, close) and np.array_equal(strategy.trima1, close)


def test_sma_cross_with_fast_1_trades_the_same_on_both_paths():
    bars = load_bars(SPY)
    results = [run_backtest(bars, SmaCross, {"fast": 1, "slow": 30}, BacktestConfig(symbol="SPY", path=path))
               for path in ("event", "fast")]
    assert len(results[0].trades) > 0
    assert results[0].trades.equals(results[1].trades)


def test_a_live_bot_takes_length_1_and_agrees_with_the_batch_at_every_bar():
    bars = load_bars(SPY).iloc[:120]
    batch = OneBar(StrategyParams())
    batch.attach(BarData(bars), "SPY")
    batch.init()
    live = OneBar(StrategyParams())
    indicators = LiveIndicators(live)
    history = BarHistory()
    history.append(bar_of(bars, 0))
    indicators.start(history)
    for i in range(1, len(bars)):
        history.append(bar_of(bars, i))
        indicators.refresh(history)
        for name in ("sma1", "trima1", "sma5"):
            assert same_bits(getattr(live, name), getattr(batch, name)[: i + 1]), f"{name} at bar {i}"
