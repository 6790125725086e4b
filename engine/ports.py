"""The ports the core owns: what a venue adapter and a market data feed must do for the OMS, and
the types they report in (DESIGN.md §7). Adapters live in brokers/ and implement these; the core
(OMS, reconcile, risk) depends only on this module, never on brokers/ (the layering contracts in
pyproject.toml hold it). brokers/base.py re-exports every name for the adapters' convenience.
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
    # optional: a venue that moves a trailing stop's trigger reports it with on_trailed(order, stop_price, ts)


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


class AmendingAdapter(Protocol):
    """An adapter that can change a working order in place (issue 17): BrokerAdapter's optional
    `amend`. It returns None when the venue took the change, else the reason it changed nothing.
    The OMS refuses amend (UNSUPPORTED) on an adapter without it rather than emulate it with
    cancel + replace: a cancel that loses the race with a fill, followed by the replacement, would
    leave two orders' worth of exposure."""

    def amend(self, order: Order, price: Decimal | None, qty: Decimal | None) -> str | None: ...


class MarketDataFeed(Protocol):
    """Quotes and bars from a venue."""

    def subscribe(self, symbols: Sequence[str], on_tick: Callable[[Tick], None]) -> None: ...
    def history(self, symbol: str, timeframe: str, start: int, end: int) -> "pd.DataFrame": ...  # OHLCV, ns index
    def close(self) -> None: ...


class VenueUnreachable(Exception):
    """The venue could not be asked (network down, timeout, 5xx): whether it acted is unknown."""
