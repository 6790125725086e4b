"""Evaluate one parameter combination the way a research sweep needs it: fast, and identical to
`run_backtest`.

A sweep runs the same strategy thousands of times on the same bars. Two things are shared between
those runs without changing any result:
- indicators: a strategy's `I(func, column, length=...)` is a pure function of the column and the
  arguments, so a grid of 10 fast x 19 slow SMA lengths needs 29 SMAs, not 380. `cached_strategy`
  returns a subclass whose `I()` memoises by (function, column names, arguments) for one frame;
- the daily grouping behind the Sharpe ratio: the bars that close each day do not depend on the
  parameters, so `PeriodLayout` finds them once and the per-period returns of a run are one
  numpy gather (the same numbers as `backtest.metrics.period_returns`; a test holds them equal).

Every run still goes through `run_backtest` (fast path, with its event-path fallback) and
`compute_stats`, so a sweep's figures are exactly what `tickbridge backtest` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.metrics import STAT_KEYS, compute_stats
from backtest.report import _json_value
from backtest.runner import run_backtest
from engine.errors import ConfigError
from strategies.base import Strategy

# stats that are not numbers (times, durations) cannot be optimised
NON_NUMERIC_STATS = frozenset({"start", "end", "duration", "max_drawdown_duration", "avg_drawdown_duration",
                               "max_trade_duration", "avg_trade_duration"})
OBJECTIVES = tuple(k for k in STAT_KEYS if k not in NON_NUMERIC_STATS)
# stats where smaller is better; everything else is maximised (drawdowns are negative numbers,
# so maximising max_drawdown_pct already prefers the shallower one)
MINIMISED = frozenset({"volatility_ann_pct", "fees"})


def validate_objective(name: str) -> str:
    """The objective's name, or ConfigError listing the stats that can be optimised."""
    if name not in OBJECTIVES:
        raise ConfigError("objective", f"unknown objective {name!r}; use a numeric stat of the report: "
                                       f"{', '.join(OBJECTIVES)}")
    return name


def score(stats: dict[str, Any], objective: str) -> float:
    """The value a search maximises: the stat (negated when smaller is better); -inf if undefined."""
    value = stats.get(objective)
    if value is None or not math.isfinite(float(value)):
        return -math.inf
    return -float(value) if objective in MINIMISED else float(value)


@dataclass(frozen=True, slots=True)
class PeriodLayout:
    """Which bars' equity make the per-period returns that the Sharpe ratio is computed from."""

    positions: np.ndarray  # bar positions whose equity closes each period
    annual: float          # periods per year

    @classmethod
    def of(cls, index: pd.DatetimeIndex) -> "PeriodLayout":
        """Mirror of metrics.period_returns: last bar of each calendar day, or every bar when the
        bars are coarser than daily."""
        n = len(index)
        if n > 1:
            spacing = pd.Series(index).diff().median()
            if spacing > pd.Timedelta(days=1, hours=12):
                return cls(np.arange(n), pd.Timedelta(days=365.25) / spacing)
        days = index.normalize().asi8
        last = np.flatnonzero(np.r_[days[1:] != days[:-1], True]) if n else np.array([], dtype=np.int64)
        weekend = float(np.mean(index[last].day_of_week >= 5)) if len(last) else 0.0
        return cls(last, 365.0 if weekend > 0.10 else 252.0)

    def returns(self, equity: np.ndarray, initial_cash: float) -> np.ndarray:
        values = np.concatenate([[initial_cash], equity[self.positions]])
        return values[1:] / values[:-1] - 1.0


def cached_strategy(strategy_cls: type[Strategy]) -> type[Strategy]:
    """A subclass of `strategy_cls` whose indicators are memoised across runs on one frame.

    Only calls whose arguments are bar columns (named pandas Series) and plain values are cached;
    anything else is computed every time, as the base class would. Cached arrays are read-only, so
    a strategy that edits an indicator in place fails loudly instead of corrupting later runs. The
    cache lives on the class, so create one per frame (the Evaluator does, once per window).
    """
    cache: dict[tuple[Any, ...], Any] = {}
    base_i: Callable[..., Any] = strategy_cls.I

    def I(self: Strategy, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:  # noqa: N802, E743 (Strategy.I)
        key = _cache_key(func, args, kwargs)
        if key is None:
            return base_i(self, func, *args, **kwargs)
        if key not in cache:
            value = base_i(self, func, *args, **kwargs)
            for array in value if isinstance(value, tuple) else (value,):
                array.flags.writeable = False  # shared by every run: a strategy must not edit it
            cache[key] = value
        else:  # register the cached arrays so next()-path list conversion still sees them
            value = cache[key]
            for array in value if isinstance(value, tuple) else (value,):
                self._indicators.append(array)
        return cache[key]

    return type(strategy_cls.__name__, (strategy_cls,), {"I": I, "__module__": strategy_cls.__module__})


def _cache_key(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    parts: list[Any] = [getattr(func, "__module__", ""), getattr(func, "__qualname__", repr(func))]
    for name, value in [(None, a) for a in args] + sorted(kwargs.items()):
        if isinstance(value, pd.Series) and isinstance(value.name, str):
            parts.append((name, "column", value.name, len(value)))
        elif isinstance(value, (int, float, str, bool, type(None))):
            parts.append((name, type(value).__name__, value))
        else:
            return None
    return tuple(parts)


@dataclass(slots=True)
class Evaluation:
    """One combination's outcome, small enough to send back from a worker by the thousand."""

    params: dict[str, Any]
    stats: dict[str, Any]          # JSON-safe stats, the keys of compute_stats
    score: float                   # the objective, oriented so that larger is better
    returns: np.ndarray            # per-period returns (float64), for the overfitting measures
    path: str                      # "fast", or "event" where the fast path refused


class Evaluator:
    """Runs combinations on one frame (or a window of it) through run_backtest's fast path."""

    def __init__(self, frame: pd.DataFrame, strategy_cls: type[Strategy], config: BacktestConfig,
                 objective: str) -> None:
        self.frame = frame
        self.strategy_cls = strategy_cls
        self.config = config
        self.objective = objective
        self._windows: dict[tuple[int, int], tuple[pd.DataFrame, PeriodLayout, type[Strategy]]] = {}

    def _window(self, start: int, stop: int) -> tuple[pd.DataFrame, PeriodLayout, type[Strategy]]:
        key = (start, stop)
        if key not in self._windows:
            if len(self._windows) >= 4:  # walk-forward moves on; old windows' indicators are dead weight
                self._windows.pop(next(iter(self._windows)))
            frame = self.frame if key == (0, len(self.frame)) else self.frame.iloc[start:stop]
            # each window has its own indicator values, so its own cache
            self._windows[key] = (frame, PeriodLayout.of(frame.index), cached_strategy(self.strategy_cls))
        return self._windows[key]

    def evaluate(self, params: dict[str, Any], start: int = 0, stop: int | None = None) -> Evaluation:
        frame, layout, strategy_cls = self._window(start, len(self.frame) if stop is None else stop)
        result = run_backtest(frame, strategy_cls, params, self.config)
        stats = compute_stats(result)
        returns = layout.returns(result.equity.to_numpy(), result.initial_cash)
        return Evaluation(params=params, stats={k: _json_value(v) for k, v in stats.items()},
                          score=score(stats, self.objective), returns=returns, path=str(result.meta.get("path")))

    def evaluate_many(self, combos: list[dict[str, Any]], start: int = 0, stop: int | None = None) -> list[Evaluation]:
        return [self.evaluate(params, start, stop) for params in combos]
