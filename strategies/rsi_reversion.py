"""RSI mean reversion: buy when RSI is oversold, exit (or short) when it is overbought."""

from __future__ import annotations

import numpy as np
import pandas_ta as ta
from pydantic import Field, field_validator

from strategies.base import DirectionalParams, Strategy, must_exceed


# The longest RSI period a config may ask for: a period is data a caller sends and a live bot
# holds its windows in memory (sma_cross.MAX_WINDOW's reason, V.md #4). The warm-up is 40 periods.
MAX_PERIOD = 100_000


class RsiReversionParams(DirectionalParams):
    period: int = Field(14, ge=2, le=MAX_PERIOD, description=f"RSI length in bars (at most {MAX_PERIOD:,})")
    lower: float = Field(30.0, gt=0, lt=100, description="enter long below this RSI")
    upper: float = Field(70.0, gt=0, lt=100, description="exit long (or go short) above this RSI")

    _upper_above_lower = field_validator("upper")(must_exceed("lower"))


class RsiReversion(Strategy):
    name = "rsi_reversion"
    Params = RsiReversionParams
    p: RsiReversionParams

    def init(self) -> None:
        self.rsi = self.I(ta.rsi, self.data.Close, length=self.p.period)
        self.exit_direction = self.p.exit_direction

    def warmup_bars(self) -> int:
        return max(type(self).warmup, 40 * self.p.period)  # Wilder's average forgets its start: (1-1/n)^(40n) < 1e-17

    def next(self) -> None:
        value = self.rsi[self.i]
        if value < self.p.lower:
            self.go(1)
        elif value > self.p.upper:
            self.go(self.exit_direction)

    def signals(self) -> np.ndarray:
        target = np.full(len(self.rsi), np.nan)
        target[self.rsi < self.p.lower] = 1.0
        target[self.rsi > self.p.upper] = float(self.exit_direction)
        return target
