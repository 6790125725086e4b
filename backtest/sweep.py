"""Parameter sweeps: parse a grid, refuse bad input before any work, evaluate every combination
on Ray workers through the fast path, rank, and say how much the winner may be luck.

Grid syntax (one `--grid` per parameter):
    fast=5:50:5          start:stop:step, stop included (5, 10, ..., 50)
    size=0.2:1:0.2       decimals work too, counted exactly (0.2, 0.4, ..., 1.0)
    mode=long_only,long_short   a list
    slow=200             one value
Combinations the strategy refuses (slow <= fast for sma_cross) are skipped and counted; a grid
with none left, an inverted or empty range, or an unknown parameter is a ConfigError.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.evaluate import Evaluation, PeriodLayout
from backtest.overfitting import dsr_report, pbo_cscv, per_period_sharpe
from backtest.ray_pool import WorkerPool, batch_size, batches
from engine.errors import ConfigError
from strategies.base import Strategy, parse_params

GridValue = int | float | str
MAX_COMBINATIONS = 1_000_000
PBO_MAX_CELLS = 20_000_000  # periods x trials kept for the PBO; beyond it PBO is skipped, DSR stays


def parse_grid(specs: list[str], limit: int | None = MAX_COMBINATIONS) -> dict[str, list[GridValue]]:
    """`--grid` specs into {parameter: values}, refusing anything that would sweep nothing (and,
    with a `limit`, a grid too big to run every combination of)."""
    if not specs:
        raise ConfigError("grid", "give at least one --grid name=start:stop:step")
    grid: dict[str, list[GridValue]] = {}
    for spec in specs:
        name, sep, body = spec.partition("=")
        name = name.strip()
        if not sep or not name or not body.strip():
            raise ConfigError("grid", f"expected name=start:stop:step, name=a,b,c or name=value, got {spec!r}")
        if name in grid:
            raise ConfigError(f"grid.{name}", "given twice")
        grid[name] = _values(name, body.strip())
    total = math.prod(len(v) for v in grid.values())
    if limit is not None and total > limit:
        raise ConfigError("grid", f"{total:,} combinations is more than {limit:,}; use --search optuna")
    return grid


def _values(name: str, body: str) -> list[GridValue]:
    field_name = f"grid.{name}"
    if ":" in body:
        parts = body.split(":")
        if len(parts) != 3:
            raise ConfigError(field_name, f"a range is start:stop:step, got {body!r}")
        try:
            start, stop, step = (Decimal(p.strip()) for p in parts)
        except InvalidOperation:
            raise ConfigError(field_name, f"start, stop and step must be numbers, got {body!r}") from None
        if not all(_plain(v) for v in (start, stop, step)):  # NaN, Infinity, 1e5000: an int of 5,000 digits
            raise ConfigError(field_name, f"start, stop and step must be finite numbers under 1e{_MAX_EXPONENT}")
        if step <= 0:
            raise ConfigError(field_name, f"step must be positive, got {step}")
        if start > stop:
            raise ConfigError(field_name, f"inverted range {body!r}: start {start} is after stop {stop}")
        try:
            span = (stop - start) / step  # Decimal: 1:2:1e-30 is 1e30 values, refused below, never built
        except ArithmeticError:  # the quotient overflows Decimal's exponent range
            raise ConfigError(field_name, f"more than {MAX_COMBINATIONS:,} values") from None
        if span >= MAX_COMBINATIONS:
            raise ConfigError(field_name, f"more than {MAX_COMBINATIONS:,} values")
        count = int(span) + 1
        values = [start + i * step for i in range(count)]
        integral = all(v == v.to_integral_value() for v in (start, step))
        return [int(v) if integral else float(v) for v in values]
    items = [item.strip() for item in body.split(",")]
    if any(not item for item in items):
        raise ConfigError(field_name, f"empty value in {body!r}")
    values = [_scalar(item) for item in items]
    if any(isinstance(v, Decimal) for v in values):
        raise ConfigError(field_name, f"values must be finite numbers under 1e{_MAX_EXPONENT} or words")
    return values  # type: ignore[return-value]


# A grid value beyond this is no parameter anyone means, and int() of 1e100000000 builds an integer of
# a hundred million digits (seconds of CPU, and "{:,}" of it raises): refused, naming the field.
_MAX_EXPONENT = 18


def _plain(number: Decimal) -> bool:
    return number.is_finite() and (number.is_zero() or number.adjusted() < _MAX_EXPONENT)


def _scalar(text: str) -> GridValue | Decimal:
    """A list item: an int, a float, or the text itself (a word such as long_only); a number that is
    not finite or not below 1e18 comes back as its Decimal, for the caller to refuse."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    if not _plain(number):
        return number
    return int(number) if number == number.to_integral_value() and "." not in text else float(number)


def check_names(strategy_cls: type[Strategy], grid: dict[str, list[GridValue]], fixed: dict[str, Any]) -> None:
    """Every swept or fixed name is a parameter of the strategy, and none is both."""
    known = strategy_cls.Params.model_fields
    for name in list(grid) + list(fixed):
        if name not in known:
            raise ConfigError(f"param.{name}", f"unknown parameter of {strategy_cls.name} (known: {', '.join(known)})")
    both = set(grid) & set(fixed)
    if both:
        raise ConfigError("grid", f"{', '.join(sorted(both))} given both as --grid and as --param")


def expand_grid(strategy_cls: type[Strategy], grid: dict[str, list[GridValue]],
                fixed: dict[str, Any]) -> tuple[list[dict[str, Any]], int, str | None]:
    """The combinations the strategy accepts, how many it refused, and the first refusal's reason."""
    check_names(strategy_cls, grid, fixed)
    names = list(grid)
    combos: list[dict[str, Any]] = []
    skipped, reason = 0, None
    for values in itertools.product(*(grid[n] for n in names)):
        combo = dict(zip(names, values))
        try:
            parse_params(strategy_cls.Params, {**fixed, **combo})
        except ConfigError as exc:
            skipped += 1
            reason = reason or f"{combo}: {exc}"
            continue
        combos.append(combo)
    if not combos:
        raise ConfigError("grid", f"{strategy_cls.name} refuses every combination of the grid, e.g. {reason}")
    return combos, skipped, reason


@dataclass(slots=True)
class SweepOutcome:
    """A finished sweep: every evaluation, best first, and the honesty figures."""

    strategy: str
    objective: str
    grid: dict[str, list[GridValue]]
    fixed: dict[str, Any]
    evaluations: list[Evaluation]          # sorted, best first
    elapsed_s: float
    workers: int
    skipped: int = 0
    overfitting: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Evaluation:
        return self.evaluations[0]

    def best_params(self) -> dict[str, Any]:
        return {**self.fixed, **self.best.params}


def rank(evaluations: list[Evaluation]) -> list[Evaluation]:
    """Best score first; ties keep grid order (the sort is stable), so results are reproducible."""
    return sorted(evaluations, key=lambda e: -e.score if math.isfinite(e.score) else math.inf)


def honesty(evaluations: list[Evaluation], layout: PeriodLayout) -> dict[str, Any]:
    """DSR of the selected (best) trial against all trials; PBO when the matrix is not too big."""
    sharpes = np.array([per_period_sharpe(e.returns) for e in evaluations])
    report = {"dsr": dsr_report(evaluations[0].returns, sharpes, layout.annual)}
    periods = len(evaluations[0].returns)
    if periods * len(evaluations) <= PBO_MAX_CELLS:
        report["pbo"] = pbo_cscv(np.column_stack([e.returns for e in evaluations]))
    else:
        report["pbo"] = {"pbo": None, "note": f"skipped: {periods:,} periods x {len(evaluations):,} trials is too big"}
    return report


def run_grid(frame: pd.DataFrame, strategy_cls: type[Strategy], combos: list[dict[str, Any]], fixed: dict[str, Any],
             grid: dict[str, list[GridValue]], config: BacktestConfig, objective: str, pool: WorkerPool,
             on_done: Callable[[int], None] | None = None, start: int = 0, stop: int | None = None) -> SweepOutcome:
    """Evaluate every combination (bars start:stop of the pool's frame) and rank them."""
    started = time.perf_counter()
    work = batches([{**fixed, **c} for c in combos], batch_size(len(combos), pool.workers), start, stop)
    evaluations = rank(pool.map(work, on_done))
    for e in evaluations:  # report the swept parameters; the fixed ones are in `fixed`
        e.params = {k: e.params[k] for k in grid}
    elapsed = time.perf_counter() - started
    window = frame.iloc[start:stop] if (start, stop) != (0, None) else frame
    outcome = SweepOutcome(strategy=strategy_cls.name, objective=objective, grid=grid, fixed=fixed,
                           evaluations=evaluations, elapsed_s=elapsed, workers=pool.workers)
    outcome.overfitting = honesty(evaluations, PeriodLayout.of(window.index))
    return outcome


def sizing_summary(evaluations: list[Evaluation]) -> str | None:
    """One line when combinations could not size their orders (a grid of empty rows would rank
    noise and report a PBO of 1 without saying why): how many, and the first one's note."""
    unsized = [e for e in evaluations if e.unsized_orders]
    if not unsized:
        return None
    return f"{len(unsized):,} of {len(evaluations):,} combinations could not size orders; e.g. {unsized[0].params}: " \
           f"{unsized[0].note}"


def outcome_json(outcome: SweepOutcome, extra: dict[str, Any] | None = None, top: int | None = None) -> dict[str, Any]:
    """The sweep as JSON: settings, honesty figures, and each combination's params and stats."""
    rows = outcome.evaluations if top is None else outcome.evaluations[:top]
    return {
        "strategy": outcome.strategy, "objective": outcome.objective, "grid": outcome.grid, "fixed": outcome.fixed,
        "combinations": len(outcome.evaluations), "skipped": outcome.skipped, "workers": outcome.workers,
        "elapsed_s": outcome.elapsed_s,
        "combinations_per_s": len(outcome.evaluations) / outcome.elapsed_s if outcome.elapsed_s > 0 else None,
        "best": {"params": outcome.best_params(), "stats": outcome.best.stats,
                 "unsized_orders": outcome.best.unsized_orders, "note": outcome.best.note},
        "overfitting": outcome.overfitting,
        "note": sizing_summary(outcome.evaluations),
        "results": [{"params": e.params, "objective": e.stats.get(outcome.objective), "path": e.path,
                     "stats": e.stats, "unsized_orders": e.unsized_orders, "note": e.note} for e in rows],
        **(extra or {}),
    }
