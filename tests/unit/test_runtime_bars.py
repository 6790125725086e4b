"""Live bars and indicators equal the backtester's: bars built tick by tick are ticks_to_bars'
bars, and an indicator recomputed over the bars so far has the full-series value at every bar."""

from __future__ import annotations

import numpy as np
import pandas_ta as ta
import pytest

from backtest.data import load_ticks, ticks_to_bars
from engine.market import Tick
from live.bars import BarBuilder, BarHistory
from live.indicators import LiveIndicators
from strategies.base import BarData, Strategy, StrategyParams
from tests.conftest import DATA


@pytest.fixture(scope="module")
def ticks():
    return load_ticks(DATA / "ticks" / "EURUSD_fxcm_20140505.csv.gz").iloc[:8000]


@pytest.mark.parametrize("rule", ["1min", "5min", "7min"])
def test_bars_built_tick_by_tick_are_the_backtesters_bars(ticks, rule):
    builder, history = BarBuilder("EURUSD", rule), BarHistory()
    for ts, bid, ask in zip(ticks.index.as_unit("ns").asi8.tolist(), ticks["bid"].tolist(), ticks["ask"].tolist()):
        bar = builder.on_tick(Tick("EURUSD", ts, bid, ask))
        if bar is not None:
            history.append(bar)
    expected = ticks_to_bars(ticks, rule).iloc[:-1]  # the last bar has not closed yet
    assert history.frame.equals(expected)


class TwoIndicators(Strategy):
    name = "two_indicators"

    def init(self) -> None:
        self.rsi = self.I(ta.rsi, self.data.Close, length=14)
        self.bands = self.I(ta.bbands, self.data.Close, length=20)


def test_indicators_over_the_bars_so_far_equal_the_full_series_values(ticks):
    bars = ticks_to_bars(ticks, "1min")
    full = TwoIndicators(StrategyParams())
    full.attach(BarData(bars), "EURUSD")
    full.init()
    live = TwoIndicators(StrategyParams())
    indicators = LiveIndicators(live)
    indicators.start(bars.iloc[:1])
    for n in range(2, len(bars) + 1):
        indicators.refresh(bars.iloc[:n])
        i = n - 1
        assert live.rsi[i] == full.rsi[i] or (np.isnan(live.rsi[i]) and np.isnan(full.rsi[i])), i
        for part_live, part_full in zip(live.bands, full.bands):
            assert part_live[i] == part_full[i] or (np.isnan(part_live[i]) and np.isnan(part_full[i])), i
    assert not np.isnan(live.rsi[-1])
