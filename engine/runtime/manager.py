"""BotManager: runs bots in this process, one thread each, behind the BotControl protocol.

Each bot's thread owns its OMS; start/stop/kill/status may be called from any thread (the CLI's
signal handler, the API's request handlers): stop and kill are posted to the bot's command queue
and wait until the bot has acted on them. Tick files are loaded once per path and shared
read-only. All bots of one manager record into one session (engine.runtime.recorder) when the
manager was given a sessions directory.

One bot, one runner, across processes too: a bot is started only under its lease in the store
(engine.runtime.lease), taken before anything touches the bot's venue log or its rows, so a
second runtime on the same store gets BotLeased (a 409 at the API) instead of a second runner.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

VenueOpener = Callable[["BotConfig"], tuple[Any, Any, list[Callable[[], Any]]]]

from brokers.factory import EnvCredentials, open_venue
from engine.runtime.bot import HALTED, RUNNING, STOPPED, BotRunner
from engine.runtime.live import LiveBotRunner
from engine.runtime.config import BotConfig, FeedConfig
from engine.errors import ConfigError
from engine.runtime.control import BotAlreadyRunning, BotNotRunning, UnknownBot
from engine.runtime.lease import DEFAULT_TTL_S, Leases
from engine.runtime.feed import TickTable, resolve_tick_file
from engine.runtime.recorder import SessionRecorder
from engine.store.db import database_url as resolve_url, make_engine, masked

DEFAULT_TIMEOUT_S = 120.0


class BotManager:
    """In-process BotControl. `close()` stops every bot and writes the session recording."""

    def __init__(self, feed: FeedConfig, database_url: str | None = None, state_dir: str | Path = "var",
                 record: bool = True, venues: VenueOpener | None = None,
                 lease_ttl_s: float = DEFAULT_TTL_S) -> None:
        """`venues` opens a live venue for a bot (adapter, feed, pollers); by default from
        brokers.factory with credentials from `credential_sources(config)` (the environment,
        unless the API installs its account store). `lease_ttl_s`: how long a bot's lease
        outlives this runtime's last heartbeat (renewed every third of it), i.e. how soon
        another runtime may take over a bot whose runtime died."""
        self.feed = feed
        self.venues = venues or self._open_venue
        self.credential_sources: Callable[[BotConfig], list[Any]] = lambda config: [EnvCredentials()]
        self.database_url = resolve_url(database_url)
        self.state_dir = Path(state_dir)
        self.recorder = SessionRecorder(self.state_dir / "sessions", meta={
            "feed": feed.model_dump(mode="json"), "database": masked(self.database_url)}) if record else None
        self._lock = threading.RLock()
        self._tables: dict[Path, TickTable] = {}
        self._bots: dict[str, BotRunner] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._started: dict[str, threading.Event] = {}
        self._closed = False
        self.lease_ttl_s = lease_ttl_s
        self._leases: Leases | None = None  # its engine is made at the first start

    @classmethod
    def from_env(cls) -> "BotManager":
        """The manager a server process (the control API) runs, configured by the environment:
        TICKBRIDGE_DATABASE_URL (default sqlite:///var/tickbridge.db), TICKBRIDGE_FEED_PATH (a tick
        file or a directory of <SYMBOL>_... files; default data/ticks/), TICKBRIDGE_FEED_SPEED
        (x real time, default 60: a bundled day of EURUSD in 24 minutes), TICKBRIDGE_STATE_DIR
        (venue logs and session recordings; default var), TICKBRIDGE_LEASE_TTL_S (seconds before
        another runtime may take over a bot whose runtime stopped renewing its lease; default 15)."""
        from engine.runtime.config import parse_feed_config

        feed = parse_feed_config({"path": os.environ.get("TICKBRIDGE_FEED_PATH", "data/ticks/"),
                                  "speed": os.environ.get("TICKBRIDGE_FEED_SPEED", "60")})
        ttl = os.environ.get("TICKBRIDGE_LEASE_TTL_S", str(DEFAULT_TTL_S))
        try:
            lease_ttl_s = float(ttl)
            if not lease_ttl_s > 0:
                raise ValueError
        except ValueError:
            raise ConfigError("TICKBRIDGE_LEASE_TTL_S", f"must be a positive number of seconds, not {ttl!r}") from None
        return cls(feed, os.environ.get("TICKBRIDGE_DATABASE_URL"), os.environ.get("TICKBRIDGE_STATE_DIR", "var"),
                   lease_ttl_s=lease_ttl_s)

    @property
    def session_id(self) -> str | None:
        return None if self.recorder is None else self.recorder.session_id

    def _table(self, symbol: str) -> TickTable:
        path = resolve_tick_file(self.feed, symbol).resolve()
        with self._lock:
            if path not in self._tables:
                self._tables[path] = TickTable.load(path)
            return self._tables[path]

    # -- BotControl --------------------------------------------------------------------------------
    def start(self, config: BotConfig) -> None:
        """Start a bot, or resume it from the store; a halted one is stopped and started afresh
        (the kill switch is undone only this way, by a person). The bot is built in the caller's
        thread, so a bad config, missing data or an unusable store raise there; it then trades on
        its own thread. Returns once it has reconciled and is running."""
        previous = self._bots.get(config.id)
        if previous is not None and previous.snapshot.state == HALTED:
            self.stop(config.id)  # starting a halted bot is a person's decision to trade again
        with self._lock:
            if self._closed:
                raise RuntimeError("this BotManager is closed")
            thread = self._threads.get(config.id)
            if thread is not None and thread.is_alive():
                raise BotAlreadyRunning(config.id)
            # what needs no lease first (tick file, credentials), then the lease, then the runner,
            # which opens the venue log and writes the bot's rows
            table = self._table(config.symbol) if config.venue == "paper" else None
            venue = self.venues(config) if config.venue != "paper" else None
            lease = self.leases().acquire(config.id)
            try:
                if table is not None:
                    runner: Any = BotRunner(config, table, self.feed.speed, self.database_url,
                                            self.state_dir, self.recorder, lease=lease)
                else:
                    runner = LiveBotRunner(config, self.database_url, *venue, lease=lease)  # type: ignore[misc]
            except BaseException:
                lease.release()
                raise
            self._bots[config.id] = runner
            thread = threading.Thread(target=self._run, args=(runner,), name=f"bot-{config.id}", daemon=True)
            self._threads[config.id] = thread
            thread.start()
        while thread.is_alive() and runner.snapshot.state == STOPPED and runner.error is None:
            thread.join(0.01)  # until it reports RUNNING (or stops at once: empty feed, error)
        if runner.error is not None:
            raise runner.error

    def leases(self) -> Leases:
        """This runtime's leases in the store (one owner id for all its bots)."""
        with self._lock:
            if self._leases is None:
                self._leases = Leases(make_engine(self.database_url), self.lease_ttl_s)
            return self._leases

    def _open_venue(self, config: BotConfig) -> tuple[Any, Any, list[Callable[[], Any]]]:
        return open_venue(config.venue, config.account, [config.symbol], self.credential_sources(config))

    @staticmethod
    def _run(runner: BotRunner) -> None:
        try:
            runner.run()
        except BaseException:  # kept on the runner; reported by status() and wait()
            pass

    def stop(self, bot_id: str) -> None:
        runner = self._runner(bot_id)
        thread = self._threads[bot_id]
        if thread.is_alive():
            runner.post("stop")
            thread.join(DEFAULT_TIMEOUT_S)

    def kill(self, bot_id: str, reason: str) -> None:
        runner = self._runner(bot_id)
        if not self._threads[bot_id].is_alive():
            raise BotNotRunning(bot_id, runner.snapshot.state)
        done = runner.post("kill", reason)
        while not done.wait(0.05):
            if not self._threads[bot_id].is_alive():
                break

    def status(self, bot_id: str) -> dict[str, Any]:
        runner = self._runner(bot_id)
        status = runner.status()
        if runner.error is not None:
            status["error"] = str(runner.error)
            # why it stopped, for a machine: "store_lost", "lease_lost", or "error" for anything else
            status["stop_reason"] = getattr(runner.error, "stop_reason", "error")
        return status

    def running(self) -> list[str]:
        with self._lock:
            return [b for b, r in self._bots.items() if self._threads[b].is_alive() and r.snapshot.state == RUNNING]

    # -- for the CLI ------------------------------------------------------------------------------
    def bots(self) -> list[str]:
        with self._lock:
            return list(self._bots)

    def summary(self, bot_id: str) -> dict[str, Any]:
        return dict(self._runner(bot_id).summary)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every bot's thread has ended (its feed ran out or it was stopped)."""
        for thread in list(self._threads.values()):
            thread.join(timeout)
        return not any(t.is_alive() for t in self._threads.values())

    def errors(self) -> dict[str, BaseException]:
        return {b: r.error for b, r in self._bots.items() if r.error is not None}

    def close(self) -> None:
        """Stop every bot cleanly and write the session's recording."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ids = list(self._bots)
        for bot_id in ids:
            self.stop(bot_id)
        if self.recorder is not None:
            self.recorder.close()
        if self._leases is not None:
            self._leases.engine.dispose()

    def __enter__(self) -> "BotManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _runner(self, bot_id: str) -> BotRunner:
        with self._lock:
            runner = self._bots.get(bot_id)
        if runner is None:
            raise UnknownBot(bot_id)
        return runner


__all__ = ["BotManager", "RUNNING", "STOPPED", "HALTED"]
