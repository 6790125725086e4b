"""Monte Carlo of a finished backtest job (GET /api/v1/backtests/{id}/montecarlo, issue 19): the
fan of equity percentiles per trade and backtest.montecarlo's summary of the very same draws,
bounded, seeded, owner-only."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from backtest.montecarlo import sample_of, simulate
from engine.store.models import BacktestJobRow, UserRow

BACKTEST = {"strategy": "sma_cross", "params": {"fast": 10, "slow": 30}, "data": "stocks/SPY_daily.csv"}
PERCENTILES = ("p5", "p25", "p50", "p75", "p95")


@pytest.fixture(scope="module")
def done(module_api):
    """ann's finished backtest job (one run for the module: the tests only read it)."""
    ann = module_api.user("ann", "trader")
    job_id = module_api.client.post("/api/v1/backtests", json=BACKTEST, headers=ann).json()["id"]
    for _ in range(600):
        if module_api.client.get(f"/api/v1/backtests/{job_id}", headers=ann).json()["status"] == "done":
            break
        time.sleep(0.05)
    result = module_api.client.get(f"/api/v1/backtests/{job_id}/result", headers=ann).json()
    return module_api, ann, job_id, result


def _mc(api, headers, job_id, query: str = ""):
    return api.client.get(f"/api/v1/backtests/{job_id}/montecarlo{query}", headers=headers)


def test_the_fan_and_summary_are_backtest_montecarlo_on_the_stored_trades(done):
    api, ann, job_id, result = done
    answer = _mc(api, ann, job_id, "?paths=300&seed=7&method=bootstrap")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = simulate(sample_of(result), 300, 7, "bootstrap", 10.0, band_points=500)
    assert body["summary"] == expected.summary()
    assert body["trades"] == len(result["trades"]) > 0
    fan = body["fan"]
    assert fan["trade"][0] == 0 and fan["trade"][-1] == body["trades"]
    cash = body["summary"]["initial_cash"]
    assert all(fan[p][0] == pytest.approx(cash) for p in PERCENTILES)  # every path starts at the cash
    # the fan's last point is the final equity's percentiles the summary reports: the same draws
    assert [fan[p][-1] for p in PERCENTILES] == pytest.approx([body["summary"]["final_equity"][p] for p in PERCENTILES])
    for i in range(len(fan["trade"])):
        column = [fan[p][i] for p in PERCENTILES]
        assert column == sorted(column)


def test_the_fan_is_decimated_to_the_points_asked_and_seeded(done):
    api, ann, job_id, result = done
    body = _mc(api, ann, job_id, "?paths=50&points=10").json()
    assert len(body["fan"]["trade"]) <= 10 and len(body["fan"]["p50"]) == len(body["fan"]["trade"])
    assert body["fan"]["trade"][-1] == len(result["trades"])
    again = _mc(api, ann, job_id, "?paths=50&points=10").json()
    other = _mc(api, ann, job_id, "?paths=50&points=10&seed=1").json()
    assert again == body and other["fan"] != body["fan"]
    shuffled = _mc(api, ann, job_id, "?paths=50&method=shuffle").json()
    finals = shuffled["summary"]["final_equity"]
    assert finals["p5"] == pytest.approx(finals["p95"])  # reordering trades never changes where they end


def test_out_of_bounds_requests_are_422_naming_the_parameter(done):
    api, ann, job_id, _ = done
    for query, field in (("?paths=10001", "paths"), ("?paths=0", "paths"), ("?method=lucky", "method"),
                         ("?points=501", "points"), ("?points=1", "points"), ("?seed=-1", "seed"),
                         ("?loss_pct=0", "loss_pct")):
        answer = _mc(api, ann, job_id, query)
        assert answer.status_code == 422 and answer.json()["error"]["field"] == field, (query, answer.text)


def _row(api, username: str, status: str, result=None, kind: str = "backtest") -> str:
    job_id = uuid.uuid4().hex
    with Session(api.ctx.engine) as db:
        owner = db.scalar(select(UserRow.id).where(UserRow.username == username))
    with api.ctx.engine.begin() as c:
        c.execute(insert(BacktestJobRow.__table__).values(id=job_id, owner_id=owner, kind=kind, status=status,
                                                          request=BACKTEST, result=result))
    return job_id


def test_only_the_owner_sees_it_and_a_job_without_trades_is_a_409(done):
    api, ann, job_id, result = done
    bea = api.user("bea", "trader")
    assert _mc(api, bea, job_id).status_code == 404
    assert _mc(api, api.user("root", "admin"), job_id).status_code == 200
    queued = _row(api, "ann", "queued")
    assert _mc(api, ann, queued).status_code == 409
    flat = _row(api, "ann", "done", {**result, "trades": []})
    answer = _mc(api, ann, flat)
    assert answer.status_code == 409 and "no trades" in answer.json()["error"]["message"]
    sweep = _row(api, "ann", "done", result, kind="sweep")
    assert _mc(api, ann, sweep).status_code == 404
