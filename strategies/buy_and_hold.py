"""buy_and_hold: the baseline every report can be compared with.

It buys at the first bar's close (filled at the next bar's open, like every market order) and
holds to the end, sized as any strategy (`size`, `units`, `fixed_size`). Running it with the same
cash, fees and data as a strategy answers "did the strategy beat just holding?" with the same
engine and costs, where the report's buy_hold_return_pct is the bare price change (no fees, no
whole-unit sizing, from the first close)."""

from __future__ import annotations

import numpy as np

from strategies.base import Strategy, StrategyParams


class BuyAndHoldParams(StrategyParams):
    """Only the sizing every strategy has."""


class BuyAndHold(Strategy):
    name = "buy_and_hold"
    Params = BuyAndHoldParams
    p: BuyAndHoldParams

    def init(self) -> None:
        pass

    def next(self) -> None:
        if self.i == 0:
            self.go(1)

    def signals(self) -> np.ndarray:
        target = np.full(len(self.data.close), np.nan)
        if len(target):
            target[0] = 1.0
        return target
