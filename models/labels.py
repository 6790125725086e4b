"""Training targets. Labels look forward by definition; they are NaN where the future they need
lies beyond the data, so no row is labelled from data it cannot have."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.errors import ConfigError


def forward_return_labels(close: pd.Series, horizon: int, threshold: float) -> pd.Series:
    """+1 if the return over the next `horizon` bars exceeds `threshold`, -1 below -threshold,
    else 0; NaN for the last `horizon` bars."""
    if horizon < 1:
        raise ConfigError("horizon", f"must be >= 1, got {horizon}")
    if threshold < 0:
        raise ConfigError("threshold", f"must be >= 0, got {threshold}")
    forward = close.shift(-horizon) / close - 1.0
    labels = np.where(forward > threshold, 1.0, np.where(forward < -threshold, -1.0, 0.0))
    return pd.Series(np.where(forward.isna(), np.nan, labels), index=close.index, name=f"fwd_{horizon}")


def triple_barrier_labels(bars: pd.DataFrame, take_profit: float, stop_loss: float, horizon: int) -> pd.Series:
    """Lopez de Prado's triple barrier from each bar's close: +1 if the high reaches
    close * (1 + take_profit) first, -1 if the low reaches close * (1 - stop_loss) first, 0 if
    neither within `horizon` bars. Both in one bar counts as the stop (the pessimistic reading,
    as the simulated venue does). NaN where fewer than `horizon` bars follow."""
    if horizon < 1 or take_profit <= 0 or stop_loss <= 0:
        raise ConfigError("triple_barrier", "horizon >= 1 and positive take_profit and stop_loss are required")
    close, high, low = (bars[c].to_numpy(dtype=np.float64) for c in ("close", "high", "low"))
    n = len(close)
    out = np.full(n, np.nan)
    for t in range(n - horizon):
        upper, lower = close[t] * (1 + take_profit), close[t] * (1 - stop_loss)
        label = 0.0
        for k in range(t + 1, t + horizon + 1):
            if low[k] <= lower:
                label = -1.0
                break
            if high[k] >= upper:
                label = 1.0
                break
        out[t] = label
    return pd.Series(out, index=bars.index, name=f"tb_{horizon}")
