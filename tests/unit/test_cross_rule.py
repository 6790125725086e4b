"""sma_cross's cross rule is backtrader's CrossOver: ties are skipped, not taken as a side.

Prices are small integers and the SMA lengths 2 and 4, so every average is exact in floating
point and d = fast - slow = (c[t] + c[t-1] - c[t-2] - c[t-3]) / 4 is hand-computable:

    bar      0    1    2    3    4    5    6    7    8    9   10   11   12
    close  100  100  102  102  100  106   92  114   88  120   80  128   72
    4*d      -    -    -    4    0    2   -4    0    4    2   -2    0    0

Bars 3-5 are a touch-and-bounce from above (+, 0, +): no cross (backtrader and backtesting.py
agree; the old rule, "d[t-1] <= 0 and d[t] > 0", saw a cross up at bar 5 and bought while the
strategy was flat). Bar 6 is a plain cross down (last non-zero d, bar 5, was > 0). Bars 6-8 cross
through a tie (-, 0, +): one cross up at bar 8, as backtrader's NonZeroDifference counts it
(backtesting.py's `crossover` needs d[7] < 0 and misses it). Bar 10 crosses down.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from backtest.config import make_config
from backtest.runner import run_backtest
from strategies.sma_cross import SmaCross, cross_masks, last_nonzero_difference

CLOSES = [100, 100, 102, 102, 100, 106, 92, 114, 88, 120, 80, 128, 72]
D4 = [math.nan, math.nan, math.nan, 4, 0, 2, -4, 0, 4, 2, -2, 0, 0]


def frame(closes: list[float]) -> pd.DataFrame:
    c = np.asarray(closes, dtype=np.float64)
    index = pd.date_range("2024-01-01", periods=len(c), freq="D", tz="UTC", name="time")
    return pd.DataFrame({"open": c, "high": c, "low": c, "close": c, "volume": 1000.0}, index=index)


def lines() -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(D4) / 4
    slow = np.full(len(d), 100.0)
    return slow + d, slow


def test_masks_skip_ties_as_backtrader_does():
    up, down = cross_masks(*lines())
    assert np.flatnonzero(up).tolist() == [8]
    assert np.flatnonzero(down).tolist() == [6, 10]


def test_next_and_signals_see_the_same_crosses():
    fast, slow = (list(x) for x in lines())
    seen = {}
    for i in range(len(fast)):
        d = fast[i] - slow[i]
        prev = last_nonzero_difference(fast, slow, i)
        if d > 0 and prev < 0:
            seen[i] = "up"
        elif d < 0 and prev > 0:
            seen[i] = "down"
    assert seen == {6: "down", 8: "up", 10: "down"}


def test_missing_value_ends_the_search():
    fast = np.array([1.0, np.nan, 2.0, 2.0, 3.0])
    slow = np.array([2.0, 2.0, 2.0, 2.0, 2.0])
    up, down = cross_masks(fast, slow)  # bar 0 was below, but a NaN and ties come after it
    assert not up.any() and not down.any()
    assert math.isnan(last_nonzero_difference(list(fast), list(slow), 4))


@pytest.mark.parametrize("path", ["fast", "event"])
def test_touch_and_bounce_is_not_a_trade_on_either_path(path):
    result = run_backtest(frame(CLOSES), SmaCross, {"fast": 2, "slow": 4},
                          make_config(path=path, price_increment="1"))
    assert result.meta["path"] == path
    trades = result.trades
    # one trade: the cross up at bar 8 fills at bar 9's open (120), the cross down at bar 10 at
    # bar 11's open (128); the old rule also bought at bar 6 (after the bounce at 5), sold at 7
    assert len(trades) == 1
    assert (int(trades["entry_bar"].iloc[0]), int(trades["exit_bar"].iloc[0])) == (9, 11)
    assert (float(trades["entry_price"].iloc[0]), float(trades["exit_price"].iloc[0])) == (120.0, 128.0)
