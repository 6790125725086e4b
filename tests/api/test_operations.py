"""Health, readiness, metrics, the one error shape, the audit log, backtest jobs."""

from __future__ import annotations

import time

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.models import AuditRow, BacktestJobRow


def test_health_and_readiness(api):
    assert api.client.get("/api/v1/health").json() == {"status": "ok"}
    assert api.client.get("/api/v1/ready").json() == {"status": "ready"}


def test_readiness_fails_when_the_database_is_unreachable(make_api):
    from engine.store.db import make_engine

    api = make_api()
    api.ctx.engine = make_engine("postgresql://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    response = api.client.get("/api/v1/ready")
    assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"


def test_metrics_expose_requests_orders_fills_rejects_latency_and_bots_running(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    api.client.post("/api/v1/bots/b1/start", headers=ann)
    text = api.client.get("/api/v1/metrics").text
    for name in ("tickbridge_http_requests_total", "tickbridge_http_request_seconds_bucket", "tickbridge_orders",
                 "tickbridge_order_rejects", "tickbridge_fills", "tickbridge_signal_fanout_seconds_bucket"):
        assert name in text, name
    assert "tickbridge_bots_running 1.0" in text
    assert 'route="/api/v1/bots/{bot_id}/start"' in text  # the template, not the raw path


def test_unknown_path_wrong_method_and_bad_input_share_the_error_shape(api):
    ann = api.user("ann", "trader")
    not_found = api.client.get("/api/v1/nothing-here")
    assert not_found.status_code == 404 and set(not_found.json()["error"]) == {"code", "message"}
    wrong = api.client.delete("/api/v1/health")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    bad = api.client.get("/api/v1/signals", params={"limit": "many"}, headers=ann)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"
    junk = api.client.post("/api/v1/auth/token", content=b"{not json", headers={"content-type": "application/json"})
    assert junk.status_code == 422 and "error" in junk.json()


def test_an_unexpected_error_is_a_500_in_the_error_shape_without_details(make_api):
    api = make_api()
    router = APIRouter()

    @router.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    api.client.app.include_router(router)
    from fastapi.testclient import TestClient

    client = TestClient(api.client.app, raise_server_exceptions=False)
    response = client.get("/api/v1/boom")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal server error"}}


def test_every_state_changing_call_writes_an_audit_row(api):
    admin = api.user("root", "admin")
    api.client.post("/api/v1/users", json={"username": "ann", "role": "trader", "password": "p" * 12}, headers=admin)
    api.client.post("/api/v1/auth/api-keys", json={"name": "k"}, headers=admin)
    api.client.post("/api/v1/accounts", json={"name": "a", "venue": "paper", "credentials": {}},
                    headers=admin)
    api.bot(admin, "b1")
    api.client.put("/api/v1/bots/b1", json={"strategy": "sma_cross", "symbol": "SPY"}, headers=admin)
    with Session(api.ctx.engine) as db:
        rows = list(db.scalars(select(AuditRow).order_by(AuditRow.id)))
    assert [r.action for r in rows] == ["auth.login", "user.create", "api_key.create", "account.create",
                                        "bot.create", "bot.update"]
    assert all(r.actor == "root" for r in rows) and rows[-1].detail == {"version": 2}


def test_a_backtest_job_runs_and_its_result_json_is_fetched(api):
    ann = api.user("ann", "trader")
    submitted = api.client.post("/api/v1/backtests", headers=ann, json={
        "strategy": "sma_cross", "params": {"fast": 10, "slow": 30}, "data": "stocks/SPY_daily.csv",
        "settings": {"commission": "0.001"}})
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]
    status = submitted.json()["status"]
    while status in ("queued", "running"):
        time.sleep(0.1)
        status = api.client.get(f"/api/v1/backtests/{job_id}", headers=ann).json()["status"]
    assert status == "done"
    result = api.client.get(f"/api/v1/backtests/{job_id}/result", headers=ann).json()
    assert {"stats", "equity", "trades", "orders", "meta"} <= set(result)
    assert result["meta"]["strategy"] == "sma_cross" and len(result["trades"]) > 0
    with Session(api.ctx.engine) as db:
        assert db.get(BacktestJobRow, job_id).status == "done"


def test_a_backtest_request_is_validated_naming_the_field(api):
    ann = api.user("ann", "trader")
    base = {"strategy": "sma_cross", "data": "stocks/SPY_daily.csv"}
    for change, field in (({"data": "../pyproject.toml"}, "data"), ({"strategy": "nope"}, "strategy"),
                          ({"params": {"fast": -1}}, "params.fast"), ({"settings": {"cash": "-1"}}, "settings.cash")):
        response = api.client.post("/api/v1/backtests", json={**base, **change}, headers=ann)
        assert response.status_code == 422 and response.json()["error"]["field"] == field, response.text
