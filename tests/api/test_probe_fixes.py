"""Defects an outside probe found in the API (/tmp/notes/V.md): each test failed on the code as
found. Races run real threads against the app on a loopback socket, on each store."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from engine.store.models import BotConfigRow, BotLeaseRow, BotRow
from tests.api.conftest import SMA, LiveServer

THREADS = 10


def _race(url: str, calls: list[tuple[str, str, dict[str, Any]]], headers: dict[str, str]) -> list[int]:
    """Every call at once, one thread (and one connection) each; the status codes."""
    def one(call: tuple[str, str, dict[str, Any]]) -> int:
        method, path, body = call
        with httpx.Client(base_url=url, timeout=60, headers=headers) as http:
            return http.request(method, path, json=body).status_code
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


def test_concurrent_creates_of_one_name_are_one_201_and_409s(database_url, make_api):
    """#5: the flush of the bots row sat outside the IntegrityError -> 409 mapping: 500s."""
    api = make_api(url=database_url)
    ann = api.user("ann", "trader")
    with LiveServer(create_app(api.settings, api.bots)) as server:
        codes = _race(server.url, [("POST", "/api/v1/bots", {"id": "race", **SMA})] * THREADS, ann)
    assert sorted(set(codes)) in ([201], [201, 409]) and codes.count(201) == 1, codes
    with Session(api.ctx.engine) as db:
        assert list(db.scalars(select(BotConfigRow.version).where(BotConfigRow.bot_id == "race"))) == [1]


def test_concurrent_updates_each_get_a_version_of_their_own_or_a_409(database_url, make_api):
    """#5: two PUTs computed the same version + 1 and the loser's unique violation was a 500."""
    api = make_api(url=database_url)
    ann = api.user("ann", "trader")
    api.bot(ann, "race")
    bodies = [("PUT", "/api/v1/bots/race", {**SMA, "cash": f"{1000 + n}"}) for n in range(THREADS)]
    with LiveServer(create_app(api.settings, api.bots)) as server:
        codes = _race(server.url, bodies, ann)
    assert set(codes) <= {200, 409}, codes
    with Session(api.ctx.engine) as db:
        versions = list(db.scalars(select(BotConfigRow.version).where(BotConfigRow.bot_id == "race")
                                   .order_by(BotConfigRow.version)))
    assert versions == list(range(1, codes.count(200) + 2))  # no gap, no version answered twice


# -- #4 #7 #8 #9: bot configs a caller must not be able to store ------------------------------------------
@pytest.mark.parametrize("change, field", [
    ({"params": {"fast": 1, "slow": 10**9}}, "params.slow"),       # #4: 8 GB at start
    ({"strategy": "rsi_reversion", "params": {"period": 10**9}}, "params.period"),
    ({"bar": "0min"}, "bar"),                                        # #7: ZeroDivisionError at start
    ({"bar": "-1min"}, "bar"),                                       # #7: ran as 1min
    ({"symbol": "S" * 900_000}, "symbol"),                           # #9: a megabyte per version
    ({"symbol": "EUR\u202eUSD"}, "symbol"),                          # #9: right-to-left override
    ({"symbol": "EURUSD\u0000"}, "symbol"),                          # #9: NUL (PostgreSQL refuses it: a 500)
    ({"symbol": "XXXYYY", "data": "EURUSD_fxcm_20140505"}, "symbol"),  # #8: ran on EURUSD's ticks
    ({"symbol": "EURUSD", "data": "SPY_daily"}, "symbol"),             # #8: ran on no bar at all
])
def test_a_config_the_runtime_cannot_run_sanely_is_a_422_naming_the_field(database_url, make_api, change, field):
    api = make_api(url=database_url)
    ann = api.user("ann", "trader")
    response = api.client.post("/api/v1/bots", json={"id": "bad", **SMA, **change}, headers=ann)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["error"]["field"] == field
    assert len(response.text) < 2000  # the refusal does not echo a megabyte back
    assert api.client.get("/api/v1/bots", headers=ann).json() == []
    api.bot(ann, "good")
    put = api.client.put("/api/v1/bots/good", json={**SMA, **change}, headers=ann)
    assert put.status_code == 422 and put.json()["error"]["field"] == field
    assert api.client.get("/api/v1/bots/good/versions", headers=ann).json()["versions"] == [1]


@pytest.mark.parametrize("symbol", ["EURUSD", "BTC/USDT", "BTC/USDT:USDT", "SPY", "BRK.B", "BTC-PERP", "EURUSD.m"])
def test_venue_symbols_are_still_accepted(api, symbol):
    ann = api.user("ann", "trader")
    assert api.bot(ann, "ok", symbol=symbol)["config"]["symbol"] == symbol


def test_a_symbol_its_data_source_holds_is_accepted_in_any_case(api):
    ann = api.user("ann", "trader")
    assert api.bot(ann, "fx", symbol="eurusd", data="EURUSD_fxcm_20140505")["config"]["data"] == "EURUSD_fxcm_20140505"


def test_the_largest_window_is_accepted_and_backtests_share_the_bound(api):
    ann = api.user("ann", "trader")
    assert api.bot(ann, "slow", params={"fast": 1, "slow": 100_000})["version"] == 1
    refused = api.client.post("/api/v1/backtests", headers=ann, json={
        "strategy": "sma_cross", "params": {"fast": 1, "slow": 10**9}, "data": "stocks/SPY_daily.csv"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "params.slow"


# -- #10: the status of a bot whose runtime was SIGKILLed --------------------------------------------------
def _lease(api, bot_id: str, expires_in_s: float) -> None:
    now = datetime.now(timezone.utc)
    with Session(api.ctx.engine) as db:
        db.merge(BotLeaseRow(bot_id=bot_id, owner="otherhost:4242:x", acquired_at=now, heartbeat_at=now,
                             expires_at=now + timedelta(seconds=expires_in_s)))
        db.commit()


def test_a_bot_left_running_by_a_dead_runtime_is_reported_stopped(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "k9")
    with Session(api.ctx.engine) as db:  # what a SIGKILL leaves: the row says RUNNING, nothing runs it
        db.get(BotRow, "k9").status = "RUNNING"
        db.commit()
    status = api.client.get("/api/v1/bots/k9/status", headers=ann).json()
    assert (status["state"], status["stop_reason"], status["halted"]) == ("STOPPED", "CRASHED", False)
    assert "not running" in status["stop_message"]
    _lease(api, "k9", -1)  # the dead runtime's lease, expired
    assert api.client.get("/api/v1/bots/k9/status", headers=ann).json()["state"] == "STOPPED"
    _lease(api, "k9", 60)  # another runtime holds it now: it runs there
    assert api.client.get("/api/v1/bots/k9/status", headers=ann).json()["state"] == "RUNNING"


def test_a_bot_this_runtime_runs_is_still_running(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "live")
    assert api.client.post("/api/v1/bots/live/start", headers=ann).status_code == 200
    assert api.client.get("/api/v1/bots/live/status", headers=ann).json()["state"] == "RUNNING"
    assert api.client.post("/api/v1/bots/live/stop", headers=ann).status_code == 200


# -- #6 #12: webhook targets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://example.com:99999/", "http://example.com:abc/", "http://example.com:0/",
                                 "http://[2002:7f00:1::]/",          # 6to4 around 127.0.0.1
                                 "http://[2002:a00:1::]/",           # 6to4 around 10.0.0.1
                                 "http://[::7f00:1]/",               # IPv4-compatible 127.0.0.1
                                 "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/"])  # Teredo, client 127.0.0.1
def test_a_webhook_url_with_a_bad_port_or_a_wrapped_private_address_is_a_422(api, url):
    ann = api.user("ann", "trader")
    response = api.client.post("/api/v1/notifications/rules", headers=ann,
                               json={"kind": "fill", "channel": {"type": "webhook", "url": url}})
    assert response.status_code == 422, (url, response.text)
    assert response.json()["error"]["field"] == "channel.webhook.url"


# -- #13: what a failed backtest tells an API caller ---------------------------------------------------------
def test_a_failed_backtest_names_no_server_path_and_no_cli_flag(api):
    ann = api.user("ann", "trader")
    submitted = api.client.post("/api/v1/backtests", headers=ann, json={
        "strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "data": "ticks/EURUSD_fxcm_20140505.csv.gz"})
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    while job["status"] in ("queued", "running"):
        time.sleep(0.05)
        job = api.client.get(f"/api/v1/backtests/{job['id']}", headers=ann).json()
    assert job["status"] == "failed"
    assert job["error"] == ('ticks/EURUSD_fxcm_20140505.csv.gz: this is a tick file; give "bar" (e.g. "1min") '
                            "to resample it")
