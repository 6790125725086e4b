"""One bot, one runner: two runtimes on one store cannot both run a bot.

Before issue 11, a second BotManager (a second API worker) on the same store started a bot the
first was running: it replayed and appended to the same paper venue log and wrote the same bot's
rows, and died on a UNIQUE constraint only afterwards. Now a bot runs under a lease in the store
(bot_leases): the second start is refused with BotLeased (409 at the API) before it touches
anything, a dead runtime's bot is taken over once its lease expired, and a runtime that lost the
lease (another took over while it stalled) stops trading at once.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from engine.errors import TickbridgeError
from live.bot import venue_log_path
from live.config import FeedConfig, parse_bot_config
from live.control import BotLeased, FeedExhausted
from live.manager import BotManager
from engine.store.db import database_url as resolve_url, make_engine, upgrade
from engine.store.models import BotLeaseRow, BotRow, OrderRow
from tests.integration.runtime_helpers import sma_bot, tick_dir, rows, wait_for

LEASES = BotLeaseRow.__table__
TRADES_OFTEN = {"fast": 2, "slow": 3, "mode": "long_short", "fixed_size": 1000}


@pytest.fixture(scope="module")
def ticks(tmp_path_factory) -> Path:
    return tick_dir(tmp_path_factory.mktemp("ticks"))



def execute(url: str, statement) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(statement)
    finally:
        engine.dispose()


def submits(log: Path) -> list[str]:
    return [json.loads(line)["order"]["client_order_id"] for line in log.read_text().splitlines()
            if '"op":"submit"' in line] if log.exists() else []



def test_a_second_runtime_cannot_start_a_bot_the_first_runs(ticks, tmp_path, database_url):
    upgrade(database_url)
    bot = parse_bot_config(sma_bot(params=TRADES_OFTEN))
    state = tmp_path / "var"  # two workers of one deployment: one store, one state directory
    log = venue_log_path(state, resolve_url(database_url), "sma1")
    # paced so the first still runs when the second asks (~6 s for the slice), and trades to its end
    first = BotManager(FeedConfig(path=str(ticks), speed=1000), database_url, state, record=False)
    second = BotManager(FeedConfig(path=str(ticks), speed=1000), database_url, state, record=False)
    try:
        first.start(bot)
        with pytest.raises(BotLeased) as refused:
            second.start(bot)
        assert isinstance(refused.value, TickbridgeError)  # the API's _control answers 409 for these
        assert refused.value.owner == first.leases().owner
        assert f"bot 'sma1' is run by another runtime ({first.leases().owner})" in str(refused.value)
        assert second.bots() == [] and second.running() == []
        (lease,) = rows(database_url, LEASES, LEASES.c.bot_id == "sma1")
        assert lease.owner == first.leases().owner
        assert first.wait(180)
        assert first.errors() == {}
    finally:
        first.close()
        second.close()
    # one runner wrote the venue log and the store: every order once, the same ones in both
    sent = Counter(submits(log))
    assert sent and max(sent.values()) == 1
    assert {o.client_order_id for o in rows(database_url, OrderRow.__table__, OrderRow.bot_id == "sma1")} == set(sent)
    (stored,) = rows(database_url, BotRow.__table__, BotRow.id == "sma1")
    assert stored.checkpoint == 2999
    # a clean stop released the lease: the second runtime may now run the bot (nothing left to do)
    assert rows(database_url, LEASES) == []
    with BotManager(FeedConfig(path=str(ticks)), database_url, state, record=False) as again:
        with pytest.raises(FeedExhausted):  # not BotLeased: nothing but its finished feed stops it
            again.start(bot)
    assert Counter(submits(log)) == sent


def test_a_dead_runtimes_bot_is_taken_over_once_its_lease_expired(ticks, tmp_path, database_url):
    upgrade(database_url)
    bot = parse_bot_config(sma_bot(params=TRADES_OFTEN))
    now = datetime.now(timezone.utc)
    dead = "deadhost:4242:5f0c3a52-0000-4000-8000-000000000000"
    execute(database_url, insert(LEASES).values(bot_id="sma1", owner=dead, acquired_at=now - timedelta(minutes=5),
                                                heartbeat_at=now, expires_at=now + timedelta(hours=1)))
    with BotManager(FeedConfig(path=str(ticks), speed=300), database_url, tmp_path, record=False) as manager:
        with pytest.raises(BotLeased, match="deadhost:4242"):  # not expired: that runtime may be alive
            manager.start(bot)
        assert not venue_log_path(tmp_path, resolve_url(database_url), "sma1").exists()
        assert rows(database_url, BotRow.__table__, BotRow.id == "sma1") == []  # nothing touched
        execute(database_url, update(LEASES).where(LEASES.c.bot_id == "sma1")
                .values(expires_at=now - timedelta(seconds=1)))  # its runtime died: the lease ran out
        manager.start(bot)
        (lease,) = rows(database_url, LEASES, LEASES.c.bot_id == "sma1")
        assert lease.owner == manager.leases().owner
        assert manager.running() == ["sma1"]


def test_a_runtime_that_lost_the_lease_stops_trading_at_once(ticks, tmp_path, database_url):
    """It stalled, its lease expired, another runtime took the bot over: on its next renewal it
    learns that, and trades no more (status stop_reason "lease_lost")."""
    upgrade(database_url)
    bot = parse_bot_config(sma_bot(params=TRADES_OFTEN))
    log = venue_log_path(tmp_path, resolve_url(database_url), "sma1")
    thief = "otherhost:7:0b9e0a8e-0000-4000-8000-000000000000"
    manager = BotManager(FeedConfig(path=str(ticks), speed=100), database_url, tmp_path, record=False,
                         lease_ttl_s=1.5)  # renewed every 0.5 s
    try:
        manager.start(bot)
        wait_for(lambda: submits(log) or not manager.running(), "the bot's first order")
        assert manager.running() == ["sma1"]
        execute(database_url, update(LEASES).where(LEASES.c.bot_id == "sma1").values(owner=thief))
        assert manager.wait(120)
        status = manager.status("sma1")
        sent = submits(log)
    finally:
        manager.close()
    assert status["stop_reason"] == "LEASE_LOST"
    assert "another runtime took over its lease" in status["error"]
    assert status["ticks"] < 3000  # it stopped, it did not trade to the end of the feed
    assert submits(log) == sent
    (lease,) = rows(database_url, LEASES, LEASES.c.bot_id == "sma1")
    assert lease.owner == thief  # the loser never deletes a lease that is no longer its own


def test_two_api_workers_cannot_both_start_a_bot(ticks, tmp_path):
    """The API path: worker 2 answers 409, naming the runtime that runs the bot."""
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from api.app import create_app
    from api.settings import Settings
    from api.users import create_user

    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(url)
    feed = FeedConfig(path=str(ticks), speed=100)
    managers = [BotManager(feed, url, tmp_path / "var", record=False) for _ in range(2)]
    settings = Settings(database_url=url, auth_rate_per_minute=10_000, poll_interval_s=0.02)
    bot = {**sma_bot("eurusd-live", params=TRADES_OFTEN), "venue": "paper"}
    try:
        with TestClient(create_app(settings, managers[0])) as one, TestClient(create_app(settings, managers[1])) as two:
            with Session(one.app.state.ctx.engine) as db:
                create_user(db, "ann", "trader", "correct horse battery")
                db.commit()
            token = one.post("/api/v1/auth/token", json={"username": "ann", "password": "correct horse battery"})
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            assert one.post("/api/v1/bots", json=bot, headers=headers).status_code == 201
            started = one.post("/api/v1/bots/eurusd-live/start", headers=headers)
            assert started.status_code == 200, started.text
            refused = two.post("/api/v1/bots/eurusd-live/start", headers=headers)
            assert refused.status_code == 409, refused.text
            assert "is run by another runtime" in refused.json()["error"]["message"]
            assert managers[1].bots() == []
            for client in (one, two):
                client.app.state.ctx.engine.dispose()
    finally:
        for manager in managers:
            manager.close()
