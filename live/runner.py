"""BotRunner: the one loop every bot runs in, paper or live or replayed.

Built from (feed, adapter, clock, journal, strategy) by live/bot.py (a paper bot: PaperAdapter
over the durable paper venue, a replay of a tick file, a clock that follows the feed),
live/venue_runner.py (ccxt, Alpaca, MT5: the venue's adapter and feed, the wall clock) and
live/parity.py (a recorded session again, on an in-memory paper venue). What differs between
them is only what they are built from.

Events. Everything reaches the bot as a typed event (live/events.py) on one queue, taken by
the bot's own thread, which alone touches the OMS: ticks (pushed by a live feed's thread, or
pulled from a replay feed when the queue is empty, so a replay is paced by the bot and never
buffered), the adapter's reports (queued from other threads; handled at once when the adapter
reports on the bot's thread, see QueuedSink), and commands (StopBot, KillBot, ResumeBot), which
therefore land between two ticks, never inside one. Venues without a push stream are polled
between events (`pollers`).

Per tick: the tick guard (a malformed, repeated or outlying tick is counted and dropped: neither
the venue, the marks nor the strategy see it); the first tick of a UTC day books the previous
day's P&L; the adapter sees the quote (the paper venue matches working orders on it; a crypto
adapter sizes equity-fraction orders at it); the driver closes a bar and calls next(); a closed
bar's equity point goes to the journal; a replayed tick's sequence becomes the bot's checkpoint,
committed with everything it caused.

Start (run): the bot's orders and fills come back from the store, `reconcile_with_adapter`
brings them to what the venue says (the one reconciler, for every venue), the reports queued
meanwhile are applied (the OMS ignores what reconciliation already booked), then:
- a replayed feed re-reads its ticks up to the checkpoint to rebuild the bars with order entry
  muted (live/driver.py), and trades from the first tick after it;
- a live feed's bot warms up from the venue's history (MarketDataFeed.history) and subscribes.

Kill of a stopped bot (`kill_only`): reconciled as for a start, the kill switch applied before
the first live tick, which fills the flattening order; a replayed feed that is exhausted has no
next tick, so its last quote is offered once more, as a new input a nanosecond later (logged by
the venue and checkpointed like any other), as a backtest closes at the end of its data.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from engine.clock import SimulatedClock
from engine.errors import StoreUnavailable
from engine.instrument import Instrument
from engine.market import Tick
from engine.money import raw_price
from engine.oms import OrderManager
from engine.reconcile import ReconciliationReport, reconcile_with_adapter
from engine.account_risk import SharedAccountRisk
from engine.risk import RiskEngine, StateChange, TradingState
from engine.signals import Signal
from engine.store.journal import SqlJournal
from engine.store.models import BotRow
from engine.store.signals import SqlSignals
from engine.tick_guard import TickGuard
from engine import controls as actions
from live.config import BotConfig
from live.driver import StrategyDriver
from live.events import (BotEvent, Command, KillBot, OrderAccepted, OrderCanceled, OrderFilled, OrderRejected,
                         OrderSubmitted, OrderTrailed, QueuedSink, ResumeBot, StopBot, TickReceived)

log = logging.getLogger(__name__)

RUNNING, STOPPED, HALTED = "RUNNING", "STOPPED", "HALTED"
POLL_S = 0.2          # the longest the bot waits for an event before polling the venue again
DAY_NS = 86_400_000_000_000
CHECKPOINT_EVERY = 500  # replayed inputs between checkpoint-only commits when nothing else happens


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
    risk: dict[str, Any] | None = None  # risk_state(): built on the bot thread, never changed after


def _use(name: str, used: Decimal | int | None, limit: Decimal | int | None) -> dict[str, Any]:
    return {"name": name, "used": used, "limit": limit}


def risk_state(gate: RiskEngine | None, oms: OrderManager, symbol: str, halted: bool) -> dict[str, Any]:
    """The bot's risk state as plain values, for status() (issue 19: a trader sees it).

    Why a copy: the risk engine and the OMS belong to the bot's thread (their dicts change while it
    trades; reading them from an API thread could see a half-made change or fail mid-iteration), so
    the bot thread builds this from them whenever it publishes its Snapshot, out of immutable
    values (str, int, Decimal, None) in fresh containers that nobody changes afterwards.
    `limits` lists what the gate measures against a limit: each limit's current use (daily loss
    and drawdown from the gate's own equity monitor, exposure at its worst case) and the limit
    itself, None when the config sets none. `denials` counts the orders refused in this run."""
    denied = oms.denied
    last = denied[-1] if denied else None
    out: dict[str, Any] = {
        "state": "HALTED" if halted else "ACTIVE", "reason": None, "since": None,
        "account_state": None, "account_reason": None, "limits": [],
        "denials": len(denied),
        "last_denial": None if last is None else {"reason": last.reason,
                                                  "ts": last.events[-1].ts if last.events else last.ts_init,
                                                  "client_order_id": last.client_order_id},
    }
    if gate is None:  # no limits configured: only the kill's halt and the OMS's own refusals apply
        return out
    change = gate.state_changes[-1] if gate.state_changes else None
    account = gate.account
    account_change = account.state_changes[-1] if account.state_changes else None
    out.update(state=str(gate.state), reason=change.reason if change else None, since=change.ts if change else None,
               account_state=str(account.state), account_reason=account_change.reason if account_change else None)
    limits, monitor = gate.limits, gate.monitor
    equity = monitor.equity
    loss = None if equity is None else max(monitor.day_start - equity, Decimal(0))
    drawdown = None
    if equity is not None and monitor.high_water > 0:
        drawdown = ((monitor.high_water - equity) * 100 / monitor.high_water).quantize(Decimal("0.01"))
    position = oms.portfolio.positions[symbol].quantity if symbol in oms.portfolio.positions else Decimal(0)
    out["limits"] = [
        _use("daily_loss", loss, limits.daily_loss_limit),
        _use("drawdown_pct", drawdown, limits.max_drawdown_pct),
        _use("gross_exposure", gate.gross_exposure(), limits.max_gross_exposure),
        _use("position_qty", abs(position), limits.max_position_qty),
        _use("open_orders", len(oms.open_orders), limits.max_open_orders),
    ]
    return out


@dataclass
class Restored:
    """What a restart brings back besides the OMS's orders and fills."""

    checkpoint: int = -1                                 # the last replayed input fully processed
    signals: list[Signal] = field(default_factory=list)  # the bot's published signals, oldest first
    close_gap: bool = True                               # False after a kill: stay flat


@dataclass
class BotParts:
    """What a runner is built from (the factories in live/bot.py, live/venue_runner.py and
    live/parity.py assemble them; the runner owns and closes them)."""

    config: BotConfig
    feed: Any                      # a replay (iterable of (seq, Tick), with `wake`) or a MarketDataFeed
    adapter: Any                   # a BrokerAdapter, already connected to `sink`
    sink: QueuedSink
    inbox: "queue.Queue[BotEvent]"
    clock: Any                     # SimulatedClock (follows the feed) or LiveClock
    journal: Any                   # SqlJournal, or None for a replay that writes nothing
    oms: OrderManager              # constructed unconnected (connect=False)
    instrument: Instrument
    driver: StrategyDriver
    guard: TickGuard
    gate: RiskEngine | None = None
    checkpoint: int = -1           # the last replayed input the store has fully processed
    recorder: Any = None           # live.recorder.SessionRecorder: what the session consumed
    lease: Any = None              # live.lease.BotLease: checked before each input and each commit
    pollers: list[Callable[[], Any]] = field(default_factory=list)
    closers: list[Callable[[], Any]] = field(default_factory=list)
    restore: Callable[[], "Restored"] | None = None  # the books from the store; None: start empty
    after_reconcile: Callable[[ReconciliationReport], Any] | None = None
    scheduled: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # replay: actions after seq


class BotRunner:
    """One bot: see the module docstring. `post` and `status` may be called from any thread."""

    def __init__(self, parts: BotParts) -> None:
        self.parts = parts
        self.config = parts.config
        self.feed = parts.feed
        self.adapter = parts.adapter
        self.clock = parts.clock
        self.journal = parts.journal
        self.oms = parts.oms
        self.instrument = parts.instrument
        self.driver = parts.driver
        self.guard = parts.guard
        self.gate = parts.gate
        self.recorder = parts.recorder
        self.lease = parts.lease
        self.inbox = parts.inbox
        self.checkpoint = parts.checkpoint
        self.snapshot = Snapshot()
        self.summary: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.halted = False
        self.kill_only: str | None = None  # set before run(): kill a stopped bot (reason), then stop
        self.feed_ended = False            # a replayed feed ran out (not a stop): END_OF_FEED
        self.finishing = False             # set as the bot starts to stop: its stop reason comes next
        self.stop_reason: str | None = None  # set by the manager when the thread ends (live.books)
        self.stop_message = ""
        self.report: ReconciliationReport | None = None
        self.on_started: Callable[[BotRunner], Any] | None = None  # after reconciling, before the first input
        self._stop = False
        self._depth = 0  # events being handled on this thread (a report inside a tick: 2)
        self._ticks = 0
        self._last_tick_ts: int | None = None
        self._replay = hasattr(parts.feed, "wake")  # a pull feed of (seq, tick)
        self._paced = bool(getattr(parts.feed, "speed", 0))
        self._simulated = isinstance(parts.clock, SimulatedClock)
        self._quote = getattr(parts.adapter, "on_quote", None)
        self._after_input = getattr(parts.journal, "after_input", None)  # SqlJournal: the WAL's upkeep
        self._day = -1
        self._day_start = (0, 0)  # realized and fees (raw cash) at the day's first tick
        sink = parts.driver.sink
        if isinstance(sink, SqlSignals) and parts.journal is not None and sink.engine is parts.journal.engine:
            sink.defer_to(parts.journal)  # a signal commits with the journal: one commit before the venue, not two
        account = parts.gate.account if parts.gate is not None else None
        self._account = account if isinstance(account, SharedAccountRisk) else None
        if self._account is not None:  # the account halted elsewhere (the API, another process): flatten here
            self._account.listeners.append(self._on_account_state)
            if isinstance(parts.journal, SqlJournal):  # an order's account check commits with its write-ahead
                self._account.commit_with(parts.gate, parts.journal)

    # -- any thread ---------------------------------------------------------------------------------
    def post(self, command: Command) -> threading.Event:
        """Queue a command for the bot's thread; its `done` is set once it has been taken."""
        self.inbox.put(command)
        wake = getattr(self.feed, "wake", None)
        if wake is not None:
            wake.set()
        return command.done

    def status(self) -> dict[str, Any]:
        snap = self.snapshot
        return {"bot_id": self.config.id, "state": snap.state, "bars": snap.bars, "ticks": snap.ticks,
                "orders": snap.orders, "equity": snap.equity, "position": snap.position,
                "last_tick_ts": snap.last_tick_ts, "ticks_dropped": dict(snap.ticks_dropped),
                "tick_level_shifts": snap.tick_level_shifts, "venue": self.config.venue,
                "risk": _copied(snap.risk)}

    # -- the bot thread -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Start (restore, reconcile), trade until the feed ends or a stop, then stop cleanly."""
        try:
            self._start()
            self._loop()
            self._finish()
        except BaseException as exc:
            self.error = exc
            self.finishing = True
            self._publish(STOPPED)
            raise
        finally:
            self._drain_commands()
            self._close()
        return self.summary

    def _start(self) -> None:
        parts = self.parts
        restored = parts.restore() if parts.restore is not None else Restored()
        self.checkpoint = max(self.checkpoint, restored.checkpoint)
        report = self.report = reconcile_with_adapter(self.oms, self.adapter, self.clock.now_ns())
        if parts.after_reconcile is not None:
            parts.after_reconcile(report)
        if not restored.close_gap:  # a kill stopped it: finish the kill's last step a crash may have cut
            actions.drop_protection_of_flat(self.oms)  # short (no stop left working on a flat position)
        self.oms.rearm()  # emulated orders (engine/emulation.py) work again before the first new tick
        self._flush()
        self._apply_queued_reports()
        parts.sink.direct = (threading.get_ident(), self._handle)
        self.driver.restore_direction(restored.signals, close_gap=restored.close_gap)
        self.summary["reconciliation"] = {
            "fills_replayed": report.fills_replayed, "orders_resolved": report.orders_resolved,
            "lost_before_submit": len(report.orders_lost_before_submit),
            "adopted": len(report.orders_adopted),  # only orders the venue made for the bot (an SL hit)
            "external_orders": len(report.external_orders), "external_fills": len(report.external_fills),
            "external_positions": {k: str(v) for k, v in report.external_positions.items()},
            "charges_booked": len(report.charges_booked), "external_charges": list(report.external_charges)}
        if not self._replay:
            self.summary["warm_bars"] = self.driver.warm_up(self.feed, self.config.venue, self.clock.now_ns())
            self.feed.subscribe([self.config.symbol], lambda tick: self.inbox.put(TickReceived(tick)))
        self._set_status(RUNNING)
        if self.recorder is not None:
            table = getattr(self.feed, "table", None)
            self.recorder.bot(self.config.id, {
                "config": self.config.model_dump(mode="json"), "instrument": instrument_meta(self.instrument),
                "source": table.source if table is not None else self.config.venue,
                "first_live_seq": self.checkpoint + 1})
            self.recorder.event(self.config.id, self.checkpoint, actions.START)
        for action, reason in self.parts.scheduled.get(-1, []):
            actions.apply(action, self.oms, self.driver, self.gate, reason)
        self._publish(RUNNING)  # the manager's start() returns once it sees this
        if self.on_started is not None:
            self.on_started(self)

    def _loop(self) -> None:
        source = self._ticks_from_feed() if self._replay else None
        pending: TickReceived | None = None
        if source is not None:  # the bars of the inputs an earlier run processed, before any command
            pending = self._rebuild(source)
        while not self._stop:
            if self.lease is not None:
                self.lease.check()
            for poll in self.parts.pollers:
                poll()
            try:
                event: BotEvent | None = self.inbox.get_nowait()
            except queue.Empty:
                if source is None:
                    try:
                        event = self.inbox.get(timeout=POLL_S)
                    except queue.Empty:
                        continue
                else:
                    event, pending = (pending, None) if pending is not None else (next(source, None), None)
                    if event is None:  # the replay is over
                        self._end_of_replay()
                        return
                    if not self.inbox.empty():  # a command woke the paced feed: it goes before the tick
                        pending = event
                        continue
            self._handle(event)

    def _rebuild(self, source: Iterator[TickReceived]) -> TickReceived | None:
        """Feed the ticks up to the checkpoint to the driver, muted (they were traded on by an
        earlier run); returns the first tick after it, if any. Commands wait until this is done,
        so a kill acts at the clock of the last processed input, not at time zero."""
        self.driver.muted = self.checkpoint >= 0
        for event in source:
            if event.seq is None or event.seq > self.checkpoint:
                return event
            self._on_tick(event)
        return None

    def _ticks_from_feed(self) -> Iterator[TickReceived]:
        for seq, tick in self.feed:
            yield TickReceived(tick, seq)

    def _handle(self, event: BotEvent) -> None:
        """One event. A report the adapter makes on this thread while an event is handled (an
        in-process venue's fill, a REST answer) is handled inside it: the outer event alone
        commits and publishes, so status() never shows a tick half processed."""
        self._depth += 1
        try:
            self._dispatch(event)
        finally:
            self._depth -= 1
        if self._depth == 0 and not self._replay:  # a live bot commits after each event; a replay
            self._flush()                          # with its checkpoint
            self._publish(HALTED if self.halted else RUNNING)
            if self._after_input is not None:
                self._after_input()

    def _dispatch(self, event: BotEvent) -> None:
        oms = self.oms
        match event:
            case TickReceived():
                self._on_tick(event)
            case OrderFilled(order, fill, bar):
                oms.on_fill(order, fill, bar)
            case OrderAccepted(order, ts):
                oms.on_accepted(order, ts)
            case OrderSubmitted(order, ts):
                oms.on_submitted(order, ts)
            case OrderCanceled(order, ts, reason):
                oms.on_canceled(order, ts, reason)
            case OrderRejected(order, ts, reason):
                oms.on_rejected(order, ts, reason)
            case OrderTrailed(order, stop_price, ts):
                oms.on_trailed(order, stop_price, ts)
            case StopBot() | KillBot() | ResumeBot():
                self._command(event)
                self._flush()

    def _command(self, command: Command) -> None:
        try:
            match command:
                case StopBot():
                    self._stop = True
                case KillBot(reason) if not self.halted:
                    actions.kill(self.oms, self.driver, self.gate, reason)
                    self.halted = True
                    self._event(actions.KILL, reason)
                    self._set_status(HALTED)
                    self._publish(HALTED)
                case ResumeBot() if self.halted:  # a person lifts the kill: trade again
                    actions.apply(actions.START, self.oms, self.driver, self.gate)
                    self.halted = False
                    self._event(actions.START, "resume")
                    self._set_status(RUNNING)
                    self._publish(RUNNING)
        finally:
            command.done.set()

    # -- ticks ----------------------------------------------------------------------------------------
    def _on_tick(self, event: TickReceived) -> None:
        tick, seq = event.tick, event.seq
        if self._simulated:
            self.clock.ts = max(self.clock.ts, tick.ts)
        if seq is not None and seq <= self.checkpoint:  # processed by an earlier run: rebuild the bars only
            if self.recorder is not None:
                self.recorder.add(seq, tick)
            if self.guard.admit(tick):
                self._last_quote = tick
                if self.kill_only is None:  # a kill needs no bars
                    self.driver.on_tick(tick)
            return
        self._ticks += 1  # every input after the checkpoint, dropped ones included (ticks_dropped says which)
        if self.driver.muted:
            self.driver.muted = False
            self._publish(HALTED if self.halted else RUNNING)
        if self.recorder is not None:  # before the venue sees it: a replay must stop where the bot did
            self.recorder.add(seq if seq is not None else self._ticks, tick)
        if self.lease is not None:
            self.lease.check()  # before the venue log sees this tick: it may be another runtime's now
        try:
            self._process(tick, seq)
        except SQLAlchemyError as exc:  # the store went away: stop, never trade unjournaled
            raise StoreUnavailable(f"cannot write to the store, trading stopped at input {seq}: "
                                   f"{str(getattr(exc, 'orig', exc)).splitlines()[0]}") from None
        if self.kill_only is not None and not self.oms.open_orders:  # flattened: done
            self._stop = True

    def _process(self, tick: Tick, seq: int | None) -> None:
        if self.guard.admit(tick):  # the marks (guard.last_mid, guard.reference()) move only here
            self._last_quote = tick
            self._last_tick_ts = tick.ts
            self._roll_day(tick)
            self.oms.on_quote(tick)  # emulated stops trigger at this tick, before the venue matches it
            if self._quote is not None:
                self._quote(tick, seq)
            bars = self.driver.bars
            self.driver.on_tick(tick)
            if self.driver.bars != bars:  # a bar closed: its equity point, with the next commit
                self._record_bar_close()
        if seq is not None:
            self.checkpoint = seq
            for action, reason in self.parts.scheduled.get(seq, []):
                actions.apply(action, self.oms, self.driver, self.gate, reason)
            journal = self.journal
            if journal is not None:
                journal.set_checkpoint(seq)
                if journal.pending or seq % CHECKPOINT_EVERY == 0:
                    journal.flush()
                if self._after_input is not None:
                    self._after_input()  # the WAL's checkpoint, after the input's commit, not in a write-ahead
            if self._ticks % 64 == 0 or self._paced:  # flat out: every 64th; paced: each tick
                self._publish(HALTED if self.halted else RUNNING)
                if self._account is not None:
                    self._account.publish(self.gate)

    def _end_of_replay(self) -> None:
        """The replayed feed is exhausted: a kill of a stopped bot gets its last quote once more
        (module docstring); otherwise the feed ended."""
        quote = getattr(self, "_last_quote", None)
        if self.kill_only is not None and quote is not None and self.oms.open_orders:
            seq = self.checkpoint + 1
            self._on_tick(TickReceived(replace(quote, ts=quote.ts + 1), seq))
            self._stop = True
            return
        self.feed_ended = not self._stop

    def _roll_day(self, tick: Tick) -> None:
        """At the first tick of a UTC day, book the previous day's P&L and an account snapshot."""
        day = tick.ts // DAY_NS
        if day == self._day or self.journal is None:
            self._day = day
            return
        s = self.instrument.scales
        symbol = self.instrument.symbol
        portfolio, position = self.oms.portfolio, self.oms.portfolio.positions[symbol]
        mid = raw_price((tick.bid + tick.ask) / 2 if tick.bid == tick.bid else tick.last, s.price_dp, s.price_step)
        marks = {symbol: mid}
        equity = portfolio.equity_raw(marks)
        realized, fees = portfolio.realized_pnl_raw, portfolio.fees_raw
        if self._day >= 0:
            start_realized, start_fees = self._day_start
            self.journal.record_day(
                self.config.account, datetime.fromtimestamp(self._day * 86_400, tz=timezone.utc).date(),
                {"ts": tick.ts, "cash": portfolio.cash, "equity": s.cash(equity), "realized_pnl": s.cash(realized),
                 "unrealized_pnl": s.cash(portfolio.unrealized_pnl_raw(marks))},
                {"realized": s.cash(realized - start_realized), "unrealized": s.cash(position.unrealized_raw(mid)),
                 "fees": s.cash(fees - start_fees), "equity_close": s.cash(equity)})
        self._day, self._day_start = day, (realized, fees)

    def _record_bar_close(self) -> None:
        """The equity point of the bar the driver just closed: the books marked at its close price,
        stamped with its end, written with the journal's next commit."""
        bar = self.driver.last_bar
        if bar is None or self.journal is None:
            return
        s = self.instrument.scales
        close_raw = raw_price(bar.close, s.price_dp, s.price_step)
        portfolio = self.oms.portfolio
        position = portfolio.positions[self.instrument.symbol]
        equity = portfolio.cash_raw + position.qty * close_raw * s.notional_k
        self.journal.record_equity(bar.end, s.cash(equity), portfolio.cash, s.cash(portfolio.realized_pnl_raw),
                                   s.cash(position.unrealized_raw(close_raw)), position.quantity)

    # -- stopping -------------------------------------------------------------------------------------
    def _finish(self) -> None:
        """A clean stop: open orders cancelled or kept per on_stop (a halted bot's remaining orders
        are its flattening ones: kept), the venue's answers taken, everything flushed, a summary."""
        self.finishing = True
        oms = self.oms
        cancelled = 0
        if self.config.on_stop == "cancel" and not self.halted and oms.open_orders:
            cancelled = actions.cancel_open_orders(oms)
            self._event(actions.CANCEL)
            self._settle()
        if self.journal is not None:
            self.journal.record_position(oms.portfolio, self.instrument.symbol, self.clock.now_ns())
        self._flush()
        state = HALTED if self.halted else STOPPED
        self._set_status(state)
        self._publish(state)
        if self.recorder is not None:
            self.recorder.bot(self.config.id, {"last_seq": self.checkpoint, "ticks_dropped": self.guard.counts(),
                                               "tick_level_shifts": self.guard.level_shifts})
        self.summary.update(self.status())
        self.summary.update({"cancelled_on_stop": cancelled, "open_orders": len(oms.open_orders),
                             "fills": len(oms.fills), "signals": self.driver.signals_published,
                             "checkpoint": self.checkpoint,
                             "gap_orders": self.driver.gap_orders})  # sent after a restart to reach the target

    def _settle(self, rounds: int = 25) -> None:
        """After cancelling on a venue that answers from another thread: take its answers for a
        moment, so the store records them (an in-process venue has answered already)."""
        for _ in range(rounds):
            if not self.oms.open_orders:
                return
            for poll in self.parts.pollers:
                poll()
            try:
                while True:
                    event = self.inbox.get(timeout=POLL_S)
                    if isinstance(event, (StopBot, KillBot, ResumeBot)):
                        event.done.set()
                    elif not isinstance(event, TickReceived):
                        self._handle(event)
            except queue.Empty:
                pass

    def _apply_queued_reports(self) -> None:
        """The reports queued while the bot connected and reconciled (commands stay queued)."""
        kept: list[BotEvent] = []
        while True:
            try:
                event = self.inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, (OrderSubmitted, OrderAccepted, OrderRejected, OrderFilled, OrderCanceled,
                                  OrderTrailed)):
                self._handle(event)
            else:
                kept.append(event)
        for event in kept:
            self.inbox.put(event)

    def _drain_commands(self) -> None:
        while True:
            try:
                event = self.inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, (StopBot, KillBot, ResumeBot)):
                event.done.set()

    def _close(self) -> None:
        if self._account is not None:
            try:
                self._account.listeners.remove(self._on_account_state)
                self._account.release(self.gate)
            except Exception:  # noqa: BLE001 - the store may be what failed; the share goes stale
                log.warning("bot %s: its share of account %s was not released", self.config.id, self._account.key)
        for closing in self.parts.closers:
            try:
                closing()
            except Exception:  # noqa: BLE001 - closing a venue connection must not hide the real error
                pass
        if isinstance(self.driver.sink, SqlSignals):  # the connection its SQLite writer holds
            self.driver.sink.close()
        if self.journal is not None:
            self.journal.close()
            self.journal.engine.dispose()
        if self.lease is not None:
            self.lease.release()

    # -- the store ------------------------------------------------------------------------------------
    def _flush(self) -> None:
        if self.journal is not None:
            self.journal.flush()
        if self._account is not None:  # this bot's share of its account, for the other bots (a write
            self._account.publish(self.gate)  # only when it changed or its heartbeat is due)

    def _on_account_state(self, change: StateChange) -> None:
        """The account was halted (its kill switch, from any process): this bot is killed too, on
        its own thread, so its orders are cancelled and its position flattened."""
        if change.new is TradingState.HALTED and change.scope == "account" and not self.halted:
            self.post(KillBot(f"account halted: {change.reason}"))

    def _event(self, action: str, reason: str = "") -> None:
        if self.recorder is not None:
            self.recorder.event(self.config.id, self.checkpoint, action, reason)

    def _set_status(self, state: str) -> None:
        """The state, and the config that runs: what a later kill of the stopped bot rebuilds it from."""
        if self.journal is None:
            return
        with self.journal.engine.begin() as connection:
            connection.execute(update(BotRow.__table__).where(BotRow.id == self.config.id)
                               .values(status=state, strategy=self.config.strategy,
                                       config=self.config.model_dump(mode="json")))

    def _publish(self, state: str) -> None:
        oms = self.oms
        position = oms.portfolio.positions[self.instrument.symbol]
        s = self.instrument.scales
        guard = self.guard
        mid_raw = raw_price(guard.last_mid, s.price_dp, s.price_step)  # marked at guarded prices only
        equity = None
        if mid_raw:
            equity = s.cash(oms.portfolio.cash_raw + position.qty * mid_raw * s.notional_k)
        self.snapshot = Snapshot(state, self.driver.bars, self._ticks, len(oms.orders), equity, position.quantity,
                                 self._last_tick_ts, guard.counts(), guard.level_shifts,
                                 risk_state(self.gate, oms, self.instrument.symbol, self.halted))


def _copied(value: Any) -> Any:
    """A snapshot's nested dicts and lists copied, so a caller that edits its answer never edits the
    snapshot another thread reads next."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value


def instrument_meta(instrument: Instrument) -> dict[str, str]:
    """The instrument as a session's meta.json keeps it (a replay trades on the same grid)."""
    return {"symbol": instrument.symbol, "price_increment": str(instrument.price_increment),
            "size_increment": str(instrument.size_increment), "min_qty": str(instrument.min_qty),
            "currency_increment": str(instrument.currency_increment)}


def ensure_bot_row(engine: Any, config: BotConfig) -> None:
    """The bot's row, for a bot first started on a live venue (the API creates it otherwise)."""
    with engine.begin() as connection:
        if connection.execute(select(BotRow.id).where(BotRow.id == config.id)).first() is None:
            connection.execute(insert(BotRow.__table__).values(
                id=config.id, name=config.id, strategy=config.strategy, account_id=config.account,
                config=config.model_dump(mode="json")))
