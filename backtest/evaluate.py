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

`evaluate_many` goes further for the combinations the fast path takes: their signals are run in
chunks through one compiled call (backtest.fast_path.KernelBatch: buffers reused, memory bounded
by the chunk), and each run's statistics come straight from the kernel's arrays (metrics.stats_of,
the same functions compute_stats applies, without the BacktestResult, its pandas copies and
trades table). tests/unit/test_speed_sweep.py holds both ways bit-equal, trades included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.fast_path import OK, KernelBatch, KernelInputs, KernelOutput, unsized_orders
from backtest.frames import trade_returns
from backtest.metrics import STAT_KEYS, _find_layout, compute_stats, equity_summary, stats_of, trade_stats_of
from backtest.report import _json_value
from backtest.result import BacktestResult
from backtest.runner import build_instrument, fee_model, run_backtest, run_fast, to_raw_prices, unsized_reason
from engine.errors import ConfigError
from engine.instrument import Instrument
from engine.money import Scales, Slippage, decimal_places, to_raw
from strategies.base import BarData, Strategy, parse_params, to_raw_any

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
    _, _, pnl, return_pct = trade_returns(t, scales)
    return pd.DataFrame({"entry_time": times[t["entry_bar"]], "exit_time": times[t["exit_bar"]],
                         "pnl": pnl, "return_pct": return_pct})


# a window's kernel buffers (targets, equity, position: 24 bytes per bar per run) stay under this
BATCH_BYTES = 64 * 2**20
BATCH_MAX_RUNS = 16


@dataclass(slots=True)
class _Pending:
    """A combination waiting for its chunk's kernel call."""

    position: int
    params: dict[str, Any]
    strategy: Strategy
    instrument: Instrument
    target: np.ndarray
    events: int


class _Window:
    """What every run on one window of the bars shares: the frame, its period layout, the strategy
    class with its indicator cache, the bar columns, and per `units` setting the instrument and the
    open and close prices on its integer grid. All are pure functions of the window (and the
    config), built once instead of once per combination."""

    __slots__ = ("frame", "layout", "strategy_cls", "data", "_prices", "close", "in_order", "_inputs", "_batch")

    def __init__(self, frame: pd.DataFrame, strategy_cls: type[Strategy]) -> None:
        self.frame = frame
        self.layout = PeriodLayout.of(frame.index)
        # each window has its own indicator values, so its own cache
        self.strategy_cls = cached_strategy(strategy_cls)
        self.data = BarData(frame)
        for name in ("time", "open", "high", "low", "close", "volume"):  # shared by every run
            getattr(self.data, name).flags.writeable = False
        self._prices: dict[str, tuple[Instrument, tuple[np.ndarray, np.ndarray]]] = {}
        self.close = frame["close"].to_numpy(dtype=np.float64)
        # compute_stats takes per-period returns by a gather only for bars in time order
        self.in_order = bool(frame.index.is_monotonic_increasing)
        self._inputs: dict[tuple[Any, ...], KernelInputs] = {}
        self._batch: KernelBatch | None = None

    def batch(self) -> KernelBatch:
        """The window's kernel buffers: BATCH_BYTES of float rows at most (one row at least)."""
        if self._batch is None:
            n = len(self.frame)
            self._batch = KernelBatch(n, max(1, min(BATCH_MAX_RUNS, BATCH_BYTES // (24 * max(n, 1)))))
        return self._batch

    def kernel_inputs(self, key: tuple[Any, ...], p: Any, instrument: Instrument,
                      raw_prices: tuple[np.ndarray, np.ndarray], config: BacktestConfig) -> KernelInputs:
        """run_fast's KernelInputs for runs sized by one fraction (or fixed size) of `p`: the
        same conversions, once per (units, size, fixed_size) instead of once per run."""
        if key not in self._inputs:
            s = instrument.scales
            fees = fee_model(config)
            fee_num, fee_den = fees.fraction(s)
            slip_num, slip_den = Slippage(config.slippage_bps).fraction()
            frac_dp = decimal_places(p.size)
            fixed_qty = -1
            if p.fixed_size is not None:
                fixed_qty = (to_raw_any(p.fixed_size, s.qty_dp, floor=True) // s.qty_step) * s.qty_step
            self._inputs[key] = KernelInputs(
                target=np.empty(0), open_raw=raw_prices[0], close_raw=raw_prices[1], close_f=self.close,
                cash0=s.cash_raw(config.cash), cash_dp=s.cash_dp, qty_dp=s.qty_dp, qty_step=s.qty_step,
                min_qty=s.min_qty, max_qty=-1 if instrument.max_qty is None else to_raw(instrument.max_qty, s.qty_dp),
                notional_k=s.notional_k, multiplier=s.multiplier,
                fee_num=fee_num, fee_den=fee_den, fee_step=s.fee_step, fixed_fee=fees.fixed_raw(s),
                fee_rate=float(fees.rate), slip_num=slip_num, slip_den=slip_den, price_step=s.price_step,
                frac_num=to_raw(p.size, frac_dp), frac_den=10**frac_dp, fixed_qty=fixed_qty, min_fee=fees.min_raw(s))
        return self._inputs[key]

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
        """evaluate() of each combination, in order, with the fast path's runs batched: a
        combination whose signals the kernel can take waits for a chunk of runs with the same
        kernel inputs (units, size, fixed size), then the chunk runs in one compiled call and is
        reduced to its statistics. Anything else (the event path, per-bar sizes, a run the
        kernel refuses) is evaluate()d alone, as before."""
        window = self._window(start, len(self.frame) if stop is None else stop)
        results: list[Evaluation | None] = [None] * len(combos)
        groups: dict[tuple[Any, ...], list[_Pending]] = {}
        batch = window.batch() if self.config.path != "event" and window.in_order and len(window.frame) else None
        for position, params in enumerate(combos):
            ready = self._prepare(window, params, batch, groups, position) if batch is not None else None
            if ready is None:
                results[position] = self.evaluate(params, start, stop)
            elif len(groups[ready]) == batch.chunk:  # type: ignore[union-attr]
                self._run_chunk(window, ready, groups.pop(ready), results, start, stop)
        for key, group in groups.items():
            self._run_chunk(window, key, group, results, start, stop)
        return [r for r in results if r is not None]

    def _prepare(self, window: _Window, params: dict[str, Any], batch: KernelBatch,
                 groups: dict[tuple[Any, ...], list[_Pending]], position: int) -> tuple[Any, ...] | None:
        """Init the strategy and queue its signals in its group (grouped by kernel inputs); the
        group's key, or None when the run is not for the batched kernel (evaluate() it alone)."""
        config = self.config
        strategy_cls = window.strategy_cls
        parsed = parse_params(strategy_cls.Params, params)
        instrument, raw_prices = window.prices(parsed.units, config)  # type: ignore[attr-defined]
        if instrument.on_margin:
            return None
        strategy = strategy_cls(parsed)
        strategy.attach(window.data, instrument.symbol)
        strategy.init()
        if not (config.path == "fast" or type(strategy).signals is not Strategy.signals):
            return None
        if strategy.sizes() is not None:  # per-bar fractions: one kernel input per run
            return None
        target = strategy.signals()
        if target is None:
            return None
        target = np.asarray(target, dtype=np.float64)
        if target.shape != (batch.n,):
            return None
        key = ("units", parsed.units, parsed.size, parsed.fixed_size)  # type: ignore[attr-defined]
        group = groups.setdefault(key, [])
        window.kernel_inputs(key, parsed, instrument, raw_prices, config)
        # the groups share the buffers: a group fills its rows only when it is the one running,
        # so each pending run keeps its target until then (at most a chunk per group)
        group.append(_Pending(position, params, strategy, instrument, target, int(np.count_nonzero(~np.isnan(target)))))
        return key

    def _run_chunk(self, window: _Window, key: tuple[Any, ...], group: list[_Pending],
                   results: list[Evaluation | None], start: int, stop: int | None) -> None:
        batch = window.batch()
        for row, pending in enumerate(group):
            batch.block[row] = pending.target
        k = window._inputs[key]
        try:
            outputs = batch.run(k, len(group), max(p.events for p in group))
        except OverflowError:  # an argument beyond int64: run_fast refuses it too, each run alone
            outputs = [None] * len(group)
        for pending, out in zip(group, outputs):
            evaluation = None if out is None or out.status != OK else self._from_kernel(window, pending, k, out)
            results[pending.position] = evaluation or self.evaluate(pending.params, start, stop)

    def _from_kernel(self, window: _Window, pending: _Pending, k: KernelInputs, out: KernelOutput) -> Evaluation | None:
        """The Evaluation of one kernel run, by compute_stats' functions on the kernel's arrays
        (what evaluate() computes from run_fast's BacktestResult); None when the curve needs
        compute_stats' slower cases (NaN or non-positive equity): evaluate() then runs."""
        summary = equity_summary(out.equity, out.position, compiled_only=True)
        if summary is None:
            return None
        s = pending.instrument.scales
        t = out.trades
        index = window.frame.index
        _, _, pnl, return_pct = trade_returns(t, s)
        held = index[t["exit_bar"]].array - index[t["entry_bar"]].array
        fees_total = float(s.cash(int(out.orders["fee"][out.orders["state"] == 0].sum())))
        initial = float(self.config.cash)
        returns = window.layout.returns(out.equity, initial)
        stats = stats_of(index, summary, initial, window.close, fees_total, returns, window.layout.annual,
                         trade_stats_of(pnl, return_pct, held))
        unsized, first = unsized_orders(k, out)
        note = None
        if first is not None:  # BacktestResult.sizing_note's words, from the same parts
            reason = unsized_reason(pending.instrument, first, pending.strategy, False)
            note = BacktestResult.sizing_note.fget(  # type: ignore[attr-defined]
                SimpleNamespace(unsized_orders=unsized, trades=range(len(pnl)), unsized_reason=reason))
        return Evaluation(params=pending.params, stats={k_: _json_value(v) for k_, v in stats.items()},
                          score=score(stats, self.objective), returns=returns, path="fast",
                          unsized_orders=unsized, note=note)
