"""Your own strategy: an EMA crossover, the example the README walks through.

    tickbridge backtest --strategy examples/my_cross.py:MyCross --data data/stocks/SPY_daily.csv
    tickbridge backtest --strategy my_cross --strategies-dir examples --data data/stocks/SPY_daily.csv \
        --param fast=20 --param slow=50
    tickbridge run examples/my_cross_bot.yaml          # the same class as a paper bot on real ticks

`init()` runs once over the whole history: declare indicators with `self.I(...)`, which hands
pandas-ta a pandas Series (`self.data.Close`, capitalised) and keeps the output. `next()` runs at
each bar's close: `self.i` is the bar, indicators and `self.data.close` are lists that end at it.
"""

import pandas_ta as ta
from pydantic import Field

from strategies.base import Strategy, StrategyParams


class MyCross(Strategy):
    name = "my_cross"

    class Params(StrategyParams):
        fast: int = Field(10, ge=1, description="fast EMA length, in bars")
        slow: int = Field(30, ge=2, description="slow EMA length, in bars")

    def init(self):                      # declare indicators once
        self.fast = self.I(ta.ema, self.data.Close, length=self.p.fast)
        self.slow = self.I(ta.ema, self.data.Close, length=self.p.slow)

    def next(self):                      # act at each bar's close
        i = self.i
        if self.fast[i] > self.slow[i] and self.fast[i - 1] <= self.slow[i - 1]:
            self.go(+1)                  # hold long from the next open
        elif self.fast[i] < self.slow[i] and self.fast[i - 1] >= self.slow[i - 1]:
            self.go(0)                   # flat
