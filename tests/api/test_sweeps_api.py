"""Sweep jobs through the API (issue 19): what a trader submits is checked field by field before
any work, runs in the backtests' pool under their quota, is seen by its owner only, survives a
restart as a failed job, and ranks exactly what backtest.sweep ranks when run directly."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from api.routers.backtests import finite
from engine.store.models import BacktestJobRow, UserRow

SPY = "stocks/SPY_daily.csv"
# fast 20 / slow 20 and fast 30 / slow 20 are refused by sma_cross (slow must exceed fast): skipped
SWEEP = {"strategy": "sma_cross", "grid": {"fast": "10:30:10", "slow": [20, 40]}, "data": SPY,
         "settings": {"commission": "0.001"}}
DATA_DIR = Path(__file__).resolve().parents[2] / "data"


def _wait(api, headers, job_id: str, kind: str = "sweeps") -> dict:
    for _ in range(600):
        job = api.client.get(f"/api/v1/{kind}/{job_id}", headers=headers).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{kind} job {job_id} still {job['status']}")


def _row(api, username: str, kind: str, status: str) -> str:
    job_id = uuid.uuid4().hex
    with Session(api.ctx.engine) as db:
        owner = db.scalar(select(UserRow.id).where(UserRow.username == username))
    with api.ctx.engine.begin() as c:
        c.execute(insert(BacktestJobRow.__table__).values(id=job_id, owner_id=owner, kind=kind, status=status,
                                                          request=SWEEP))
    return job_id


def _direct() -> dict:
    """The same sweep through backtest.sweep's public functions, in this process, without the API."""
    from backtest.config import make_config
    from backtest.data import load_frame
    from backtest.ray_pool import SweepWorker, frame_arrays
    from backtest.runner import build_instrument
    from backtest.sweep import expand_grid, outcome_json, parse_grid, run_grid
    from strategies.registry import resolve_strategy

    class Pool:  # one worker in this thread: what a Ray actor does with each batch
        workers = 1

        def __init__(self, frame, strategy, config) -> None:
            self.worker = SweepWorker(frame_arrays(frame), strategy, config, "sharpe")

        def map(self, work, on_done=None):
            return [e for combos, start, stop in work for e in self.worker.evaluate(combos, start, stop)]

    strategy = resolve_strategy("sma_cross", allow_code_refs=False)
    grid = parse_grid(["fast=10:30:10", "slow=20,40"])
    combos, skipped, _ = expand_grid(strategy, grid, {})
    frame = load_frame(DATA_DIR / SPY, None)
    config = make_config(symbol="SPY_daily", commission="0.001", path="fast")
    config = config.model_copy(update={"price_increment": build_instrument(frame, config, "whole").price_increment})
    outcome = run_grid(frame, strategy, combos, {}, grid, config, "sharpe", Pool(frame, strategy, config))
    outcome.skipped = skipped
    return finite(outcome_json(outcome))  # JSON-safe as the API stores it: an undefined ratio is null


def test_a_sweep_job_ranks_what_the_sweep_run_directly_ranks(api):
    ann = api.user("ann", "trader")
    submitted = api.client.post("/api/v1/sweeps", json=SWEEP, headers=ann)
    assert submitted.status_code == 202, submitted.text
    job = _wait(api, ann, submitted.json()["id"])
    assert job["status"] == "done", job
    result = api.client.get(f"/api/v1/sweeps/{job['id']}/result", headers=ann).json()
    direct = _direct()
    assert (result["combinations"], result["skipped"]) == (4, 2)
    assert [r["params"] for r in result["results"]] == [r["params"] for r in direct["results"]]
    assert [r["objective"] for r in result["results"]] == [r["objective"] for r in direct["results"]]
    assert [r["stats"] for r in result["results"]] == [r["stats"] for r in direct["results"]]
    assert result["best"]["params"] == direct["best"]["params"]
    assert result["overfitting"] == direct["overfitting"]
    sharpes = [r["objective"] for r in result["results"]]
    assert sharpes == sorted(sharpes, reverse=True)  # ranked, best first
    assert {"deflated_sharpe_ratio", "trials"} <= set(result["overfitting"]["dsr"])
    assert result["data"] == SPY and result["bars"] > 5000


def test_a_sweep_request_is_refused_naming_the_field(api):
    ann = api.user("ann", "trader")
    cases = (
        ({"grid": {"fast": "1:100:1", "slow": "101:110:1"}}, "grid"),        # 1,000 combinations > 500
        ({"grid": {}}, "grid"),
        ({"grid": {"fast": "30:10:5"}}, "grid.fast"),                        # inverted range
        ({"grid": {"fast": [5, "1,2"]}}, "grid.fast"),
        ({"grid": {"fast": "1:1e5000:1"}}, "grid.fast"),                     # was a 500: int of 5,000 digits
        ({"grid": {"fast": "1:Infinity:1"}}, "grid.fast"),                   # was a 500: OverflowError
        ({"grid": {"fast": "1:5:1e-999999999"}}, "grid.fast"),               # was a 500: decimal.Overflow
        ({"grid": {"fast": [5, "1e100000000"]}}, "grid.fast"),               # was an int of 10^8 digits
        ({"grid": {"nope": [1, 2]}}, "grid.nope"),
        ({"params": {"nope": 1}}, "params.nope"),
        ({"grid": {"fast": [5], "slow": [20]}, "params": {"fast": 5}}, "grid"),  # both swept and fixed
        ({"grid": {"fast": [50], "slow": [20]}}, "grid"),                    # every combination refused
        ({"data": "../pyproject.toml"}, "data"),
        ({"data": "/etc/passwd"}, "data"),
        ({"strategy": "nope"}, "strategy"),
        ({"strategy": "backtest.runner:run_backtest"}, "strategy"),          # never a caller's code ref
        ({"objective": "luck"}, "objective"),
        ({"settings": {"cash": "-1"}}, "settings.cash"),
    )
    for change, field in cases:
        response = api.client.post("/api/v1/sweeps", json={**SWEEP, **change}, headers=ann)
        assert response.status_code == 422, (change, response.text)
        assert response.json()["error"]["field"] == field, (change, response.text)
        assert str(DATA_DIR) not in response.text
    assert api.client.get("/api/v1/sweeps", headers=ann).json() == []  # nothing was queued


def test_sweeps_and_backtests_share_the_quota_of_queued_and_running_jobs(make_api):
    api = make_api(backtest_quota=2)
    ann, bea = api.user("ann", "trader"), api.user("bea", "trader")
    _row(api, "ann", "backtest", "running")
    _row(api, "ann", "sweep", "queued")
    _row(api, "ann", "sweep", "done")  # finished jobs do not count
    over = api.client.post("/api/v1/sweeps", json=SWEEP, headers=ann)
    assert over.status_code == 429 and int(over.headers["Retry-After"]) > 0, over.text
    backtest = {"strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "data": SPY}
    assert api.client.post("/api/v1/backtests", json=backtest, headers=ann).status_code == 429
    assert api.client.post("/api/v1/sweeps", json=SWEEP, headers=bea).status_code == 202  # per user


def test_only_the_owner_or_an_admin_sees_a_sweep_and_kinds_stay_apart(api):
    ann, bea, root = api.user("ann", "trader"), api.user("bea", "trader"), api.user("root", "admin")
    sam = api.user("sam", "subscriber")
    job_id = _row(api, "ann", "sweep", "done")
    for path in (f"/api/v1/sweeps/{job_id}", f"/api/v1/sweeps/{job_id}/result"):
        assert api.client.get(path, headers=bea).status_code == 404
    assert api.client.get(f"/api/v1/sweeps/{job_id}", headers=root).json()["id"] == job_id
    assert api.client.get(f"/api/v1/sweeps/{job_id}", headers=ann).status_code == 200
    assert api.client.get("/api/v1/sweeps", headers=sam).status_code == 403
    assert api.client.get("/api/v1/sweeps", headers=bea).json() == []
    assert [j["id"] for j in api.client.get("/api/v1/sweeps", headers=ann).json()] == [job_id]
    # a sweep is not a backtest (nor the reverse): each list and each read holds its own kind
    assert api.client.get(f"/api/v1/backtests/{job_id}", headers=ann).status_code == 404
    assert api.client.get("/api/v1/backtests", headers=ann).json() == []
    backtest_id = _row(api, "ann", "backtest", "done")
    assert api.client.get(f"/api/v1/sweeps/{backtest_id}", headers=ann).status_code == 404
    # a job without its result yet is a 409 that says how it stands
    queued = _row(api, "bea", "sweep", "queued")
    assert api.client.get(f"/api/v1/sweeps/{queued}/result", headers=bea).status_code == 409


def test_sweeps_a_restart_interrupted_are_marked_failed(make_api, tmp_path, migrated_db):
    import shutil

    shutil.copyfile(migrated_db, tmp_path / "restart.db")
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    before = make_api(url=url)
    before.user("ann", "trader")
    running, queued = _row(before, "ann", "sweep", "running"), _row(before, "ann", "sweep", "queued")
    after = make_api(url=url)  # a new process on the same store
    ann = after.login("ann")
    for job_id in (running, queued):
        job = after.client.get(f"/api/v1/sweeps/{job_id}", headers=ann).json()
        assert (job["status"], job["error"]) == ("failed", "interrupted by a server restart; resubmit")


def test_a_sweep_that_fails_while_running_says_why_in_the_callers_words(api):
    ann = api.user("ann", "trader")
    # a tick file needs "bar": the loader's message names the file by its server path and a CLI flag
    response = api.client.post("/api/v1/sweeps", headers=ann, json={**SWEEP, "data": "ticks/USDJPY_truefx_ticks.csv"})
    job = _wait(api, ann, response.json()["id"])
    assert job["status"] == "failed"
    assert job["error"] == 'ticks/USDJPY_truefx_ticks.csv: this is a tick file; give "bar" (e.g. "1min") to resample it'


def test_migration_0016_makes_every_existing_job_a_backtest_and_goes_back(tmp_path):
    from sqlalchemy import inspect, text

    from engine.store.db import make_engine
    from tests.conftest import migrate_store

    url = f"sqlite:///{tmp_path / 'jobs.db'}"

    def migrate(target: str, down: bool = False) -> None:
        migrate_store(url, target, down)

    migrate("0015")
    engine = make_engine(url)
    try:
        from api.users import create_user

        with Session(engine) as db:
            create_user(db, "ann", "trader", "correct horse battery")
            db.commit()
        with engine.begin() as c:
            c.execute(text("INSERT INTO backtest_jobs (id, owner_id, status, request, created_at) "
                           "VALUES ('old', 1, 'done', '{}', CURRENT_TIMESTAMP)"))
        migrate("0016")
        with engine.connect() as c:
            assert c.execute(text("SELECT kind FROM backtest_jobs WHERE id = 'old'")).scalar() == "backtest"
        migrate("0015", down=True)
        assert "kind" not in {col["name"] for col in inspect(engine).get_columns("backtest_jobs")}
    finally:
        engine.dispose()
