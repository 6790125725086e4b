"""`--search optuna`: a TPE search over the grid's ranges instead of every combination.

A grid grows as the product of its axes; a sampler that learns from the trials so far finds a
good region in a fraction of the evaluations. The search space is the `--grid` syntax read as
ranges (fast=5:50:5 is an integer from 5 to 50 in steps of 5; a list is a categorical choice).
Trials run on the same Ray workers as a grid sweep: the driver asks optuna for a small batch per
free worker slot (ask/tell), so every worker stays busy while the sampler still learns between
batches. Combinations the strategy refuses are told to optuna as failed trials and are not run.
The deflated Sharpe ratio counts every trial that ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from backtest.evaluate import Evaluation, PeriodLayout
from backtest.ray_pool import WorkerPool
from backtest.sweep import GridValue, SweepOutcome, honesty, rank
from engine.errors import ConfigError
from strategies.base import Strategy, parse_params

MAX_BATCH = 8


@dataclass(frozen=True, slots=True)
class Dimension:
    """One searched parameter: an int or float range with a step, or a list of choices."""

    name: str
    kind: str                      # "int" | "float" | "choice"
    low: float = 0.0
    high: float = 0.0
    step: float = 0.0
    choices: tuple[GridValue, ...] = ()


def search_space(grid: dict[str, list[GridValue]]) -> list[Dimension]:
    """Evenly spaced numeric values become ranges; anything else is a list of choices."""
    space = []
    for name, values in grid.items():
        numeric = all(isinstance(v, (int, float)) for v in values)
        steps = {round(b - a, 12) for a, b in zip(values, values[1:])} if numeric else set()  # type: ignore[operator]
        if numeric and len(values) > 1 and len(steps) == 1:
            kind = "int" if all(isinstance(v, int) for v in values) else "float"
            space.append(Dimension(name, kind, float(values[0]), float(values[-1]), steps.pop()))  # type: ignore[arg-type]
        else:
            space.append(Dimension(name, "choice", choices=tuple(values)))
    return space


def suggest(trial: Any, dimension: Dimension) -> GridValue:
    if dimension.kind == "int":
        return trial.suggest_int(dimension.name, int(dimension.low), int(dimension.high), step=int(dimension.step))
    if dimension.kind == "float":
        return trial.suggest_float(dimension.name, dimension.low, dimension.high, step=dimension.step)
    return trial.suggest_categorical(dimension.name, list(dimension.choices))


def run_optuna(frame: pd.DataFrame, strategy_cls: type[Strategy], space: list[Dimension], fixed: dict[str, Any],
               objective: str, pool: WorkerPool, trials: int, seed: int,
               on_done: Callable[[int], None] | None = None) -> SweepOutcome:
    """Run `trials` TPE trials on the pool's workers; rank them like a grid sweep."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    started = time.perf_counter()
    per_batch = max(1, min(MAX_BATCH, trials // (pool.workers * 4)))
    asked, tag = 0, 0
    waiting: dict[int, list[Any]] = {}
    evaluations: list[Evaluation] = []
    while asked < trials or pool.busy:
        while asked < trials and pool.free:
            batch = []
            for _ in range(min(per_batch, trials - asked)):
                trial = study.ask()
                params = {d.name: suggest(trial, d) for d in space}
                asked += 1
                try:
                    parse_params(strategy_cls.Params, {**fixed, **params})
                except ConfigError:
                    study.tell(trial, state=TrialState.FAIL)
                    if on_done is not None:
                        on_done(1)
                    continue
                batch.append((trial, params))
            if batch:
                tag += 1
                waiting[tag] = [trial for trial, _ in batch]
                pool.submit(([{**fixed, **p} for _, p in batch], 0, None), tag)
        if pool.busy:
            done_tag, done = pool.next_done()
            for trial, evaluation in zip(waiting.pop(done_tag), done):
                evaluation.params = {d.name: evaluation.params[d.name] for d in space}
                if math.isfinite(evaluation.score):
                    study.tell(trial, evaluation.score)
                else:
                    study.tell(trial, state=TrialState.FAIL)
                evaluations.append(evaluation)
            if on_done is not None:
                on_done(len(done))
    if not evaluations:
        raise ConfigError("grid", f"{strategy_cls.name} refused every one of the {trials} trials optuna proposed")
    grid = {d.name: list(d.choices) if d.kind == "choice" else [d.low, d.high, d.step] for d in space}
    outcome = SweepOutcome(strategy=strategy_cls.name, objective=objective, grid=grid, fixed=fixed,
                           evaluations=rank(evaluations), elapsed_s=time.perf_counter() - started,
                           workers=pool.workers, skipped=trials - len(evaluations))
    outcome.overfitting = honesty(outcome.evaluations, PeriodLayout.of(frame.index))
    return outcome
