"""One live bot: a tick feed into a PaperSession (durable paper venue, OMS, SQL journal,
checkpoints, restart + reconcile), a StrategyDriver (bars, next(), signals), optional risk.

Threading: everything that touches the bot's OMS runs on the bot's own thread, inside `run()`.
Other threads only post commands (`post`) and read `status()`, which is built from plain values
the bot thread publishes after each tick. A command is taken between two ticks, so it never
lands in the middle of one.

Clock: the session's clock follows the feed (SimulatedClock, set to each tick's time). For a
replay that *is* the market's clock, and it keeps a replayed session deterministic, which parity
needs; with a broker's live feed the ticks carry wall-clock times and it becomes the live clock.
Wall time (LiveClock) is only used for the session's started/stopped stamps and pacing.

Restart: PaperSession.start() reloads orders and fills from the store and reconciles with the
venue's log; the ticks up to the checkpoint then rebuild the bars with order entry muted
(driver docstring), and trading resumes at the first tick after the checkpoint.

Following: at every bar close (live, not while rebuilding) the books marked at the bar's close go
to the journal as an equity point, written with its next commit (engine.store.journal).

Kill of a stopped bot (`kill_only`): the bot is restored and reconciled as for a start, the kill
switch is applied before its first live tick, and that tick fills the flattening order; a bot
whose feed is exhausted has no next tick, so its last quote is offered once more, as a new input
after the last (logged by the venue and checkpointed like any other): the position is closed at
the last price its feed had, as a backtest closes at the end of its data.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update

from engine.instrument import Instrument, infer_price_increment
from engine.money import FeeModel
from engine.risk import AccountRisk, RiskEngine
from live import actions
from engine.errors import ConfigError
from live.config import BotConfig
from live.driver import StrategyDriver, raw_price
from live.feed import ReplayFeed, TickTable
from live.lease import BotLease
from live.books import KILLED
from live.recorder import SessionRecorder
from live.session import PaperSession, SessionConfig
from engine.tick_guard import TickGuard
from engine.store.models import BotRow
from models.signals import SqlSignals
from strategies import get_strategy

FRACTIONAL_STEP = Decimal("0.000001")
RUNNING, STOPPED, HALTED = "RUNNING", "STOPPED", "HALTED"


def build_instrument(config: BotConfig, table: TickTable, params: Any) -> Instrument:
    """The grid a bot trades on: from its config, else inferred from the tick file's prices
    (the same rule a CSV backtest uses), lots of 1 (or 1e-6 for units=fractional)."""
    prices = np.concatenate([table.bid, table.ask, table.last])
    price_increment = config.price_increment or infer_price_increment(prices[np.isfinite(prices)])
    size_increment = config.size_increment or (Decimal(1) if params.units == "whole" else FRACTIONAL_STEP)
    return Instrument(config.symbol, price_increment=price_increment, size_increment=size_increment)


def instrument_meta(instrument: Instrument) -> dict[str, str]:
    return {"symbol": instrument.symbol, "price_increment": str(instrument.price_increment),
            "size_increment": str(instrument.size_increment), "min_qty": str(instrument.min_qty),
            "currency_increment": str(instrument.currency_increment)}


def venue_log_path(state_dir: Path, database_url: str, bot_id: str) -> Path:
    """The paper venue's input log belongs with the store it trades into: keyed by the URL."""
    key = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return Path(state_dir) / "paper" / key / f"{bot_id}.log"


def paper_venue_name(bot_id: str, resets: int = 0) -> str:
    """The store's venue name for a bot's own paper venue (the fills.venue column holds 32). A
    reset gives the bot a fresh venue, whose executions are numbered from 1 again: it gets a name
    of its own ("/r<n>"), so its fills are not taken for the archived ones."""
    tail = f"/r{resets}" if resets else ""
    name = f"PAPER:{bot_id}{tail}"
    if len(name) <= 32:
        return name
    return "PAPER:" + hashlib.sha256(bot_id.encode()).hexdigest()[:26 - len(tail)] + tail


def resets_of(engine: Any, bot_id: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(BotRow.resets).where(BotRow.id == bot_id)).scalar() or 0)


def stored_status(engine: Any, bot_id: str) -> str | None:
    """The bot's status as its last run left it in the store (HALTED after a kill)."""
    with engine.connect() as connection:
        return connection.execute(select(BotRow.status).where(BotRow.id == bot_id)).scalar()


def was_killed(engine: Any, bot_id: str) -> bool:
    """Halted, or last stopped by a kill (and resumed since): the kill switch flattened the bot on
    purpose, so a restart does not bring the position back to the strategy's last target."""
    with engine.connect() as connection:
        row = connection.execute(select(BotRow.status, BotRow.stop_reason).where(BotRow.id == bot_id)).first()
    return row is not None and (row.status == HALTED or row.stop_reason == KILLED)


def make_gate(config: BotConfig, clock: Any, instrument: Instrument, last_price: Any,
              reference_price: Any = None) -> RiskEngine | None:
    """The risk engine when the bot has risk limits (data in its config: the runtime reads no file
    on a config's say-so). Each bot gets its own AccountRisk: the account-wide limits across bots
    on separate threads need shared state we do not have yet."""
    if config.risk is None:
        return None
    risk = config.risk
    return RiskEngine(config.id, risk.for_bot(config.id), AccountRisk(risk.account), clock,
                      {instrument.symbol: instrument}, last_price=last_price, reference_price=reference_price)


def guarded_prices(guard: TickGuard, instrument: Instrument) -> tuple[Any, Any]:
    """The risk engine's last price and price-band reference, both read from the tick guard at
    check time: the last admitted mid and the median of the recent admitted mids, on the grid. A
    dropped tick moves neither, so a spike can neither value an order nor centre its band."""
    s = instrument.scales

    def price(value: float) -> Decimal | None:
        raw = raw_price(value, s.price_dp, s.price_step)
        return s.price(raw) if raw > 0 else None

    return (lambda _symbol: price(guard.last_mid)), (lambda _symbol: price(guard.reference()))


def record_bar_close(journal: Any, driver: StrategyDriver, instrument: Instrument, portfolio: Any) -> None:
    """The equity point of the bar the driver just closed: the books marked at its close price,
    stamped with its end, written with the journal's next commit."""
    bar = driver.last_bar
    if bar is None:
        return
    s = instrument.scales
    close_raw = raw_price(bar.close, s.price_dp, s.price_step)
    position = portfolio.positions[instrument.symbol]
    equity = portfolio.cash_raw + position.qty * close_raw * s.notional_k
    journal.record_equity(bar.end, s.cash(equity), portfolio.cash, s.cash(portfolio.realized_pnl_raw),
                          s.cash(position.unrealized_raw(close_raw)), position.quantity)


@dataclass
class Snapshot:
    """What status() reports; replaced as a whole by the bot thread (readers never see half)."""

    state: str = STOPPED
    bars: int = 0
    ticks: int = 0
    orders: int = 0
    equity: Decimal | None = None
    position: Decimal = Decimal(0)
    last_tick_ts: int | None = None
    ticks_dropped: dict[str, int] = field(default_factory=dict)  # the tick guard's drops per reason
    tick_level_shifts: int = 0                                   # new price levels it accepted


class BotRunner:
    def __init__(self, config: BotConfig, table: TickTable, speed: float, database_url: str, state_dir: Path,
                 recorder: SessionRecorder | None = None, lease: BotLease | None = None) -> None:
        """`lease`: this runtime's lease on the bot (live.lease), checked before each
        input and each journal commit, released when the bot's thread ends."""
        if config.venue != "paper":  # live venues run in live.venue_runner; never paper-trade one here
            raise ConfigError("venue", f"bot {config.id!r}: venue {config.venue!r} is not a paper venue")
        self.config = config
        self.params = config.strategy_params()
        self.instrument = build_instrument(config, table, self.params)
        self.feed = ReplayFeed(table, config.symbol, speed)
        self.database_url = database_url
        self.recorder = recorder
        self.commands: deque[tuple[str, str, threading.Event]] = deque()
        self.snapshot = Snapshot()
        self.summary: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.halted = False
        self.kill_only: str | None = None  # set before run(): kill a stopped bot (reason), then stop
        self.feed_ended = False            # the feed ran out (not a stop): the stop reason END_OF_FEED
        self.stop_reason: str | None = None  # set by the manager when the thread ends (live.books)
        self.stop_message = ""
        self._stop = False
        self._live_ticks = 0
        strategy = get_strategy(config.strategy)(self.params)
        self.session = PaperSession(
            SessionConfig(config.id, database_url, str(venue_log_path(state_dir, database_url, config.id)),
                          cash=config.cash, fees=FeeModel(config.commission), tick_guard=config.tick_guard),
            self.instrument, strategy)
        # fills are unique per (venue, execution id) in the store, and every paper venue numbers
        # its executions from 1: each bot's venue needs its own name or one bot's fills are
        # dropped as duplicates of another's
        self.session.journal.venue = paper_venue_name(config.id, resets_of(self.session.journal.engine, config.id))
        # read before the manager clears the last stop's reason (a start clears it)
        self.was_killed = was_killed(self.session.journal.engine, config.id)
        self.lease = lease
        if lease is not None:  # no commit, hence no order, once another runtime took the bot over
            self.session.journal.guards.append(lease.check)
        try:  # a bad risk file or a model that will not load: release the venue log and the store
            self.gate = make_gate(config, self.session.clock, self.instrument,
                                  *guarded_prices(self.session.guard, self.instrument))
            if self.gate is not None:
                self.gate.bind(self.session.oms)
                self.session.oms.risk = self.gate
            self.signals = SqlSignals(self.session.journal.engine)
            self.driver = StrategyDriver(strategy, self.session.oms, config.symbol, config.bar, self.signals,
                                         self.gate)
        except BaseException:
            self._close()
            raise
        strategy.on_tick = self._on_tick  # type: ignore[method-assign]  # PaperSession calls it per tick

    # -- commands (any thread) ------------------------------------------------------------------------
    def post(self, command: str, reason: str = "") -> threading.Event:
        done = threading.Event()
        self.commands.append((command, reason, done))
        self.feed.wake.set()
        return done

    # -- the bot thread -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Start (reconcile), trade until the feed ends or a stop, then stop cleanly."""
        session = self.session
        try:
            report = session.start()
            self.driver.restore_direction(self.signals.load(self.config.id),
                                          close_gap=not self.was_killed)
            self.feed.live_from = session.checkpoint + 1
            self._set_status(RUNNING)
            if self.recorder is not None:
                self.recorder.bot(self.config.id, {
                    "config": self.config.model_dump(mode="json"), "instrument": instrument_meta(self.instrument),
                    "source": self.feed.table.source, "first_live_seq": session.checkpoint + 1})
            self._event(actions.START)
            self.summary["reconciliation"] = {"fills_replayed": report.fills_replayed,
                                              "orders_resolved": report.orders_resolved,
                                              "lost_before_submit": len(report.orders_lost_before_submit),
                                              "adopted": len(report.orders_adopted)}
            self._publish(RUNNING)  # start() returns once it sees this
            session.run(self._inputs())
            self._finish()
        except BaseException as exc:
            self.error = exc
            self._publish(STOPPED)
            self._drain_commands()
            raise
        finally:
            self._close()
        return self.summary

    def _inputs(self):  # type: ignore[no-untyped-def]
        """The ticks PaperSession processes. Warm-up ticks are consumed here; commands are taken
        here, between ticks, on the bot's thread."""
        session, driver, recorder = self.session, self.driver, self.recorder
        checkpoint = session.checkpoint
        driver.muted = True
        last_seq, last_quote = -1, None  # the last tick the guard admitted: a quote the venue may use
        for seq, tick in self.feed:
            last_seq = seq
            if seq > checkpoint:
                if driver.muted:
                    driver.muted = False
                self._publish(HALTED if self.halted else RUNNING)
                if self.commands:
                    self._take_commands()
                    if self._stop:
                        return
            if recorder is not None:  # only what is processed: a replay must stop where the bot did
                recorder.add(seq, tick)
            if seq <= checkpoint:
                session.clock.ts = max(session.clock.ts, tick.ts)
                if session.guard.admit(tick):
                    last_quote = tick
                    if self.kill_only is None:  # a kill needs no bars
                        driver.on_tick(tick)
                continue
            self._live_ticks += 1
            if self.lease is not None:
                self.lease.check()  # before the venue log sees this tick: it may be another runtime's now
            yield seq, tick
            if self.kill_only is not None and not session.oms.open_orders:  # flattened: done (a tick
                self._stop = True                                        # the guard dropped fills nothing)
                return
        self._publish(HALTED if self.halted else RUNNING)
        if self.commands:
            self._take_commands()
        if self.kill_only is not None and last_quote is not None and self.session.oms.open_orders:
            # the feed is exhausted: the flattening order gets the last quote once more, as a new
            # input a nanosecond later (the tick guard drops an exact repeat)
            seq, tick = max(last_seq, checkpoint) + 1, replace(last_quote, ts=last_quote.ts + 1)
            if recorder is not None:
                recorder.add(seq, tick)
            if self.lease is not None:
                self.lease.check()
            yield seq, tick
            self._stop = True
            return
        self.feed_ended = not self._stop

    def _take_commands(self) -> None:
        self.feed.wake.clear()
        while self.commands:
            command, reason, done = self.commands.popleft()
            try:
                if command == "stop":
                    self._stop = True
                elif command == "kill" and not self.halted:
                    actions.kill(self.session.oms, self.driver, self.gate, reason)
                    self.halted = True
                    self._event(actions.KILL, reason)
                    self._set_status(HALTED)
                    self._publish(HALTED)
                elif command == "resume" and self.halted:  # a person lifts the kill: trade again
                    actions.apply(actions.START, self.session.oms, self.driver, self.gate)
                    self.halted = False
                    self._event(actions.START, "resume")
                    self._set_status(RUNNING)
                    self._publish(RUNNING)
            finally:
                done.set()

    def _on_tick(self, tick: Any) -> None:
        """Each live tick after the venue matched it: bars and next(), then, if a bar closed, its
        equity point."""
        bars = self.driver.bars
        self.driver.on_tick(tick)
        if self.driver.bars != bars:
            self._record_bar_close()

    def _record_bar_close(self) -> None:
        record_bar_close(self.session.journal, self.driver, self.instrument, self.session.oms.portfolio)

    def _event(self, action: str, reason: str = "") -> None:
        if self.recorder is not None:
            self.recorder.event(self.config.id, self.session.checkpoint, action, reason)

    def _finish(self) -> None:
        """A clean stop: open orders cancelled or kept per on_stop (a halted bot's remaining
        orders are its flattening ones: kept), everything flushed, a summary."""
        oms = self.session.oms
        cancelled = 0
        if self.config.on_stop == "cancel" and not self.halted and oms.open_orders:
            cancelled = actions.cancel_open_orders(oms)
            self._event(actions.CANCEL)
        self.session.journal.record_position(oms.portfolio, self.instrument.symbol, self.session.clock.now_ns())
        self.session.journal.flush()
        state = HALTED if self.halted else STOPPED
        self._set_status(state)
        self._publish(state)
        if self.recorder is not None:
            self.recorder.bot(self.config.id, {"last_seq": self.session.checkpoint,
                                               "ticks_dropped": self.session.guard.counts(),
                                               "tick_level_shifts": self.session.guard.level_shifts})
        self.summary.update(self.status())
        self.summary.update({"cancelled_on_stop": cancelled, "open_orders": len(oms.open_orders),
                             "fills": len(oms.fills), "signals": self.driver.signals_published,
                             "checkpoint": self.session.checkpoint,
                             "gap_orders": self.driver.gap_orders})  # sent after a restart to reach the target
        self._drain_commands()

    def _drain_commands(self) -> None:
        while self.commands:
            self.commands.popleft()[2].set()

    def _close(self) -> None:
        try:
            self.session.venue.close()
        except OSError:
            pass
        self.session.journal.engine.dispose()
        if self.lease is not None:
            self.lease.release()

    def _set_status(self, state: str) -> None:
        """The state, and the config that runs: what a later kill of the stopped bot rebuilds it from."""
        with self.session.journal.engine.begin() as connection:
            connection.execute(update(BotRow.__table__).where(BotRow.id == self.config.id)
                               .values(status=state, strategy=self.config.strategy,
                                       config=self.config.model_dump(mode="json")))

    def _publish(self, state: str) -> None:
        oms = self.session.oms
        position = oms.portfolio.positions[self.instrument.symbol]
        s = self.instrument.scales
        guard = self.session.guard
        mid_raw = raw_price(guard.last_mid, s.price_dp, s.price_step)  # marked at guarded prices only
        equity = None
        if mid_raw:
            equity = s.cash(oms.portfolio.cash_raw + position.qty * mid_raw * s.notional_k)
        self.snapshot = Snapshot(state, self.driver.bars, self._live_ticks, len(oms.orders), equity,
                                 position.quantity, self.session.clock.ts or None, guard.counts(), guard.level_shifts)

    # -- any thread -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        snap = self.snapshot
        return {"bot_id": self.config.id, "state": snap.state, "bars": snap.bars, "ticks": snap.ticks,
                "orders": snap.orders, "equity": snap.equity, "position": snap.position,
                "last_tick_ts": snap.last_tick_ts, "ticks_dropped": dict(snap.ticks_dropped),
                "tick_level_shifts": snap.tick_level_shifts}
