"""One bot on a live venue (ccxt, alpaca, mt5): the venue's adapter and market data feed, the
OMS with the SQL journal, the same StrategyDriver (bars, next(), signals) as paper bots.

Start: the adapter connects (login, instruments, execution stream) with a sink that only queues;
the OMS (constructed unconnected) restores the bot's orders and fills from the store, then
`reconcile_with_adapter` brings them to what the venue says (missed fills booked, in-flight
orders resolved by client order id, foreign orders adopted, positions compared): a bot whose
books disagree with the venue refuses to trade, saying why. Only then are the queued reports
applied (the OMS ignores what reconciliation already booked) and the feed subscribed.

Threading: adapters and feeds report from their own threads (a websocket, a poller). Everything
they say goes through one queue to the bot's thread, which alone touches the OMS; commands
(stop, kill) arrive on the same queue, so they land between two events. Venues without a push
stream are polled from the bot's thread (an adapter's or feed's `poll()`), between events.

Unlike a replayed paper bot, a live bot cannot rebuild its bars after a restart from a recorded
feed: its strategy starts with no bar history and trades once it has enough bars.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from sqlalchemy import insert, select, update

from engine.clock import LiveClock
from engine.errors import ConfigError
from engine.market import Tick
from engine.oms import OrderManager
from engine.orders import Fill, Order
from engine.portfolio import Portfolio
from engine.reconcile import reconcile_with_adapter
from live import actions
from live.bot import (HALTED, RUNNING, STOPPED, Snapshot, guarded_prices, make_gate, record_bar_close,
                                stored_status)
from live.config import BotConfig
from live.driver import StrategyDriver, raw_price
from live.lease import BotLease
from engine.store.db import check_connection, make_engine
from engine.store.journal import SqlJournal
from engine.store.models import BotRow
from engine.tick_guard import TickGuard
from models.signals import SqlSignals
from strategies import get_strategy

POLL_S = 0.2  # the longest the bot thread waits for an event before polling the venue again


class QueuedSink:
    """An ExecutionSink that hands every report to the bot thread."""

    def __init__(self, inbox: "queue.Queue[tuple[str, Any]]") -> None:
        self.inbox = inbox

    def on_submitted(self, order: Order, ts: int) -> None:
        self.inbox.put(("report", ("on_submitted", (order, ts))))

    def on_accepted(self, order: Order, ts: int) -> None:
        self.inbox.put(("report", ("on_accepted", (order, ts))))

    def on_rejected(self, order: Order, ts: int, reason: str) -> None:
        self.inbox.put(("report", ("on_rejected", (order, ts, reason))))

    def on_fill(self, order: Order, fill: Fill, bar: int) -> None:
        self.inbox.put(("report", ("on_fill", (order, fill, bar))))

    def on_canceled(self, order: Order, ts: int, reason: str | None) -> None:
        self.inbox.put(("report", ("on_canceled", (order, ts, reason))))


class LiveBotRunner:
    """The BotRunner surface (post, run, status, snapshot, summary, error) for a live venue."""

    def __init__(self, config: BotConfig, database_url: str, adapter: Any, feed: Any,
                 pollers: list[Callable[[], Any]] | None = None, lease: BotLease | None = None) -> None:
        """`lease`: this runtime's lease on the bot (live.lease), checked before each
        event and each journal commit, released when the bot's thread ends."""
        self.config, self.adapter, self.feed = config, adapter, feed
        self.lease = lease
        self.pollers = list(pollers or [])
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.snapshot = Snapshot()
        self.summary: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.halted = False
        self._stop = False
        self._ticks = 0
        self.guard = TickGuard(config.tick_guard)  # only ticks it admits reach the strategy, marks and risk
        self._adapter_on_tick = getattr(adapter, "on_tick", None)
        self.clock = LiveClock()
        engine = make_engine(database_url)
        check_connection(engine)
        self.journal = SqlJournal(engine, config.id, adapter.name)
        if lease is not None:  # no commit, hence no order, once another runtime took the bot over
            self.journal.guards.append(lease.check)
        adapter.connect(QueuedSink(self.inbox))
        try:
            instruments = adapter.instruments()
            if config.symbol not in instruments:
                raise ConfigError("symbol", f"{adapter.name} does not list {config.symbol!r}")
            self.instrument = instruments[config.symbol]
            self.oms = OrderManager(config.id, self.clock, adapter,
                                    Portfolio.for_instrument(config.cash, self.instrument),
                                    {config.symbol: self.instrument}, journal=self.journal, connect=False)
            self.gate = make_gate(config, self.clock, self.instrument, *guarded_prices(self.guard, self.instrument))
            if self.gate is not None:
                self.gate.bind(self.oms)
                self.oms.risk = self.gate
            self._ensure_bot_row(engine)
            self.signals = SqlSignals(engine)
            strategy = get_strategy(config.strategy)(config.strategy_params())
            strategy.attach(None, config.symbol)  # type: ignore[arg-type]
            strategy.connect(self.oms)
            self.driver = StrategyDriver(strategy, self.oms, config.symbol, config.bar, self.signals, self.gate)
        except BaseException:
            self._close()
            raise

    # -- any thread ---------------------------------------------------------------------------------
    def post(self, command: str, reason: str = "") -> threading.Event:
        done = threading.Event()
        self.inbox.put(("command", (command, reason, done)))
        return done

    def status(self) -> dict[str, Any]:
        snap = self.snapshot
        return {"bot_id": self.config.id, "state": snap.state, "bars": snap.bars, "ticks": snap.ticks,
                "orders": snap.orders, "equity": snap.equity, "position": snap.position,
                "last_tick_ts": snap.last_tick_ts, "ticks_dropped": dict(snap.ticks_dropped),
                "tick_level_shifts": snap.tick_level_shifts, "venue": self.config.venue}

    # -- the bot thread -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
            stored = self.journal.load({self.config.symbol: self.instrument})
            self.oms.restore(stored.orders, stored.fills, stored.next_order_seq)
            remember = getattr(self.adapter, "remember", None)  # MT5: orders known by their stored ticket
            if remember is not None:
                remember(stored.orders)
            self.driver.restore_direction(self.signals.load(self.config.id),
                                          close_gap=stored_status(self.journal.engine, self.config.id) != HALTED)
            report = reconcile_with_adapter(self.oms, self.adapter, self.clock.now_ns())
            self.journal.flush()
            self.summary["reconciliation"] = {"fills_replayed": report.fills_replayed,
                                              "orders_resolved": report.orders_resolved,
                                              "lost_before_submit": len(report.orders_lost_before_submit),
                                              "adopted": len(report.orders_adopted)}
            self.summary["warm_bars"] = self.driver.warm_up(self.feed, self.config.venue, self.clock.now_ns())
            self.feed.subscribe([self.config.symbol], lambda tick: self.inbox.put(("tick", tick)))
            self._set_status(RUNNING)
            self._publish(RUNNING)  # start() returns once it sees this
            while not self._stop:
                if self.lease is not None:
                    self.lease.check()
                self._pump()
                try:
                    kind, item = self.inbox.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                self._handle(kind, item)
            self._finish()
        except BaseException as exc:
            self.error = exc
            self._publish(STOPPED)
            raise
        finally:
            self._drain_commands()
            self._close()
        return self.summary

    def _pump(self) -> None:
        """Venues without a push stream are asked here, on the bot's thread."""
        for poll in self.pollers:
            poll()

    def _handle(self, kind: str, item: Any) -> None:
        if kind == "report":
            name, args = item
            getattr(self.oms, name)(*args)
        elif kind == "tick":
            self._on_tick(item)
        elif kind == "command":
            command, reason, done = item
            try:
                if command == "stop":
                    self._stop = True
                elif command == "kill" and not self.halted:
                    actions.kill(self.oms, self.driver, self.gate, reason)
                    self.halted = True
                    self._set_status(HALTED)
            finally:
                done.set()
        self.journal.flush()
        self._publish(HALTED if self.halted else RUNNING)

    def _on_tick(self, tick: Tick) -> None:
        if not self.guard.admit(tick):  # the marks (guard.last_mid, guard.reference()) move only here
            return
        if self._adapter_on_tick is not None:  # an adapter that sizes equity-fraction orders at the bot's quote
            self._adapter_on_tick(tick)
        self._ticks += 1
        self._last_tick_ts = tick.ts
        bars = self.driver.bars
        self.driver.on_tick(tick)
        if self.driver.bars != bars:  # a bar closed: its equity point, with the next commit
            record_bar_close(self.journal, self.driver, self.instrument, self.oms.portfolio)

    def _finish(self) -> None:
        cancelled = 0
        if self.config.on_stop == "cancel" and not self.halted and self.oms.open_orders:
            cancelled = actions.cancel_open_orders(self.oms)
            self._settle()
        self.journal.record_position(self.oms.portfolio, self.config.symbol, self.clock.now_ns())
        self.journal.flush()
        state = HALTED if self.halted else STOPPED
        self._set_status(state)
        self._publish(state)
        self.summary.update(self.status())
        self.summary.update({"cancelled_on_stop": cancelled, "open_orders": len(self.oms.open_orders),
                             "fills": len(self.oms.fills), "signals": self.driver.signals_published})

    def _settle(self, rounds: int = 25) -> None:
        """After cancelling: take the venue's answers for a moment, so the store records them."""
        for _ in range(rounds):
            if not self.oms.open_orders:
                return
            self._pump()
            try:
                while True:
                    kind, item = self.inbox.get(timeout=POLL_S)
                    if kind == "report":
                        self._handle(kind, item)
            except queue.Empty:
                pass

    def _drain_commands(self) -> None:
        while True:
            try:
                kind, item = self.inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "command":
                item[2].set()

    def _publish(self, state: str) -> None:
        position = self.oms.portfolio.positions[self.config.symbol]
        s = self.instrument.scales
        mid_raw = raw_price(self.guard.last_mid, s.price_dp, s.price_step)
        equity = None
        if mid_raw:
            equity = s.cash(self.oms.portfolio.cash_raw + position.qty * mid_raw * s.notional_k)
        self.snapshot = Snapshot(state, self.driver.bars, self._ticks, len(self.oms.orders), equity,
                                 position.quantity, getattr(self, "_last_tick_ts", None), self.guard.counts(),
                                 self.guard.level_shifts)

    def _ensure_bot_row(self, engine: Any) -> None:
        with engine.begin() as connection:
            if connection.execute(select(BotRow.id).where(BotRow.id == self.config.id)).first() is None:
                connection.execute(insert(BotRow.__table__).values(
                    id=self.config.id, name=self.config.id, strategy=self.config.strategy,
                    account_id=self.config.account, config=self.config.model_dump(mode="json")))

    def _set_status(self, state: str) -> None:
        with self.journal.engine.begin() as connection:
            connection.execute(update(BotRow.__table__).where(BotRow.id == self.config.id).values(status=state))

    def _close(self) -> None:
        for closing in (getattr(self.feed, "close", None), getattr(self.adapter, "close", None)):
            if closing is not None:
                try:
                    closing()
                except Exception:  # noqa: BLE001 - closing a venue connection must not hide the real error
                    pass
        self.journal.engine.dispose()
        if self.lease is not None:
            self.lease.release()
