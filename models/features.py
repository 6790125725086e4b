"""Features for ML signals: pandas-ta indicators, the same numbers in batch and live.

A FeatureSpec (pydantic, so a bad spec names its field) lists the features to compute. `compute`
builds them over a whole frame (training, backtests); `IncrementalFeatures` keeps a rolling
window of bars live and recomputes the same functions over it at each bar close, returning the
last row. Recursive indicators (EMA in MACD, Wilder's smoothing in RSI and ATR) depend on all
history, so the window must be long enough for their start-up to have decayed: with the default
1,000 bars the difference from batch is below float precision (the tests require agreement to
1e-9 relative at every bar close on real data).

Every feature is NaN for the first `spec.lookback - 1` bars (warm-up), in batch and live alike.
Every feature at bar t uses bars up to t only (pandas-ta's indicators are causal; the tests
perturb every bar after t and require the features at or before t to stay equal).
"""

from __future__ import annotations

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
        out[f"rsi_{n}"] = _or_nan(ta.rsi(close, length=n), close)
    for fast, slow, signal in spec.macd:
        macd = ta.macd(close, fast=fast, slow=slow, signal=signal)
        if macd is None:
            out[f"macd_{fast}_{slow}_{signal}"] = out[f"macd_hist_{fast}_{slow}_{signal}"] = _nan(close)
        else:
            out[f"macd_{fast}_{slow}_{signal}"] = macd.iloc[:, 0] / scale
            out[f"macd_hist_{fast}_{slow}_{signal}"] = macd.iloc[:, 1] / scale
    for n in spec.bbands:
        bands = ta.bbands(close, length=n)
        if bands is None:
            out[f"bb_width_{n}"] = out[f"bb_pos_{n}"] = _nan(close)
        else:
            out[f"bb_width_{n}"] = bands.iloc[:, 3]
            out[f"bb_pos_{n}"] = bands.iloc[:, 4]
    for n in spec.atr:
        out[f"atr_{n}"] = _or_nan(ta.atr(high, low, close, length=n), close) / scale
    log_close = np.log(close)
    for lag in spec.return_lags:
        out[f"ret_{lag}"] = log_close - log_close.shift(lag)
    one_bar = log_close.diff()
    for n in spec.volatility:
        out[f"vol_{n}"] = one_bar.rolling(n).std()
    for n in spec.volume_zscore:
        mean, std = volume.rolling(n).mean(), volume.rolling(n).std()
        out[f"volume_z_{n}"] = ((volume - mean) / std.where(std > 0)).astype("float64")
    frame = pd.DataFrame(out, index=bars.index)
    # pandas-ta gives warm-up values on a long series and None on a short one: define every
    # feature only from the spec's lookback on, so batch and live agree from the first bar
    frame.iloc[: spec.lookback - 1] = np.nan
    return frame


def _or_nan(series: pd.Series | None, like: pd.Series) -> pd.Series:
    return _nan(like) if series is None else series


def _nan(like: pd.Series) -> pd.Series:
    return pd.Series(np.nan, index=like.index)


class IncrementalFeatures:
    """Live features: append each closed bar, get the feature row of that bar."""

    def __init__(self, spec: FeatureSpec, window: int = 1000) -> None:
        if window < spec.lookback:
            raise ConfigError("features.window", f"{window} bars is shorter than the {spec.lookback} the spec needs")
        self.spec = spec
        self.window = window
        self._bars: deque[tuple[pd.Timestamp, float, float, float, float, float]] = deque(maxlen=window)

    def update(self, time: pd.Timestamp, open_: float, high: float, low: float, close: float,
               volume: float) -> pd.Series:
        if self._bars and time <= self._bars[-1][0]:
            raise DataError(f"bar at {time} is not after the last one ({self._bars[-1][0]})")
        self._bars.append((time, open_, high, low, close, volume))
        frame = pd.DataFrame(list(self._bars), columns=["time", "open", "high", "low", "close", "volume"])
        frame = frame.set_index("time")
        return compute(frame, self.spec).iloc[-1]

    @property
    def ready(self) -> bool:
        return len(self._bars) >= self.spec.lookback
