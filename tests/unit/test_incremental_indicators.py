"""Live indicators grow by one value per bar close and equal the backtest's to the last bit.

A backtest computes `self.I(ta.sma, ...)` once over the whole series; a live bot extends it at each
bar close (live/indicators.py). For sma, ema and rsi the extension is a kernel that
repeats pandas-ta's (or TA-Lib's, when pandas-ta hands the call to it) floating-point operations,
so the values must be the batch values bit for bit, on every real series in data/, and the work
per bar must not depend on how many bars came before. Anything else is recomputed in full (still
equal), and the log says so once.
"""

from __future__ import annotations

import importlib.util
import logging
import math

import numpy as np
import pandas as pd
import pandas_ta as ta
import pytest

from backtest.data import load_bars
from engine.market import Bar
from live import indicators as live_indicators
from live.bars import BarHistory
from live.indicators import LiveIndicators
from strategies.base import BarData, Strategy, StrategyParams
from tests.conftest import DATA

SERIES = ["stocks/SPY_daily.csv", "stocks/GOOG_daily.csv", "fx/EURUSD_1h.csv", "crypto/BTC-PERP_1m.csv"]
HAS_TALIB = importlib.util.find_spec("talib") is not None


class EveryKernel(Strategy):
    """sma, ema and rsi as strategies write them: defaults (TA-Lib when it is installed), pandas-ta's
    own arithmetic (talib=False), positional lengths, other columns, other options."""

    name = "every_kernel"

    def init(self) -> None:
        close = self.data.Close
        self.sma_fast = self.I(ta.sma, close, length=10)
        self.sma_slow = self.I(ta.sma, close, 200)
        self.sma_plain = self.I(ta.sma, close, length=30, talib=False)
        self.ema_fast = self.I(ta.ema, close, length=10)
        self.ema_plain = self.I(ta.ema, close, length=50, talib=False)
        self.ema_no_presma = self.I(ta.ema, close, length=20, talib=False, presma=False)
        self.rsi = self.I(ta.rsi, close, length=14)
        self.rsi_plain = self.I(ta.rsi, close, length=14, talib=False)
        self.rsi_high = self.I(ta.rsi, self.data.High, length=5, talib=False, drift=2, scalar=50)
        self.ema_volume = self.I(ta.ema, self.data.Volume, length=5)


NAMES = ["sma_fast", "sma_slow", "sma_plain", "ema_fast", "ema_plain", "ema_no_presma", "rsi", "rsi_plain",
         "rsi_high", "ema_volume"]


def backtest_values(cls: type[Strategy], bars: pd.DataFrame) -> Strategy:
    strategy = cls(StrategyParams())
    strategy.attach(BarData(bars), "X")
    strategy.init()
    return strategy


# the frame is kept beside its rows: keyed by id() alone, a frame freed after its module fixture
# could lend its id to the next series, which then read the old one's bars (seen under xdist)
_rows: dict[int, tuple[pd.DataFrame, list[Bar]]] = {}


def bar_of(bars: pd.DataFrame, i: int) -> Bar:
    """Bar i of a frame, as the driver appends it to its history."""
    cached = _rows.get(id(bars))
    if cached is None or cached[0] is not bars:
        columns = [bars[c].tolist() for c in ("open", "high", "low", "close", "volume")]
        cached = _rows[id(bars)] = (bars, [Bar("X", t, t + 1, *values)
                                           for t, *values in zip(bars.index.as_unit("ns").asi8.tolist(), *columns)])
    return cached[1][i]


def same_bits(live: list[float], batch: np.ndarray) -> bool:
    """Equal to the last bit (a -0.0 for a 0.0 counts as a difference), NaN where the batch has NaN."""
    a = np.asarray(live, dtype=np.float64)
    b = np.asarray(batch, dtype=np.float64)
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    return np.where(np.isnan(a), 0.0, a).tobytes() == np.where(np.isnan(b), 0.0, b).tobytes()


def first_difference(live: list[float], batch: np.ndarray) -> str:
    a, b = np.asarray(live), np.asarray(batch)
    bad = np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))
    return f"first at bar {bad[0]}: live {a[bad[0]]!r}, batch {b[bad[0]]!r}" if len(bad) else "signed zeros"


@pytest.fixture(scope="module", params=SERIES)
def bars(request: pytest.FixtureRequest) -> pd.DataFrame:
    return load_bars(DATA / request.param)


@pytest.mark.parametrize("started_with", [1, 500])
def test_indicators_grown_bar_by_bar_are_the_backtests_to_the_last_bit(bars, started_with):
    """The driver starts on its first bar (or on a warm-up history) and then adds one bar per close."""
    batch = backtest_values(EveryKernel, bars)
    live = EveryKernel(StrategyParams())
    indicators = LiveIndicators(live)
    history = BarHistory()
    for i in range(started_with):
        history.append(bar_of(bars, i))
    indicators.start(history)
    assert indicators.incremental, [c.func.__name__ for c in indicators.calls if c.make is None]
    lists = {name: getattr(live, name) for name in NAMES}
    for i in range(started_with, len(bars)):
        history.append(bar_of(bars, i))
        indicators.refresh(history)
    for name in NAMES:
        assert getattr(live, name) is lists[name], f"{name}: the strategy's list was replaced, not extended"
        expected = getattr(batch, name)
        assert same_bits(lists[name], expected), f"{name}: {first_difference(lists[name], expected)}"


class Windowed(Strategy):
    """Functions whose value depends on a known window of bars: run over that window each bar."""

    name = "windowed"

    def init(self) -> None:
        close = self.data.Close
        self.mom = self.I(ta.mom, close, length=10)
        self.mom_plain = self.I(ta.mom, close, 5, talib=False)
        self.midpoint = self.I(ta.midpoint, close, length=14)
        self.midpoint_plain = self.I(ta.midpoint, self.data.High, length=7, talib=False)
        self.channel = self.I(ta.donchian, self.data.High, self.data.Low, lower_length=20, upper_length=10)
        self.lower, self.middle, self.upper = self.channel


def test_window_local_functions_run_over_their_window_and_equal_the_backtest():
    bars = load_bars(DATA / "fx/EURUSD_1h.csv").iloc[:1000]  # a pandas-ta call per bar and window: slow-ish
    batch = backtest_values(Windowed, bars)
    live = Windowed(StrategyParams())
    indicators = LiveIndicators(live)
    history = BarHistory()
    history.close, history.high, history.low = _Reads(), _Reads(), _Reads()
    history.append(bar_of(bars, 0))
    indicators.start(history)
    assert indicators.incremental and all(c.window for c in indicators.calls)
    for i in range(1, len(bars)):
        history.append(bar_of(bars, i))
        for column in (history.close, history.high, history.low):
            column.oldest = None
        indicators.refresh(history)
        oldest = min(c.oldest for c in (history.close, history.high, history.low) if c.oldest is not None)
        assert oldest >= i - 21, f"bar {i} read bar {oldest}"
    for name in ("mom", "mom_plain", "midpoint", "midpoint_plain", "lower", "middle", "upper"):
        assert same_bits(getattr(live, name), getattr(batch, name)), name
    for part_live, part_batch in zip(live.channel, batch.channel):
        assert same_bits(part_live, part_batch)


class _Reads(list):
    """A bar column that remembers the oldest bar read since it was last reset."""

    oldest: int | None = None

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if isinstance(key, slice):
            first = range(len(self))[key]
            if len(first):
                self._saw(first[0])
        else:
            self._saw(key if key >= 0 else len(self) + key)
        return super().__getitem__(key)

    def _saw(self, index: int) -> None:
        self.oldest = index if self.oldest is None else min(self.oldest, index)


def test_the_work_per_bar_reads_a_bounded_window_and_builds_no_frame():
    """O(1) per bar: after the start, a bar close reads no bar older than the longest window
    (sma 200) and never rebuilds the history's DataFrame (which costs O(bars))."""
    bars = load_bars(DATA / "stocks/SPY_daily.csv")
    live = EveryKernel(StrategyParams())
    indicators = LiveIndicators(live)
    history = BarHistory()
    history.close, history.high, history.volume = _Reads(), _Reads(), _Reads()
    history.append(bar_of(bars, 0))
    indicators.start(history)
    for i in range(1, len(bars)):
        history.append(bar_of(bars, i))
        for column in (history.close, history.high, history.volume):
            column.oldest = None
        indicators.refresh(history)
        oldest = min(c.oldest for c in (history.close, history.high, history.volume) if c.oldest is not None)
        assert oldest >= i - 199, f"bar {i} read bar {oldest}"
        assert history._frame is None, f"bar {i} built the whole history as a DataFrame"


class Unknown(Strategy):
    """Functions (or arguments) with no kernel, next to one that has one."""

    name = "unknown"

    def init(self) -> None:
        close = self.data.Close
        self.bands = self.I(ta.bbands, close, length=20)
        self.bands_again = self.I(ta.bbands, close, length=10)
        self.shifted = self.I(ta.sma, close, length=5, offset=1)
        self.rsi_ema = self.I(ta.rsi, close, length=14, mamode="ema", talib=False)
        self.sma = self.I(ta.sma, close, length=5)


def test_an_indicator_without_a_kernel_is_recomputed_equal_and_said_once(caplog, monkeypatch):
    monkeypatch.setattr(live_indicators, "_reported", set())
    bars = load_bars(DATA / "stocks/SPY_daily.csv").iloc[:150]
    batch = backtest_values(Unknown, bars)
    live = Unknown(StrategyParams())
    indicators = LiveIndicators(live)
    history = BarHistory()
    history.append(bar_of(bars, 0))
    with caplog.at_level(logging.WARNING, logger="live.indicators"):
        indicators.start(history)
        for i in range(1, len(bars)):
            history.append(bar_of(bars, i))
            indicators.refresh(history)
            for k, (part_live, part_batch) in enumerate(zip(live.bands, batch.bands)):
                assert same_bits(part_live, part_batch[: i + 1]), f"bbands part {k} at bar {i}"
            for name in ("shifted", "rsi_ema", "sma"):
                assert same_bits(getattr(live, name), getattr(batch, name)[: i + 1]), f"{name} at bar {i}"
    assert [c.make is not None for c in indicators.calls] == [False, False, False, False, True]
    said = [r.getMessage() for r in caplog.records if "recomputed over all bars" in r.getMessage()]
    assert len([m for m in said if "bbands" in m]) == 1, said  # two bbands calls, one line
    assert any("sma" in m and "these arguments" in m for m in said), said
    assert any("rsi" in m for m in said), said


@pytest.mark.skipif(not HAS_TALIB, reason="TA-Lib is not installed")
def test_a_talib_replica_that_is_one_ulp_off_is_not_used(monkeypatch):
    """TA-Lib's arithmetic depends on how its wheel was compiled (FMA, reciprocal division): each
    replica is checked against the library itself before it is trusted."""
    monkeypatch.setattr(live_indicators, "_probed", {})

    class OneUlpHigh(live_indicators._TaSma):
        def step(self, x: float, k: int) -> float:
            value = super().step(x, k)
            return value if value != value else math.nextafter(value, math.inf)

    assert live_indicators._talib_ok("SMA", live_indicators._TaSma, 7)
    assert not live_indicators._talib_ok("SMA", OneUlpHigh, 8)
