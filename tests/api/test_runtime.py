"""The API driving the real runtime (live.manager.BotManager) on a replayed tick file: start,
status, kill and stop reach a bot that trades, and what the kill did comes back through the API.

The replay runs at 600x real time: the bundled EURUSD day lasts 144 s, so the bot is still
trading when the test kills it seconds after its first fill; every wait polls for what it needs
with a generous timeout (the timeout only turns a hang into a failure)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.models import AuditRow
from live.config import FeedConfig
from live.feed import BUNDLED_DATA

BOT = {"id": "eurusd-live", "strategy": "sma_cross", "symbol": "EURUSD", "venue": "paper", "bar": "1min",
       "cash": "10000", "params": {"fast": 3, "slow": 8, "mode": "long_short", "fixed_size": 5000}}
REPLAY = FeedConfig(path=str(BUNDLED_DATA / "ticks"), speed=600.0)
WAIT_S = 120.0


def until(condition: Callable[[], Any], what: str) -> Any:
    """Poll until `condition()` is truthy; returns its value."""
    deadline = time.monotonic() + WAIT_S
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)
    return value


def _signed(fill: dict[str, Any]) -> Decimal:
    return Decimal(fill["qty"]) * (1 if fill["side"] == "BUY" else -1)


def test_a_kill_through_the_api_flattens_and_halts_the_running_bot(make_api):
    api = make_api(feed=REPLAY)
    ann = api.user("ann", "trader")
    assert api.client.post("/api/v1/bots", json=BOT, headers=ann).status_code == 201
    get = lambda path: api.client.get(f"/api/v1/bots/eurusd-live/{path}", headers=ann).json()  # noqa: E731
    assert get("status")["state"] == "STOPPED"
    started = api.client.post("/api/v1/bots/eurusd-live/start", headers=ann)
    assert started.status_code == 200, started.text
    assert get("status")["state"] == "RUNNING" and api.bots.running() == ["eurusd-live"]
    assert api.client.post("/api/v1/bots/eurusd-live/start", headers=ann).status_code == 409

    until(lambda: Decimal(get("status")["position"] or 0) != 0, "the bot's first position")
    killed = api.client.post("/api/v1/bots/eurusd-live/kill", json={"reason": "test kill"}, headers=ann)
    assert killed.status_code == 200, killed.text
    status = until(lambda: (s := get("status"))["halted"] and not s["holdings"]["positions"] and s, "the flattening")

    # halted by this kill, while its thread still replays the feed
    assert (status["state"], status["stop_reason"]) == ("HALTED", "KILLED") and "test kill" in status["stop_message"]
    assert Decimal(status["position"]) == 0 and status["holdings"]["open_orders"] == []
    assert api.bots.running() == []
    # flat through a filled flattening order: the last fill (fills page in the order they were
    # written) is a close order's, and it closes exactly what every fill before it held
    fills = get("fills?limit=1000")
    orders = {o["client_order_id"]: o for o in get("orders?limit=1000")}
    close = orders[fills[-1]["client_order_id"]]
    assert (close["tag"], close["state"]) == ("close", "FILLED"), close
    held = sum((_signed(f) for f in fills if f["client_order_id"] != close["client_order_id"]), Decimal(0))
    assert held != 0 and Decimal(close["filled_qty"]) == abs(held)
    assert sum((_signed(f) for f in fills), Decimal(0)) == 0
    assert [Decimal(p["qty"]) for p in get("positions")] == [0]
    # the halt holds while the replay goes on: twenty bars later the strategy has sent nothing
    bars, orders = status["bars"], get("orders?limit=1000")
    until(lambda: get("status")["bars"] >= bars + 20, "twenty more bars")
    assert get("orders?limit=1000") == orders and get("status")["state"] == "HALTED"
    # a start is refused until a person resumes; the kill and its reason are audited
    refused = api.client.post("/api/v1/bots/eurusd-live/start", headers=ann)
    assert refused.status_code == 409 and "resume" in refused.json()["error"]["message"]
    with Session(api.ctx.engine) as db:
        rows = db.scalars(select(AuditRow).where(AuditRow.subject == "bot:eurusd-live").order_by(AuditRow.id))
        audited = [(a.action, a.detail) for a in rows]
    assert audited[-1] == ("bot.kill", {"reason": "test kill"})
    assert api.client.post("/api/v1/bots/eurusd-live/stop", headers=ann).status_code == 200
    assert get("status")["state"] == "HALTED"  # stopped, and still halted until resumed


def test_a_live_venue_bot_starts_through_the_api_with_its_owners_stored_account(make_api):
    """The trader stores MT5 credentials through the API, names the account in a bot config, and
    starts it: the runtime logs in to the terminal with exactly those credentials."""
    from brokers.factory import open_venue
    from tests.fakes.mt5_fake import FakeMT5

    api = make_api()
    manager = api.bots
    terminal = FakeMT5(login=8123, password="only-in-the-vault", server="Broker-Live")
    terminal.add_symbol("EURUSD", 1.1, 1.10002, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    manager.venues = lambda config: open_venue(config.venue, config.account, [config.symbol],
                                               manager.credential_sources(config), mt5_api=terminal)
    client = api.client
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
