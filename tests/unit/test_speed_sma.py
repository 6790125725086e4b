"""Strategy.I computes pandas-ta's sma with numpy (strategies.base.numpy_sma) for speed: it must
give pandas-ta's values bit for bit, since a crossing of two averages can hinge on the last bit,
and leave every call it does not reproduce to pandas-ta unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pandas_ta as ta
import pytest

from backtest.data import load_bars
from engine.errors import ConfigError
from strategies.base import BarData, Strategy, StrategyCodeError, numpy_sma

DATA = Path(__file__).resolve().parents[2] / "data"
SERIES = sorted(p for p in DATA.rglob("*.csv") if "ticks" not in p.parts)
LENGTHS = (2, 3, 5, 7, 10, 20, 30, 50, 200)


@pytest.mark.parametrize("path", SERIES, ids=lambda p: p.name)
def test_numpy_sma_is_pandas_ta_bit_for_bit_on_every_real_series(path: Path) -> None:
    frame = load_bars(path)
    for column in ("open", "high", "low", "close"):
        series = frame[column].astype(np.float64)
        for n in LENGTHS:
            ours = numpy_sma(ta.sma, (series,), {"length": n, "talib": False})
            theirs = ta.sma(series, length=n, talib=False).to_numpy(dtype=np.float64)
            assert ours is not None
            assert ours.tobytes() == theirs.tobytes(), f"{path.name} {column} sma({n})"


def test_numpy_sma_matches_on_random_walks_with_ties_and_gaps() -> None:
    rng = np.random.default_rng(7)
    walk = np.round(1.1 + np.cumsum(rng.normal(0, 1e-4, 50_000)), 5)  # on a 0.00001 grid: many exact ties
    walk[1000:1010] = np.nan  # a gap: NaN propagates through the windows that hold it
    series = pd.Series(walk)
    for n in (2, 10, 20, 64):
        ours = numpy_sma(ta.sma, (series,), {"length": n, "talib": False})
        theirs = ta.sma(series, length=n, talib=False).to_numpy()
        assert ours is not None and ours.tobytes() == theirs.tobytes()


class _Two(Strategy):
    name = "two_smas"

    def init(self) -> None:
        self.fast = self.I(ta.sma, self.data.Close, length=10)
        self.slow = self.I(ta.sma, self.data.Close, length=30)


def test_strategy_I_gives_pandas_ta_values() -> None:
    frame = load_bars(DATA / "stocks" / "SPY_daily.csv")
    strategy = _Two(_Two.Params())
    strategy.attach(BarData(frame), "SPY")
    strategy.init()
    for ours, n in ((strategy.fast, 10), (strategy.slow, 30)):
        assert ours.tobytes() == ta.sma(frame["close"], length=n, talib=False).to_numpy().tobytes()


@pytest.mark.parametrize("kwargs", [
    {"length": 10, "talib": False, "offset": 1},    # shifted: pandas-ta's own code
    {"length": 10, "talib": False, "fillna": 0.0},  # filled
    {"length": 1, "talib": False},                  # the average of one bar (length_one_safe)
    {"length": 10, "talib": True},                  # the caller chose TA-Lib
    {"length": 10.0, "talib": False},               # not an int: whatever pandas-ta makes of it
])
def test_calls_it_does_not_reproduce_go_to_pandas_ta(kwargs: dict) -> None:
    series = pd.Series(np.linspace(1.0, 2.0, 100))
    assert numpy_sma(ta.sma, (series,), kwargs) is None


def test_other_inputs_keep_pandas_ta_behaviour() -> None:
    short = pd.Series([1.0, 2.0, 3.0])
    assert numpy_sma(ta.sma, (short,), {"length": 10, "talib": False}) is None  # too short: pandas-ta says None
    ints = pd.Series(np.arange(100))
    assert numpy_sma(ta.sma, (ints,), {"length": 10, "talib": False}) is None  # numba's integer loop differs
    assert numpy_sma(ta.ema, (pd.Series(np.ones(50)),), {"length": 10, "talib": False}) is None

    class _Arr(Strategy):
        name = "array_sma"

        def init(self) -> None:
            self.x = self.I(ta.sma, self.data.close, length=10)  # a numpy array: pandas-ta answers None

    frame = load_bars(DATA / "stocks" / "SPY_daily.csv")
    strategy = _Arr(_Arr.Params())
    strategy.attach(BarData(frame), "SPY")
    with pytest.raises((StrategyCodeError, ConfigError)):
        strategy.init()
