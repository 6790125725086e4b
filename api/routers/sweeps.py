"""Sweep jobs: a strategy's parameters over a grid on a data file under data/, run in the API's
pool, ranked, with the honesty figures (deflated Sharpe, PBO) of backtest.sweep.

A sweep is a job like a backtest (api/routers/backtests.py): the same table (kind "sweep"), the
same per-user quota (queued and running jobs of both kinds count together), the same pool, the
same restart rule (fail_interrupted marks every kind) and the same owner-only reads. Everything is
checked before the job is queued, each refusal a 422 naming its field: the grid is at most
MAX_COMBINATIONS combinations (a bigger search is the CLI's, on a Ray cluster).

The work is backtest.sweep's public functions (parse_grid, expand_grid, run_grid, outcome_json),
so a sweep here gives what `tickbridge sweep` gives on the same inputs. run_grid takes a pool;
inside the API it is InlinePool, the pool's thread evaluating the batches itself through the very
SweepWorker each Ray actor holds: a web server does not start a Ray cluster.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, cast

import pandas as pd
from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import AppContext, Ctx, Db, Trader
from api.errors import ApiError
from api.routers.backtests import (QUOTA_RESPONSE, JobOut, data_path, enqueue, fail_job, finished, finite, jobs_of,
                                   owned, set_job)
from engine.errors import ConfigError, TickbridgeError
from engine.store.models import BacktestJobRow

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

MAX_COMBINATIONS = 500  # per job: the pool is shared, and a bigger search belongs on a cluster (the CLI)
GridSpec = str | int | float | list[int | float | str]


class SweepIn(BaseModel):
    strategy: str = Field(min_length=1, max_length=64)
    grid: dict[str, GridSpec] = Field(description='each swept parameter: "start:stop:step" (stop included), '
                                                  'a list of values, or one value', max_length=8)
    params: dict[str, Any] = Field(default_factory=dict, description="the parameters held fixed")
    data: str = Field(min_length=1, max_length=256, description="a file under data/, e.g. stocks/SPY_daily.csv")
    bar: str | None = Field(None, max_length=16, description="resample a tick file to bars of this size")
    objective: str = Field("sharpe", max_length=64, description="the statistic the ranking maximises "
                                                                 "(volatility and fees are minimised)")
    settings: dict[str, Any] = Field(default_factory=dict,
                                     description="BacktestConfig values: cash, commission, slippage_bps... "
                                                 "(sweeps run the fast path)")


class Plan:
    """A checked request: what the job will run."""

    def __init__(self, strategy_cls: Any, grid: dict[str, list[Any]], combos: list[dict[str, Any]], skipped: int,
                 objective: str) -> None:
        self.strategy_cls, self.grid, self.combos, self.skipped, self.objective = (
            strategy_cls, grid, combos, skipped, objective)


def _spec(name: str, value: GridSpec) -> str:
    """One grid entry as backtest.sweep's `name=...` text; list items may not hold its separators."""
    if isinstance(value, list):
        if not value:
            raise ApiError(422, "give at least one value", field=f"grid.{name}")
        items = [str(v) for v in value]
        if any(not item.strip() or "," in item or ":" in item for item in items):
            raise ApiError(422, "a list's values may not be empty or contain ',' or ':'", field=f"grid.{name}")
        return f"{name}=" + ",".join(items)
    return f"{name}={value}"


def plan(body: SweepIn, data_dir: Any) -> Plan:
    """Check the request, cheapest first; the first problem is a 422 naming its field."""
    from backtest.config import make_config
    from backtest.evaluate import validate_objective
    from backtest.sweep import expand_grid, parse_grid
    from strategies.base import Strategy
    from strategies.registry import resolve_strategy  # installed strategies only: never a caller's code

    data_path(data_dir, body.data)
    try:
        strategy_cls = resolve_strategy(body.strategy, allow_code_refs=False)
    except ConfigError as exc:
        raise ApiError(422, exc.message, field="strategy") from None
    if strategy_cls.signals is Strategy.signals:
        raise ApiError(422, f"{strategy_cls.name} has no vectorised signals(); sweeps run the fast path only",
                       field="strategy")
    try:
        objective = validate_objective(body.objective)
    except ConfigError as exc:
        raise ApiError(422, exc.message, field="objective") from None
    if not body.grid:
        raise ApiError(422, "give at least one parameter to sweep", field="grid")
    try:
        grid = parse_grid([_spec(name, value) for name, value in body.grid.items()], limit=None)
    except ConfigError as exc:
        raise ApiError(422, exc.message, field=exc.field) from None
    total = math.prod(len(values) for values in grid.values())
    if total > MAX_COMBINATIONS:
        raise ApiError(422, f"{total:,} combinations is more than {MAX_COMBINATIONS:,} per job: narrow the grid "
                            "(or run `tickbridge sweep` on a cluster)", field="grid")
    try:
        combos, skipped, _ = expand_grid(strategy_cls, grid, body.params)
    except ConfigError as exc:
        name = exc.field.removeprefix("param.")
        field = exc.field if not exc.field.startswith("param.") else (
            f"grid.{name}" if name in grid else f"params.{name}")
        raise ApiError(422, exc.message, field=field) from None
    try:
        make_config(**_settings(body.settings, "check"))
    except ConfigError as exc:
        raise ApiError(422, exc.message, field=f"settings.{exc.field}") from None
    except TypeError as exc:
        raise ApiError(422, str(exc), field="settings") from None
    return Plan(strategy_cls, grid, combos, skipped, objective)


def _settings(settings: dict[str, Any], symbol: str) -> dict[str, Any]:
    """The caller's settings for a sweep: every combination runs the fast path, as the CLI's do."""
    return {"symbol": symbol, **settings, "path": "fast"}


class InlinePool:
    """run_grid's pool in the calling thread: one SweepWorker (what each Ray actor holds) works
    through the batches in order. Same evaluations as the Ray pool, in the same order."""

    workers = 1

    def __init__(self, frame: pd.DataFrame, strategy_cls: Any, config: Any, objective: str) -> None:
        from backtest.ray_pool import SweepWorker, frame_arrays

        self.worker = SweepWorker(frame_arrays(frame), strategy_cls, config, objective)

    def map(self, work: Sequence[Any], on_done: Callable[[int], None] | None = None) -> list[Any]:
        out: list[Any] = []
        for combos, start, stop in work:
            done = self.worker.evaluate(combos, start, stop)
            out.extend(done)
            if on_done is not None:
                on_done(len(done))
        return out


def sweep_document(request: dict[str, Any], data_dir: Any) -> dict[str, Any]:
    """Run a (checked) sweep request to its JSON: outcome_json plus the data's name and size and
    the config every combination ran with. The job and the tests call this one function."""
    from backtest.config import make_config
    from backtest.data import load_frame
    from backtest.ray_pool import WorkerPool
    from backtest.runner import build_instrument
    from backtest.sweep import outcome_json, run_grid

    checked = plan(SweepIn.model_validate(request), data_dir)
    path = data_path(data_dir, request["data"])
    frame = load_frame(path, request.get("bar"))
    config = make_config(**_settings(request.get("settings") or {}, path.name.split(".")[0]))
    # the tick size fixed once from the whole file, as `tickbridge sweep` does (research_cli._config)
    config = config.model_copy(update={"price_increment": build_instrument(frame, config, "whole").price_increment})
    pool = InlinePool(frame, checked.strategy_cls, config, checked.objective)
    outcome = run_grid(frame, checked.strategy_cls, checked.combos, request.get("params") or {}, checked.grid, config,
                       checked.objective, cast(WorkerPool, pool))
    outcome.skipped = checked.skipped
    return finite(outcome_json(outcome, {"data": request["data"], "bars": len(frame),
                                         "config": config.model_dump(mode="json")}))


def run_sweep(ctx: AppContext, job_id: str, request: dict[str, Any]) -> None:
    """Runs in the pool: the sweep, its JSON stored on the job (or the error, in the caller's words)."""
    set_job(ctx, job_id, status="running")
    try:
        document = sweep_document(request, ctx.settings.data_dir)
        set_job(ctx, job_id, status="done", result=document, finished_at=datetime.now(timezone.utc))
    except (TickbridgeError, ApiError) as exc:
        fail_job(ctx, job_id, str(exc))
    except Exception as exc:  # a bug: record it on the job rather than lose it in the pool
        fail_job(ctx, job_id, f"internal error: {type(exc).__name__}: {exc}")


@router.post("", response_model=JobOut, status_code=202, summary="submit a sweep job", responses=QUOTA_RESPONSE)
def submit(body: SweepIn, caller: Trader, ctx: Ctx, db: Db) -> BacktestJobRow:
    checked = plan(body, ctx.settings.data_dir)
    return enqueue(ctx, db, caller, "sweep", body, run_sweep,
                   {"strategy": body.strategy, "data": body.data, "combinations": len(checked.combos)})


@router.get("", response_model=list[JobOut], summary="the caller's sweep jobs, newest first")
def list_jobs(caller: Trader, db: Db) -> list[BacktestJobRow]:
    return jobs_of(db, caller, "sweep")


@router.get("/{job_id}", response_model=JobOut, summary="a sweep job's status")
def job(job_id: str, caller: Trader, db: Db) -> BacktestJobRow:
    return owned(db, caller, job_id, "sweep")


@router.get("/{job_id}/result", summary="a finished sweep: every combination ranked, best first (409 until then)")
def result(job_id: str, caller: Trader, db: Db) -> dict[str, Any]:
    """`results`: each combination's swept `params`, `objective` value and `stats`, best first;
    `best` (with the fixed parameters), `overfitting` (deflated Sharpe ratio, PBO), `skipped` (the
    combinations the strategy refused), `grid`, `fixed`, `config`, `data`, `bars`."""
    return finished(db, caller, job_id, "sweep").result or {}
