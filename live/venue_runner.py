"""A bot on a live venue (ccxt, Alpaca, MT5): the one BotRunner (live/runner.py) built over the
venue's adapter and market data feed, with the wall clock.

Start: the adapter connects (login, instruments, execution stream) here, in the caller's thread,
so bad credentials or an unknown symbol fail the start; its reports are queued until the runner
has restored the bot's orders and fills from the store and reconciled them with the venue
(reconcile_with_adapter, as for every bot). Then the queued reports are applied (the OMS ignores
what reconciliation already booked), the strategy warms up from the venue's history
(MarketDataFeed.history) and the feed is subscribed. Venues without a push stream are polled by
the runner between events.
"""

from __future__ import annotations

import queue
from typing import Any, Callable

from engine.account_risk import account_key, record_venue_positions
from engine.clock import LiveClock
from engine.errors import ConfigError
from engine.reconcile import ReconciliationReport
from engine.store.db import check_connection, make_engine
from engine.store.journal import SqlJournal
from engine.store.signals import SqlSignals
from engine.tick_guard import TickGuard
from live.bot import stored_status, trading_core
from live.config import BotConfig
from live.events import QueuedSink
from live.lease import BotLease
from live.runner import HALTED, BotParts, BotRunner, Restored, ensure_bot_row


def venue_bot(config: BotConfig, database_url: str, adapter: Any, feed: Any,
              pollers: list[Callable[[], Any]] | None = None, lease: BotLease | None = None) -> BotRunner:
    """A live venue bot's runner (module docstring); `lease`: this runtime's lease on the bot
    (live.lease), checked before each event and each journal commit."""
    engine = make_engine(database_url)
    check_connection(engine)
    journal = SqlJournal(engine, config.id, adapter.name)
    if lease is not None:  # no commit, hence no order, once another runtime took the bot over
        journal.guards.append(lease.check)
    inbox: queue.Queue[Any] = queue.Queue()
    sink = QueuedSink(inbox)
    closers = [c for c in (getattr(feed, "close", None), getattr(adapter, "close", None)) if c is not None]
    try:
        adapter.connect(sink)
        instruments = adapter.instruments()
        if config.symbol not in instruments:
            raise ConfigError("symbol", f"{adapter.name} does not list {config.symbol!r}")
        instrument = instruments[config.symbol]
        clock = LiveClock()
        guard = TickGuard(config.tick_guard)  # only ticks it admits reach the strategy, marks and risk
        ensure_bot_row(engine, config)
        signals = SqlSignals(engine)
        oms, gate, driver = trading_core(config, clock, adapter, instrument, guard, journal, signals, engine)
    except BaseException:
        for closing in closers:
            try:
                closing()
            except Exception:  # noqa: BLE001 - the start's own error is the one to report
                pass
        engine.dispose()
        raise

    def restore() -> Restored:
        stored = journal.load({config.symbol: instrument})
        oms.restore(stored.orders, stored.fills, stored.next_order_seq)
        remember = getattr(adapter, "remember", None)  # MT5: orders known by their stored ticket
        if remember is not None:
            remember(stored.orders)
        return Restored(-1, signals.load(config.id), close_gap=stored_status(engine, config.id) != HALTED)

    def after_reconcile(report: ReconciliationReport) -> None:
        """What the account holds at the venue, for the API's per-account books (bots + external)."""
        held = {p.symbol: p.qty for p in adapter.positions()}
        record_venue_positions(engine, account_key(engine, config.id, config.account), held, clock.now_ns())

    return BotRunner(BotParts(config, feed, adapter, sink, inbox, clock, journal, oms, instrument, driver, guard,
                              gate, lease=lease, pollers=list(pollers or []), closers=closers, restore=restore,
                              after_reconcile=after_reconcile))
