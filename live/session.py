"""A paper-trading session: one bot, a tick stream, the durable paper venue, the SQL store.

Per input tick, in order: the tick guard (a malformed or outlying tick is counted and dropped,
so neither the venue nor the marks ever see it), the venue
matches working orders (fills reach the OMS and the journal), the strategy acts (each order is
journaled and flushed before the venue sees it), then the input's sequence number becomes the
bot's checkpoint, committed with everything it caused. A restart loads the store, reconciles
with the venue, and resumes after the checkpoint; the venue ignores inputs it already matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterable

from brokers.paper.durable import DurablePaperVenue
from engine.clock import SimulatedClock
from engine.errors import StoreUnavailable
from engine.instrument import Instrument
from engine.market import Tick
from sqlalchemy.exc import SQLAlchemyError

from engine.money import FeeModel, Scales, Slippage, div_round_half_even
from engine.oms import OrderManager, RiskGate
from engine.orders import Order
from engine.portfolio import Portfolio
from engine.reconcile import ReconciliationReport, reconcile
from engine.store.db import StoreLost, check_connection, make_engine
from engine.store.journal import SqlJournal
from engine.tick_guard import TickGuard, TickGuardConfig

from strategies.base import Strategy

DAY_NS = 86_400_000_000_000


@dataclass(slots=True)
class SessionConfig:
    bot_id: str
    database_url: str
    venue_log: str
    cash: Decimal = Decimal(10_000)
    fees: FeeModel = FeeModel()
    slippage: Slippage = Slippage()
    checkpoint_every: int = 500  # inputs between checkpoint-only commits when nothing else happens
    tick_guard: TickGuardConfig | None = None  # None: the guard's defaults


class PaperSession:
    def __init__(self, config: SessionConfig, instrument: Instrument, strategy: Strategy,
                 risk: RiskGate | None = None) -> None:
        self.config = config
        self.instrument = instrument
        self.strategy = strategy
        self.clock = SimulatedClock()
        engine = make_engine(config.database_url)
        check_connection(engine)  # a dead or corrupt database stops the bot before it trades
        self.journal = SqlJournal(engine, config.bot_id, DurablePaperVenue.name)
        self.venue = DurablePaperVenue(config.venue_log, instrument, config.cash, config.fees, config.slippage)
        self.portfolio = Portfolio.for_instrument(config.cash, instrument)
        self.oms = OrderManager(config.bot_id, self.clock, self.venue, self.portfolio,
                                {instrument.symbol: instrument}, risk=risk, journal=self.journal)
        self.guard = TickGuard(config.tick_guard)  # only ticks it admits reach the venue and the marks
        self.checkpoint = -1
        self._day = -1
        self._day_start = (0, 0, 0)  # realized, fees (raw cash) and equity at the day's first tick
        self.report: ReconciliationReport | None = None
        strategy.attach(None, instrument.symbol)  # type: ignore[arg-type]
        strategy.connect(self.oms)

    def start(self) -> ReconciliationReport:
        """Rebuild from the store and reconcile with the venue (raises if they cannot agree)."""
        stored = self.journal.load({self.instrument.symbol: self.instrument})
        self._check_store_knows_venue(stored.orders)
        self.oms.restore(stored.orders, stored.fills, stored.next_order_seq)
        self.checkpoint = stored.checkpoint
        self.report = reconcile(self.oms, self.venue, self.instrument.symbol, self.clock.now_ns())
        self.journal.record_position(self.portfolio, self.instrument.symbol, self.clock.now_ns())
        self.journal.flush()
        return self.report

    def _check_store_knows_venue(self, stored_orders: list[Order]) -> None:
        """A store with no order of this bot while its venue log holds some was lost or replaced
        (the log is keyed by the store's URL). Reconciling would adopt the venue's history as
        foreign orders and trade again from the first tick, colliding with its own order ids:
        refuse, and say what happened and what to do."""
        held = len(self.venue.book.orders)
        if not stored_orders and held:
            raise StoreLost(f"the store has no record of bot {self.config.bot_id!r} but its paper venue log "
                            f"{self.config.venue_log} holds {held} orders: the store was lost or replaced; "
                            "restore it, or archive the venue log to start afresh")

    def run(self, ticks: Iterable[tuple[int, Tick]]) -> int:
        """Process (sequence, tick) pairs after the checkpoint; returns how many were new."""
        s = self.instrument.scales
        journal = self.journal
        processed = 0
        for seq, tick in ticks:
            if seq <= self.checkpoint:
                continue
            try:
                self._process(seq, tick, s)
            except SQLAlchemyError as exc:  # the store went away: stop, never trade unjournaled
                raise StoreUnavailable(f"cannot write to the store, trading stopped at input {seq}: "
                                       f"{str(getattr(exc, 'orig', exc)).splitlines()[0]}") from None
            processed += 1
        journal.flush()
        return processed

    def _process(self, seq: int, tick: Tick, s: Scales) -> None:
        self.clock.ts = max(self.clock.ts, tick.ts)
        if self.guard.admit(tick):
            self._roll_day(tick, s)
            self.venue.on_tick(seq, self._raw(tick.bid, s.price_dp, s.price_step),
                               self._raw(tick.ask, s.price_dp, s.price_step),
                               0 if tick.size != tick.size else int(tick.size * 10**s.qty_dp), tick.ts)
            self.strategy.on_tick(tick)
        self.journal.set_checkpoint(seq)
        self.checkpoint = seq
        if self.journal.pending or seq % self.config.checkpoint_every == 0:
            self.journal.flush()

    def _roll_day(self, tick: Tick, s: Scales) -> None:
        """At the first tick of a UTC day, book the previous day's P&L and an account snapshot."""
        day = tick.ts // DAY_NS
        if day == self._day:
            return
        portfolio, position = self.portfolio, self.portfolio.positions[self.instrument.symbol]
        mid = self._raw((tick.bid + tick.ask) / 2 if tick.bid == tick.bid else tick.last, s.price_dp, s.price_step)
        marks = {self.instrument.symbol: mid}
        equity = portfolio.equity_raw(marks)
        realized, fees = portfolio.realized_pnl_raw, portfolio.fees_raw
        if self._day >= 0:
            start_realized, start_fees, _ = self._day_start
            self.journal.record_day(
                "default", datetime.fromtimestamp(self._day * 86_400, tz=timezone.utc).date(),
                {"ts": tick.ts, "cash": portfolio.cash, "equity": s.cash(equity), "realized_pnl": s.cash(realized),
                 "unrealized_pnl": s.cash(portfolio.unrealized_pnl_raw(marks))},
                {"realized": s.cash(realized - start_realized), "unrealized": s.cash(position.unrealized_raw(mid)),
                 "fees": s.cash(fees - start_fees), "equity_close": s.cash(equity)})
        self._day, self._day_start = day, (realized, fees, equity)

    @staticmethod
    def _raw(price: float, dp: int, step: int) -> int:
        if price != price:
            return 0
        return div_round_half_even(round(price * 10**dp), step) * step
