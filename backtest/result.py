"""What a backtest produces. One shape for the fast and the event-by-event paths, so that
reports, JSON, plots and the parity tests read the same thing whichever path ran."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

TRADE_COLUMNS = [
    "entry_time",   # pd.Timestamp (UTC) of the entry fill
    "exit_time",    # pd.Timestamp (UTC) of the exit fill
    "entry_bar",    # int, index of the bar whose open filled the entry
    "exit_bar",     # int, index of the bar whose open (or last close) filled the exit
    "side",         # "long" | "short"
    "size",         # float > 0, units
    "entry_price",  # float
    "exit_price",   # float
    "fees",         # float, entry and exit fees attributed to this trade
    "pnl",          # float, net of fees, in quote currency
    "return_pct",   # float, pnl / (entry_price * size) * 100
]


@dataclass(slots=True)
class BacktestResult:
    """The outcome of one backtest run.

    `equity` is marked at every bar's close (after that bar's fills); `position` is the signed
    number of units held after each bar; `trades` has the columns of TRADE_COLUMNS, one row per
    closed round trip (a position still open at the end is closed at the last close).
    """

    equity: pd.Series          # float, index = bar times (UTC DatetimeIndex)
    position: np.ndarray       # float, signed units after each bar, len == len(equity)
    trades: pd.DataFrame       # columns TRADE_COLUMNS
    close: pd.Series           # the close prices the run saw, same index as equity
    initial_cash: float
    fees_total: float = 0.0
    # every order, one row each: built on first read (a long run has tens of thousands, and most
    # callers, like a parameter sweep, never look at them)
    orders_source: Callable[[], pd.DataFrame] | None = None
    denied: list[dict[str, Any]] = field(default_factory=list)   # orders denied by risk, with reason
    meta: dict[str, Any] = field(default_factory=dict)           # strategy, params, data, path used
    # the signals the run published (as dicts), built on first read like the orders: a long run
    # publishes tens of thousands, which most callers (a sweep) never look at
    signals_source: Callable[[], list[dict[str, Any]]] | None = None
    # entries sized by equity fraction that came to less than the minimum quantity (one unit costs
    # more than the cash...): counted by both paths alike, with the first one's reason and the fix
    unsized_orders: int = 0
    unsized_reason: str | None = None
    _orders: pd.DataFrame | None = field(default=None, repr=False)
    _signals: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def signals(self) -> list[dict[str, Any]]:
        if self._signals is None:
            self._signals = self.signals_source() if self.signals_source is not None else []
        return self._signals

    @signals.setter
    def signals(self, value: list[dict[str, Any]]) -> None:
        self._signals = value

    @property
    def sizing_note(self) -> str | None:
        """One line saying that orders could not be sized, why, and the fix; None if all were.
        A run that trades nothing must say so rather than print a table of zeros."""
        if not self.unsized_orders:
            return None
        trades = len(self.trades)
        return (f"{trades:,} trades{':' if trades == 0 else ';'} {self.unsized_orders:,} orders could not be sized: "
                f"{self.unsized_reason}")

    @property
    def orders(self) -> pd.DataFrame:
        if self._orders is None:
            self._orders = self.orders_source() if self.orders_source is not None else pd.DataFrame()
        return self._orders


def empty_trades() -> pd.DataFrame:
    """A trades frame with the right columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in TRADE_COLUMNS})
