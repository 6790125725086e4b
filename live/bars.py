"""Bars built from ticks as they arrive, the same bars backtest.data.ticks_to_bars builds in batch.

A bar is [start, start + width); it closes when the first tick of a later bar arrives (a replay
has no other clock, and a tick-driven close is deterministic, which parity needs). Its price is a
tick's last trade where there is one, else the bid/ask mid, computed with the same float
operations as ticks_to_bars; bins start at midnight UTC of the first tick's day, pandas'
`origin="start_day"`, so a live bar and a backtest bar over the same ticks are equal.
Bars with no ticks do not exist, in both.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

import numpy as np
import pandas as pd

from engine.market import Bar, Tick

DAY_NS = 86_400_000_000_000


def bar_width_ns(rule: str) -> int:
    return int(pd.Timedelta(pd.tseries.frequencies.to_offset(rule)).value)


def tick_price(tick: Tick) -> float:
    """ticks_to_bars' price: last where known, else the mid."""
    return tick.last if tick.last == tick.last else (tick.bid + tick.ask) / 2.0


class BarBuilder:
    """Folds ticks into the bar being built; returns the previous bar when a tick starts a new one."""

    __slots__ = ("symbol", "width", "origin", "start", "open", "high", "low", "close", "volume")

    def __init__(self, symbol: str, rule: str) -> None:
        self.symbol = symbol
        self.width = bar_width_ns(rule)
        self.origin: int | None = None
        self.start: int | None = None
        self.open = self.high = self.low = self.close = self.volume = 0.0

    def on_tick(self, tick: Tick) -> Bar | None:
        price = tick_price(tick)
        if self.origin is None:
            self.origin = tick.ts // DAY_NS * DAY_NS
        start = self.origin + (tick.ts - self.origin) // self.width * self.width
        size = tick.size if tick.size == tick.size else 0.0
        if start == self.start:
            if price > self.high:
                self.high = price
            if price < self.low:
                self.low = price
            self.close = price
            self.volume += size
            return None
        closed = self.current()
        self.start, self.open, self.high, self.low, self.close, self.volume = start, price, price, price, price, size
        return closed

    def current(self) -> Bar | None:
        """The bar being built (not closed yet), or None before the first tick."""
        if self.start is None:
            return None
        return Bar(self.symbol, self.start, self.start + self.width, self.open, self.high, self.low, self.close,
                   self.volume)


class BarHistory:
    """Closed bars as growing Python lists: what a strategy's `next()` reads as `self.data`.

    The list objects never change identity, so a strategy holding `self.data` sees each new bar
    without being told. `frame` is the same history as the DataFrame ticks_to_bars returns, for
    indicator functions that want pandas.
    """

    def __init__(self) -> None:
        self.time: list[int] = []
        self.open: list[float] = []
        self.high: list[float] = []
        self.low: list[float] = []
        self.close: list[float] = []
        self.volume: list[float] = []
        self._frame: pd.DataFrame | None = None

    def append(self, bar: Bar) -> None:
        self.time.append(bar.start)
        self.open.append(bar.open)
        self.high.append(bar.high)
        self.low.append(bar.low)
        self.close.append(bar.close)
        self.volume.append(bar.volume)
        self._frame = None

    def __len__(self) -> int:
        return len(self.time)

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None or len(self._frame) != len(self.time):
            index = pd.DatetimeIndex(np.asarray(self.time, dtype="datetime64[ns]"), name="time").tz_localize("UTC")
            self._frame = pd.DataFrame({"open": self.open, "high": self.high, "low": self.low, "close": self.close,
                                        "volume": self.volume}, index=index, dtype="float64")
        return self._frame

    # the pandas views BarData offers, for strategies that read them inside next()
    def __getattr__(self, name: str) -> Any:
        if name in ("Open", "High", "Low", "Close", "Volume"):
            return self.frame[name.lower()]
        raise AttributeError(name)

    def as_lists(self) -> "BarHistory":
        return self



def tail(driver: Any, keep: int, since: int | None = None) -> dict[str, Any]:
    """A driver's newest `keep` closed bars (those from `since` on, if given) and its forming one,
    as columns (symbol, width_ns, origin, time, open, high, low, close, volume, forming), read
    safely from another thread while the bot's thread appends: the number of complete bars is taken
    from the list appended last (volume) and every list is sliced to it, so no half bar is seen; the
    forming bar is made consistent (high and low cover open and close). Only the tail is copied,
    whatever the history's length. The dashboard's candles (api/routers/bars.py) read it through
    the BotManager, in this process or in the runtime's own (live.remote)."""
    history, builder = driver.history, driver.builder
    n = len(history.volume)  # appended last: every other list has at least n entries
    times = history.time
    first = max(0, n - keep)
    if since is not None:
        first = max(first, bisect_left(times, since, 0, n))
    time, open_, high, low = times[first:n], history.open[first:n], history.high[first:n], history.low[first:n]
    close, volume = history.close[first:n], history.volume[first:n]
    origin = (times[0] if n else builder.origin or 0) // DAY_NS * DAY_NS
    current = builder.current()
    forming = current is not None and (n == 0 or current.start > times[n - 1]) and \
        (since is None or current.start >= since)
    if forming:
        hi = max(current.high, current.open, current.close)
        lo = min(current.low, current.open, current.close)
        time, open_, high, low = time + [current.start], open_ + [current.open], high + [hi], low + [lo]
        close, volume = close + [current.close], volume + [current.volume]
    return {"symbol": driver.symbol, "width_ns": builder.width, "origin": origin, "time": list(time),
            "open": list(open_), "high": list(high), "low": list(low), "close": list(close),
            "volume": list(volume), "forming": bool(forming)}
