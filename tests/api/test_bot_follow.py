"""Following and managing a bot through the API (issue 12, item 5), on the real runtime (BotManager)
replaying real EURUSD ticks: equity at every bar close, ISO 8601 times with their nanoseconds
beside them, why a bot stopped and what it holds (after an API restart too), start refused on an
exhausted feed and on a halted bot, kill of a stopped bot, resume, reset and its archive."""

from __future__ import annotations

import re
import shutil
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import Api

BOT = {"id": "eur", "strategy": "sma_cross", "symbol": "EURUSD", "venue": "paper", "bar": "1min",
       "params": {"fast": 5, "slow": 20, "mode": "long_short", "fixed_size": 5000}, "commission": "0.00002"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.fixture(scope="module")
def ticks(tmp_path_factory) -> Path:
    from tests.integration.runtime_helpers import tick_dir

    return tick_dir(tmp_path_factory.mktemp("ticks"))


def _open(url: str, ticks: Path, state: Path) -> Api:
    from live.config import FeedConfig
    from live.manager import BotManager

    manager = BotManager(FeedConfig(path=str(ticks)), database_url=url, state_dir=state, record=False)
    settings = Settings(database_url=url, auth_rate_per_minute=10_000, poll_interval_s=0.02)
    client = TestClient(create_app(settings, manager))
    client.__enter__()
    return Api(client, manager, settings)  # type: ignore[arg-type]


def _close(api: Api) -> None:
    api.client.__exit__(None, None, None)
    api.bots.close()  # type: ignore[attr-defined]
    api.ctx.engine.dispose()


@pytest.fixture
def follow(tmp_path, migrated_db, ticks):
    shutil.copyfile(migrated_db, tmp_path / "follow.db")
    url = f"sqlite:///{tmp_path / 'follow.db'}"
    api = _open(url, ticks, tmp_path / "var")
    api.url = url  # type: ignore[attr-defined]
    yield api
    _close(api)


def ns_of(iso: str) -> int:
    seconds = datetime.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return int(seconds) * 10**9 + int(iso[20:29])


def run_to_the_end(api: Api, headers: dict[str, str], bot_id: str = "eur") -> dict:
    started = api.client.post(f"/api/v1/bots/{bot_id}/start", headers=headers)
    assert started.status_code == 200, started.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = api.client.get(f"/api/v1/bots/{bot_id}/status", headers=headers).json()
        if status["state"] != "RUNNING" and status.get("stop_reason"):
            return status
        time.sleep(0.05)
    pytest.fail("the bot did not reach the end of its feed")


def test_equity_at_every_bar_close_is_paged_with_iso_times(follow):
    ann = follow.user("ann", "trader")
    assert follow.client.post("/api/v1/bots", json=BOT, headers=ann).status_code == 201
    status = run_to_the_end(follow, ann)
    got, after = [], -1
    while True:
        page = follow.client.get(f"/api/v1/bots/eur/equity?every=bar&limit=25&after={after}", headers=ann)
        assert page.status_code == 200, page.text
        if not page.json():
            break
        assert len(page.json()) <= 25
        got += page.json()
        after = page.json()[-1]["ts_ns"]
    assert len(got) == status["bars"] > 60
    assert [p["ts_ns"] for p in got] == sorted({p["ts_ns"] for p in got})  # each once, in time order
    for point in got:
        assert ISO.match(point["ts"]) and ns_of(point["ts"]) == point["ts_ns"]
        assert Decimal(point["equity"]) == Decimal(10_000) + Decimal(point["realized"]) + Decimal(point["unrealized"])
    assert Decimal(got[-1]["position"]) == Decimal(status["position"])
    # the daily rows stay what /equity answers by default
    assert follow.client.get("/api/v1/bots/eur/equity", headers=ann).json() == []
    assert follow.client.get("/api/v1/bots/eur/equity?every=tick", headers=ann).status_code == 422


def test_every_time_of_a_bot_is_iso_8601_with_its_nanoseconds_beside_it(follow):
    ann = follow.user("ann", "trader")
    follow.client.post("/api/v1/bots", json=BOT, headers=ann)
    status = run_to_the_end(follow, ann)
    assert ISO.match(status["last_tick_ts"]) and ns_of(status["last_tick_ts"]) == status["last_tick_ts_ns"]
    orders = follow.client.get("/api/v1/bots/eur/orders", headers=ann).json()
    fills = follow.client.get("/api/v1/bots/eur/fills", headers=ann).json()
    positions = follow.client.get("/api/v1/bots/eur/positions", headers=ann).json()
    assert orders and fills and positions
    for row, names in [(orders[0], ("ts_init", "ts_last")), (fills[0], ("ts",)), (positions[0], ("updated_ts",))]:
        for name in names:
            assert ISO.match(row[name]) and isinstance(row[f"{name}_ns"], int), (name, row)
            assert ns_of(row[name]) == row[f"{name}_ns"]
    assert isinstance(status["equity"], str) and Decimal(status["position"]) == Decimal(positions[0]["qty"])


def test_follow_and_manage_a_bot_from_the_end_of_its_feed_to_a_clean_restart(follow, ticks, tmp_path):
    ann = follow.user("ann", "trader")
    follow.client.post("/api/v1/bots", json=BOT, headers=ann)
    status = run_to_the_end(follow, ann)
    held = Decimal(status["position"])
    assert status["stop_reason"] == "END_OF_FEED" and held != 0
    assert [(p["symbol"], Decimal(p["qty"])) for p in status["holdings"]["positions"]] == [("EURUSD", held)]

    refused = follow.client.post("/api/v1/bots/eur/start", headers=ann)
    assert refused.status_code == 409 and "replayed its whole feed" in refused.json()["error"]["message"]

    killed = follow.client.post("/api/v1/bots/eur/kill", json={"reason": "closing time"}, headers=ann)
    assert killed.status_code == 200, killed.text
    status = follow.client.get("/api/v1/bots/eur/status", headers=ann).json()
    assert (status["state"], status["stop_reason"], status["halted"]) == ("HALTED", "KILLED", True)
    assert status["holdings"] == {"positions": [], "open_orders": []}
    assert Decimal(follow.client.get("/api/v1/bots/eur/positions", headers=ann).json()[0]["qty"]) == 0
    close = follow.client.get("/api/v1/bots/eur/orders?limit=1", headers=ann).json()[0]
    assert (close["tag"], close["state"], Decimal(close["filled_qty"])) == ("close", "FILLED", abs(held))

    halted = follow.client.post("/api/v1/bots/eur/start", headers=ann)
    assert halted.status_code == 409 and "halted by kill: resume it first" in halted.json()["error"]["message"]
    assert follow.client.post("/api/v1/bots/eur/resume", headers=ann).status_code == 200
    assert follow.client.post("/api/v1/bots/eur/resume", headers=ann).status_code == 409  # not halted now

    # the status is the store's: a restarted API (and runtime) still knows why and what
    _close(follow)
    again = _open(follow.url, ticks, tmp_path / "var")  # type: ignore[attr-defined]
    try:
        ann = again.login("ann")
        status = again.client.get("/api/v1/bots/eur/status", headers=ann).json()
        assert (status["state"], status["stop_reason"]) == ("STOPPED", "KILLED")
        assert "closing time" in status["stop_message"]

        orders = again.client.get("/api/v1/bots/eur/orders?limit=1000", headers=ann).json()
        reset = again.client.post("/api/v1/bots/eur/reset", headers=ann)
        assert reset.status_code == 200, reset.text
        body = reset.json()
        assert body["archive"] == 1 and body["orders"] == len(orders)
        assert re.search(r"realized -?\d+\.\d\d USD", body["message"]) and "no position" in body["message"]
        assert again.client.get("/api/v1/bots/eur/orders", headers=ann).json() == []
        archived = again.client.get("/api/v1/bots/eur/orders?archive=1&limit=1000", headers=ann).json()
        assert [o["client_order_id"] for o in archived] == [o["client_order_id"] for o in orders]
        assert again.client.get("/api/v1/bots/eur/equity?every=bar&archive=1", headers=ann).json()
        assert again.client.get("/api/v1/bots/eur/orders?archive=2", headers=ann).status_code == 404
        (entry,) = again.client.get("/api/v1/bots/eur/archives", headers=ann).json()
        assert entry["archive"] == 1 and entry["actor"] == "ann"

        status = run_to_the_end(again, ann)  # clean: the whole feed again
        assert status["stop_reason"] == "END_OF_FEED" and Decimal(status["position"]) == held
    finally:
        _close(again)
        follow.client.__enter__()  # the fixture closes it again


def test_resume_and_reset_are_the_owners_and_a_running_bot_is_not_reset(make_api):
    api = make_api()
    ann, bob, sue = api.user("ann", "trader"), api.user("bob", "trader"), api.user("sue", "subscriber")
    api.bot(ann, "b1")
    assert api.client.post("/api/v1/bots/b1/reset", headers=sue).status_code == 403
    assert api.client.post("/api/v1/bots/b1/reset", headers=bob).status_code == 404
    assert api.client.post("/api/v1/bots/b1/resume", headers=bob).status_code == 404
    assert api.client.post("/api/v1/bots/b1/start", headers=ann).status_code == 200
    running = api.client.post("/api/v1/bots/b1/reset", headers=ann)
    assert running.status_code == 409 and "stop it before resetting it" in running.json()["error"]["message"]
    assert api.bots.status("b1")["state"] == "RUNNING"  # untouched: nothing archived
    assert api.client.get("/api/v1/bots/b1/archives", headers=ann).json() == []
