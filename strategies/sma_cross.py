"""Moving-average crossover: long when the fast SMA crosses above the slow one.

long_only: enter on a cross up, exit on a cross down. long_short: also go short on a cross down
and reverse at every cross (the close and the new entry are two orders filled at the same open).

The cross rule is backtrader's CrossOver (its NonZeroDifference): with d = fast - slow, bar t
crosses up when d[t] > 0 and the last non-zero d before t is < 0, and down when d[t] < 0 and the
last non-zero d before t is > 0. Bars where the lines are equal (d == 0) are skipped, not taken
as a side: a touch-and-bounce (below, equal, below again) is no cross, and a cross through an
equal bar (below, equal, above) is one cross, at the bar that ends above. backtesting.py's
`crossover` (d[t-1] < 0 and d[t] > 0) agrees on the touch-and-bounce and on every cross without a
tie; it alone misses the cross through an equal bar, which we count as backtrader does. A bar
without both values (warm-up, NaN) ends the search: what came before it does not count.
`next()` (event path, live) and `signals()` (fast path) apply this one rule.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas_ta as ta
from pydantic import Field, field_validator

from strategies.base import DirectionalParams, Strategy, cross_masks, last_nonzero_difference, must_exceed


# The longest window a config may ask for. A live bot holds its windows in memory, and a window
# is data a caller sends: slow=1e9 once made the API process allocate 8 GB at start (V.md #4).
# 100,000 bars is 69 days of 1-minute bars, 274 years of daily ones.
MAX_WINDOW = 100_000


class SmaCrossParams(DirectionalParams):
    fast: int = Field(10, ge=1, le=MAX_WINDOW - 1, description="fast SMA length in bars")
    slow: int = Field(20, ge=2, le=MAX_WINDOW, description=f"slow SMA length in bars (at most {MAX_WINDOW:,})")

    _slow_above_fast = field_validator("slow")(must_exceed("fast"))


# the strategy methods SmaCross.next() runs (itself, go() and what go() calls): acting_bars holds
# only while none of them is a subclass's or the instance's own
_NEXT_REACHES = ("next", "go", "close", "_open", "_market", "_cancel_protection", "_protection", "_may_protect",
                 "_attach", "order", "muted")


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
        # The last non-zero difference before i is almost always the previous bar's (a tie is
        # rare): read it inline, and walk back only past a tie (a call per bar is a tenth of
        # the event path's time). Bar 0 has nothing before it (NaN: no cross).
        # The signs of the differences are read as comparisons, without making the difference (a
        # float object per bar): for floats, a - b > 0 exactly when a > b, and a - b < 0 exactly
        # when a < b (a difference of two different floats is never 0, NaN compares False either
        # way, an overflow keeps the sign). A tie (a == b) is a zero difference unless both are the
        # same infinity (inf - inf is NaN, which ends the look-back): `fb - sb == 0` keeps that case.
        i = self.i
        fast, slow = self.fast_ma, self.slow_ma
        f, s = fast[i], slow[i]
        if f > s:
            if i:
                fb, sb = fast[i - 1], slow[i - 1]
                if fb < sb or (fb == sb and fb - sb == 0 and last_nonzero_difference(fast, slow, i - 1) < 0):
                    self.go(1)
        elif f < s:
            if i:
                fb, sb = fast[i - 1], slow[i - 1]
                if fb > sb or (fb == sb and fb - sb == 0 and last_nonzero_difference(fast, slow, i - 1) > 0):
                    self.go(self.exit_direction)

    def acting_bars(self) -> np.ndarray | None:
        """The bars where next() may call go(): bar i >= 1 with fast > slow where the bar before
        had not fast > slow, or fast < slow where it had not fast < slow. Elsewhere next() provably
        returns without acting: with fast[i] > slow[i] it acts only if fast[i-1] < slow[i-1] or
        fast[i-1] == slow[i-1] (a tie, walked back), both excluded by fast[i-1] > slow[i-1] (the
        other side mirrors it); with neither (equal, or NaN) it does nothing; at bar 0 nothing.
        Computed with numpy's float comparisons (the same IEEE comparisons as Python's) on the
        arrays the lists next() reads were made from, valid while next() reads those very lists.
        None (every bar) unless next() and every strategy method it reaches (go() and what go()
        calls) are this class's and the base's own, neither overridden by a subclass nor replaced
        on the instance (a user's strategy gets a wrapped next()), and both lists are still the
        ones connect() made. A superset of the crossings: a touch-and-bounce is a candidate that
        next() then turns down. (Nothing else that runs in a backtest's bar loop, the OMS, the
        venue, the books, touches a strategy's indicator lists.)"""
        cls, own = type(self), vars(self)
        if any(getattr(cls, name) is not getattr(SmaCross, name) or name in own for name in _NEXT_REACHES):
            return None
        fast, slow = self.list_source("fast_ma"), self.list_source("slow_ma")
        if fast is None or slow is None or fast.shape != slow.shape or fast.ndim != 1:
            return None
        above, below = fast > slow, fast < slow
        acting = np.zeros(len(fast), dtype=np.bool_)
        acting[1:] = (above[1:] & ~above[:-1]) | (below[1:] & ~below[:-1])
        return np.flatnonzero(acting)

    def signals(self) -> np.ndarray:
        fast = np.ascontiguousarray(self.fast_ma, dtype=np.float64)
        slow = np.ascontiguousarray(self.slow_ma, dtype=np.float64)
        if fast.shape != slow.shape or fast.ndim != 1:  # cross_masks' numpy rules and errors
            up, down = cross_masks(fast, slow)
            target = np.full(len(self.fast_ma), np.nan)
            target[up] = 1.0
            target[down] = float(self.exit_direction)
            return target
        # the masks' rule written straight into the targets: one pass, no mask temporaries (a
        # sweep makes this array for every pair)
        target = np.empty(len(fast), dtype=np.float64)
        _cross_targets(fast, slow, float(self.exit_direction), target)
        return target


@numba.njit(cache=True)
def _cross_targets(fast: np.ndarray, slow: np.ndarray, down_value: float, out: np.ndarray) -> None:  # pragma: no cover
    """strategies.base.cross_masks' rule (its _cross_pass), as targets: 1.0 at a cross up,
    `down_value` at a cross down, NaN elsewhere."""
    before = np.nan  # the last non-zero (or NaN) difference before bar t; NaN at the start
    for t in range(len(fast)):
        d = fast[t] - slow[t]
        if d > 0 and before < 0:
            out[t] = 1.0
        elif d < 0 and before > 0:
            out[t] = down_value
        else:
            out[t] = np.nan
        if d != 0:  # NaN != 0 too: a missing value ends the look-back
            before = d

