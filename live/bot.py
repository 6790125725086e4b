"""A paper bot: the one BotRunner (live/runner.py) built over the paper venue.

Parts: a ReplayFeed over the bot's tick file (paced at the runtime's speed), PaperAdapter over
DurablePaperVenue (the simulated venue of backtests, with an input log that survives a crash;
the adapter the conformance suite proves), a SimulatedClock that follows the feed (for a replay
that *is* the market's clock, and it keeps a replayed session deterministic, which parity needs),
the SQL journal, the strategy with its StrategyDriver, and the risk engine when the bot has
limits. Every restart goes through the same reconciliation as a live venue's bot
(reconcile_with_adapter); the paper venue being the bot's own account, its cash must also equal
the books' cash.

Restart: the store gives back orders, fills, the checkpoint and the signals; the ticks up to the
checkpoint then rebuild the bars with order entry muted (live/driver.py), and trading resumes at
the first tick after it.
"""

from __future__ import annotations

import hashlib
import queue
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from brokers.paper.adapter import PaperAdapter
from brokers.paper.durable import DurablePaperVenue
from engine.account_risk import account_key, account_risk_for
from engine.clock import SimulatedClock
from engine.errors import ConfigError
from engine.instrument import Instrument, infer_price_increment
from engine.money import FeeModel, raw_price
from engine.oms import OrderManager
from engine.reconcile import ReconciliationError, ReconciliationReport, restore_books
from engine.risk import AccountRisk, RiskEngine
from engine.store.db import StoreLost, check_connection, make_engine
from engine.store.journal import SqlJournal
from engine.store.models import BotRow
from engine.store.signals import SqlSignals
from engine.tick_guard import TickGuard
from live.books import KILLED
from live.config import BotConfig
from live.driver import StrategyDriver
from live.events import QueuedSink
from live.feed import ReplayFeed, TickTable
from live.rates import live_portfolio
from live.lease import BotLease
from live.recorder import SessionRecorder
from live.runner import HALTED, RUNNING, STOPPED, BotParts, BotRunner, Restored, Snapshot, instrument_meta
from strategies import get_strategy
from strategies.base import Strategy

__all__ = ["HALTED", "RUNNING", "STOPPED", "BotRunner", "Snapshot", "paper_bot", "venue_log_path", "make_gate",
           "guarded_prices", "trading_core", "build_instrument", "instrument_meta", "paper_venue_name", "stored_status"]

FRACTIONAL_STEP = Decimal("0.000001")


def build_instrument(config: BotConfig, table: TickTable, params: Any) -> Instrument:
    """The grid a bot trades on: from its config, else inferred from the tick file's prices
    (the same rule a CSV backtest uses), lots of 1 (or 1e-6 for units=fractional)."""
    prices = np.concatenate([table.bid, table.ask, table.last])
    price_increment = config.price_increment or infer_price_increment(prices[np.isfinite(prices)])
    size_increment = config.size_increment or (Decimal(1) if params.units == "whole" else FRACTIONAL_STEP)
    return Instrument(config.symbol, price_increment=price_increment, size_increment=size_increment)


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
              reference_price: Any = None, store: Any = None) -> RiskEngine | None:
    """The risk engine when the bot has risk limits (data in its config: the runtime reads no file
    on a config's say-so). With a `store` (the bot's database engine), the account's limits and
    kill switch are the account's, shared by every bot on it in any process through the store
    (engine.account_risk); without one (a parity replay), the bot's own."""
    if config.risk is None:
        return None
    risk = config.risk
    if store is None:
        account: AccountRisk = AccountRisk(risk.account)
    else:
        key = account_key(store, config.id, config.account)
        account = account_risk_for(store.url.render_as_string(hide_password=False), key, risk.account)
    return RiskEngine(config.id, risk.for_bot(config.id), account, clock,
                      {instrument.symbol: instrument}, last_price=last_price, reference_price=reference_price)


def trading_core(config: BotConfig, clock: Any, adapter: Any, instrument: Instrument, guard: TickGuard,
                 journal: Any, signals: Any, store: Any = None,
                 strategy: Strategy | None = None) -> tuple[OrderManager, RiskEngine | None, StrategyDriver]:
    """What every runner is built around, the same for paper bots, live venues and parity's
    replay: the OMS (unconnected: the runner restores and reconciles before any report reaches
    it) over books that value a fee in a third coin from the venue's price and never stop at a
    fee with no rate yet (live.rates.live_portfolio), the risk engine when the bot has limits
    (reading its prices from `guard`; the account's shared through `store` when there is one),
    and the strategy's driver."""
    oms = OrderManager(config.id, clock, adapter, live_portfolio(config.cash, instrument, adapter),
                       {config.symbol: instrument}, journal=journal, connect=False)
    last_price, reference_price = guarded_prices(guard, instrument)
    if hasattr(adapter, "sizing_equity"):  # a live venue sizing fractions (the paper venue's account is the books)
        adapter.sizing_equity = books_equity(oms.portfolio, instrument, last_price)
    gate = make_gate(config, clock, instrument, last_price, reference_price, store=store)
    if gate is not None:
        gate.bind(oms)
        oms.risk = gate
    if strategy is None:
        strategy = get_strategy(config.strategy)(config.strategy_params())
    strategy.attach(None, config.symbol)  # type: ignore[arg-type]
    strategy.connect(oms)
    return oms, gate, StrategyDriver(strategy, oms, config.symbol, config.bar, signals, gate)


def books_equity(portfolio: Any, instrument: Instrument, last_price: Any) -> Any:
    """The bot's equity an equity-fraction order is a fraction of on a live venue
    (brokers.base.fraction_equity): its own books marked at the last guarded mid, in the account
    currency; None before the first admitted tick or without a conversion rate (the order is then
    refused, never sized by the venue account's equity, which other bots and the trader share)."""
    s = instrument.scales

    def equity() -> Decimal | None:
        last = last_price(instrument.symbol)
        if last is None:
            return None
        try:
            raw = portfolio.equity_raw({instrument.symbol: int(last.scaleb(s.price_dp))})
        except ConfigError:
            return None
        return s.cash(raw)

    return equity


def guarded_prices(guard: TickGuard, instrument: Instrument) -> tuple[Any, Any]:
    """The risk engine's last price and price-band reference, both read from the tick guard at
    check time: the last admitted mid and the median of the recent admitted mids, on the grid. A
    dropped tick moves neither, so a spike can neither value an order nor centre its band."""
    s = instrument.scales

    def price(value: float) -> Decimal | None:
        raw = raw_price(value, s.price_dp, s.price_step)
        return s.price(raw) if raw > 0 else None

    return (lambda _symbol: price(guard.last_mid)), (lambda _symbol: price(guard.reference()))


def paper_bot(config: BotConfig, table: TickTable | None, speed: float, database_url: str, state_dir: Path,
              recorder: SessionRecorder | None = None, lease: BotLease | None = None, *, feed: Any = None,
              strategy: Strategy | None = None, instrument: Instrument | None = None,
              venue_log: Path | None = None) -> BotRunner:
    """A paper bot's runner (module docstring). A bad config, a store that cannot be reached or a
    model that will not load raise here, in the caller's thread, with nothing left open.

    The keywords replace what the config would build, for drills and tests: `feed` (an iterable
    of (sequence, Tick) with a `wake` event, instead of a ReplayFeed over `table`), a `strategy`
    instance, an `instrument`, the venue's log file."""
    if config.venue != "paper":  # live venues are built by live.venue_runner; never paper-trade one here
        raise ConfigError("venue", f"bot {config.id!r}: venue {config.venue!r} is not a paper venue")
    params = config.strategy_params()
    if instrument is None:
        assert table is not None, "a paper bot needs its tick table or an instrument"
        instrument = build_instrument(config, table, params)
    symbol = config.symbol
    engine = make_engine(database_url)
    check_connection(engine)  # a dead or corrupt database stops the bot before it trades
    # fills are unique per (venue, execution id) in the store, and every paper venue numbers
    # its executions from 1: each bot's venue needs its own name or one bot's fills are
    # dropped as duplicates of another's
    journal = SqlJournal(engine, config.id, paper_venue_name(config.id, resets_of(engine, config.id)))
    killed = was_killed(engine, config.id)  # read before the manager clears the last stop's reason
    if lease is not None:  # no commit, hence no order, once another runtime took the bot over
        journal.guards.append(lease.check)
    log_path = venue_log or venue_log_path(state_dir, database_url, config.id)
    try:
        venue = DurablePaperVenue(log_path, instrument, config.cash, FeeModel(config.commission))
    except BaseException:
        engine.dispose()
        raise
    adapter = PaperAdapter(venue)
    inbox: queue.Queue[Any] = queue.Queue()
    sink = QueuedSink(inbox)
    try:
        adapter.connect(sink)
        clock = SimulatedClock()
        guard = TickGuard(config.tick_guard)  # only ticks it admits reach the venue, the marks and the strategy
        signals = SqlSignals(engine)
        oms, gate, driver = trading_core(config, clock, adapter, instrument, guard, journal, signals, engine,
                                         strategy)
    except BaseException:
        adapter.close()
        engine.dispose()
        raise

    def restore() -> Restored:
        stored = journal.load({symbol: instrument})
        held = len(venue.book.orders)
        if not stored.orders and held:
            # A store with no order of this bot while its venue log holds some was lost or replaced
            # (the log is keyed by the store's URL): reconciling would find orders of this bot the
            # store never journaled; say what happened and what to do
            raise StoreLost(f"the store has no record of bot {config.id!r} but its paper venue log "
                            f"{log_path} holds {held} orders: the store was lost or replaced; "
                            "restore it, or archive the venue log to start afresh")
        restore_books(oms, stored)  # the fills, and any account-level charges where they were booked
        return Restored(stored.checkpoint, signals.load(config.id), close_gap=not killed)

    def after_reconcile(report: ReconciliationReport) -> None:
        """The paper venue is this bot's own account: its cash is the books' cash, to the unit."""
        if oms.portfolio.cash_raw != venue.cash_raw():
            raise ReconciliationError(f"cannot reconcile with the venue: cash {oms.portfolio.cash_raw} here, "
                                      f"{venue.cash_raw()} at the venue (raw units)")
        journal.record_position(oms.portfolio, symbol, clock.now_ns())

    if feed is None:
        assert table is not None
        feed = ReplayFeed(table, symbol, speed)
    runner = BotRunner(BotParts(config, feed, adapter, sink, inbox, clock, journal, oms, instrument, driver, guard,
                                gate, recorder=recorder, lease=lease, closers=[adapter.close], restore=restore,
                                after_reconcile=after_reconcile))
    runner.venue = venue  # type: ignore[attr-defined]  # tests and drills look at the venue's log
    return runner
