"""Pure conversions between ccxt's unified structures and tickbridge's domain types.

ccxt hands numbers over as floats (parsed from the exchange's decimal strings); every number is
taken back to Decimal through its shortest repr and put on the instrument's grid, so a price or
quantity is exact from here on. Venue errors map onto RejectReason values here too.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

import ccxt

from brokers.base import RejectReason, VenueOrder, missing_price
from engine.instrument import AssetClass, Instrument
from engine.money import to_raw
from engine.orders import Fill, Liquidity, Order, OrderSide, OrderState, OrderType, TimeInForce

NS_PER_MS = 1_000_000
FINEST = Decimal("0.00000001")  # the grid of a market whose step depends on the value (significant digits)


def dec(value: Any) -> Decimal | None:
    """A ccxt number (float, int or numeric string) as an exact Decimal; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def increment(precision: Any, mode: int) -> Decimal | None:
    """A market precision entry as a step: TICK_SIZE gives the step, DECIMAL_PLACES a count.

    SIGNIFICANT_DIGITS (bitfinex, bithumb, ...) gives a count of significant digits: the step
    depends on the value (5 digits: 0.0001 at 1.2345, 10 at 12345), so no fixed step exists. The
    instrument then takes the finest grid and ccxt's own amount_to_precision / price_to_precision
    decide at submit (the adapter refuses what they would change)."""
    if precision is None:
        return None
    if mode == ccxt.DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(precision))
    if mode == ccxt.SIGNIFICANT_DIGITS:
        return FINEST
    value = dec(precision)
    return None if value is None or value <= 0 else value.normalize()


def instrument_from_market(market: dict[str, Any], mode: int, venue: str,
                           leverage: Decimal | None = None) -> Instrument:
    """A ccxt market (precision, limits) as an Instrument on the venue's grid.

    A linear contract (USD-M perpetual) is a FUTURE traded on margin: `leverage` (the account's
    setting for the symbol) makes the books move only realized P&L, fees and funding, the quote
    currency is the settle currency and the contract size the multiplier."""
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
    # The wallet keeps the coin finer than the lot step (Binance and bybit: 8 decimals), and a fee
    # taken in the coin bought is charged at that precision: the books need it to match the wallet.
    base_inc = increment(precision.get("base"), mode)
    asset_dp = max(_decimals(size_inc), _decimals(base_inc) if base_inc else 8)
    contract = bool(market.get("contract"))
    return Instrument(
        symbol=market["symbol"], venue=venue, asset_class=AssetClass.FUTURE if contract else AssetClass.CRYPTO,
        price_increment=price_inc, size_increment=size_inc, min_qty=min_qty.normalize() if min_qty else min_qty,
        max_qty=max_qty, multiplier=multiplier,
        quote_currency=(market.get("settle") if contract else None) or market.get("quote") or "USD",
        currency_increment=min(quote_inc, price_inc * size_inc),
        asset_dp=min(asset_dp, 18), base_currency=(market.get("base") or "") if contract else "",
        leverage=leverage if contract else None,
        fraction_sizing="notional",   # the adapter sizes fraction x equity of exposure (within free margin)
        shortable=bool(contract),     # spot sells only coins: beyond the bot's, the trader's own
    )


def _decimals(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def min_cost(market: dict[str, Any]) -> Decimal | None:
    return dec(((market.get("limits") or {}).get("cost") or {}).get("min"))


def on_grid(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def snap(value: Decimal, step: Decimal) -> Decimal:
    """Nearest point of the grid (venues report on their grid; this removes float noise only)."""
    return (value / step).quantize(Decimal(1), ROUND_HALF_EVEN) * step


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    """The grid point at or below `value`: a holding is never reported as more than the wallet has
    (0.919741 LTC on a 0.001 grid is 0.919, not 0.920)."""
    return (value / step).quantize(Decimal(1), ROUND_DOWN) * step


# -- orders -------------------------------------------------------------------------------------
def ccxt_side(side: OrderSide) -> str:
    return "buy" if side is OrderSide.BUY else "sell"


POST_ONLY_TAG = "post_only"   # Order.tag asking for a maker-only limit (the engine has no field for it)


def ccxt_type_and_params(order: Order, price_to_str: Any, contract: bool = False) -> tuple[str, dict[str, Any]]:
    """The unified type and params: the client id, a stop's triggerPrice, and the time in force
    in ccxt's unified params (`timeInForce` GTC / IOC / FOK, `postOnly`), which ccxt turns into
    the venue's own (binance: timeInForce, and LIMIT_MAKER for post-only; GTX on futures). Market
    orders carry none: binance refuses a timeInForce on them. DAY is refused before
    (`check_order`). On a contract market a reduce-only order carries ccxt's `reduceOnly` (the
    venue refuses it if it would open or grow a position); spot has no such flag."""
    params: dict[str, Any] = {"clientOrderId": order.client_order_id}
    if contract and order.reduce_only:
        params["reduceOnly"] = True
    if order.type in (OrderType.STOP, OrderType.STOP_LIMIT):
        params["triggerPrice"] = price_to_str(order.stop_price)
    if order.type in (OrderType.MARKET, OrderType.STOP):
        return "market", params
    if order.tag == POST_ONLY_TAG:
        params["postOnly"] = True
    else:
        params["timeInForce"] = order.tif.value
    return "limit", params


_TAKE_PROFIT = ("TAKE_PROFIT", "TAKE_PROFIT_LIMIT", "TAKE_PROFIT_MARKET")


def order_type(raw: dict[str, Any]) -> OrderType:
    """A take-profit is not a stop: it triggers on the other side of the market (a sell when the
    price rises to it), where a limit at its trigger would execute. tickbridge has no if-touched
    type, so it is reported as that LIMIT (see `venue_order` for its price)."""
    trigger = raw.get("triggerPrice") or raw.get("stopPrice")
    info_type = str((raw.get("info") or {}).get("type", "")).upper()
    if info_type in _TAKE_PROFIT or raw.get("takeProfitPrice"):
        return OrderType.LIMIT
    if info_type in ("STOP_LOSS", "STOP_MARKET", "STOP") and raw.get("type") == "market":
        return OrderType.STOP
    if info_type == "STOP_LOSS_LIMIT":
        return OrderType.STOP_LIMIT
    if raw.get("type") == "market":
        return OrderType.STOP if trigger else OrderType.MARKET
    return OrderType.STOP_LIMIT if trigger else OrderType.LIMIT


def order_state(raw: dict[str, Any]) -> OrderState:
    """ccxt's unified status as a state. A cancel still pending (binance PENDING_CANCEL, ccxt
    "canceling") leaves the order working: PARTIALLY_FILLED if it has fills, else ACCEPTED."""
    status = raw.get("status")
    filled = dec(raw.get("filled")) or Decimal(0)
    if status in ("open", "canceling") or status is None:
        return OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.ACCEPTED
    return {"closed": OrderState.FILLED, "canceled": OrderState.CANCELED,
            "rejected": OrderState.REJECTED, "expired": OrderState.EXPIRED}.get(status, OrderState.ACCEPTED)


def venue_order(raw: dict[str, Any], instrument: Instrument, client_order_id: str | None = None,
                order: Order | None = None) -> VenueOrder:
    """A ccxt order as a VenueOrder. `client_order_id` overrides the answer's own (binance names
    a cancel request, not the order, in the answer to a cancel). `order`: the order this answers;
    what the answer leaves out comes from it (bybit answers a create with the ids alone: no side,
    amount or status, which would otherwise read as a SELL of 0)."""
    price_inc, size_inc = instrument.price_increment, instrument.size_increment
    if order is not None and raw.get("side") is None:
        raw = {**raw, "side": ccxt_side(order.side), "amount": raw.get("amount") or order.qty,
               "type": raw.get("type") or ("market" if order.type in (OrderType.MARKET, OrderType.STOP) else "limit"),
               "price": raw.get("price") or order.limit_price,
               "triggerPrice": raw.get("triggerPrice") or order.stop_price,
               "timestamp": raw.get("timestamp") or order.ts_init // NS_PER_MS or None}
    qty = snap(dec(raw.get("amount")) or Decimal(0), size_inc)
    filled = snap(dec(raw.get("filled")) or Decimal(0), size_inc)
    average = dec(raw.get("average"))
    if average is None and filled:
        cost = dec(raw.get("cost"))
        average = cost / filled if cost else None
    kind = order_type(raw)
    limit = dec(raw.get("price")) if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    stop = dec(raw.get("triggerPrice") or raw.get("stopPrice"))
    if kind is OrderType.LIMIT and stop is not None:  # a take-profit: a market one has no price of its own
        limit, stop = (limit if limit else stop), None
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

    The execution id is `<market id>:<trade id>`: binance numbers trades per symbol. The fee is
    reported as the venue charged it: in the quote currency it is `fee_raw` (cash); in any other
    currency (binance takes it in the coin bought, or in BNB) it is `fee_currency` with its exact
    amount in `fee_native_raw` / `fee_native_dp`, and `fee_raw` is 0: the books value it, the
    adapter does not guess a rate. A quote fee finer than the instrument's cash grid is reported
    the same way (in the quote currency), not rounded."""
    s = instrument.scales
    qty = snap(dec(trade.get("amount")) or Decimal(0), instrument.size_increment)
    price = snap(dec(trade.get("price")) or Decimal(0), instrument.price_increment)
    fee_raw, fee_currency, native_raw, native_dp = 0, "", 0, 0
    cost, currency = fee_of(trade)
    if cost:
        if currency in (None, "", instrument.quote_currency) and on_grid(cost, instrument.currency_increment):
            fee_raw = to_raw(cost, s.cash_dp)
        else:  # another currency, or finer than the books' cash grid: never rounded here
            currency = currency or instrument.quote_currency
            fee_currency = str(currency)
            native_dp = max(0, -cost.normalize().as_tuple().exponent)  # type: ignore[operator]
            native_raw = to_raw(cost, native_dp)
    taker = trade.get("takerOrMaker") != "maker"
    ts = trade.get("timestamp")
    return Fill(f"{market_id}:{trade.get('id')}", client_order_id, instrument.symbol, side,
                to_raw(qty, s.qty_dp), to_raw(price, s.price_dp), fee_raw, s.qty_dp, s.price_dp, s.cash_dp,
                int(ts) * NS_PER_MS if ts else ts_ns, Liquidity.TAKER if taker else Liquidity.MAKER,
                fee_currency=fee_currency, fee_native_raw=native_raw, fee_native_dp=native_dp)


def fee_of(trade: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    """The trade's fee as (amount, currency): ccxt's `fee`, else the first non-zero of `fees`
    (a venue trade is charged in one currency)."""
    fees = [f for f in (trade.get("fees") or []) if f and dec(f.get("cost"))]
    info = trade.get("fee") or (fees[0] if fees else {})
    return dec(info.get("cost")), info.get("currency")


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
    if isinstance(error, ccxt.DuplicateOrderId) or "Duplicate order" in text or "Duplicate clientOrderId" in text \
            or "ClientOrderId is duplicated" in text:  # binance futures -4116
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
        if "trigger immediately" in text or "immediately trigger" in text or "relationship of the prices" in text:
            return RejectReason.INVALID_STOPS  # binance -2010 / -2021: a stop on the wrong side of the market
        if "NOTIONAL" in text.upper() or "170140" in text:  # binance filter (futures -4164: "notional") / bybit
            return RejectReason.QTY_BELOW_MIN
        lower = text.lower()
        if "LOT_SIZE" in text or "amount" in lower or "quantity" in lower or "qty" in lower:
            return _qty_reason(order, instrument)
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


def check_order(order: Order, instrument: Instrument | None, cost_min: Decimal | None = None,
                stops: bool = True) -> RejectReason | None:
    """What the venue would refuse, found before sending (same reasons as the venue's). `stops`
    False: the market takes no stop orders through this adapter (binance futures: ccxt sends them
    to the separate algo-order API, whose orders the adapter does not follow): UNSUPPORTED."""
    if instrument is None:
        return RejectReason.UNKNOWN_SYMBOL
    if missing_price(order):
        return RejectReason.PRICE_MISSING
    if not stops and order.type in (OrderType.STOP, OrderType.STOP_LIMIT):
        return RejectReason.UNSUPPORTED
    if order.tif is TimeInForce.DAY:
        return RejectReason.UNSUPPORTED  # crypto venues trade around the clock: no session to end
    if order.qty is None:
        return (None if order.equity_fraction is not None and order.type is OrderType.MARKET
                else RejectReason.UNSUPPORTED)
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
