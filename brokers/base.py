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
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from engine.instrument import Instrument
from engine.market import Tick
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType

if TYPE_CHECKING:
    import pandas as pd


class RejectReason(StrEnum):
    """Why a venue refused or dropped an order; adapters map their venue's codes onto these."""

    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    QTY_OFF_GRID = "QTY_OFF_GRID"
    PRICE_OFF_GRID = "PRICE_OFF_GRID"
    PRICE_MISSING = "PRICE_MISSING"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    MARKET_CLOSED = "MARKET_CLOSED"
    NO_LIQUIDITY = "NO_LIQUIDITY"
    UNSUPPORTED = "UNSUPPORTED"
    END_OF_DATA = "END_OF_DATA"
    RATE_LIMITED = "RATE_LIMITED"      # the venue throttled us and retries with backoff ran out
    VENUE_ERROR = "VENUE_ERROR"        # the venue failed (5xx, unavailable) and provably has no order
    TIMEOUT = "TIMEOUT"                # the answer was lost and the venue could not be asked
    DUPLICATE = "DUPLICATE"            # the venue already has an order with this client id
    INVALID_ORDER = "INVALID_ORDER"    # refused for a reason no finer code describes
    AUTH_FAILED = "AUTH_FAILED"
    INVALID_PRICE = "INVALID_PRICE"    # a price the venue will not take (MT5 10015)
    INVALID_STOPS = "INVALID_STOPS"    # a stop inside the venue's stops level (MT5 10016)
    TRADE_DISABLED = "TRADE_DISABLED"  # trading off for the symbol or the account
    PRICE_CHANGED = "PRICE_CHANGED"    # requotes ran out (MT5 10004/10020)


def missing_price(order: Order) -> bool:
    """A limit needs a limit price, a stop a stop price, a stop-limit both, a market neither."""
    needs_limit = order.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = order.type in (OrderType.STOP, OrderType.STOP_LIMIT)
    return needs_limit != (order.limit_price is not None) or needs_stop != (order.stop_price is not None)


def price_refusal(order: Order, instrument: Instrument) -> RejectReason | None:
    """The price checks every venue shares: PRICE_MISSING, then PRICE_OFF_GRID (not positive, or
    not a multiple of the instrument's tick)."""
    if missing_price(order):
        return RejectReason.PRICE_MISSING
    for price in (order.limit_price, order.stop_price):
        if price is not None and (price <= 0 or price % instrument.price_increment):
            return RejectReason.PRICE_OFF_GRID
    return None


class ExecutionSink(Protocol):
    """Receives what the venue did with an order. The OMS implements it."""

    def on_submitted(self, order: Order, ts: int) -> None: ...
    def on_accepted(self, order: Order, ts: int) -> None: ...
    def on_rejected(self, order: Order, ts: int, reason: str) -> None: ...
    def on_fill(self, order: Order, fill: Fill, bar: int) -> None: ...
    def on_canceled(self, order: Order, ts: int, reason: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order as the venue reports it, in domain terms."""

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    qty: Decimal
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    state: OrderState      # ACCEPTED, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED, EXPIRED
    reason: str | None
    ts: int                # ns UTC of the venue's last update

    @property
    def is_open(self) -> bool:
        return self.state in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED)

    def to_order(self, bot_id: str = "external") -> Order:
        """An engine Order with this venue order's terms (for adopting it as external)."""
        return Order(client_order_id=self.client_order_id, bot_id=bot_id, symbol=self.symbol,
                     side=self.side, type=self.type, qty=self.qty, ts_init=self.ts,
                     limit_price=self.limit_price, stop_price=self.stop_price,
                     venue_order_id=self.venue_order_id)


@dataclass(frozen=True, slots=True)
class VenuePosition:
    symbol: str
    qty: Decimal           # signed: short < 0
    avg_price: Decimal | None


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    currency: str
    cash: Decimal
    equity: Decimal
    buying_power: Decimal | None


class BrokerAdapter(Protocol):
    """What the engine needs from a venue."""

    name: str

    def connect(self, sink: ExecutionSink) -> None: ...     # login, load instruments, start the execution stream
    def close(self) -> None: ...
    def instruments(self) -> dict[str, Instrument]: ...     # symbol -> Instrument with the venue's increments/min/max
    def submit(self, order: Order) -> None: ...             # sends order.client_order_id as the venue's client id
    def cancel(self, order: Order) -> None: ...
    def order_status(self, client_order_id: str) -> VenueOrder | None: ...  # resolves a submit whose answer was lost
    def open_orders(self) -> list[VenueOrder]: ...
    def positions(self) -> list[VenuePosition]: ...
    def account(self) -> AccountSnapshot: ...
    def fills_since(self, ts: int) -> list[Fill]: ...       # execution_id = the venue's trade/deal id


class MarketDataFeed(Protocol):
    """Quotes and bars from a venue."""

    def subscribe(self, symbols: Sequence[str], on_tick: Callable[[Tick], None]) -> None: ...
    def history(self, symbol: str, timeframe: str, start: int, end: int) -> "pd.DataFrame": ...  # OHLCV, ns index
    def close(self) -> None: ...


class VenueUnreachable(Exception):
    """The venue could not be asked (network down, timeout, 5xx): whether it acted is unknown."""


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
        elif state in (OrderState.CANCELED, OrderState.EXPIRED):
            self.canceled(order, ts, venue_order.reason or (None if state is OrderState.CANCELED else "EXPIRED"))
