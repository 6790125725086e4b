"""`tickbridge demo`: the whole product in one command, on a fresh machine.

It sets up the SQL store (SQLite under var/ unless TICKBRIDGE_DATABASE_URL says otherwise),
creates a demo trader and a demo subscriber, starts the control API with the live runtime, and
then does what a trader would do through the API itself: creates a paper bot (sma_cross on the
bundled real EURUSD ticks, replayed at `--speed` times real time), starts it, and subscribes the
subscriber to its signals. It prints the URLs and the logins, and stops cleanly on Ctrl-C or
SIGTERM (the bot's open orders are cancelled, the session's ticks are recorded for `tickbridge
parity`). Run it again and the bot resumes where it stopped.

Everything goes through the real HTTP API, so the demo is also a smoke test of the product.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from engine.errors import ConfigError

TRADER = ("demo-trader", "demo-trader-pass")
SUBSCRIBER = ("demo-subscriber", "demo-subscriber-pass")
DEMO_BOT: dict[str, Any] = {
    "id": "demo-sma-eurusd", "strategy": "sma_cross", "symbol": "EURUSD", "bar": "1min",
    "params": {"fast": 10, "slow": 30, "mode": "long_short", "fixed_size": 5000},
    "cash": "10000", "commission": "0.00002", "on_stop": "cancel",
}


@dataclass(frozen=True, slots=True)
class DemoSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    speed: float = 300.0           # a trading day in under five minutes: bars every 0.2 s
    database_url: str | None = None
    seconds: float | None = None   # stop by itself after this long (tests, CI smoke runs)


def ensure_users(database_url: str | None) -> None:
    """The demo logins, created once (a second run finds them)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from api.audit import record
    from api.users import create_user
    from engine.store.db import make_engine
    from engine.store.models import UserRow

    engine = make_engine(database_url)
    try:
        with Session(engine) as db:
            for (username, password), role in ((TRADER, "trader"), (SUBSCRIBER, "subscriber")):
                if db.scalar(select(UserRow.id).where(UserRow.username == username)) is None:
                    user = create_user(db, username, role, password)
                    record(db, "demo", "user.create", f"user:{user.id}", {"username": username, "role": role})
            db.commit()
    finally:
        engine.dispose()


def run_demo(settings: DemoSettings, say: Any = print) -> None:
    import uvicorn

    from api.app import create_app
    from api.settings import Settings
    from engine.runtime.config import parse_feed_config
    from engine.runtime.manager import BotManager
    from engine.store.db import database_url, masked, upgrade

    url = database_url(settings.database_url)
    upgrade(url)
    ensure_users(url)
    manager = BotManager(parse_feed_config({"path": "data/ticks/", "speed": settings.speed}), url, "var")
    app = create_app(dataclasses.replace(Settings.from_env(), database_url=url), manager)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                           ws_per_message_deflate=False))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # ours below
    serving = threading.Thread(target=server.run, name="api", daemon=True)
    serving.start()
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _wait_until_up(server, serving)
        base = f"http://{settings.host}:{settings.port}/api/v1"
        _drive_through_the_api(base)
        say(f"tickbridge demo: store {masked(url)}, API up, bot {DEMO_BOT['id']} trading real EURUSD ticks "
            f"at {settings.speed:g}x")
        say(f"  API docs       {base}/docs")
        say(f"  bot status     {base}/bots/{DEMO_BOT['id']}/status   (and /orders /fills /positions /pnl /equity)")
        say(f"  signals        {base}/signals   (stream: {base}/signals/sse, websocket {base}/signals/ws)")
        say(f"  health         {base}/health   metrics {base}/metrics")
        say(f"  trader login   {TRADER[0]} / {TRADER[1]}")
        say(f"  subscriber     {SUBSCRIBER[0]} / {SUBSCRIBER[1]} (pro plan: real time)")
        say(f"  try: curl -s -X POST {base}/auth/token -H 'content-type: application/json' "
            f"-d '{{\"username\": \"{TRADER[0]}\", \"password\": \"{TRADER[1]}\"}}'")
        say("Ctrl-C stops (open orders cancelled; run it again to resume)")
        stop.wait(settings.seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        say("stopping: bots first, then the API")
        manager.close()
        server.should_exit = True
        serving.join(10)
        for bot_id in manager.bots():
            summary = manager.summary(bot_id)
            say(f"  {bot_id}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
        if manager.session_id:
            say(f"  session {manager.session_id} recorded: tickbridge parity {manager.session_id}")


def _wait_until_up(server: Any, thread: threading.Thread, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            raise ConfigError("port", "the API could not start (is the port taken? use --port)")
        if time.monotonic() > deadline:
            raise ConfigError("port", "the API did not start within 30 s")
        time.sleep(0.05)


def _drive_through_the_api(base: str) -> None:
    """What a trader and a subscriber would do first, through the real endpoints."""
    with httpx.Client(base_url=base, timeout=30.0) as http:
        trader = _login(http, *TRADER)
        exists = http.get(f"/bots/{DEMO_BOT['id']}", headers=trader)
        if exists.status_code == 404:
            _ok(http.post("/bots", json=DEMO_BOT, headers=trader), "create the demo bot")
        else:
            _ok(exists, "read the demo bot")
        _ok(http.post(f"/bots/{DEMO_BOT['id']}/start", headers=trader), "start the demo bot")
        subscriber = _login(http, *SUBSCRIBER)
        mine = _ok(http.get("/subscriptions", headers=subscriber), "list subscriptions").json()
        if not any(s["bot_id"] == DEMO_BOT["id"] and s["active"] for s in mine):
            _ok(http.post("/subscriptions", json={"bot_id": DEMO_BOT["id"], "plan": "pro"}, headers=subscriber),
                "subscribe")


def _login(http: httpx.Client, username: str, password: str) -> dict[str, str]:
    tokens = _ok(http.post("/auth/token", json={"username": username, "password": password}), f"log in {username}")
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def _ok(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 400:
        raise ConfigError("demo", f"could not {what}: HTTP {response.status_code} {response.text[:300]}")
    return response
