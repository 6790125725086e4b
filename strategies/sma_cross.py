"""Moving-average crossover: long when the fast SMA crosses above the slow one.

long_only: enter on a cross up, exit on a cross down. long_short: also go short on a cross down
and reverse at every cross (the close and the new entry are two orders filled at the same open).
"""

from __future__ import annotations

import numpy as np
import pandas_ta as ta
from pydantic import Field, field_validator

from strategies.base import DirectionalParams, Strategy, cross_above_mask, cross_below_mask, must_exceed


class SmaCrossParams(DirectionalParams):
    fast: int = Field(10, ge=1, description="fast SMA length in bars")
    slow: int = Field(20, ge=2, description="slow SMA length in bars")

    _slow_above_fast = field_validator("slow")(must_exceed("fast"))


class SmaCross(Strategy):
    name = "sma_cross"
    Params = SmaCrossParams
    p: SmaCrossParams

    def init(self) -> None:
        self.fast_ma = self.I(ta.sma, self.data.Close, length=self.p.fast)
        self.slow_ma = self.I(ta.sma, self.data.Close, length=self.p.slow)
        self.exit_direction = self.p.exit_direction

    def warmup_bars(self) -> int:
        return self.p.slow + 1  # the slow window, and the bar before it for the crossing

    def next(self) -> None:
        i = self.i
        fast, slow = self.fast_ma, self.slow_ma
        f, s = fast[i], slow[i]
        if f > s:
            if i > 0 and fast[i - 1] <= slow[i - 1]:
                self.go(1)
        elif f < s:
            if i > 0 and fast[i - 1] >= slow[i - 1]:
                self.go(self.exit_direction)

    def signals(self) -> np.ndarray:
        target = np.full(len(self.fast_ma), np.nan)
        target[cross_above_mask(self.fast_ma, self.slow_ma)] = 1.0
        target[cross_below_mask(self.fast_ma, self.slow_ma)] = float(self.exit_direction)
        return target
