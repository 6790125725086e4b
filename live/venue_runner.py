"""A bot on a live venue (ccxt, Alpaca, MT5): the one BotRunner (live/runner.py) built over the
venue's adapter and market data feed, with the wall clock.

Start: the adapter connects (login, instruments, execution stream) here, in the caller's thread,
so bad credentials or an unknown symbol fail the start; its reports are queued until the runner
has restored the bot's orders and fills from the store and reconciled them with the venue
(reconcile_with_adapter, as for every bot). Then the queued reports are applied (the OMS ignores
what reconciliation already booked), the strategy warms up from the venue's history
(MarketDataFeed.history) and the feed is subscribed. Venues without a push stream are polled by
the runner between events.

Account-level charges (engine.charges): when the adapter lists them (`charges_since`: Binance
futures funding, Alpaca CFEE), a ChargeBooker polls it once right after reconciliation and then
every `charges_every_s` (60 s by default) from the runner's loop, on the bot's thread, so a
charge is booked between events, never inside one. The bot books only what it solely held; the
rest is the account's (the reconciliation report's `external_charges`, the summary's `charges`).
A restart puts the booked charges back among the fills where they were booked (restore_books).
"""

from __future__ import annotations

import queue
import time
from typing import Any, Callable

from engine.account_risk import account_key, record_venue_positions
from engine.clock import LiveClock
from engine.errors import ConfigError
from engine.reconcile import ChargeBooker, ReconciliationReport, restore_books
from engine.store.db import check_connection, make_engine
from engine.store.journal import SqlJournal
from engine.store.signals import SqlSignals
from engine.tick_guard import TickGuard
from live.bot import trading_core, was_killed
from live.config import BotConfig
from live.events import QueuedSink
from live.lease import BotLease
from live.runner import BotParts, BotRunner, Restored, ensure_bot_row


CHARGES_EVERY_S = 60.0


def venue_bot(config: BotConfig, database_url: str, adapter: Any, feed: Any,
              pollers: list[Callable[[], Any]] | None = None, lease: BotLease | None = None,
              charges_every_s: float = CHARGES_EVERY_S) -> BotRunner:
    """A live venue bot's runner (module docstring); `lease`: this runtime's lease on the bot
    (live.lease), checked before each event and each journal commit; `charges_every_s`: how
    often the account's charges are asked for (when the adapter lists them)."""
    if not charges_every_s > 0:
        raise ConfigError("charges_every_s", f"must be a positive number of seconds, got {charges_every_s}")
    engine = make_engine(database_url)
    check_connection(engine)
    killed = was_killed(engine, config.id)  # read before the manager clears the last stop's reason
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

    charges = ChargeBooker(oms, adapter, journal, account_key(engine, config.id, config.account))
    next_charges = [0.0]
    summary: dict[str, Any] = {}

    def restore() -> Restored:
        stored = journal.load({config.symbol: instrument})
        charges.remember(restore_books(oms, stored))
        remember = getattr(adapter, "remember", None)  # MT5: orders known by their stored ticket
        if remember is not None:
            remember(stored.orders)
        # a kill flattened the bot on purpose: halted, or resumed since (the resume clears HALTED,
        # not the stop reason KILLED), it does not go back to the strategy's last target
        return Restored(-1, signals.load(config.id), close_gap=not killed)

    def poll_charges(report: ReconciliationReport | None = None) -> None:
        """The account's new charges, decided and booked (module docstring); listed in the summary."""
        if charges.source is None:
            return
        next_charges[0] = time.monotonic() + charges_every_s
        result = charges.poll()
        if report is not None:
            report.charges_booked.extend(c.charge_id for c in result.booked)
            report.external_charges.extend(c.charge_id for c in result.external)
        position = oms.portfolio.positions[config.symbol]
        summary["charges"] = {"booked": len(charges.booked), "external": list(charges.external),
                              "refused": result.refused, "realized_pnl": str(instrument.scales.cash(
                                  position.realized_pnl))}
        if runner is not None:
            runner.summary["charges"] = summary["charges"]

    def charges_due() -> None:
        if charges.source is not None and time.monotonic() >= next_charges[0]:
            poll_charges()

    def after_reconcile(report: ReconciliationReport) -> None:
        """What the account holds at the venue, for the API's per-account books (bots + external);
        then the account's charges since the lookback, once."""
        held = {p.symbol: p.qty for p in adapter.positions()}
        record_venue_positions(engine, account_key(engine, config.id, config.account), held, clock.now_ns())
        poll_charges(report)

    runner: BotRunner | None = None
    runner = BotRunner(BotParts(config, feed, adapter, sink, inbox, clock, journal, oms, instrument, driver, guard,
                                gate, lease=lease, pollers=[*(pollers or []), charges_due], closers=closers,
                                restore=restore, after_reconcile=after_reconcile))
    runner.summary.update(summary)
    return runner
