"""Backtest jobs: submit (strategy, params, a data file under data/, settings), poll, fetch the
result JSON (backtest.report.to_json_dict). Jobs run in the app's thread pool; the job row is the
source of truth, so a poll from any replica sees it.

A user may have at most `backtest_quota` (TICKBRIDGE_BACKTEST_QUOTA, default 2) jobs queued or
running at once, backtests and sweeps (api/routers/sweeps.py) together: they share the table (its
`kind` column), the pool and this quota. One more is 429 with Retry-After, so one heavy user cannot
fill the pool for everyone. The pool lives in the API process: a restart loses the jobs it held, so at start
(`fail_interrupted`, from the app's lifespan) every queued or running job is marked failed with
"interrupted by a server restart; resubmit" rather than left `running` forever. That assumes one
API process per store, as the in-process pool already does.

GET /backtests/{id}/montecarlo resamples a finished job's trades (backtest.montecarlo): the fan of
equity percentiles per trade and the summary, computed on request (bounded paths), never stored."""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update

from api import audit
from api.deps import AppContext, Ctx, Db, Trader
from api.errors import ERROR_SCHEMA, ApiError, not_found
from engine.errors import ConfigError, TickbridgeError
from engine.store.models import BacktestJobRow

router = APIRouter(prefix="/backtests", tags=["backtests"])


class BacktestIn(BaseModel):
    strategy: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    data: str = Field(min_length=1, max_length=256, description="a file under data/, e.g. stocks/SPY_daily.csv")
    bar: str | None = Field(None, max_length=16, description="resample a tick file to bars of this size")
    settings: dict[str, Any] = Field(default_factory=dict,
                                     description="BacktestConfig values: cash, commission, slippage_bps, path...")


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    request: dict[str, Any]
    error: str | None
    created_at: datetime
    finished_at: datetime | None


def data_path(data_dir: Path, name: str) -> Path:
    """The file `name` under data/; a 422 on `data` naming only what the caller sent otherwise."""
    root = data_dir.resolve()
    try:
        path = (root / name).resolve()
        usable = path.is_relative_to(root) and path.is_file()
    except (ValueError, OSError):  # a NUL byte, a name too long for the OS
        usable = False
    if not usable:
        raise ApiError(422, f"no data file {name!r} under data/", field="data")
    return path


def _validate(body: BacktestIn, data_dir: Path) -> None:
    from backtest.config import make_config
    from strategies.registry import resolve_strategy  # installed strategies only: never a caller's code
    from strategies.base import parse_params

    data_path(data_dir, body.data)
    try:
        strategy = resolve_strategy(body.strategy, allow_code_refs=False)
    except ConfigError as exc:
        raise ApiError(422, exc.message, field="strategy") from None
    try:
        parse_params(strategy.Params, body.params)
    except ConfigError as exc:
        raise ApiError(422, exc.message, field="params" + exc.field.removeprefix("param")) from None
    try:
        make_config(**body.settings)
    except ConfigError as exc:
        raise ApiError(422, exc.message, field=f"settings.{exc.field}") from None
    except TypeError as exc:
        raise ApiError(422, str(exc), field="settings") from None


def run_job(ctx: AppContext, job_id: str, request: dict[str, Any]) -> None:
    """Runs in the pool: load the data, backtest, store the result JSON (or the error)."""
    from backtest.config import make_config
    from backtest.metrics import compute_stats
    from backtest.report import to_json_dict
    from backtest.runner import run_backtest
    from backtest.data import load_frame
    from strategies.registry import resolve_strategy  # installed strategies only: never a caller's code

    set_job(ctx, job_id, status="running")
    try:
        path = data_path(ctx.settings.data_dir, request["data"])
        settings = {"symbol": path.name.split(".")[0], **request["settings"]}
        strategy = resolve_strategy(request["strategy"], allow_code_refs=False)
        result = run_backtest(load_frame(path, request.get("bar")), strategy, request["params"],
                              make_config(**settings))
        payload = finite(to_json_dict(result, compute_stats(result)))
        set_job(ctx, job_id, status="done", result=payload, finished_at=datetime.now(timezone.utc))
    except (TickbridgeError, ApiError) as exc:
        fail_job(ctx, job_id, str(exc))
    except Exception as exc:  # a bug: record it on the job rather than lose it in the pool
        fail_job(ctx, job_id, f"internal error: {type(exc).__name__}: {exc}")


def fail_job(ctx: AppContext, job_id: str, message: str) -> None:
    """Record a job's failure in words its caller may read (for_caller)."""
    set_job(ctx, job_id, status="failed", error=for_caller(message, ctx.settings.data_dir)[:2000],
            finished_at=datetime.now(timezone.utc))


# The loaders' messages are written for the CLI: they name the file by its path and advise flags.
# An API caller named the file relative to data/ and sends fields, not flags (V.md #13).
CLI_ADVICE = (("pass --bar RULE (e.g. --bar 1min) to resample it", 'give "bar" (e.g. "1min") to resample it'),
              ("use --path event (or auto) with --risk", 'use settings.path "event" (or "auto") with risk'),
              ("use --path event (or auto)", 'use settings.path "event" (or "auto")'),
              ("--adjusted", "settings.adjusted"))
ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s/:'\",;()]+/)+[^\s/:'\",;()]*")


def for_caller(message: str, data_dir: Path) -> str:
    """A job's error as an API caller may read it: files under data/ by their name there, any
    other absolute path of the server replaced by "<server path>", CLI flags by the fields."""
    for root in {str(data_dir), str(data_dir.resolve())}:
        message = message.replace(root.rstrip("/") + "/", "")
    for cli, api in CLI_ADVICE:
        message = message.replace(cli, api)
    return ABSOLUTE_PATH.sub("<server path>", message)


def finite(value: Any) -> Any:
    """JSON-safe: NaN and infinities (an undefined ratio) become null, other odd types text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def set_job(ctx: AppContext, job_id: str, **values: Any) -> None:
    with ctx.sessions() as db:
        row = db.get(BacktestJobRow, job_id)
        if row is not None:
            for key, value in values.items():
                setattr(row, key, value)
            db.commit()


def owned(db: Any, caller: Any, job_id: str, kind: str = "backtest") -> BacktestJobRow:
    """The caller's job of this kind (an admin's: anyone's); 404 for another's, as for a missing one."""
    row = db.get(BacktestJobRow, job_id)
    if row is None or row.kind != kind or not (caller.is_admin or row.owner_id == caller.user_id):
        raise not_found(f"{kind} job {job_id!r}")
    return row


INTERRUPTED = "interrupted by a server restart; resubmit"
RETRY_AFTER_S = 10   # a guess at a job's length: the client polls its jobs meanwhile


def fail_interrupted(ctx: AppContext) -> int:
    """Mark the jobs a previous process left queued or running as failed; how many there were."""
    with ctx.sessions() as db:
        done = db.execute(update(BacktestJobRow).where(BacktestJobRow.status.in_(("queued", "running")))
                          .values(status="failed", error=INTERRUPTED, finished_at=datetime.now(timezone.utc)))
        db.commit()
        return int(done.rowcount or 0)


def within_quota(db: Any, caller: Any, quota: int) -> None:
    """429 when the caller already has `quota` jobs queued or running, of any kind."""
    pending = db.scalar(select(func.count()).select_from(BacktestJobRow)
                        .where(BacktestJobRow.owner_id == caller.user_id,
                               BacktestJobRow.status.in_(("queued", "running"))))
    if pending >= quota:
        raise ApiError(429, f"you have {pending} jobs (backtests and sweeps) queued or running (at most {quota}): "
                            "wait for one to finish", headers={"Retry-After": str(RETRY_AFTER_S)})


QUOTA_RESPONSE = {429: {**ERROR_SCHEMA, "description": "the caller's quota of queued and running jobs (backtests "
                                                      "and sweeps together) is full (Retry-After says when to try "
                                                      "again)"}}


@router.post("", response_model=JobOut, status_code=202, summary="submit a backtest job",
             responses=QUOTA_RESPONSE)
def submit(body: BacktestIn, caller: Trader, ctx: Ctx, db: Db) -> BacktestJobRow:
    _validate(body, ctx.settings.data_dir)
    return enqueue(ctx, db, caller, "backtest", body, run_job, {"strategy": body.strategy, "data": body.data})


def enqueue(ctx: AppContext, db: Any, caller: Any, kind: str, body: BaseModel,
            work: Callable[[AppContext, str, dict[str, Any]], None], detail: dict[str, Any]) -> BacktestJobRow:
    """Queue a checked job of `kind` within the caller's quota (shared by every kind): its row, its
    audit record (`<kind>.submit`), then `work(ctx, id, request)` on the app's pool."""
    within_quota(db, caller, ctx.settings.backtest_quota)
    row = BacktestJobRow(id=uuid.uuid4().hex, owner_id=caller.user_id, kind=kind, status="queued",
                         request=body.model_dump(mode="json"))
    db.add(row)
    audit.record(db, caller.username, f"{kind}.submit", f"{kind}:{row.id}", detail)
    db.commit()
    ctx.executor.submit(work, ctx, row.id, row.request)
    return row


@router.get("", response_model=list[JobOut], summary="the caller's jobs, newest first")
def list_jobs(caller: Trader, db: Db) -> list[BacktestJobRow]:
    return jobs_of(db, caller, "backtest")


def jobs_of(db: Any, caller: Any, kind: str) -> list[BacktestJobRow]:
    """The caller's 100 newest jobs of `kind` (an admin's: everyone's)."""
    query = (select(BacktestJobRow).where(BacktestJobRow.kind == kind)
             .order_by(BacktestJobRow.created_at.desc()).limit(100))
    if not caller.is_admin:
        query = query.where(BacktestJobRow.owner_id == caller.user_id)
    return list(db.scalars(query))


@router.get("/{job_id}", response_model=JobOut, summary="a job's status")
def job(job_id: str, caller: Trader, db: Db) -> BacktestJobRow:
    return owned(db, caller, job_id)


@router.get("/{job_id}/result", summary="the result JSON of a finished job (409 until then)")
def result(job_id: str, caller: Trader, db: Db) -> dict[str, Any]:
    return finished(db, caller, job_id).result


def finished(db: Any, caller: Any, job_id: str, kind: str = "backtest") -> BacktestJobRow:
    """The caller's finished job; 409 (saying how it stands) until it is done."""
    row = owned(db, caller, job_id, kind)
    if row.status != "done" or row.result is None:
        raise ApiError(409, f"job {job_id} is {row.status}" + (f": {row.error}" if row.error else ""))
    return row


MAX_PATHS = 10_000     # paths x trades is simulated in chunks; the bound keeps one request's CPU small
MAX_FAN_POINTS = 500   # the fan's trade indices: enough for a chart's width


@router.get("/{job_id}/montecarlo", summary="Monte Carlo of a finished job's trades: equity fan and summary",
            responses={409: {**ERROR_SCHEMA, "description": "the job is not done, or made no trades to resample"}})
def montecarlo(job_id: str, caller: Trader, db: Db,
               paths: int = Query(1000, ge=1, le=MAX_PATHS, description="simulated equity paths"),
               seed: int = Query(0, ge=0, le=2**32 - 1, description="the same seed gives the same figures"),
               method: Literal["bootstrap", "shuffle"] = Query("bootstrap", description=(
                   "bootstrap: draw the trades with replacement; shuffle: reorder them")),
               loss_pct: float = Query(10.0, gt=0, le=100, description="the loss whose probability is reported"),
               points: int = Query(MAX_FAN_POINTS, ge=2, le=MAX_FAN_POINTS,
                                   description="at most this many trade indices in the fan")) -> dict[str, Any]:
    """backtest.montecarlo on the stored trades: `summary` (probability of a loss and of a drawdown,
    final equity and max drawdown percentiles, as `tickbridge montecarlo` prints) and `fan`, the
    equity's 5/25/50/75/95th percentiles after each trade (`trade` 0 is the start), decimated."""
    from backtest.montecarlo import sample_of, simulate

    row = finished(db, caller, job_id)
    try:
        sample = sample_of(row.result or {}, f"backtest job {job_id}")
    except TickbridgeError as exc:
        raise ApiError(409, str(exc)) from None
    outcome = simulate(sample, paths, seed, method, loss_pct, band_points=points)
    return finite({"job": job_id, "trades": len(sample.returns), "summary": outcome.summary(), "fan": outcome.bands})
