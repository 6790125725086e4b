"""BotManager: runs bots in this process, one thread each, behind the BotControl protocol.

Each bot's thread owns its OMS; start/stop/kill/status may be called from any thread (the CLI's
signal handler, the API's request handlers): stop and kill are posted to the bot's command queue
and wait until the bot has acted on them. Tick files are loaded once per path and shared
read-only. All bots of one manager record into one session (live.recorder) when the
manager was given a sessions directory.

One bot, one runner, across processes too: a bot is started only under its lease in the store
(live.lease), taken before anything touches the bot's venue log or its rows, so a
second runtime on the same store gets BotLeased (a 409 at the API) instead of a second runner.

Following and managing (live.books): when a bot's thread ends, why (END_OF_FEED,
STOPPED, KILLED, STORE_ERROR, LEASE_LOST, ERROR) is written on its row, and status() adds it and
what the bot still holds, from the store, so a bot this process never ran (the API restarted)
still says. A kill halts durably: start refuses a halted bot (BotHalted) until resume(). Start
refuses a replayed bot whose feed is exhausted (FeedExhausted) instead of stopping at once. Kill
of a stopped bot flattens it through its venue (BotRunner.kill_only). reset() archives a stopped
paper bot's books under the bot's lease and moves its paper venue log aside.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

from sqlalchemy.exc import SQLAlchemyError

from brokers.factory import EnvCredentials, open_venue
from live import books
from live.bars import tail
from live.bot import HALTED, RUNNING, STOPPED, BotRunner, paper_bot, venue_log_path
from live.events import KillBot, ResumeBot, StopBot
from live.venue_runner import CHARGES_EVERY_S, venue_bot
from live.config import BotConfig, FeedConfig
from engine.errors import ConfigError
from engine.settings import TickbridgeSettings, load_settings
from live.control import (BotAlreadyRunning, BotHalted, BotNotRunning, FeedExhausted, NotHalted,
                                   UnknownBot)
from live.lease import DEFAULT_TTL_S, Leases
from live.feed import TickTable, resolve_tick_file
from live.recorder import SessionRecorder
from engine.store.db import database_url as resolve_url, make_engine, masked

log = logging.getLogger(__name__)

VenueOpener = Callable[[BotConfig], tuple[Any, Any, list[Callable[[], Any]]]]
DEFAULT_TIMEOUT_S = 120.0


RECORD_WAIT_S = 5.0  # how long status() waits for a finished bot's stop reason to be written


class BotManager:
    """In-process BotControl. `close()` stops every bot and writes the session recording."""

    def __init__(self, feed: FeedConfig, database_url: str | None = None, state_dir: str | Path = "var",
                 record: bool = True, venues: VenueOpener | None = None,
                 lease_ttl_s: float = DEFAULT_TTL_S, charges_every_s: float = CHARGES_EVERY_S) -> None:
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
        self._kill_reasons: dict[str, str] = {}
        self._store: Any = None  # an engine for the manager's own reads and writes, made when needed
        self.lease_ttl_s = lease_ttl_s
        self.charges_every_s = charges_every_s
        self._leases: Leases | None = None  # its engine is made at the first start

    @classmethod
    def from_env(cls, settings: TickbridgeSettings | None = None) -> "BotManager":
        """The manager a server process (the control API) runs, configured by the settings
        (engine.settings; default: loaded from the environment now, a bad value refused naming it):
        TICKBRIDGE_DATABASE_URL (default sqlite:///var/tickbridge.db), TICKBRIDGE_FEED_PATH (a tick
        file or a directory of <SYMBOL>_... files; default data/ticks/), TICKBRIDGE_FEED_SPEED
        (x real time, default 60: a bundled day of EURUSD in 24 minutes), TICKBRIDGE_STATE_DIR
        (venue logs and session recordings; default var), TICKBRIDGE_LEASE_TTL_S (seconds before
        another runtime may take over a bot whose runtime stopped renewing its lease; default 15)."""
        from live.config import parse_feed_config

        loaded = settings if settings is not None else load_settings()
        runtime = loaded.runtime
        feed = parse_feed_config({"path": runtime.feed_path, "speed": runtime.feed_speed})
        return cls(feed, loaded.store.database_url, runtime.state_dir, lease_ttl_s=runtime.lease_ttl_s,
                   charges_every_s=runtime.charges_every_s)

    @property
    def session_id(self) -> str | None:
        return None if self.recorder is None else self.recorder.session_id

    def _table(self, symbol: str, data: str | None = None) -> TickTable:
        path = resolve_tick_file(self.feed, symbol, data).resolve()
        with self._lock:
            if path not in self._tables:
                self._tables[path] = TickTable.load(path)
            return self._tables[path]

    # -- BotControl --------------------------------------------------------------------------------
    def start(self, config: BotConfig) -> None:
        """Start a bot, or resume it from the store. A halted bot is refused (BotHalted: resume()
        lifts a kill), so is a replayed bot that has processed its whole feed (FeedExhausted). The
        bot is built in the caller's thread, so a bad config, missing data or an unusable store
        raise there; it then trades on its own thread. Returns once it has reconciled and is
        running."""
        self._start(config)

    def _start(self, config: BotConfig, kill_only: str | None = None) -> Any:
        previous, thread = self._bots.get(config.id), self._threads.get(config.id)
        if kill_only is None and previous is not None and previous.halted and thread is not None and thread.is_alive():
            raise BotHalted(config.id)  # halted, still consuming its feed: resume() re-arms it
        with self._lock:
            if self._closed:
                raise RuntimeError("this BotManager is closed")
            thread = self._threads.get(config.id)
            if thread is not None and thread.is_alive():
                raise BotAlreadyRunning(config.id)
            # what needs no lease first (tick file, credentials), then the lease, then the runner,
            # which opens the venue log and writes the bot's rows
            table = self._table(config.symbol, config.data) if config.venue == "paper" else None
            try:
                stored = self._stored(config.id)
            except SQLAlchemyError:  # an unusable store: the runner says so, with the store's own words
                stored = None
            if kill_only is None and stored is not None and stored.status == HALTED:
                raise BotHalted(config.id)
            if kill_only is None and table is not None and stored is not None and stored.checkpoint >= len(table) - 1:
                raise FeedExhausted(config.id, len(table))
            venue = self.venues(config) if config.venue != "paper" else None
            lease = self.leases().acquire(config.id)
            try:
                if table is not None:
                    runner = paper_bot(config, table, 0.0 if kill_only else self.feed.speed, self.database_url,
                                       self.state_dir, self.recorder, lease=lease)
                else:
                    runner = venue_bot(config, self.database_url, *venue, lease=lease,  # type: ignore[misc]
                                       charges_every_s=self.charges_every_s)
                runner.kill_only = kill_only
            except BaseException:
                lease.release()
                raise
            if kill_only is not None:  # taken before the first live input: nothing trades first
                self._kill_reasons[config.id] = kill_only
                runner.post(KillBot(kill_only))
                if table is None:
                    runner.post(StopBot())
            if kill_only is None:  # it runs again: no stop reason until its next stop (cleared before
                try:                # its thread starts, so a feed that ends at once keeps END_OF_FEED)
                    books.clear_stop(self.store(), config.id)
                except SQLAlchemyError:
                    pass
            self._bots[config.id] = runner
            thread = threading.Thread(target=self._run, args=(runner,), name=f"bot-{config.id}", daemon=True)
            self._threads[config.id] = thread
            thread.start()
        if kill_only is not None:
            return runner
        while thread.is_alive() and runner.snapshot.state == STOPPED and runner.error is None:
            thread.join(0.01)  # until it reports RUNNING (or stops at once: empty feed, error)
        if runner.error is not None:
            raise runner.error
        self._kill_reasons.pop(config.id, None)
        return runner

    def store(self) -> Any:
        """The manager's own engine on the store (stop reasons, holdings, resets)."""
        with self._lock:
            if self._store is None:
                self._store = make_engine(self.database_url)
            return self._store

    def _stored(self, bot_id: str) -> Any:
        from sqlalchemy import select

        from engine.store.models import BotRow

        with self.store().connect() as connection:
            return connection.execute(select(BotRow).where(BotRow.id == bot_id)).first()

    def leases(self) -> Leases:
        """This runtime's leases in the store (one owner id for all its bots)."""
        with self._lock:
            if self._leases is None:
                self._leases = Leases(make_engine(self.database_url), self.lease_ttl_s)
            return self._leases

    def _open_venue(self, config: BotConfig) -> tuple[Any, Any, list[Callable[[], Any]]]:
        return open_venue(config.venue, config.account, [config.symbol], self.credential_sources(config),
                          bot_id=config.id)  # MT5: the bot's own magic number

    def _run(self, runner: BotRunner) -> None:
        try:
            runner.run()
        except BaseException:  # kept on the runner; reported by status() and wait()
            pass
        finally:
            self._record_stop(runner)

    def _record_stop(self, runner: Any) -> None:
        """Why the bot's thread ended, on its row (live.books)."""
        bot_id = runner.config.id
        reason, message = self._stop_reason(runner)
        runner.stop_reason, runner.stop_message = reason, message
        try:
            books.record_stop(self.store(), bot_id, reason, message)
        except Exception:  # noqa: BLE001 - the store may be what failed; the runtime's status still says
            pass

    def _stop_reason(self, runner: Any) -> tuple[str, str]:
        bot_id = runner.config.id
        if runner.error is not None:
            reason = books.reason_of(runner.error)
            return reason, (f"stopped by {'a store error' if reason == books.STORE_ERROR else 'an error'}: "
                            f"{runner.error}")
        try:
            with self.store().connect() as connection:
                held = books.holdings(connection, bot_id).describe()
        except Exception:  # noqa: BLE001
            held = "holdings unknown (the store could not be read)"
        if runner.halted:
            why = self._kill_reasons.get(bot_id, "")
            return books.KILLED, (f"killed ({why}): " if why else "killed: ") + \
                f"halted until resumed; it {held}"
        if getattr(runner, "feed_ended", False):
            return books.END_OF_FEED, f"replayed its whole feed ({len(runner.feed.table)} ticks); it {held}"
        return books.STOPPED, f"stopped on request; it {held}"

    def stop(self, bot_id: str) -> None:
        runner = self._runner(bot_id)
        thread = self._threads[bot_id]
        if thread.is_alive():
            runner.post(StopBot())
            thread.join(DEFAULT_TIMEOUT_S)

    def kill(self, bot_id: str, reason: str, config: BotConfig | None = None) -> None:
        """The kill switch. A running bot: cancel all, flatten, halt, on its own thread. A stopped
        one: restored and reconciled like a start, then flattened through its venue (journaled
        like any order) and halted, without trading in between. `config`: the bot's config, when
        this process has not run it (else the stored one is used)."""
        runner = self._bots.get(bot_id)
        thread = self._threads.get(bot_id)
        if runner is not None and thread is not None and thread.is_alive():
            self._kill_reasons[bot_id] = reason
            done = runner.post(KillBot(reason))
            while not done.wait(0.05):
                if not thread.is_alive():
                    break
            books.record_stop(self.store(), bot_id, books.KILLED, f"killed ({reason}): halted until resumed")
            return
        stored = self._stored(bot_id)
        if stored is None:
            raise UnknownBot(bot_id)
        with self.store().connect() as connection:
            held = books.holdings(connection, bot_id)
        if not held.positions and not held.open_orders:  # nothing to flatten: the halt is all
            self._kill_reasons[bot_id] = reason
            books.record_stop(self.store(), bot_id, books.KILLED, f"killed ({reason}): halted until resumed; "
                              "it held nothing", state=HALTED)
            return
        config = config or (runner.config if runner is not None else None) or self._stored_config(stored)
        if config is None:
            raise BotNotRunning(bot_id, stored.status)
        runner = self._start(config, kill_only=reason)
        self._threads[bot_id].join(DEFAULT_TIMEOUT_S)
        if runner.error is not None:
            raise runner.error

    def finish_kills(self) -> list[str]:
        """Finish the kills a crash or a venue cut short: every live-venue bot the store says is
        halted (HALTED) but that still holds a position or working orders there, and that no
        runtime runs, is killed again (`kill` of a stopped bot: restored, reconciled, flattened
        reduce-only through its venue, its protection canceled once flat). Returns their ids.

        Why: a kill halts at once, but its flatten may be refused (the venue unreachable: the stop
        then stays working, as it should, while the position is held) and its last step, canceling
        the protection, waits for the flatten's fill in memory. A runtime that stopped or crashed
        before either completed left a halted bot with a stop working at the venue: on a flat
        account it opens a position nobody asked for. The server runs this once at start-up
        (api.app's lifespan), in the background. Paper bots are skipped: their venue does not move
        while no runtime runs them. A bot whose kill fails again (the venue still down) is logged
        and left halted; a person can kill it again."""
        from sqlalchemy import select

        from engine.store.models import BotRow

        with self.store().connect() as connection:
            halted = [row.id for row in connection.execute(select(BotRow.id).where(BotRow.status == HALTED)
                                                           .order_by(BotRow.id))]
        finished = []
        for bot_id in halted:
            thread = self._threads.get(bot_id)
            if thread is not None and thread.is_alive():
                continue
            stored = self._stored(bot_id)
            config = None if stored is None else self._stored_config(stored)
            if config is None or config.venue == "paper":
                continue
            with self.store().connect() as connection:
                held = books.holdings(connection, bot_id)
            if not held.positions and not held.open_orders:
                continue
            try:
                self.kill(bot_id, "finishing a kill that did not complete", config)
            except Exception as error:  # noqa: BLE001 - one bot's venue must not keep the others' kills
                log.warning("bot %s: could not finish its kill (%s); it stays halted", bot_id,
                            books.scrub(str(error))[:200])
                continue
            finished.append(bot_id)
        return finished

    def resume(self, bot_id: str) -> None:
        """Lift a kill's halt. A halted bot still running trades again at once (any venue: its
        runner takes ResumeBot between two events); a stopped one may be started again."""
        runner = self._bots.get(bot_id)
        thread = self._threads.get(bot_id)
        if runner is not None and thread is not None and thread.is_alive() and runner.halted:
            done = runner.post(ResumeBot())
            while not done.wait(0.05) and thread.is_alive():
                pass
            books.clear_stop(self.store(), bot_id)
            return
        stored = self._stored(bot_id)
        if stored is None:
            raise UnknownBot(bot_id)
        if stored.status != HALTED:
            raise NotHalted(bot_id, stored.status)
        from sqlalchemy import update

        from engine.store.models import BotRow

        with self.store().begin() as connection:  # the stop reason (KILLED) stays: it says why it stopped
            connection.execute(update(BotRow.__table__).where(BotRow.id == bot_id, BotRow.status == HALTED)
                               .values(status=STOPPED))

    def reset(self, bot_id: str, actor: str = "cli") -> dict[str, Any]:
        """Archive a stopped paper bot's books (live.books.archive_books) under its
        lease, so no runtime runs it meanwhile, and move its paper venue log aside: it starts
        clean from the start of its feed. Returns what was archived, with a message."""
        from live.books import BotRunning, NotResettable

        thread = self._threads.get(bot_id)
        if thread is not None and thread.is_alive():
            raise BotRunning(bot_id)
        stored = self._stored(bot_id)
        if stored is None:
            raise UnknownBot(bot_id)
        venue = (stored.config or {}).get("venue", "paper")
        if venue != "paper":
            raise NotResettable(bot_id, f"it trades on {venue}, whose account holds its books: only a paper bot's "
                                        "books can be archived")
        lease = self.leases().acquire(bot_id)
        try:
            log = venue_log_path(self.state_dir, self.database_url, bot_id)
            report = books.archive_books(self.store(), bot_id, actor)
            if log.exists():  # kept beside the new one, named after the archive
                log.rename(log.with_name(f"{log.stem}.{report.archive_id.rsplit('~', 1)[-1]}.archived.log"))
        finally:
            lease.release()
        with self._lock:
            if bot_id in self._bots and not self._threads[bot_id].is_alive():
                del self._bots[bot_id], self._threads[bot_id]
        self._kill_reasons.pop(bot_id, None)
        return report.as_dict()

    def _stored_config(self, stored: Any) -> BotConfig | None:
        """The config the store keeps on the bot's row (the API writes it there), or None."""
        from live.config import parse_bot_config

        if not stored.config or not isinstance(stored.config.get("risk", {}), (dict, type(None))):
            return None
        try:
            return parse_bot_config({**stored.config, "id": stored.id})
        except ConfigError:
            return None

    def status(self, bot_id: str) -> dict[str, Any]:
        """The runner's status (if this process ran the bot) with why it stopped and what it still
        holds, from the store; for a bot this process never ran, the store's view alone."""
        with self._lock:
            runner = self._bots.get(bot_id)
        stored = None
        try:
            with self.store().connect() as connection:
                stored = books.stored_status(connection, bot_id)
        except Exception:  # noqa: BLE001 - the store failed (a STORE_ERROR stop): the runner still says
            pass
        if runner is None:
            if stored is None:
                raise UnknownBot(bot_id)
            return {**stored, "active": False}
        thread = self._threads[bot_id]
        if thread.is_alive() and runner.finishing and runner.stop_reason is None:
            # run() has returned and the thread is writing why the bot stopped (_record_stop): a
            # moment, so this answer has the reason rather than STOPPED with none
            thread.join(RECORD_WAIT_S)
        status = runner.status()
        alive = thread.is_alive()
        if stored is not None:
            status["holdings"] = stored["holdings"]
            if alive and status["position"]:  # the row is written at stops; the runner knows now
                status["holdings"]["positions"] = [{**p, "qty": books.quantity(status["position"])}
                                                   for p in stored["holdings"]["positions"]] or \
                    [{"symbol": runner.config.symbol, "qty": books.quantity(status["position"])}]
        if runner.error is not None:
            status["error"] = books.scrub(str(runner.error))
        if not alive and stored is not None and stored["halted"] and status["state"] != HALTED:
            # killed after this runner stopped (kill() of a bot holding nothing writes the store
            # alone): the store is the newer word
            status["state"] = HALTED
            status["stop_reason"], status["stop_message"] = stored["stop_reason"], stored["stop_message"]
        elif not alive and getattr(runner, "stop_reason", None) is not None:
            status["stop_reason"], status["stop_message"] = runner.stop_reason, books.scrub(runner.stop_message)
        elif stored is not None and status["state"] == HALTED:
            status["stop_reason"], status["stop_message"] = stored["stop_reason"], stored["stop_message"]
        elif runner.error is not None:
            status["stop_reason"] = books.reason_of(runner.error)
        else:
            status["stop_reason"] = status["stop_message"] = None
        status.setdefault("stop_message", None)
        status["halted"] = status["state"] == HALTED
        status["active"] = alive  # a runner of this runtime holds the bot (halted ones too)
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
        if self._store is not None:
            self._store.dispose()

    def __enter__(self) -> "BotManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def bars(self, bot_id: str, keep: int, since: int | None = None) -> dict[str, Any]:
        """The running bot's newest bars as columns (live.bars.tail): the dashboard's candles."""
        return tail(self._runner(bot_id).driver, keep, since)

    def _runner(self, bot_id: str) -> BotRunner:
        with self._lock:
            runner = self._bots.get(bot_id)
        if runner is None:
            raise UnknownBot(bot_id)
        return runner


__all__ = ["BotManager", "RUNNING", "STOPPED", "HALTED"]
