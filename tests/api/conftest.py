"""The API on a real SQLite store (a file per test) driving the real runtime (live.manager.BotManager,
paper bots replaying the bundled data), and helpers to make users and log them in.

Every app gets a BotManager of its own on the app's store: what the API answers about a bot it
started (RUNNING, 409 on a second start, HALTED after a kill) is what the runtime did, not what a
test double was told. Its feed is paced at real time (IDLE_FEED), so a started bot waits in its
feed until a test stops or kills it (a command wakes the paced wait at once): no test depends on
how fast this machine replays. Tests that need trading give make_api a faster feed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app import create_app
from api.security import set_hash_cost
from api.settings import Settings
from api.users import create_user
from engine.store.db import upgrade
from live.config import FeedConfig
from live.feed import BUNDLED_DATA
from live.manager import BotManager

PASSWORD = "correct horse battery"
SMA = {"strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "symbol": "SPY", "venue": "paper"}
# SPY has no tick file in data/ticks/: its bots replay the bundled daily bars (SPY_daily). At real
# time the second bar is a day away, so such a bot is RUNNING, trading nothing, until it is told.
IDLE_FEED = FeedConfig(path=str(BUNDLED_DATA / "ticks"), speed=1.0)


@dataclass
class Api:
    client: TestClient
    bots: BotManager
    settings: Settings

    @property
    def ctx(self) -> Any:
        return self.client.app.state.ctx  # type: ignore[attr-defined]

    def user(self, username: str, role: str) -> dict[str, str]:
        """Create a user and return the headers of its login."""
        with Session(self.ctx.engine) as db:
            create_user(db, username, role, PASSWORD)
            db.commit()
        return self.login(username)

    def login(self, username: str) -> dict[str, str]:
        response = self.client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def bot(self, headers: dict[str, str], bot_id: str, **overrides: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/bots", json={"id": bot_id, **SMA, **overrides}, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()


set_hash_cost(time_cost=1, memory_kib=8192)  # fast hashes for a suite of many logins


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """A SQLite store at the newest schema, copied by each test (migrating takes ~0.5 s)."""
    path = tmp_path_factory.mktemp("template") / "api.db"
    upgrade(f"sqlite:///{path}")
    return path


def _apis(tmp_path: Path, migrated_db: Path) -> tuple[Callable[..., Api], list[Api]]:
    apis: list[Api] = []

    def make(url: str | None = None, feed: FeedConfig = IDLE_FEED, **settings: Any) -> Api:
        """An app and its runtime on `url` (default: a fresh copy of the migrated store)."""
        n = len(apis)
        if url is None:
            target = tmp_path / f"api{n}.db"
            shutil.copyfile(migrated_db, target)
            url = f"sqlite:///{target}"
        base = Settings(database_url=url, auth_rate_per_minute=10_000, poll_interval_s=0.02)
        config = replace(base, **settings)
        manager = BotManager(feed, database_url=url, state_dir=tmp_path / f"state{n}", record=False)
        client = TestClient(create_app(config, manager))
        client.__enter__()
        apis.append(Api(client, manager, config))
        return apis[-1]

    return make, apis


def _close(apis: list[Api]) -> None:
    for api in apis:
        api.client.__exit__(None, None, None)
        api.bots.close()  # stops its bots: none outlives its test
        api.ctx.engine.dispose()


@pytest.fixture
def make_api(tmp_path, migrated_db) -> Iterator[Callable[..., Api]]:
    make, apis = _apis(tmp_path, migrated_db)
    yield make
    _close(apis)


@pytest.fixture(scope="module")
def module_api(tmp_path_factory, migrated_db) -> Iterator[Api]:
    """One app (and one runtime) for a module whose tests only read, or write under names of their own."""
    make, apis = _apis(tmp_path_factory.mktemp("module"), migrated_db)
    yield make()
    _close(apis)


@pytest.fixture
def api(make_api) -> Api:
    return make_api()


def publish(engine: Any, bot_id: str, ts: int, direction: int = 1) -> None:
    """A signal row, written the way the runtime writes them (models.signals.SqlSignals)."""
    from decimal import Decimal

    from models.signals import Signal, SqlSignals

    SqlSignals(engine).publish(Signal(bot_id, "SPY", ts, direction, Decimal("0.7"), Decimal("0.5"), 0.7, 0.3,
                                      401.5, 1, 1))


class LiveServer:
    """The app on a loopback port (uvicorn in a thread): for SSE and the benchmark, which need a
    real socket rather than the test client's in-memory transport."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", ws_ping_interval=None))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LiveServer":
        import time

        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)
