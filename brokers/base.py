"""The contracts every venue adapter meets (DESIGN.md §7).

An adapter converts venue objects into domain types at its boundary and reports what happens to
orders through an ExecutionSink (the OMS). The paper adapter (brokers/paper/adapter.py) is the
reference implementation; the ccxt, Alpaca and MetaTrader 5 adapters implement the same protocol
and pass the same conformance suite (tests/conformance/).

Submit semantics shared by every adapter:
- `submit` sends `order.client_order_id` as the venue's client id; results (accepted, rejected,
  fills, cancels) arrive through the sink, possibly later and from another thread's stream.
- A submit whose answer is lost (timeout, dropped connection) is never resent blindly: the
  adapter looks the order up by client order id (`order_status`) and reports what it finds; it
  submits again only if the venue provably does not have it.
- Venue errors map onto RejectReason values; an adapter never lets a venue exception escape a
  submit or cancel for a refusal the venue made.
- An equity-fraction order is a fraction of the *bot's* equity (`SizingEquity`, which the runtime
  gives every adapter it builds), not of the venue account's: the account is shared with other
  bots and with whatever the trader holds there (`fraction_equity`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Sequence

from engine.orders import Fill, Order, OrderState
from engine.ports import (  # noqa: F401 - the ports, re-exported for the adapters
    AccountSnapshot, BrokerAdapter, ExecutionSink, MarketDataFeed, RejectReason, VenueOrder, VenuePosition,
    VenueUnreachable, missing_price, price_refusal,
)

# The bot's equity in the account currency, marked at its last guarded price (its own books, not
# the venue account's); None when it cannot be valued now (no price yet, no conversion rate).
SizingEquity = Callable[[], "Decimal | None"]


def fraction_equity(sizing_equity: SizingEquity | None, venue_equity: SizingEquity) -> Decimal | None:
    """The equity an equity-fraction order is a fraction of. Why: one venue account carries several
    bots and the trader's own holdings; sizing `go(1, 0.5)` of a bot given 10,000 by the whole
    account's 100,000 trades ten times the bot's capital (MT5, ccxt and Alpaca all did). The
    runtime wires each adapter's `sizing_equity` to its bot's books; an adapter used on its own
    (no bot, no books) sizes by the venue's equity (`venue_equity`, read only then), as the
    venue's own tools do. None: refuse."""
    return venue_equity() if sizing_equity is None else sizing_equity()


class OrderReporter:
    """What an adapter has told its sink, and how to tell it only what is new.

    Every adapter reports through one of these, so that a report arriving twice (a REST answer and
    then the stream, or a reconnect that replays what was missed) reaches the engine once, and in
    an order the engine's state machine accepts: submitted, accepted, fills (each execution id
    once), then a terminal cancel/reject/expiry unless the fills completed the order. Orders the
    venue has that nobody submitted through this adapter are reported starting with `on_accepted`
    (the OMS adopts an unknown client id as external on its first report).

    Not thread-safe by itself: an adapter that reports from a stream thread holds its own lock.
    """

    def __init__(self) -> None:
        self.sink: ExecutionSink | None = None
        self.orders: dict[str, Order] = {}            # client id -> the order we report about
        self._state: dict[str, OrderState] = {}       # client id -> last state reported
        self._execution_ids: set[str] = set()
        self._filled: dict[str, Decimal] = {}         # client id -> quantity of the fills reported
        self._fees: dict[str, dict[str, Decimal]] = {}  # client id -> fees charged outside the cash currency
        self._ours: set[str] = set()                  # submitted through this adapter

    def track(self, order: Order) -> None:
        """An order about to be submitted through this adapter."""
        self.orders.setdefault(order.client_order_id, order)
        self._ours.add(order.client_order_id)

    def _resolve(self, order: Order) -> Order:
        """Our order for this client id, or a copy flagged external for one nobody sent through us."""
        own = self.orders.get(order.client_order_id)
        if own is None:
            own = Order(client_order_id=order.client_order_id, bot_id=order.bot_id, symbol=order.symbol,
                        side=order.side, type=order.type, qty=order.qty, ts_init=order.ts_init,
                        limit_price=order.limit_price, stop_price=order.stop_price, tif=order.tif,
                        venue_order_id=order.venue_order_id, tag="external")
            self.orders[own.client_order_id] = own
        return own

    def knows(self, client_order_id: str) -> bool:
        return client_order_id in self.orders

    def reported(self, client_order_id: str) -> OrderState | None:
        return self._state.get(client_order_id)

    def has_fill(self, execution_id: str) -> bool:
        return execution_id in self._execution_ids

    def filled(self, client_order_id: str) -> Decimal:
        """The quantity of the fills reported for an order so far."""
        return self._filled.get(client_order_id, Decimal(0))

    def fee_in(self, client_order_id: str, currency: str) -> Decimal:
        """What the fills reported for an order were charged in `currency` as the venue charged it
        (a fee in the coin bought: the wallet received that much less than the fills' quantity)."""
        return self._fees.get(client_order_id, {}).get(currency, Decimal(0))

    # -- single reports -------------------------------------------------------------------------
    def submitted(self, order: Order, ts: int) -> None:
        order = self._resolve(order)
        if self._state.get(order.client_order_id) is None:
            self._state[order.client_order_id] = OrderState.SUBMITTED
            if self.sink is not None and self._is_ours(order):  # the engine adopts others on their next report
                self.sink.on_submitted(order, ts)

    def accepted(self, order: Order, ts: int) -> None:
        order = self._resolve(order)
        cid = order.client_order_id
        state = self._state.get(cid)
        if state is None and self._is_ours(order):
            self.submitted(order, ts)
            state = OrderState.SUBMITTED
        if state in (None, OrderState.SUBMITTED):
            self._state[cid] = OrderState.ACCEPTED
            if self.sink is not None:
                self.sink.on_accepted(order, ts)

    def rejected(self, order: Order, ts: int, reason: str) -> None:
        order = self._resolve(order)
        cid = order.client_order_id
        state = self._state.get(cid)
        if state is None:
            self.submitted(order, ts)
            state = OrderState.SUBMITTED
        if state is OrderState.SUBMITTED:
            self._state[cid] = OrderState.REJECTED
            if self.sink is not None:
                self.sink.on_rejected(order, ts, str(reason))
        elif state not in (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED):
            self.canceled(order, ts, str(reason))  # accepted, then dropped by the venue

    def fill(self, order: Order, fill: Fill, bar: int = -1) -> None:
        if fill.execution_id in self._execution_ids:
            return
        order = self._resolve(order)
        cid = order.client_order_id
        if self._state.get(cid) in (None, OrderState.SUBMITTED):
            self.accepted(order, fill.ts)
        self._execution_ids.add(fill.execution_id)
        self._filled[cid] = self._filled.get(cid, Decimal(0)) + fill.qty
        if fill.fee_currency and fill.fee_native_raw:
            fees = self._fees.setdefault(cid, {})
            fees[fill.fee_currency] = fees.get(fill.fee_currency, Decimal(0)) + fill.fee_native
        self._state[cid] = OrderState.PARTIALLY_FILLED
        if self.sink is not None:
            self.sink.on_fill(order, fill, bar)

    def canceled(self, order: Order, ts: int, reason: str | None) -> None:
        order = self._resolve(order)
        cid = order.client_order_id
        state = self._state.get(cid)
        if state in (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED):
            return
        if state is None:
            self.accepted(order, ts)
        self._state[cid] = OrderState.CANCELED
        if self.sink is not None:
            self.sink.on_canceled(order, ts, reason)

    def _is_ours(self, order: Order) -> bool:
        return order.client_order_id in self._ours

    # -- catching up from a venue snapshot ---------------------------------------------------------
    def catch_up(self, venue_order: VenueOrder, fills: Sequence[Fill]) -> None:
        """Report the difference between what the venue says and what was reported already.

        `fills` are the venue's executions for this order (any already reported are skipped)."""
        order = self._resolve(venue_order.to_order())
        state = venue_order.state
        ts = venue_order.ts
        if state is OrderState.REJECTED:
            self.rejected(order, ts, venue_order.reason or "REJECTED")
            return
        self.accepted(order, ts)
        for fill in sorted(fills, key=lambda f: f.ts):
            self.fill(order, fill)
        # filled only once the fills themselves were reported: a venue that says "filled" while
        # some fills could not be read (a page not fetched) leaves the order open to catch up again
        reported = self._filled.get(order.client_order_id, Decimal(0))
        done = venue_order.qty > 0 and venue_order.filled_qty >= venue_order.qty and reported >= venue_order.qty
        if done:
            self._state[order.client_order_id] = OrderState.FILLED
        elif state in (OrderState.CANCELED, OrderState.EXPIRED) and reported >= venue_order.filled_qty:
            # the same rule for an order that ended with part filled: final only once the fills it
            # made were reported, since the engine books no fill after a cancel; until then it stays
            # open here and the next catch-up (a reconcile) reports the fills, then the end
            self.canceled(order, ts, venue_order.reason or (None if state is OrderState.CANCELED else "EXPIRED"))
