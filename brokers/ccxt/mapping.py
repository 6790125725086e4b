"""Pure conversions between ccxt's unified structures and tickbridge's domain types.

ccxt hands numbers over as floats (parsed from the exchange's decimal strings); every number is
taken back to Decimal through its shortest repr and put on the instrument's grid, so a price or
quantity is exact from here on. Venue errors map onto RejectReason values here too.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import ccxt

from brokers.base import RejectReason, VenueOrder, missing_price
from engine.instrument import AssetClass, Instrument
from engine.money import to_raw
from engine.orders import Fill, Liquidity, Order, OrderSide, OrderState, OrderType

NS_PER_MS = 1_000_000


def dec(value: Any) -> Decimal | None:
    """A ccxt number (float, int or numeric string) as an exact Decimal; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def increment(precision: Any, mode: int) -> Decimal | None:
    """A market precision entry as a step: TICK_SIZE gives the step, DECIMAL_PLACES a count."""
    if precision is None:
        return None
    if mode == ccxt.DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(precision))
    value = dec(precision)
    return None if value is None or value <= 0 else value.normalize()


def instrument_from_market(market: dict[str, Any], mode: int, venue: str) -> Instrument:
    """A ccxt market (precision, limits) as an Instrument on the venue's grid."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    price_inc = increment(precision.get("price"), mode) or Decimal("0.00000001")
    size_inc = increment(precision.get("amount"), mode) or Decimal("0.00000001")
    quote_inc = increment(precision.get("quote"), mode) or price_inc
    amount = limits.get("amount") or {}
    min_qty = dec(amount.get("min")) or Decimal(0)
    if min_qty and min_qty % size_inc:  # a minimum off the grid: the smallest size on it that passes
        min_qty = (min_qty // size_inc + 1) * size_inc
    max_qty = dec(amount.get("max"))
    if max_qty is not None:
        max_qty = (max_qty // size_inc) * size_inc
        if max_qty < max(min_qty, size_inc):
            max_qty = None
    contract_size = dec(market.get("contractSize")) if market.get("contract") else None
    multiplier = Decimal(1)
    if contract_size and contract_size == contract_size.to_integral_value():
        multiplier = contract_size  # the Instrument takes whole multipliers only
    return Instrument(
        symbol=market["symbol"], venue=venue, asset_class=AssetClass.CRYPTO,
        price_increment=price_inc, size_increment=size_inc, min_qty=min_qty.normalize() if min_qty else min_qty,
        max_qty=max_qty, multiplier=multiplier,
        quote_currency=market.get("quote") or "USD", currency_increment=min(quote_inc, price_inc * size_inc),
    )


def min_cost(market: dict[str, Any]) -> Decimal | None:
    return dec(((market.get("limits") or {}).get("cost") or {}).get("min"))


def on_grid(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def snap(value: Decimal, step: Decimal) -> Decimal:
    """Nearest point of the grid (venues report on their grid; this removes float noise only)."""
    return (value / step).quantize(Decimal(1), ROUND_HALF_EVEN) * step


# -- orders -------------------------------------------------------------------------------------
def ccxt_side(side: OrderSide) -> str:
    return "buy" if side is OrderSide.BUY else "sell"


def ccxt_type_and_params(order: Order, price_to_str: Any) -> tuple[str, dict[str, Any]]:
    """The unified type and the params for a stop (ccxt's triggerPrice / stopPrice)."""
    params: dict[str, Any] = {"clientOrderId": order.client_order_id}
    if order.type in (OrderType.STOP, OrderType.STOP_LIMIT):
        params["triggerPrice"] = price_to_str(order.stop_price)
    if order.type in (OrderType.MARKET, OrderType.STOP):
        return "market", params
    return "limit", params


def order_type(raw: dict[str, Any]) -> OrderType:
    trigger = raw.get("triggerPrice") or raw.get("stopPrice")
    info_type = str((raw.get("info") or {}).get("type", "")).upper()
    if info_type in ("STOP_LOSS", "STOP_MARKET", "STOP", "TAKE_PROFIT") and raw.get("type") == "market":
        return OrderType.STOP
    if info_type in ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
        return OrderType.STOP_LIMIT
    if raw.get("type") == "market":
        return OrderType.STOP if trigger else OrderType.MARKET
    return OrderType.STOP_LIMIT if trigger else OrderType.LIMIT


def order_state(raw: dict[str, Any]) -> OrderState:
    status = raw.get("status")
    filled = dec(raw.get("filled")) or Decimal(0)
    if status == "open" or status is None:
        return OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.ACCEPTED
    return {"closed": OrderState.FILLED, "canceled": OrderState.CANCELED, "canceling": OrderState.ACCEPTED,
            "rejected": OrderState.REJECTED, "expired": OrderState.EXPIRED}.get(status, OrderState.ACCEPTED)


def venue_order(raw: dict[str, Any], instrument: Instrument, client_order_id: str | None = None) -> VenueOrder:
    """A ccxt order as a VenueOrder. `client_order_id` overrides the answer's own (binance names
    a cancel request, not the order, in the answer to a cancel)."""
    price_inc, size_inc = instrument.price_increment, instrument.size_increment
    qty = snap(dec(raw.get("amount")) or Decimal(0), size_inc)
    filled = snap(dec(raw.get("filled")) or Decimal(0), size_inc)
    average = dec(raw.get("average"))
    if average is None and filled:
        cost = dec(raw.get("cost"))
        average = cost / filled if cost else None
    kind = order_type(raw)
    limit = dec(raw.get("price")) if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    stop = dec(raw.get("triggerPrice") or raw.get("stopPrice"))
    state = order_state(raw)
    ts_ms = raw.get("lastUpdateTimestamp") or raw.get("lastTradeTimestamp") or raw.get("timestamp") or 0
    return VenueOrder(
        client_order_id=client_order_id or raw.get("clientOrderId") or f"venue-{raw.get('id')}",
        venue_order_id=str(raw.get("id")), symbol=raw.get("symbol") or instrument.symbol,
        side=OrderSide.BUY if raw.get("side") == "buy" else OrderSide.SELL, type=kind, qty=qty, filled_qty=filled,
        avg_fill_price=average, limit_price=None if limit is None else snap(limit, price_inc),
        stop_price=None if stop is None else snap(stop, price_inc), state=state,
        reason=None if state is not OrderState.REJECTED else "REJECTED", ts=int(ts_ms) * NS_PER_MS,
    )


def fill_from_trade(trade: dict[str, Any], market_id: str, client_order_id: str, side: OrderSide,
                    instrument: Instrument, ts_ns: int) -> Fill:
    """A ccxt trade (or an order answer's fill) as a Fill on the instrument's grid.

    The execution id is `<market id>:<trade id>`: binance numbers trades per symbol. A fee charged
    in the quote currency is booked as is; one in the base currency at the trade's price; any
    other currency (a discount token) is not cash of this account and books as 0."""
    s = instrument.scales
    qty = snap(dec(trade.get("amount")) or Decimal(0), instrument.size_increment)
    price = snap(dec(trade.get("price")) or Decimal(0), instrument.price_increment)
    fee = Decimal(0)
    fee_info = trade.get("fee") or {}
    cost = dec(fee_info.get("cost"))
    if cost:
        currency = fee_info.get("currency")
        if currency == instrument.quote_currency:
            fee = cost
        elif instrument.symbol.split("/")[0] == currency:
            fee = cost * price
    fee_raw = to_raw(fee.quantize(instrument.currency_increment, ROUND_HALF_EVEN), s.cash_dp)
    taker = trade.get("takerOrMaker") != "maker"
    ts = trade.get("timestamp")
    return Fill(f"{market_id}:{trade.get('id')}", client_order_id, instrument.symbol, side,
                to_raw(qty, s.qty_dp), to_raw(price, s.price_dp), fee_raw, s.qty_dp, s.price_dp, s.cash_dp,
                int(ts) * NS_PER_MS if ts else ts_ns, Liquidity.TAKER if taker else Liquidity.MAKER)


# -- errors -------------------------------------------------------------------------------------
def reject_reason(error: Exception, order: Order | None = None, instrument: Instrument | None = None) -> RejectReason:
    """A ccxt exception the venue raised for a refused order, as a RejectReason."""
    text = str(error)
    if isinstance(error, ccxt.BadSymbol):
        return RejectReason.UNKNOWN_SYMBOL
    if isinstance(error, ccxt.InsufficientFunds):
        return RejectReason.INSUFFICIENT_FUNDS
    if isinstance(error, ccxt.MarketClosed):
        return RejectReason.MARKET_CLOSED
    if isinstance(error, ccxt.DuplicateOrderId) or "Duplicate order" in text:
        return RejectReason.DUPLICATE
    if isinstance(error, (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended)):
        return RejectReason.AUTH_FAILED
    if isinstance(error, ccxt.NotSupported):
        return RejectReason.UNSUPPORTED
    if isinstance(error, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):  # siblings under NetworkError
        return RejectReason.RATE_LIMITED
    if isinstance(error, ccxt.RequestTimeout):
        return RejectReason.TIMEOUT
    if isinstance(error, ccxt.OperationFailed):  # NetworkError, ExchangeNotAvailable, ...
        return RejectReason.VENUE_ERROR
    if isinstance(error, ccxt.InvalidOrder) or isinstance(error, ccxt.BadRequest):
        if "LOT_SIZE" in text or "amount" in text.lower():
            return _qty_reason(order, instrument)
        if "NOTIONAL" in text:
            return RejectReason.QTY_BELOW_MIN
        if "PRICE_FILTER" in text or "price" in text.lower():
            return RejectReason.PRICE_OFF_GRID
        return RejectReason.INVALID_ORDER
    return RejectReason.VENUE_ERROR


def _qty_reason(order: Order | None, instrument: Instrument | None) -> RejectReason:
    if order is None or order.qty is None or instrument is None:
        return RejectReason.QTY_OFF_GRID
    if order.qty < max(instrument.min_qty, instrument.size_increment):
        return RejectReason.QTY_BELOW_MIN
    if instrument.max_qty is not None and order.qty > instrument.max_qty:
        return RejectReason.QTY_ABOVE_MAX
    return RejectReason.QTY_OFF_GRID


def check_order(order: Order, instrument: Instrument | None, cost_min: Decimal | None = None) -> RejectReason | None:
    """What the venue would refuse, found before sending (same reasons as the venue's)."""
    if instrument is None:
        return RejectReason.UNKNOWN_SYMBOL
    if missing_price(order):
        return RejectReason.PRICE_MISSING
    if order.qty is None:
        return None if order.equity_fraction is not None and order.type is OrderType.MARKET else RejectReason.UNSUPPORTED
    if order.qty <= 0 or order.qty < instrument.min_qty:
        return RejectReason.QTY_BELOW_MIN
    if not on_grid(order.qty, instrument.size_increment):
        return RejectReason.QTY_OFF_GRID
    if instrument.max_qty is not None and order.qty > instrument.max_qty:
        return RejectReason.QTY_ABOVE_MAX
    for price in (order.limit_price, order.stop_price):
        if price is not None and (price <= 0 or not on_grid(price, instrument.price_increment)):
            return RejectReason.PRICE_OFF_GRID
    reference = order.limit_price or order.stop_price
    if cost_min is not None and reference is not None and reference * order.qty < cost_min:
        return RejectReason.QTY_BELOW_MIN
    return None
