"""Market data as the core sees it: ticks (ns timestamps, bid/ask/last) and bars."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tick:
    """One quote or trade. Prices are floats as they arrive; the venue puts them on the grid."""

    symbol: str
    ts: int                 # ns since the epoch, UTC
    bid: float = float("nan")
    ask: float = float("nan")
    last: float = float("nan")
    size: float = 0.0


@dataclass(frozen=True, slots=True)
class Bar:
    """OHLCV over [start, end); `start` and `end` in ns since the epoch, UTC."""

    symbol: str
    start: int
    end: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
