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

- per window, the bar columns, the instrument (per `units`) and the open and close prices on its
  integer grid: `run_backtest` rebuilds them every run, a sweep once.
Every run takes `run_backtest`'s steps (parse the parameters, init the strategy, `run_fast`), with
those shared parts passed in and a trades table of just the columns `compute_stats` reads; where
the fast path does not apply or refuses, `run_backtest` itself runs. Then `compute_stats`, so a
sweep's figures are exactly what `tickbridge backtest` prints (tests hold them equal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.frames import _scaled
from backtest.metrics import STAT_KEYS, _find_layout, compute_stats
from backtest.report import _json_value
from backtest.result import BacktestResult
from backtest.runner import build_instrument, run_backtest, run_fast, to_raw_prices
from engine.errors import ConfigError
from engine.instrument import Instrument
from engine.money import Scales
from strategies.base import BarData, Strategy, parse_params

# stats that are not numbers (times, durations) cannot be optimised
NON_NUMERIC_STATS = frozenset({"start", "end", "duration", "max_drawdown_duration", "avg_drawdown_duration",
                               "max_trade_duration", "avg_trade_duration"})
# periods_per_year describes the data, not the run: nothing to optimise
OBJECTIVES = tuple(k for k in STAT_KEYS if k not in NON_NUMERIC_STATS and k != "periods_per_year")
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
        """metrics.period_returns' layout: last bar of each calendar day, or every bar when the
        bars are coarser than daily, with the calendar's periods per year (one definition)."""
        last, annual = _find_layout(index)
        return cls(np.arange(len(index)) if last is None else last, annual)

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
    unsized_orders: int = 0        # entries that could not be sized (BacktestResult.unsized_orders)
    note: str | None = None        # BacktestResult.sizing_note: why, and the fix


def stats_trades(t: dict[str, np.ndarray], times: pd.DatetimeIndex, scales: Scales) -> pd.DataFrame:
    """The columns of `backtest.frames.trades_frame` that `compute_stats` reads (entry and exit
    times, pnl, return_pct), by the same formulas: a sweep never shows its trades, and building the
    full table cost about as much as the kernel run. A test holds the columns equal."""
    size = _scaled(t["qty"], scales.qty_dp)
    entry_price = _scaled(t["entry_price"], scales.price_dp)
    pnl = _scaled(t["pnl"], scales.cash_dp)
    notional = entry_price * size * scales.multiplier
    with np.errstate(divide="ignore", invalid="ignore"):
        return_pct = np.where(notional > 0, pnl / notional * 100.0, 0.0)
    return pd.DataFrame({"entry_time": times[t["entry_bar"]], "exit_time": times[t["exit_bar"]],
                         "pnl": pnl, "return_pct": return_pct})


class _Window:
    """What every run on one window of the bars shares: the frame, its period layout, the strategy
    class with its indicator cache, the bar columns, and per `units` setting the instrument and the
    open and close prices on its integer grid. All are pure functions of the window (and the
    config), built once instead of once per combination."""

    __slots__ = ("frame", "layout", "strategy_cls", "data", "_prices")

    def __init__(self, frame: pd.DataFrame, strategy_cls: type[Strategy]) -> None:
        self.frame = frame
        self.layout = PeriodLayout.of(frame.index)
        # each window has its own indicator values, so its own cache
        self.strategy_cls = cached_strategy(strategy_cls)
        self.data = BarData(frame)
        for name in ("time", "open", "high", "low", "close", "volume"):  # shared by every run
            getattr(self.data, name).flags.writeable = False
        self._prices: dict[str, tuple[Instrument, tuple[np.ndarray, np.ndarray]]] = {}

    def prices(self, units: str, config: BacktestConfig) -> tuple[Instrument, tuple[np.ndarray, np.ndarray]]:
        if units not in self._prices:
            instrument = build_instrument(self.frame, config, units)
            # left writeable: numba compiles a read-only array as another signature (the kernel
            # only reads them)
            raw = tuple(to_raw_prices(self.frame[c].to_numpy(), instrument) for c in ("open", "close"))
            self._prices[units] = (instrument, raw)  # type: ignore[assignment]
        return self._prices[units]


class Evaluator:
    """Runs combinations on one frame (or a window of it) through run_backtest's fast path."""

    def __init__(self, frame: pd.DataFrame, strategy_cls: type[Strategy], config: BacktestConfig,
                 objective: str) -> None:
        self.frame = frame
        self.strategy_cls = strategy_cls
        self.config = config
        self.objective = objective
        self._windows: dict[tuple[int, int], _Window] = {}

    def _window(self, start: int, stop: int) -> _Window:
        key = (start, stop)
        if key not in self._windows:
            if len(self._windows) >= 4:  # walk-forward moves on; old windows' indicators are dead weight
                self._windows.pop(next(iter(self._windows)))
            frame = self.frame if key == (0, len(self.frame)) else self.frame.iloc[start:stop]
            self._windows[key] = _Window(frame, self.strategy_cls)
        return self._windows[key]

    def run(self, params: dict[str, Any], start: int = 0, stop: int | None = None) -> BacktestResult:
        """What `run_backtest(window, strategy, params, config)` returns for equity, position,
        fees and the trades columns `compute_stats` reads, with the window's shared parts reused:
        the same steps as run_backtest's fast path, which is run as it is whenever the fast path
        does not apply or refuses. For statistics only: on the fast path the trades table has just
        those columns and meta only the path and the bar count."""
        window = self._window(start, len(self.frame) if stop is None else stop)
        config = self.config
        strategy_cls = window.strategy_cls
        if config.path != "event":
            parsed = parse_params(strategy_cls.Params, params)
            instrument, raw_prices = window.prices(parsed.units, config)  # type: ignore[attr-defined]
            strategy = strategy_cls(parsed)
            strategy.attach(window.data, instrument.symbol)
            strategy.init()
            if config.path == "fast" or type(strategy).signals is not Strategy.signals:
                result = run_fast(strategy, window.frame, instrument, config, raw_prices, stats_trades)
                if result is not None:
                    return result
        return run_backtest(window.frame, strategy_cls, params, config)

    def evaluate(self, params: dict[str, Any], start: int = 0, stop: int | None = None) -> Evaluation:
        window = self._window(start, len(self.frame) if stop is None else stop)
        result = self.run(params, start, stop)
        stats = compute_stats(result)
        returns = window.layout.returns(result.equity.to_numpy(), result.initial_cash)
        return Evaluation(params=params, stats={k: _json_value(v) for k, v in stats.items()},
                          score=score(stats, self.objective), returns=returns, path=str(result.meta.get("path")),
                          unsized_orders=result.unsized_orders, note=result.sizing_note)

    def evaluate_many(self, combos: list[dict[str, Any]], start: int = 0, stop: int | None = None) -> list[Evaluation]:
        return [self.evaluate(params, start, stop) for params in combos]
