"""The paper venue behind the BrokerAdapter contract.

PaperAdapter puts the existing simulated venue (SimulatedVenue, or DurablePaperVenue for a venue
that survives the engine) behind the same contract as the live adapters, without touching its
fill rules. The venue's reports pass through a book that records the venue's truth (orders,
fills) and then through a *link* to the engine: with the link up they reach the sink at once;
with the link down (`drop_stream`) the venue keeps trading but the engine hears nothing, like a
dropped websocket. `reconnect` raises the link and reports, order by order, what was missed.

A paper venue is in-process, so transport faults do not happen by themselves; `inject` makes the
next submit meet one (a lost answer, an unavailable or throttling venue) so that the submit
protocol every adapter follows can be exercised here too: a lost answer is resolved by client
order id and never resent blindly; a venue that provably lacks the order gets it again.
"""

from __future__ import annotations

import time
from collections import deque
from decimal import Decimal
from typing import Literal

from brokers.base import (AccountSnapshot, ExecutionSink, OrderReporter, RejectReason, VenueOrder, VenuePosition,
                          VenueUnreachable)
from brokers.paper.durable import DurablePaperVenue, VenueOrderRecord, _Book, order_from_dict, order_to_dict
from brokers.paper.venue import SimulatedVenue
from engine.instrument import Instrument
from engine.market import Tick
from engine.money import raw_price
from engine.orders import Fill, Order, OrderState

Fault = Literal["lost_answer", "unavailable", "rate_limited"]


class _AnswerLost(VenueUnreachable):
    """The venue took the request; its answer never came back."""


class _RateLimited(Exception):
    """The venue refused the request before acting on it; try again later."""


class _Link:
    """The venue's stream to the adapter: records nothing, forwards while up."""

    def __init__(self, adapter: "PaperAdapter") -> None:
        self.adapter = adapter
        self.up = True

    def on_submitted(self, order: Order, ts: int) -> None:
        if self.up:
            self.adapter._reporter.submitted(self.adapter._engine_order(order), ts)

    def on_accepted(self, order: Order, ts: int) -> None:
        if self.up:
            self.adapter._reporter.accepted(self.adapter._engine_order(order), ts)

    def on_rejected(self, order: Order, ts: int, reason: str) -> None:
        if self.up:
            self.adapter._reporter.rejected(self.adapter._engine_order(order), ts, reason)

    def on_fill(self, order: Order, fill: Fill, bar: int) -> None:
        self.adapter._count_fills(order.client_order_id)
        if self.up:
            engine_order = self.adapter._engine_order(order)
            if engine_order.qty is None:  # sized by the venue at fill time (equity fraction)
                engine_order.qty = order.qty
            self.adapter._reporter.fill(engine_order, fill, bar)

    def on_canceled(self, order: Order, ts: int, reason: str | None) -> None:
        if self.up:
            self.adapter._reporter.canceled(self.adapter._engine_order(order), ts, reason)


class PaperAdapter:
    """BrokerAdapter over one simulated (optionally durable) paper venue."""

    name = "PAPER"
    protective_orders = True  # carries parent/OCO/trailing links and amend (SimulatedVenue)

    @property
    def supports_expiry(self) -> bool:
        """GTD orders expire in the simulated venue (SimulatedVenue.supports_expiry); the durable
        venue's input log carries expire_ns, so a replay brings a GTD order back with its deadline."""
        return self._sim.supports_expiry

    def __init__(self, venue: SimulatedVenue | DurablePaperVenue, currency: str = "USD",
                 max_attempts: int = 3, backoff_s: float = 0.0) -> None:
        self.venue = venue
        self.currency = currency
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._reporter = OrderReporter()
        self._link = _Link(self)
        self._faults: deque[Fault] = deque()
        self.duplicate_submits: list[str] = []
        self._durable = isinstance(venue, DurablePaperVenue)
        if isinstance(venue, DurablePaperVenue):
            self._sim = venue.venue
            self._book = venue.book
        else:
            self._sim = venue
            self._book = _Book()
            venue.connect(self._book)
        self._book.downstream = self._link
        self._marks: dict[str, Decimal] = {}
        self._quote: tuple[int, int] | None = None  # the last (bid, ask) of on_quote, raw: a mark on read
        for client_order_id in self._book.orders:
            self._count_fills(client_order_id)

    @property
    def instrument(self) -> Instrument:
        return self._sim.instrument

    # -- lifecycle ------------------------------------------------------------------------------
    def connect(self, sink: ExecutionSink) -> None:
        self._reporter.sink = sink
        self._link.up = True
        self._catch_up()

    def close(self) -> None:
        self._link.up = False
        if isinstance(self.venue, DurablePaperVenue):
            self.venue.close()

    def instruments(self) -> dict[str, Instrument]:
        return {self.instrument.symbol: self.instrument}

    # -- orders ---------------------------------------------------------------------------------
    def submit(self, order: Order) -> None:
        self._reporter.track(order)
        for attempt in range(self.max_attempts):
            try:
                self._send(order)
                return
            except _RateLimited:
                reason = RejectReason.RATE_LIMITED
            except VenueUnreachable:
                found = self.order_status(order.client_order_id)
                if found is not None:  # the venue has it: report what it did, never send again
                    self._catch_up_order(found)
                    return
                reason = RejectReason.VENUE_ERROR  # provably absent: it may be sent again
            time.sleep(self.backoff_s * 2**attempt)
        self._reporter.rejected(order, self._sim._ts, reason)

    def _send(self, order: Order) -> None:
        fault = self._faults.popleft() if self._faults else None
        if fault == "rate_limited":
            raise _RateLimited()
        if fault == "unavailable":
            raise VenueUnreachable("paper venue unavailable")
        up = self._link.up
        if fault == "lost_answer":
            self._link.up = False  # the venue acts, the answer is lost on the way back
        try:
            if isinstance(self.venue, DurablePaperVenue):
                self.venue.submit(order)
            else:
                if order.client_order_id in self._book.orders:
                    self.duplicate_submits.append(order.client_order_id)  # never a second order for one id
                    return
                copy = order_from_dict(order_to_dict(order))  # the venue's own copy, as a remote venue has
                self._book.orders[order.client_order_id] = VenueOrderRecord(copy, OrderState.SUBMITTED)
                self.venue.submit(copy)
        finally:
            self._link.up = up
        if fault == "lost_answer":
            raise _AnswerLost("answer lost")

    def cancel(self, order: Order) -> None:
        record = self._book.orders.get(order.client_order_id)
        if record is None:
            return
        if isinstance(self.venue, DurablePaperVenue):
            self.venue.cancel(order)
        else:
            self._sim.cancel(record.order)  # the venue's copy

    def amend(self, order: Order, price: Decimal | None = None, qty: Decimal | None = None) -> str | None:
        """Change a working order's price and/or quantity at the venue (SimulatedVenue.amend):
        None when done, else the reason it changed nothing. The venue answers at once, so the OMS
        updates its own order on None (OrderManager.amend)."""
        record = self._book.orders.get(order.client_order_id)
        if record is None:
            return "NOT_WORKING"
        if isinstance(self.venue, DurablePaperVenue):
            return self.venue.amend(order, price, qty)
        return self._sim.amend(record.order, price, qty)  # the venue's copy

    # -- market data into the venue -------------------------------------------------------------
    def on_tick(self, bid: Decimal, ask: Decimal, size: Decimal = Decimal(0), ts: int = 0,
                seq: int | None = None) -> None:
        """Match working orders against one quote (Decimal prices on the instrument's grid)."""
        s = self.instrument.scales
        raw_bid, raw_ask = int(bid.scaleb(s.price_dp)), int(ask.scaleb(s.price_dp))
        raw_size = int(size.scaleb(s.qty_dp))
        self._marks[self.instrument.symbol] = (bid + ask) / 2
        self._quote = None
        if isinstance(self.venue, DurablePaperVenue):
            self.venue.on_tick(self.venue.last_tick_seq + 1 if seq is None else seq, raw_bid, raw_ask, raw_size, ts)
        else:
            self._sim.on_tick(raw_bid, raw_ask, raw_size, ts)
        if self._sim._trailing:
            self._report_trails(ts)

    def on_quote(self, tick: Tick, seq: int | None = None) -> None:
        """Match working orders against one tick from a bot's feed (float prices, put on the grid
        as the backtester puts them: nearest tick, half to even). `seq`: the tick's position in a
        replayed feed; the durable venue matches each sequence once, so a restarted bot that
        offers its last tick again changes nothing."""
        s = self.instrument.scales
        raw_bid, raw_ask = raw_price(tick.bid, s.price_dp, s.price_step), raw_price(tick.ask, s.price_dp, s.price_step)
        raw_size = 0 if tick.size != tick.size else int(tick.size * 10**s.qty_dp)
        if raw_bid and raw_ask:
            self._quote = raw_bid, raw_ask  # the Decimal mid is made when account() reads it, not per tick
        if isinstance(self.venue, DurablePaperVenue):
            self.venue.on_tick(self.venue.last_tick_seq + 1 if seq is None else seq, raw_bid, raw_ask, raw_size,
                               tick.ts)
        else:
            self._sim.on_tick(raw_bid, raw_ask, raw_size, tick.ts)
        if self._sim._trailing:
            self._report_trails(tick.ts)

    # -- the stream -----------------------------------------------------------------------------
    def drop_stream(self) -> None:
        self._link.up = False

    def reconnect(self) -> None:
        """Raise the link again and report everything the venue did meanwhile."""
        self._link.up = True
        self._catch_up()

    def _catch_up(self) -> None:
        for record in list(self._book.orders.values()):
            self._catch_up_order(self._venue_order(record))

    def _catch_up_order(self, venue_order: VenueOrder) -> None:
        record = self._book.orders[venue_order.client_order_id]
        self._reporter.catch_up(venue_order, record.fills)

    # -- queries --------------------------------------------------------------------------------
    def order_status(self, client_order_id: str) -> VenueOrder | None:
        record = self._book.orders.get(client_order_id)
        return None if record is None else self._venue_order(record)

    def open_orders(self) -> list[VenueOrder]:
        return [v for v in map(self._venue_order, self._book.orders.values()) if v.is_open]

    def positions(self) -> list[VenuePosition]:
        out = []
        for symbol, position in self._sim.account.positions.items():
            if position.qty:
                out.append(VenuePosition(symbol, position.quantity, position.avg_price))
        return out

    def account(self) -> AccountSnapshot:
        if self._quote is not None:
            s = self.instrument.scales
            self._marks[self.instrument.symbol] = (s.price(self._quote[0]) + s.price(self._quote[1])) / 2
            self._quote = None
        account = self._sim.account
        if self.instrument.on_margin:  # balance + floating P&L; buying power is the free margin
            s = self.instrument.scales
            marks = {sym: int(m.scaleb(s.price_dp)) for sym, m in self._marks.items()}  # a half-tick mid: floored
            step = self.instrument.currency_increment
            return AccountSnapshot(account.currency or self.currency, account.cash,
                                   s.cash(account.equity_raw(marks)).quantize(step),
                                   s.cash(account.free_margin_raw(marks)).quantize(step))
        equity = account.cash
        for symbol, position in account.positions.items():
            if position.qty:
                mark = self._marks.get(symbol, position.avg_price)
                equity += position.quantity * mark * position.scales.multiplier  # type: ignore[operator]
        cash_step = self.instrument.currency_increment
        return AccountSnapshot(self.currency, account.cash, equity.quantize(cash_step), None)

    def fills_since(self, ts: int) -> list[Fill]:
        return [f for f in self._book.fills if f.ts >= ts]

    # -- faults ---------------------------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        """The next submit meets `fault` (for tests and drills)."""
        self._faults.append(fault)

    # -- helpers --------------------------------------------------------------------------------
    def _count_fills(self, client_order_id: str) -> None:
        """The venue works on its own copy of each order and does not count that copy's fills
        (in a backtest the engine's order is the venue's, and the OMS counts), so after a partial
        fill the next one would take the whole quantity again. Set the count from the book
        (idempotent: harmless once durable.py counts them itself)."""
        record = self._book.orders[client_order_id]
        record.order.filled_qty = sum((f.qty for f in record.fills), Decimal(0))

    def _report_trails(self, ts: int) -> None:
        """Tell the engine where the venue's trailing stops work now: the venue ratchets its own
        copies, and the engine's order would otherwise keep the level it was sent with (a remote
        venue reports the new trigger the same way; reported while the link is up, the next tick
        after a drop reports the level then)."""
        sink = self._reporter.sink
        report = getattr(sink, "on_trailed", None)
        if report is None or not self._link.up:
            return
        for venue_copy in self._sim._trailing:
            engine = self._engine_order(venue_copy)
            if engine is not venue_copy and venue_copy.stop_price is not None \
                    and engine.stop_price != venue_copy.stop_price:
                report(engine, venue_copy.stop_price, ts)

    def _engine_order(self, venue_copy: Order) -> Order:
        return self._reporter.orders.get(venue_copy.client_order_id, venue_copy)

    def _venue_order(self, record: VenueOrderRecord) -> VenueOrder:
        order = record.order
        filled = sum((f.qty for f in record.fills), Decimal(0))
        avg = None
        if record.fills:
            avg = sum((f.qty * f.price for f in record.fills), Decimal(0)) / filled
            on_grid = avg.quantize(self.instrument.price_increment)
            avg = on_grid if avg == on_grid else avg  # exact, and written on the grid when it lies on it
        state = record.state
        if state is OrderState.SUBMITTED:  # the simulated venue accepts a market order silently
            state = OrderState.ACCEPTED
        ts = record.fills[-1].ts if record.fills else order.ts_init
        return VenueOrder(order.client_order_id, f"PAPER-{order.client_order_id}", order.symbol, order.side,
                          order.type, order.qty or Decimal(0), filled, avg, order.limit_price, order.stop_price,
                          state, record.reason, ts)
