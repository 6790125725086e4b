"""Protective orders through the backtester (issue 17): the fast path refuses them and the event
path runs, saying so; real data gives the same fills run after run; a small case is hand-checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.runner import run_backtest
from engine.errors import ConfigError
from strategies.base import Strategy
from tests.conftest import DATA


class MomentumBracket(Strategy):
    """Long after a 20-bar rise, with a take-profit 8% up and a 3% trailing stop."""

    name = "momentum_bracket"
    protective = True

    def next(self) -> None:
        i, close = self.i, self.data.close
        if i >= 20 and self.direction == 0 and close[i] > close[i - 20]:
            self.go(+1, tp_distance=round(close[i] * 0.08, 2), trail="3%")


class Scripted(Strategy):
    """Enters at bar 0 with a fixed bracket and at bar 3 with a trailing stop."""

    name = "scripted"
    protective = True

    def next(self) -> None:
        if self.i == 0:
            self.go(+1, sl=95, tp=110)
        elif self.i == 3:
            self.go(+1, trail=2)


def test_real_data_bracket_and_trailing_stop_give_identical_fills_run_twice():
    frame = load_bars(DATA / "stocks" / "SPY_daily.csv")
    config = make_config(commission="0.0005", slippage_bps="1")
    first = run_backtest(frame, MomentumBracket, {"units": "fractional"}, config)
    second = run_backtest(frame, MomentumBracket, {"units": "fractional"}, config)
    assert first.meta["path"] == "event" and "protective" in first.meta
    assert len(first.trades) > 20, "a determinism test that trades little proves little"
    pd.testing.assert_frame_equal(first.orders, second.orders, check_exact=True)
    pd.testing.assert_frame_equal(first.trades, second.trades, check_exact=True)
    np.testing.assert_array_equal(first.equity.to_numpy(), second.equity.to_numpy())
    # every trade but an end-of-data close ended at its bracket: a take-profit or the trailing stop
    assert (first.orders["reason"] == "OCO").sum() >= len(first.trades) - 1


def test_fast_path_refuses_a_protective_strategy():
    frame = load_bars(DATA / "stocks" / "SPY_daily.csv").iloc[:50]
    with pytest.raises(ConfigError) as info:
        run_backtest(frame, MomentumBracket, {}, make_config(path="fast"))
    assert info.value.field == "path"


def test_small_case_fills_are_the_hand_checked_ones():
    """Bar 1 opens at 101: the entry fills there; bar 2 reaches 111: the take-profit sells at
    110 (the stop at 95 is canceled). Bar 4 opens at 101: the second entry fills; its trailing stop
    starts at 99 (101 - 2), is not touched (low 100.5) and ratchets to 104 (high 106 - 2); bar 5
    goes down to 103: the stop sells at 104."""
    index = pd.date_range("2024-01-01", periods=7, freq="D", tz="UTC")
    bars = pd.DataFrame([
        (100, 100, 100, 100), (101, 104, 100, 103), (103, 111, 102, 108), (108, 108, 100, 100),
        (101, 106, 100.5, 105), (105, 105, 103, 103.5), (103, 104, 102, 103),
    ], columns=["open", "high", "low", "close"], index=index)
    bars["volume"] = 1.0
    result = run_backtest(bars, Scripted, {"fixed_size": "10"}, make_config(price_increment="0.5"))
    trades = result.trades
    assert list(trades["entry_price"]) == [101, 101] and list(trades["exit_price"]) == [110, 104]
    assert list(trades["size"]) == [10, 10] and list(trades["pnl"]) == [90, 30]
    assert list(trades["entry_bar"]) == [1, 4] and list(trades["exit_bar"]) == [2, 5]
    assert result.equity.iloc[-1] == 10_000 + 90 + 30
    orders = result.orders
    assert orders["state"].tolist() == ["FILLED", "CANCELED", "FILLED", "FILLED", "FILLED"]
    assert orders["reason"].iloc[1] == "OCO"  # the first stop-loss, canceled by its take-profit
    assert orders["avg_fill_price"].iloc[[0, 2, 3, 4]].tolist() == [101, 110, 101, 104]
