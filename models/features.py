"""Features for ML signals: pandas-ta indicators, the same numbers in batch and live.

A FeatureSpec (pydantic, so a bad spec names its field) lists the features to compute. `compute`
builds them over a whole frame (training, backtests); `IncrementalFeatures` keeps a rolling
window of bars live and recomputes the same functions over it at each bar close, returning the
last row. Recursive indicators (EMA in MACD, Wilder's smoothing in RSI and ATR) depend on all
history, so the window must be long enough for their start-up to have decayed: with the default
1,000 bars the difference from batch is below float precision (the tests require agreement to
1e-9 relative at every bar close on real data).

Every feature is NaN for the first `spec.lookback - 1` bars (warm-up), in batch and live alike.
pandas-ta's own formulas always (`talib=False`): it would otherwise switch to TA-Lib whenever
TA-Lib is importable, which seeds RSI and the EMAs differently (RSI moved by up to 2.5 points in
the warm-up), so the features, and a model's decisions, depended on what else was installed.
IncrementalFeatures reproduces the pandas-ta formulas, never TA-Lib's.

Every feature at bar t uses bars up to t only (pandas-ta's indicators are causal; the tests
perturb every bar after t and require the features at or before t to stay equal).
"""

from __future__ import annotations

import math
import sys
from collections import deque
from typing import Literal

import numpy as np
import pandas as pd
import pandas_ta as ta
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import ConfigError, DataError


class FeatureSpec(BaseModel):
    """Which features, with which parameters. Each list may be empty to leave a family out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rsi: list[int] = Field(default_factory=lambda: [14])
    macd: list[tuple[int, int, int]] = Field(default_factory=lambda: [(12, 26, 9)])
    bbands: list[int] = Field(default_factory=lambda: [20])
    atr: list[int] = Field(default_factory=lambda: [14])
    return_lags: list[int] = Field(default_factory=lambda: [1, 2, 5, 10])
    volatility: list[int] = Field(default_factory=lambda: [20])
    volume_zscore: list[int] = Field(default_factory=lambda: [20])
    normalise_by: Literal["close", "none"] = "close"  # price-level features divided by close

    @property
    def lookback(self) -> int:
        """Bars needed before every feature is defined."""
        spans = ([n + 1 for n in self.rsi] + [slow + signal for _, slow, signal in self.macd] + self.bbands
                 + [n + 1 for n in self.atr] + [n + 1 for n in self.return_lags]
                 + [n + 1 for n in self.volatility] + self.volume_zscore)
        return max(spans, default=1)


def parse_spec(raw: dict[str, object]) -> FeatureSpec:
    try:
        return FeatureSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError("features." + ".".join(str(p) for p in err["loc"]), err["msg"]) from None


def compute(bars: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """All features of `spec` over `bars` (load_bars' columns); NaN until each is defined."""
    missing = [c for c in ("high", "low", "close", "volume") if c not in bars.columns]
    if missing:
        raise DataError(f"features need column {missing[0]!r} (found: {', '.join(bars.columns)})")
    close, high, low, volume = bars["close"], bars["high"], bars["low"], bars["volume"]
    scale = close if spec.normalise_by == "close" else 1.0
    out: dict[str, pd.Series] = {}
    for n in spec.rsi:
        out[f"rsi_{n}"] = _or_nan(ta.rsi(close, length=n, talib=False), close)
    for fast, slow, signal in spec.macd:
        macd = ta.macd(close, fast=fast, slow=slow, signal=signal, talib=False)
        if macd is None:
            out[f"macd_{fast}_{slow}_{signal}"] = out[f"macd_hist_{fast}_{slow}_{signal}"] = _nan(close)
        else:
            out[f"macd_{fast}_{slow}_{signal}"] = macd.iloc[:, 0] / scale
            out[f"macd_hist_{fast}_{slow}_{signal}"] = macd.iloc[:, 1] / scale
    for n in spec.bbands:
        out[f"bb_width_{n}"], out[f"bb_pos_{n}"] = _bollinger(close, n)
    for n in spec.atr:
        out[f"atr_{n}"] = _atr(high, low, close, n) / scale
    log_close = np.log(close)
    for lag in spec.return_lags:
        out[f"ret_{lag}"] = log_close - log_close.shift(lag)
    one_bar = log_close.diff().to_numpy(dtype=np.float64)
    for n in spec.volatility:
        out[f"vol_{n}"] = pd.Series(_rolling_mean_std(one_bar, n)[1], index=bars.index)
    volumes = volume.to_numpy(dtype=np.float64)
    for n in spec.volume_zscore:
        mean, std = _rolling_mean_std(volumes, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            # volume that does not vary (FX quotes carry none) says nothing: 0, not missing, so a
            # model trained with this feature can still trade such data
            out[f"volume_z_{n}"] = pd.Series(np.where(std > 0, (volumes - mean) / std,
                                                      np.where(np.isnan(std), np.nan, 0.0)),
                                             index=bars.index)
    frame = pd.DataFrame(out, index=bars.index)
    # pandas-ta gives warm-up values on a long series and None on a short one: define every
    # feature only from the spec's lookback on, so batch and live agree from the first bar
    frame.iloc[: spec.lookback - 1] = np.nan
    return frame


def _rolling_mean_std(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample deviation (ddof=1) of each n-window ending at each row, NaN before the
    first full window or when the window holds a NaN. Two passes per window, with the very numpy
    operations IncrementalFeatures uses on its window, so batch and live agree to the last bit
    (pandas' running update drifts by ~1e-9 on prices near 1.1)."""
    mean, std = np.full(len(values), np.nan), np.full(len(values), np.nan)
    if len(values) >= n:
        windows = np.lib.stride_tricks.sliding_window_view(values, n)
        m = windows.mean(axis=1)
        mean[n - 1:] = m
        std[n - 1:] = np.sqrt(((windows - m[:, None]) ** 2).sum(axis=1) / (n - 1))
    return mean, std


def _atr(high: pd.Series, low: pd.Series, close: pd.Series, n: int) -> pd.Series:
    """pandas-ta's ATR (presma-seeded Wilder average of the true range) without its
    non_zero_range, which adds an epsilon to every bar's range when *any* bar of the series has
    high == low: a (tiny) dependence on bars not yet seen, which live features cannot have."""
    previous = close.shift(1)
    true_range = pd.concat([high - low, high - previous, previous - low], axis=1).abs().max(axis=1)
    if len(true_range) < n:
        return _nan(close)
    seed = true_range.iloc[:n].mean()
    true_range.iloc[: n - 1] = np.nan
    true_range.iloc[n - 1] = seed
    return true_range.ewm(alpha=1.0 / n, adjust=False).mean()


def _bollinger(close: pd.Series, n: int, k: float = 2.0) -> tuple[pd.Series, pd.Series]:
    """pandas-ta's bbands bandwidth and %B: SMA +- k sample deviations."""
    values = close.to_numpy(dtype=np.float64)
    mid, std = _rolling_mean_std(values, n)
    spread = 2.0 * k * std
    spread[spread == 0] = sys.float_info.epsilon  # pandas-ta's non_zero_range
    width = 100.0 * spread / mid
    pos = (values - (mid - k * std)) / spread
    return pd.Series(width, index=close.index), pd.Series(pos, index=close.index)


def _or_nan(series: pd.Series | None, like: pd.Series) -> pd.Series:
    return _nan(like) if series is None else series


def _nan(like: pd.Series) -> pd.Series:
    return pd.Series(np.nan, index=like.index)


class _Ewm:
    """pandas' `ewm(alpha=a, adjust=False).mean()` one value at a time, starting at the first
    value it is given, with pandas' own update formula (so the numbers agree to the last bits)."""

    __slots__ = ("keep", "a", "value")

    def __init__(self, alpha: float) -> None:
        self.a, self.keep = alpha, 1.0 - alpha
        self.value = math.nan

    def update(self, x: float) -> float:
        if self.value != self.value:
            self.value = x
        else:
            self.value = (self.keep * self.value + self.a * x) / (self.keep + self.a)
        return self.value


class _SeededEma:
    """pandas-ta's `ema(presma=True)` (and ATR's presma RMA): NaN for n-1 values, the mean of
    the first n at the n-th, then the exponential average from there."""

    __slots__ = ("n", "first", "ewm")

    def __init__(self, n: int, alpha: float) -> None:
        self.n = n
        self.first: list[float] | None = []
        self.ewm = _Ewm(alpha)

    def update(self, x: float) -> float:
        if self.first is None:
            return self.ewm.update(x)
        self.first.append(x)
        if len(self.first) < self.n:
            return math.nan
        # the seed as pandas computes Series.mean(): numpy's (pairwise) sum over n
        self.ewm.value = float(np.sum(np.asarray(self.first)) / self.n)
        self.first = None
        return self.ewm.value


class _Window:
    """The last n values, for rolling means and sample deviations (ddof=1)."""

    __slots__ = ("values",)

    def __init__(self, n: int) -> None:
        self.values: deque[float] = deque(maxlen=n)

    def push(self, x: float) -> bool:
        self.values.append(x)
        return len(self.values) == self.values.maxlen

    def mean_std(self) -> tuple[float, float]:
        v = np.fromiter(self.values, dtype=np.float64, count=len(self.values))
        mean = v.mean()
        return float(mean), float(np.sqrt(((v - mean) ** 2).sum() / (len(v) - 1)))


class IncrementalFeatures:
    """Live features in O(1) per bar: each indicator keeps its recursive state (EMA, Wilder's
    average) or a window of its last n inputs, so one closed bar costs microseconds, not a
    recomputation of pandas-ta over a window. The recursions are pandas-ta's own (SMA-seeded EMA
    in MACD, presma RMA in ATR, first-value-seeded RMA in RSI) with pandas' update formula, and
    windows use the numpy operations `compute` uses, so the values equal `compute` on the whole
    history bit for bit.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.names = list(compute(pd.DataFrame({c: [1.0] for c in ("open", "high", "low", "close", "volume")}),
                                  spec).columns)
        self.count = 0
        self._last_time: pd.Timestamp | int | None = None
        self._prev_close = math.nan
        self._rsi = [(_Ewm(1.0 / n), _Ewm(1.0 / n)) for n in spec.rsi]
        self._macd = [(_SeededEma(f, 2.0 / (f + 1)), _SeededEma(s, 2.0 / (s + 1)), _SeededEma(g, 2.0 / (g + 1)))
                      for f, s, g in spec.macd]
        self._bb = [_Window(n) for n in spec.bbands]
        self._atr = [_SeededEma(n, 1.0 / n) for n in spec.atr]
        longest = max(spec.return_lags, default=0) + 1
        self._log_close: deque[float] = deque(maxlen=longest)
        self._vol = [_Window(n) for n in spec.volatility]
        self._volume = [_Window(n) for n in spec.volume_zscore]

    def update_array(self, time: pd.Timestamp | int, open_: float, high: float, low: float, close: float,
                     volume: float) -> np.ndarray:
        """The feature row of this closed bar (NaN during the warm-up), in `names` order."""
        if self._last_time is not None and time <= self._last_time:
            raise DataError(f"bar at {time} is not after the last one ({self._last_time})")
        self._last_time = time
        self.count += 1
        out: list[float] = []
        scale = close if self.spec.normalise_by == "close" else 1.0
        prev = self._prev_close
        change = close - prev  # NaN on the first bar, as pandas' diff
        for up, down in self._rsi:
            if change != change:
                out.append(math.nan)
                continue
            gain = up.update(change if change > 0 else 0.0)
            loss = abs(down.update(change if change < 0 else 0.0))
            out.append(100.0 * gain / (gain + loss) if gain + loss != 0 else math.nan)
        for fast, slow, signal in self._macd:
            line = fast.update(close) - slow.update(close)
            hist = line - signal.update(line) if line == line else math.nan
            out.extend((line / scale, hist / scale))
        for window in self._bb:
            if not window.push(close):
                out.extend((math.nan, math.nan))
                continue
            mid, std = window.mean_std()
            spread = 4.0 * std or sys.float_info.epsilon  # as _bollinger (k = 2)
            out.extend((100.0 * spread / mid, (close - (mid - 2.0 * std)) / spread))
        true_range = high - low if prev != prev else max(abs(high - low), abs(high - prev), abs(prev - low))
        for atr in self._atr:
            out.append(atr.update(true_range) / scale)
        log_close = float(np.log(close))  # numpy's log, as the batch: libm may differ in the last bit
        self._log_close.append(log_close)
        history = self._log_close
        for lag in self.spec.return_lags:
            out.append(log_close - history[-1 - lag] if len(history) > lag else math.nan)
        one_bar = log_close - history[-2] if len(history) > 1 else math.nan
        for window in self._vol:
            if one_bar != one_bar or not window.push(one_bar):
                out.append(math.nan)
                continue
            out.append(window.mean_std()[1])
        for window in self._volume:
            if not window.push(volume):
                out.append(math.nan)
                continue
            mean, std = window.mean_std()
            out.append((volume - mean) / std if std > 0 else 0.0)
        self._prev_close = close
        row = np.asarray(out, dtype=np.float64)
        if self.count < self.spec.lookback:
            row[:] = np.nan
        return row

    def update(self, time: pd.Timestamp | int, open_: float, high: float, low: float, close: float,
               volume: float) -> pd.Series:
        return pd.Series(self.update_array(time, open_, high, low, close, volume), index=self.names)

    @property
    def ready(self) -> bool:
        return self.count >= self.spec.lookback
