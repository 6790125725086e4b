"""Time, injected. Nothing in the core reads the wall clock directly, so a backtest replays
history deterministically and live code runs unchanged on a LiveClock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...


class SimulatedClock:
    """Advanced by the data: the backtest loop sets `ts` to each bar's or tick's time."""

    __slots__ = ("ts",)

    def __init__(self, ts: int = 0) -> None:
        self.ts = ts

    def now_ns(self) -> int:
        return self.ts


class LiveClock:
    """Wall time in ns since the epoch (UTC)."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.time_ns()
