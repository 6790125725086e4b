"""The API driving the real runtime (live.manager.BotManager) on a replayed tick file:
start, status, kill, stop reach a bot that trades, and its store data comes back through the API."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import Api

BOT = {"id": "eurusd-live", "strategy": "sma_cross", "params": {"fast": 3, "slow": 8}, "symbol": "EURUSD",
       "venue": "paper", "bar": "1min", "cash": "10000"}


@pytest.fixture
def live_api(tmp_path, migrated_db):
    import shutil

    from live.config import FeedConfig
    from live.manager import BotManager

    shutil.copyfile(migrated_db, tmp_path / "live.db")
    url = f"sqlite:///{tmp_path / 'live.db'}"
    manager = BotManager(FeedConfig(path="data/ticks/", speed=600.0), database_url=url, state_dir=tmp_path / "var",
                         record=False)
    settings = Settings(database_url=url, auth_rate_per_minute=10_000, poll_interval_s=0.02)
    with TestClient(create_app(settings, manager)) as client:
        yield Api(client, manager, settings)  # type: ignore[arg-type]
    manager.close()
    client.app.state.ctx.engine.dispose()


def test_start_status_kill_and_stop_drive_the_real_runtime(live_api):
    api = live_api
    ann = api.user("ann", "trader")
    assert api.client.post("/api/v1/bots", json=BOT, headers=ann).status_code == 201
    assert api.client.get("/api/v1/bots/eurusd-live/status", headers=ann).json()["state"] == "STOPPED"
    started = api.client.post("/api/v1/bots/eurusd-live/start", headers=ann)
    assert started.status_code == 200, started.text
    assert api.client.get("/api/v1/bots/eurusd-live/status", headers=ann).json()["state"] == "RUNNING"
    assert "eurusd-live" in api.client.app.state.ctx.bot_control.running()
    assert api.client.post("/api/v1/bots/eurusd-live/start", headers=ann).status_code == 409
    deadline = time.monotonic() + 20
    while not api.client.get("/api/v1/bots/eurusd-live/orders", headers=ann).json() and time.monotonic() < deadline:
        time.sleep(0.2)  # the replay runs at 600x: the first crossover comes within seconds
    assert api.client.get("/api/v1/bots/eurusd-live/orders", headers=ann).json(), "the bot never traded"
    killed = api.client.post("/api/v1/bots/eurusd-live/kill", json={"reason": "test"}, headers=ann)
    assert killed.status_code == 200, killed.text  # running or already at the end of its feed: a kill holds
    deadline = time.monotonic() + 60

    def status() -> dict:
        return api.client.get("/api/v1/bots/eurusd-live/status", headers=ann).json()

    while not (status()["halted"] and not any(p["qty"] not in ("0", 0) and float(p["qty"]) != 0
                                              for p in status()["holdings"]["positions"])):
        assert time.monotonic() < deadline, f"the kill did not flatten and halt the bot: {status()}"
        time.sleep(0.2)
    # the kill happened: flat, halted, no order left working, and a start is refused until resume
    assert not status()["holdings"]["open_orders"]
    refused = api.client.post("/api/v1/bots/eurusd-live/start", headers=ann)
    assert refused.status_code == 409 and "resume" in refused.text
    assert api.client.post("/api/v1/bots/eurusd-live/stop", headers=ann).status_code in (200, 409)
    assert "eurusd-live" not in api.client.app.state.ctx.bot_control.running()


def test_a_live_venue_bot_starts_through_the_api_with_its_owners_stored_account(tmp_path, migrated_db):
    """The trader stores MT5 credentials through the API, names the account in a bot config, and
    starts it: the runtime logs in to the terminal with exactly those credentials."""
    import shutil

    from brokers.factory import open_venue
    from live.config import FeedConfig
    from live.manager import BotManager
    from tests.fakes.mt5_fake import FakeMT5

    shutil.copyfile(migrated_db, tmp_path / "live.db")
    url = f"sqlite:///{tmp_path / 'live.db'}"
    terminal = FakeMT5(login=8123, password="only-in-the-vault", server="Broker-Live")
    terminal.add_symbol("EURUSD", 1.1, 1.10002, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    manager = BotManager(FeedConfig(path="data/ticks/"), database_url=url, state_dir=tmp_path / "var", record=False)
    manager.venues = lambda config: open_venue(config.venue, config.account, [config.symbol],
                                               manager.credential_sources(config), mt5_api=terminal)
    settings = Settings(database_url=url, auth_rate_per_minute=10_000, poll_interval_s=0.02)
    with TestClient(create_app(settings, manager)) as client:
        api = Api(client, manager, settings)  # type: ignore[arg-type]
        ann = api.user("ann", "trader")
        account = {"name": "fx", "venue": "mt5",
                   "credentials": {"login": "8123", "password": "only-in-the-vault", "server": "Broker-Live"}}
        assert client.post("/api/v1/accounts", json=account, headers=ann).status_code == 201
        bot = {**BOT, "id": "mt5-bot", "venue": "mt5", "account": "fx", "params": {"fast": 2, "slow": 3,
               "fixed_size": "0.1", "units": "fractional"}}
        assert client.post("/api/v1/bots", json=bot, headers=ann).status_code == 201
        started = client.post("/api/v1/bots/mt5-bot/start", headers=ann)
        assert started.status_code == 200, started.text
        status = client.get("/api/v1/bots/mt5-bot/status", headers=ann).json()
        assert status["state"] == "RUNNING" and terminal.account_info().login == 8123
        assert client.post("/api/v1/bots/mt5-bot/stop", headers=ann).status_code == 200
    manager.close()
