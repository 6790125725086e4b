"""Authorization, each denial proved. Policy (api/deps.py): 401 unauthenticated; 403 when the
caller's role may never do the thing; 404 when the object is someone else's (as if absent)."""

from __future__ import annotations

import pytest

from tests.api.conftest import SMA


@pytest.fixture(scope="module")
def world(module_api):
    """ann and bea are traders with a bot each; sam subscribes; root is admin. The tests share it:
    each writes only under names of its own."""
    api = module_api
    ann, bea = api.user("ann", "trader"), api.user("bea", "trader")
    sam, root = api.user("sam", "subscriber"), api.user("root", "admin")
    api.bot(ann, "ann-bot")
    api.bot(bea, "bea-bot")
    assert api.client.post("/api/v1/bots/ann-bot/publish", headers=ann).status_code == 200  # sam may follow it
    return api, {"ann": ann, "bea": bea, "sam": sam, "root": root}


def test_no_credentials_is_401(world):
    api, _ = world
    for method, path in (("get", "/api/v1/bots"), ("get", "/api/v1/signals"), ("get", "/api/v1/accounts"),
                         ("post", "/api/v1/bots/ann-bot/start"), ("get", "/api/v1/subscriptions")):
        assert getattr(api.client, method)(path).status_code == 401, path


def test_a_trader_does_not_see_another_traders_bot_in_the_list(world):
    api, h = world
    assert [b["id"] for b in api.client.get("/api/v1/bots", headers=h["bea"]).json()] == ["bea-bot"]


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/v1/bots/ann-bot"),
    ("get", "/api/v1/bots/ann-bot/versions"),
    ("put", "/api/v1/bots/ann-bot"),
    ("delete", "/api/v1/bots/ann-bot"),
    ("post", "/api/v1/bots/ann-bot/start"),
    ("post", "/api/v1/bots/ann-bot/stop"),
    ("post", "/api/v1/bots/ann-bot/kill"),
    ("get", "/api/v1/bots/ann-bot/status"),
    ("get", "/api/v1/bots/ann-bot/orders"),
    ("get", "/api/v1/bots/ann-bot/fills"),
    ("get", "/api/v1/bots/ann-bot/positions"),
    ("get", "/api/v1/bots/ann-bot/pnl"),
    ("get", "/api/v1/bots/ann-bot/equity"),
    ("post", "/api/v1/bots/ann-bot/publish"),
    ("post", "/api/v1/bots/ann-bot/unpublish"),
])
def test_a_trader_cannot_see_or_change_another_traders_bot(world, method, path):
    api, h = world
    kwargs = {"json": {**SMA}} if method == "put" else {}
    response = getattr(api.client, method)(path, headers=h["bea"], **kwargs)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["message"] == "bot 'ann-bot' not found"  # same as for a missing bot
    assert "ann-bot" not in api.bots.bots()  # the runtime was never asked to run it, nor to kill it:
    assert (api.bots.status("ann-bot")["state"], api.bots.status("ann-bot")["stop_reason"]) == ("STOPPED", None)
    assert api.client.get("/api/v1/bots/ann-bot", headers=h["ann"]).json()["version"] == 1


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/api/v1/bots"), ("get", "/api/v1/bots"), ("get", "/api/v1/bots/ann-bot"),
    ("post", "/api/v1/bots/ann-bot/start"), ("get", "/api/v1/bots/ann-bot/orders"),
    ("post", "/api/v1/accounts"), ("get", "/api/v1/accounts"), ("post", "/api/v1/backtests"),
    ("post", "/api/v1/users"),
])
def test_a_subscriber_may_not_manage_bots_accounts_backtests_or_users(world, method, path):
    api, h = world
    kwargs = {"json": {}} if method == "post" else {}
    assert getattr(api.client, method)(path, headers=h["sam"], **kwargs).status_code == 403


def test_a_trader_may_not_create_users_or_subscribe(world):
    api, h = world
    assert api.client.post("/api/v1/users", json={"username": "x1x", "role": "admin", "password": "p" * 10},
                           headers=h["ann"]).status_code == 403
    assert api.client.post("/api/v1/subscriptions", json={"bot_id": "bea-bot"}, headers=h["ann"]).status_code == 403


def test_a_trader_cannot_see_or_delete_another_traders_account(world):
    api, h = world
    created = api.client.post("/api/v1/accounts", json={"name": "ann-acct", "venue": "alpaca",
                                                        "credentials": {"api_key": "AKXXXXXXXX1234",
                                                                        "secret_key": "s" * 12}}, headers=h["ann"])
    account_id = created.json()["id"]
    assert [a["name"] for a in api.client.get("/api/v1/accounts", headers=h["bea"]).json()] == []
    assert api.client.get(f"/api/v1/accounts/{account_id}", headers=h["bea"]).status_code == 404
    assert api.client.delete(f"/api/v1/accounts/{account_id}", headers=h["bea"]).status_code == 404
    assert api.client.get(f"/api/v1/accounts/{account_id}", headers=h["ann"]).status_code == 200


def test_a_trader_cannot_point_a_bot_at_another_traders_account(world):
    api, h = world
    api.client.post("/api/v1/accounts", json={"name": "main", "venue": "alpaca",
                                              "credentials": {"api_key": "AKXXXXXXXX1234", "secret_key": "s" * 12}},
                    headers=h["ann"])
    response = api.client.post("/api/v1/bots", json={"id": "sneaky", **SMA, "venue": "alpaca", "account": "main"},
                               headers=h["bea"])
    assert response.status_code == 422 and response.json()["error"]["field"] == "account"
    ok = api.client.post("/api/v1/bots", json={"id": "ann-alpaca", **SMA, "venue": "alpaca", "account": "main"},
                         headers=h["ann"])
    assert ok.status_code == 201


def test_a_user_cannot_see_or_cancel_another_users_subscription_or_api_key(world):
    api, h = world
    sub = api.client.post("/api/v1/subscriptions", json={"bot_id": "ann-bot"}, headers=h["sam"]).json()
    other = api.user("sue", "subscriber")
    assert api.client.get("/api/v1/subscriptions", headers=other).json() == []
    assert api.client.delete(f"/api/v1/subscriptions/{sub['id']}", headers=other).status_code == 404
    key = api.client.post("/api/v1/auth/api-keys", json={"name": "k"}, headers=h["ann"]).json()
    assert api.client.delete(f"/api/v1/auth/api-keys/{key['id']}", headers=h["bea"]).status_code == 404


def test_a_trader_cannot_read_another_traders_backtest(world):
    api, h = world
    job = api.client.post("/api/v1/backtests", json={"strategy": "sma_cross", "params": {"fast": 5, "slow": 20},
                                                     "data": "stocks/SPY_daily.csv"}, headers=h["ann"])
    assert job.status_code == 202
    assert api.client.get(f"/api/v1/backtests/{job.json()['id']}", headers=h["bea"]).status_code == 404
    assert api.client.get(f"/api/v1/backtests/{job.json()['id']}/result", headers=h["bea"]).status_code == 404
    assert api.client.get("/api/v1/backtests", headers=h["bea"]).json() == []


def test_an_admin_sees_and_controls_every_bot(world):
    api, h = world
    assert {"ann-bot", "bea-bot"} <= {b["id"] for b in api.client.get("/api/v1/bots", headers=h["root"]).json()}
    assert api.client.post("/api/v1/bots/bea-bot/start", headers=h["root"]).status_code == 200
    assert api.bots.status("bea-bot")["state"] == "RUNNING" and "bea-bot" in api.bots.running()
    assert api.client.get("/api/v1/bots/bea-bot/status", headers=h["bea"]).json()["state"] == "RUNNING"
    assert api.client.post("/api/v1/bots/bea-bot/stop", headers=h["root"]).status_code == 200
    assert api.bots.status("bea-bot")["state"] == "STOPPED"
