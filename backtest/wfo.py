"""Walk-forward optimisation: choose parameters on the past, trade them on the future, roll.

An optimised backtest reports the best of many tries on the same bars; walk-forward reports only
what a trader re-optimising on a schedule would have earned. Each fold sweeps the grid on an
in-sample window (on the Ray workers, like `tickbridge sweep`), takes the winner by the objective,
and backtests it on the next out-of-sample window, which no choice has seen. Windows roll by the
out-of-sample length (rolling: the in-sample window slides; anchored: it grows from bar 0).

Stitching: each out-of-sample backtest starts with the cash the previous one ended with, so the
windows' equity curves join into one account. Each window starts flat with its indicators
computed on its own bars (no position or look-ahead crosses a window edge); a strategy with long
indicators therefore trades less at the start of each window, which walk-forward reports as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.metrics import compute_stats
from backtest.ray_pool import WorkerPool
from backtest.report import _json_value
from backtest.result import BacktestResult
from backtest.runner import run_backtest
from backtest.sweep import GridValue, SweepOutcome, run_grid
from engine.errors import ConfigError, DataError
from strategies.base import Strategy

IN_SAMPLE_PER_OUT = 4  # default in-sample length: four out-of-sample windows


@dataclass(frozen=True, slots=True)
class Fold:
    """Bar ranges [start, stop) of one fold."""

    number: int
    is_start: int
    is_stop: int
    oos_start: int
    oos_stop: int


def make_folds(n_bars: int, folds: int, train_bars: int | None = None, test_bars: int | None = None,
               anchored: bool = False) -> list[Fold]:
    """`folds` consecutive out-of-sample windows at the end of the data, each after its in-sample one.

    Defaults: in-sample = 4 x out-of-sample, and the folds cover the whole file.
    """
    if folds < 1:
        raise ConfigError("folds", f"must be at least 1, got {folds}")
    if test_bars is None:
        test_bars = (n_bars - (train_bars or 0)) // folds if train_bars else n_bars // (folds + IN_SAMPLE_PER_OUT)
    if train_bars is None:
        train_bars = IN_SAMPLE_PER_OUT * test_bars
    if test_bars < 2 or train_bars < 2:
        raise ConfigError("folds", f"{n_bars:,} bars cannot hold {folds} folds (in-sample {train_bars}, "
                                   f"out-of-sample {test_bars} bars)")
    if train_bars + folds * test_bars > n_bars:
        raise ConfigError("folds", f"{folds} folds of {test_bars:,} bars after {train_bars:,} in-sample bars "
                                   f"need {train_bars + folds * test_bars:,} bars; the data has {n_bars:,}")
    first = n_bars - folds * test_bars  # the last fold ends at the last bar
    out = []
    for k in range(folds):
        oos_start = first + k * test_bars
        is_start = 0 if anchored else oos_start - train_bars
        out.append(Fold(k + 1, is_start, oos_start, oos_start, oos_start + test_bars))
    return out


@dataclass(slots=True)
class FoldResult:
    fold: Fold
    in_sample: SweepOutcome
    params: dict[str, Any]
    oos: BacktestResult
    oos_stats: dict[str, Any]


@dataclass(slots=True)
class WalkForward:
    folds: list[FoldResult]
    stitched: BacktestResult
    stitched_stats: dict[str, Any]
    in_sample_mean: dict[str, float | None]


def run_walk_forward(frame: pd.DataFrame, strategy_cls: type[Strategy], combos: list[dict[str, Any]],
                     fixed: dict[str, Any], grid: dict[str, list[GridValue]], config: BacktestConfig,
                     objective: str, pool: WorkerPool, folds: list[Fold],
                     on_done: Callable[[int], None] | None = None) -> WalkForward:
    results: list[FoldResult] = []
    cash = Decimal(config.cash)
    for fold in folds:
        outcome = run_grid(frame, strategy_cls, combos, fixed, grid, config, objective, pool, on_done,
                           fold.is_start, fold.is_stop)
        params = outcome.best_params()
        window = frame.iloc[fold.oos_start:fold.oos_stop]
        oos = run_backtest(window, strategy_cls, params, config.model_copy(update={"cash": cash}))
        results.append(FoldResult(fold, outcome, params, oos, compute_stats(oos)))
        final = Decimal(repr(float(oos.equity.iloc[-1]))).quantize(config.currency_increment)
        if final <= 0:
            raise DataError(f"the account is empty after walk-forward fold {fold.number}")
        cash = final
    stitched = stitch([r.oos for r in results], float(config.cash))
    keys = [k for k, v in results[0].in_sample.best.stats.items() if isinstance(v, (int, float))]
    in_sample_mean = {k: _mean([r.in_sample.best.stats.get(k) for r in results]) for k in keys}
    return WalkForward(results, stitched, compute_stats(stitched), in_sample_mean)


def stitch(parts: list[BacktestResult], initial_cash: float) -> BacktestResult:
    """One account from consecutive out-of-sample runs (each started with the last one's cash)."""
    trades = pd.concat([p.trades for p in parts if len(p.trades)], ignore_index=True) if any(
        len(p.trades) for p in parts) else parts[0].trades
    return BacktestResult(
        equity=pd.concat([p.equity for p in parts]),
        position=np.concatenate([p.position for p in parts]),
        trades=trades,
        close=pd.concat([p.close for p in parts]),
        initial_cash=initial_cash,
        fees_total=float(sum(p.fees_total for p in parts)),
        meta={"path": "walk-forward", "folds": len(parts)},
        unsized_orders=sum(p.unsized_orders for p in parts),
        unsized_reason=next((p.unsized_reason for p in parts if p.unsized_reason), None),
    )


def _mean(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return float(np.mean(numbers)) if numbers else None


def walk_forward_json(wf: WalkForward, objective: str) -> dict[str, Any]:
    eq = wf.stitched.equity
    return {
        "objective": objective,
        "folds": [{
            "fold": r.fold.number,
            "in_sample": [str(r.in_sample.best.stats.get("start")), str(r.in_sample.best.stats.get("end"))],
            "out_of_sample": [_json_value(r.oos_stats["start"]), _json_value(r.oos_stats["end"])],
            "params": r.params,
            "in_sample_stats": r.in_sample.best.stats,
            "in_sample_overfitting": r.in_sample.overfitting,
            "out_of_sample_stats": {k: _json_value(v) for k, v in r.oos_stats.items()},
            "in_sample_note": r.in_sample.best.note,
            "unsized_orders": r.oos.unsized_orders,
            "note": r.oos.sizing_note,
        } for r in wf.folds],
        "unsized_orders": wf.stitched.unsized_orders,
        "note": wf.stitched.sizing_note,
        "in_sample_mean": wf.in_sample_mean,
        "out_of_sample": {k: _json_value(v) for k, v in wf.stitched_stats.items()},
        "walk_forward_efficiency": efficiency(wf),
        "equity": [{"time": t, "equity": v} for t, v in
                   zip(eq.index.strftime("%Y-%m-%dT%H:%M:%S%z").tolist(), eq.to_numpy(dtype=np.float64).tolist())],
    }


def efficiency(wf: WalkForward) -> float | None:
    """Walk-forward efficiency: out-of-sample CAGR over the mean in-sample CAGR of the winners."""
    oos, ins = wf.stitched_stats.get("cagr_pct"), wf.in_sample_mean.get("cagr_pct")
    if oos is None or not ins:
        return None
    return float(oos) / float(ins)
