"""`tickbridge demo`: the whole product in one command, on a fresh machine.

It sets up the SQL store (SQLite under var/ unless TICKBRIDGE_DATABASE_URL says otherwise),
creates a demo trader and a demo subscriber, starts the control API with the live runtime, and
then does what a trader would do through the API itself: creates a paper bot (sma_cross on the
bundled real EURUSD ticks, replayed at `--speed` times real time), starts and publishes it, and
subscribes the subscriber (granted the pro plan in the store, as an operator would) to its
signals. It prints the URLs and the logins, and stops cleanly on Ctrl-C or
SIGTERM (the bot's open orders are cancelled, the session's ticks are recorded for `tickbridge
parity`). Run it again and the bot resumes where it stopped.

While it runs, the console follows the bots (BotConsole): one line, with its ISO 8601 UTC time,
for each change of a bot's state (STARTING, RUNNING, STOPPED or HALTED with the reason and the
runtime's message) and for each error a bot dies of, e.g. a store that went away. It watches the
runtime's status a few times a second and prints only changes, so a bot trading thousands of
ticks prints a handful of lines, not one per tick.

Everything goes through the real HTTP API, so the demo is also a smoke test of the product.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from engine.errors import ConfigError
from engine.settings import ApiSettings, load_group, load_settings

CONSOLE_POLL_S = 0.2
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
    """The demo logins, created once (a second run finds them). The demo subscriber is put on the
    pro plan here, in the store: plans are entitlements an operator or admin grants, which the
    API does not let a subscriber choose."""
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
            subscriber = db.scalar(select(UserRow).where(UserRow.username == SUBSCRIBER[0]))
            if subscriber is not None and subscriber.plan != "pro":
                subscriber.plan = "pro"
                record(db, "demo", "user.plan", f"user:{subscriber.id}", {"to": "pro"})
            db.commit()
    finally:
        engine.dispose()


JWT_SECRET_FILE = Path("var") / "jwt_secret"


def demo_jwt_secret(path: Path = JWT_SECRET_FILE, api: ApiSettings | None = None) -> str | None:
    """The demo's JWT secret when TICKBRIDGE_JWT_SECRET is unset: generated once into var/ (mode
    0600, only its owner may read it) and reused, so the demo's users stay logged in across runs.
    None when the environment sets one (Settings.from_env then checks that one)."""
    from api.settings import MIN_JWT_SECRET_BYTES

    if (api if api is not None else load_group(ApiSettings)).jwt_secret is not None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        kept = path.read_text().strip()
        if len(kept.encode()) >= MIN_JWT_SECRET_BYTES:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return kept
        path.unlink()  # unusable (truncated or edited): replace it
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(48)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another demo process wrote it first: use theirs
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as out:
        out.write(secret + "\n")
    return secret


def utc_now_iso() -> str:
    """The wall clock as ISO 8601 UTC to the millisecond: 2026-11-29T21:04:05.123Z."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BotConsole:
    """Prints each bot's state changes and errors as they happen, one line each:

        2026-11-29T21:04:05.123Z  demo-sma-eurusd  RUNNING
        2026-11-29T21:09:41.907Z  demo-sma-eurusd  STOPPED  END_OF_FEED: replayed its whole feed ...
        2026-11-29T21:09:41.907Z  demo-sma-eurusd  ERROR  cannot write to the store ...

    A line is printed when what a person would act on changes (state, stop reason, error), never
    per tick. `control` is the runtime (its bots() and status()); it is read, never driven."""

    def __init__(self, control: Any, say: Any, interval_s: float = CONSOLE_POLL_S) -> None:
        self.control, self.say, self.interval_s = control, say, interval_s
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def line(self, bot_id: str, *parts: str) -> None:
        text = "  ".join(" ".join(str(p).split()) for p in parts if p)  # one line, whatever the message holds
        with self._lock:
            self.say(f"{utc_now_iso()}  {bot_id}  {text}")

    def starting(self, bot_id: str) -> None:
        """Said by whoever starts a bot, before the runtime has it (it then reports RUNNING)."""
        with self._lock:
            self._seen[bot_id] = ("STARTING", None, None)
        self.line(bot_id, "STARTING")

    def failed(self, bot_id: str, message: str) -> None:
        self.line(bot_id, "ERROR", message)

    def poll(self) -> None:
        """Print what changed since the last look, for every bot the runtime knows."""
        for bot_id in self.control.bots():
            try:
                status = self.control.status(bot_id)
            except Exception as exc:  # noqa: BLE001 - the console reports; it never stops the demo
                status = {"state": "UNKNOWN", "error": f"status unavailable: {exc}"}
            state, reason, error = status.get("state"), status.get("stop_reason"), status.get("error")
            key = (state, reason if state != "RUNNING" else None, error)
            with self._lock:
                previous = self._seen.get(bot_id)
                if previous == key or (previous is not None and previous[0] == "STARTING"
                                       and key == ("STOPPED", None, None)):
                    continue  # unchanged, or still starting (not RUNNING yet, nothing wrong either)
                self._seen[bot_id] = key
            if previous is None or previous[0] != state or previous[1] != key[1]:
                why = f"{reason}: {status.get('stop_message') or ''}".rstrip(": ") if key[1] else ""
                self.line(bot_id, str(state), why)
            if error and (previous is None or previous[2] != error):
                self.failed(bot_id, str(error))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bot-console", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def stop(self) -> None:
        """Stop watching, after a last look (the stops that closing the runtime caused)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.poll()


def run_demo(settings: DemoSettings, say: Any = print) -> None:
    import uvicorn

    from api.app import create_app
    from api.logs import install_redaction
    from api.settings import Settings
    from live.config import parse_feed_config
    from live.manager import BotManager
    from engine.store.db import database_url, masked, upgrade

    loaded = load_settings()  # a bad TICKBRIDGE_* value: refused before anything starts
    url = database_url(settings.database_url)
    api_settings = dataclasses.replace(Settings.from_env(jwt_secret=demo_jwt_secret(api=loaded.api), settings=loaded),
                                       database_url=url)
    install_redaction()
    upgrade(url)
    ensure_users(url)
    manager = BotManager(parse_feed_config({"path": "data/ticks/", "speed": settings.speed}), url, "var")
    app = create_app(api_settings, manager)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                           ws_per_message_deflate=False, proxy_headers=False))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # ours below
    serving = threading.Thread(target=server.run, name="api", daemon=True)
    serving.start()
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    console = BotConsole(manager, say)
    try:
        _wait_until_up(server, serving)
        base = f"http://{settings.host}:{settings.port}/api/v1"
        console.start()
        _drive_through_the_api(base, console)
        say(f"tickbridge demo: store {masked(url)}, API up, bot {DEMO_BOT['id']} trading real EURUSD ticks "
            f"at {settings.speed:g}x")
        say(f"  dashboard      http://{settings.host}:{settings.port}/   (log in as the trader or subscriber below)")
        say(f"  API docs       {base}/docs   (ReDoc: {base}/redoc; served by the API itself, no internet needed)")
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
        console.stop()
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


def _drive_through_the_api(base: str, console: BotConsole | None = None) -> None:
    """What a trader and a subscriber would do first, through the real endpoints."""
    with httpx.Client(base_url=base, timeout=30.0) as http:
        trader = _login(http, *TRADER)
        exists = http.get(f"/bots/{DEMO_BOT['id']}", headers=trader)
        if exists.status_code == 404:
            bot = _ok(http.post("/bots", json=DEMO_BOT, headers=trader), "create the demo bot").json()
        else:
            bot = _ok(exists, "read the demo bot").json()
        if console is not None:
            console.starting(bot["runtime_id"])
        started = http.post(f"/bots/{DEMO_BOT['id']}/start", headers=trader)
        if started.status_code == 409 and "replayed its whole feed" in started.text:
            # an earlier demo ran the bundled ticks to their end: archive those books (the reset a
            # trader would do) and replay the feed from the start, rather than leave no bot running
            _ok(http.post(f"/bots/{DEMO_BOT['id']}/reset", headers=trader), "reset the demo bot")
            if console is not None:
                console.line(bot["runtime_id"], "RESET", "it had replayed its whole feed: its books are archived "
                                                          "and it replays the feed from the start")
            started = http.post(f"/bots/{DEMO_BOT['id']}/start", headers=trader)
        if started.status_code >= 400 and console is not None:
            console.failed(bot["runtime_id"], f"start refused: HTTP {started.status_code} {started.text[:300]}")
        _ok(started, "start the demo bot")
        if not bot["published"]:
            _ok(http.post(f"/bots/{DEMO_BOT['id']}/publish", headers=trader), "publish the demo bot")
        subscriber = _login(http, *SUBSCRIBER)  # on the pro plan: ensure_users granted it
        mine = _ok(http.get("/subscriptions", headers=subscriber), "list subscriptions").json()
        if not any(s["bot_id"] == bot["runtime_id"] and s["active"] for s in mine):
            _ok(http.post("/subscriptions", json={"bot_id": bot["runtime_id"]}, headers=subscriber), "subscribe")


def _login(http: httpx.Client, username: str, password: str) -> dict[str, str]:
    tokens = _ok(http.post("/auth/token", json={"username": username, "password": password}), f"log in {username}")
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def _ok(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 400:
        raise ConfigError("demo", f"could not {what}: HTTP {response.status_code} {response.text[:300]}")
    return response
