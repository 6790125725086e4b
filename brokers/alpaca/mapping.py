"""Alpaca venue facts in domain terms: HTTP errors to reasons, order requests, order and fill
JSON to domain types, assets to instruments. Pure functions; the adapter does the I/O.

Numbers: the adapter runs alpaca-py with `raw_data=True`, so quantities and prices arrive as the
JSON strings Alpaca sends and become Decimal without passing through float. Requests go out as
the SDK's request models, which hold floats: a Decimal with at most 15 significant digits
survives the float and JSON round trip digit for digit (Python writes the shortest repr).

Execution ids: a fill reaches the adapter twice, on the trade_updates stream and in the FILL
activities (after a reconnect, or in `fills_since`), and Alpaca does not document that the two
carry the same id. Both carry the order id and the order's cumulative filled quantity after the
fill, which is unique per execution of an order, so the execution id is `<order id>@<cum qty>`:
one fill, one id, whichever way it came.

Symbols: crypto orders and assets are "BTC/USD", positions (alpaca-py's own fixture) and fill
activities may say "BTCUSD". Everything is read back to the slash form (`symbol_of`), so a crypto
position reconciles with the orders that made it.

Statuses (Alpaca's order lifecycle): `done_for_day` is not an end (a GTC order works again the
next session; a DAY order is then `expired`); `replaced` ends this order (another, with its own
id, took its place); `pending_cancel` / `pending_replace` are still open. A `trailing_stop` is
reported as a STOP at its current stop price (the engine has no trailing type yet).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from brokers.base import AccountSnapshot, RejectReason, VenueOrder, VenuePosition
from engine.charges import AccountCharge, ChargeKind
from engine.instrument import AssetClass, Instrument
from engine.money import to_raw
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType, TimeInForce

log = logging.getLogger(__name__)

EQUITY_PRICE_INCREMENT = Decimal("0.0001")   # fills carry up to 4 decimals; limits >= $1 must be whole cents
FRACTIONAL_INCREMENT = Decimal("0.000000001")

# -- errors ----------------------------------------------------------------------------------------
RETRY = "retry"        # nothing happened: back off and send again
LOOKUP = "lookup"      # the venue may have the order: look it up by client id before anything else
FINAL = "final"        # a refusal: report it


def classify_error(status: int | None, message: str) -> tuple[str, str]:
    """(what to do, reason) for an HTTP error answer to POST /v2/orders."""
    text = message.lower()
    if status == 429:
        return RETRY, RejectReason.RATE_LIMITED
    if status is None or status >= 500:
        return LOOKUP, RejectReason.VENUE_ERROR
    if "client_order_id" in text and "unique" in text:
        return LOOKUP, RejectReason.DUPLICATE
    if status in (401,):
        return FINAL, RejectReason.AUTH_FAILED
    if "buying power" in text or "insufficient" in text:
        return FINAL, RejectReason.INSUFFICIENT_FUNDS
    if "not allowed to short" in text or "not shortable" in text:
        return FINAL, RejectReason.TRADE_DISABLED
    if "market" in text and "closed" in text:
        return FINAL, RejectReason.MARKET_CLOSED
    if "asset" in text and ("not found" in text or "not active" in text or "not tradable" in text):
        return FINAL, RejectReason.UNKNOWN_SYMBOL
    if "sub-penny" in text or "price increment" in text:
        return FINAL, RejectReason.PRICE_OFF_GRID
    if "qty must be >=" in text or "notional must be >=" in text or "minimum" in text:
        return FINAL, RejectReason.QTY_BELOW_MIN
    if "fractional" in text or "multiple of" in text:
        return FINAL, RejectReason.QTY_OFF_GRID
    if "limit_price" in text and "required" in text:
        return FINAL, RejectReason.PRICE_MISSING
    return FINAL, RejectReason.INVALID_ORDER


def error_message(body: str) -> str:
    import json
    try:
        parsed = json.loads(body)
        return str(parsed.get("message", body)) if isinstance(parsed, dict) else body
    except (ValueError, TypeError):
        return body or ""


# -- requests --------------------------------------------------------------------------------------
_TIF = {TimeInForce.GTC: "gtc", TimeInForce.DAY: "day", TimeInForce.IOC: "ioc", TimeInForce.FOK: "fok"}


def time_in_force(order: Order, instrument: Instrument, notional: Decimal | None = None) -> str | None:
    """Alpaca's time in force for the order, or None when Alpaca would refuse it.

    Crypto takes gtc and ioc only. A fractional or notional equity order must be a DAY order: a
    market one is sent as day (it executes at once, or at the next open, either way), a resting
    one is refused rather than have its lifetime shortened behind the trader's back."""
    tif = _TIF[order.tif]
    if instrument.asset_class is AssetClass.CRYPTO:
        return tif if tif in ("gtc", "ioc") else None
    fractional = notional is not None or (order.qty is not None and order.qty != order.qty.to_integral_value())
    if fractional and tif != "day":
        return "day" if order.type is OrderType.MARKET and tif == "gtc" else None
    return tif


def extended_hours(order: Order, instrument: Instrument, tif: str, asked: bool) -> bool:
    """Whether to send the order with `extended_hours=True`: the account asked for extended hours
    (`asked`), and Alpaca takes the flag on LIMIT orders with time in force DAY only (anything
    else is refused, 422 "extended hours order must be DAY limit orders"), on US equities (crypto
    trades around the clock: there are no extended hours). Other orders go without the flag, so
    they are not refused and act in the regular session as before."""
    return (asked and order.type is OrderType.LIMIT and tif == "day"
            and instrument.asset_class is not AssetClass.CRYPTO)


def order_request(order: Order, tif: str = "", notional: Decimal | None = None, extended: bool = False) -> Any:
    """The alpaca-py request model for an order (raises pydantic.ValidationError on bad terms).
    A market order sized by equity fraction goes as `notional` (dollars): Alpaca sizes it at the
    fill price, as the backtester does. `extended`: sent with extended_hours=True (only when
    `extended_hours` says Alpaca takes it)."""
    from alpaca.trading.enums import OrderSide as Side
    from alpaca.trading.enums import TimeInForce as Tif
    from alpaca.trading.requests import (LimitOrderRequest, MarketOrderRequest, StopLimitOrderRequest,
                                         StopOrderRequest)
    size = {"notional": float(notional)} if notional is not None else {"qty": float(order.qty)}  # type: ignore[arg-type]
    common = {"symbol": order.symbol, **size, "side": Side(order.side.value.lower()),
              "time_in_force": Tif(tif or _TIF[order.tif]), "client_order_id": order.client_order_id,
              **({"extended_hours": True} if extended else {})}
    if order.type is OrderType.MARKET:
        return MarketOrderRequest(**common)
    if order.type is OrderType.LIMIT:
        return LimitOrderRequest(**common, limit_price=float(order.limit_price))  # type: ignore[arg-type]
    if order.type is OrderType.STOP:
        return StopOrderRequest(**common, stop_price=float(order.stop_price))  # type: ignore[arg-type]
    return StopLimitOrderRequest(**common, stop_price=float(order.stop_price),  # type: ignore[arg-type]
                                 limit_price=float(order.limit_price))  # type: ignore[arg-type]


# -- responses -------------------------------------------------------------------------------------
_TYPES = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stop": OrderType.STOP,
          "stop_limit": OrderType.STOP_LIMIT, "trailing_stop": OrderType.STOP}
_OPEN = {"new", "accepted", "pending_new", "accepted_for_bidding", "held", "calculated", "pending_replace",
         "pending_cancel", "pending_review", "done_for_day", "stopped", "suspended"}
_STATES = {"filled": OrderState.FILLED, "canceled": OrderState.CANCELED, "expired": OrderState.EXPIRED,
           "replaced": OrderState.CANCELED, "rejected": OrderState.REJECTED,
           "partially_filled": OrderState.PARTIALLY_FILLED}
REPLACED = "REPLACED"   # the cancel reason of an order another took the place of
_CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")


def symbol_of(raw: str, asset_class: str | None = None, known: Any = ()) -> str:
    """The engine's symbol for one Alpaca wrote: crypto always with its slash ("BTCUSD" ->
    "BTC/USD"). `known` symbols are matched first; otherwise a symbol of the crypto class is
    split before its quote currency (a row without a class, an activity, needs `known`)."""
    if "/" in raw or raw in known:
        return raw
    for symbol in known:
        if "/" in symbol and symbol.replace("/", "") == raw:
            return symbol
    if asset_class == "crypto":
        for quote in _CRYPTO_QUOTES:
            if raw.endswith(quote) and len(raw) > len(quote):
                return f"{raw[:-len(quote)]}/{quote}"
    return raw


def dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value))


def ns(stamp: str | None) -> int:
    """RFC 3339 time (Alpaca sends up to nanoseconds, which datetime cannot hold) -> ns UTC."""
    if not stamp:
        return 0
    text = stamp.replace("Z", "+00:00")
    main, _, rest = text.partition(".")
    fraction, zone = "", ""
    if rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        fraction, zone = rest[:digits], rest[digits:]
    else:
        for sign in ("+", "-"):
            head, sep, tail = main[10:].rpartition(sign)
            if sep:
                main, zone = main[:10] + head, sign + tail
                break
    base = datetime.fromisoformat(main + (zone or "+00:00"))
    return int(base.timestamp()) * 1_000_000_000 + int((fraction + "000000000")[:9])


def state_of(status: str, filled: Decimal) -> OrderState:
    if status in _OPEN:
        return OrderState.PARTIALLY_FILLED if filled else OrderState.ACCEPTED
    return _STATES.get(status, OrderState.ACCEPTED)


def venue_order(data: dict[str, Any], known: Any = ()) -> VenueOrder:
    """An order JSON in domain terms. A notional order has no qty until it is filled: then its
    quantity is what filled."""
    filled = dec(data.get("filled_qty")) or Decimal(0)
    status = str(data.get("status"))
    state = state_of(status, filled)
    qty = dec(data.get("qty")) or (filled if status == "filled" else Decimal(0))
    reason = {OrderState.REJECTED: RejectReason.INVALID_ORDER, OrderState.EXPIRED: "EXPIRED"}.get(state)
    return VenueOrder(
        client_order_id=data["client_order_id"], venue_order_id=data["id"],
        symbol=symbol_of(data["symbol"], data.get("asset_class"), known),
        side=OrderSide.BUY if data.get("side") == "buy" else OrderSide.SELL,
        type=_TYPES.get(str(data.get("type") or data.get("order_type")), OrderType.MARKET),
        qty=qty, filled_qty=filled, avg_fill_price=dec(data.get("filled_avg_price")),
        limit_price=dec(data.get("limit_price")), stop_price=dec(data.get("stop_price")), state=state,
        reason=REPLACED if status == "replaced" else reason,
        ts=ns(data.get("updated_at") or data.get("submitted_at")))


def execution_id(order_id: str, cum_qty: Decimal) -> str:
    return f"{order_id}@{format(cum_qty.normalize(), 'f')}"


def fill(instrument: Instrument, client_order_id: str, order_id: str, side: str, qty: Decimal, price: Decimal,
         cum_qty: Decimal, ts: int) -> Fill:
    s = instrument.scales
    on_grid = price.quantize(instrument.price_increment, rounding=ROUND_HALF_EVEN) \
        if price % instrument.price_increment else price
    if on_grid != price:
        log.warning("alpaca fill price %s of %s is off the %s grid; booked at %s", price, client_order_id,
                    instrument.price_increment, on_grid)
    return Fill(execution_id(order_id, cum_qty), client_order_id, instrument.symbol,
                OrderSide.BUY if side == "buy" else OrderSide.SELL, to_raw(qty, s.qty_dp), to_raw(on_grid, s.price_dp),
                0, s.qty_dp, s.price_dp, s.cash_dp, ts)


def activity_fill(row: dict[str, Any], instrument: Instrument, client_order_id: str) -> Fill:
    """One FILL activity (GET /v2/account/activities/FILL) as a Fill of `instrument`."""
    return fill(instrument, client_order_id, row["order_id"], row["side"], Decimal(str(row["qty"])),
                Decimal(str(row["price"])), Decimal(str(row["cum_qty"])), ns(row["transaction_time"]))


def position(row: dict[str, Any], known: Any = ()) -> VenuePosition:
    """One position (GET /v2/positions): signed quantity, crypto with its slash."""
    qty = abs(Decimal(str(row["qty"]))) * (-1 if row.get("side") == "short" else 1)
    return VenuePosition(symbol_of(row["symbol"], row.get("asset_class"), known), qty, dec(row.get("avg_entry_price")))


def account(data: dict[str, Any]) -> AccountSnapshot:
    """The account (GET /v2/account). Cash may be negative (a margin loan); equity includes it."""
    return AccountSnapshot(data.get("currency") or "USD", Decimal(data["cash"]),
                           Decimal(data.get("equity") or data.get("portfolio_value") or data["cash"]),
                           dec(data.get("buying_power")))


def instrument(asset: dict[str, Any]) -> Instrument:
    crypto = asset.get("class") == "crypto"
    if crypto:
        step = dec(asset.get("min_trade_increment")) or FRACTIONAL_INCREMENT
        price_step = dec(asset.get("price_increment")) or Decimal("0.01")
        min_qty = dec(asset.get("min_order_size")) or step
    else:
        step = FRACTIONAL_INCREMENT if asset.get("fractionable") else Decimal(1)
        price_step, min_qty = EQUITY_PRICE_INCREMENT, step
    quote = asset["symbol"].split("/")[1] if crypto and "/" in asset["symbol"] else "USD"
    return Instrument(symbol=asset["symbol"], venue="ALPACA",
                      asset_class=AssetClass.CRYPTO if crypto else AssetClass.EQUITY,
                      price_increment=price_step.normalize(), size_increment=step.normalize(),
                      min_qty=min_qty.normalize(), quote_currency=quote,
                      currency_increment=Decimal("0.01"),
                      # crypto cannot be sold short on Alpaca: a sell beyond the bot's coins would sell
                      # the account's other coins; a stock only if Alpaca says it is shortable
                      shortable=not crypto and asset.get("shortable") is not False)


NS_PER_DAY = 86_400 * 10**9


def cfee_charge(row: dict[str, Any], known: Any = ()) -> AccountCharge | None:
    """A CFEE activity (Alpaca's crypto fee, a NonTradeActivity: id, date, symbol, qty, price,
    net_amount, description; no order id) as an account-level FEE charge, or None for one that
    charges nothing. Alpaca takes the fee in what the trade credits: on a buy in the coin bought
    (`qty` negative, `net_amount` "0", `price` the coin's valuation), on a sell in the quote
    currency (`net_amount` negative). Fees are posted at the end of the day, per `date`: the
    charge covers that (UTC) day, ending at its last nanosecond (a row with a transaction_time
    is charged at that instant). Assumed for a coin-for-coin pair: `qty` is the base asset."""
    symbol = symbol_of(str(row.get("symbol") or ""), "crypto", known)
    if "/" not in symbol:
        return None
    base, quote = symbol.split("/", 1)
    qty, cash = dec(row.get("qty")) or Decimal(0), dec(row.get("net_amount")) or Decimal(0)
    if qty:
        asset, amount = base, qty
    elif cash:
        asset, amount = quote, cash
    else:
        return None
    if row.get("transaction_time"):
        ts, period = ns(row["transaction_time"]), 0
    else:
        day = datetime.fromisoformat(str(row["date"])[:10]).replace(tzinfo=timezone.utc)
        ts, period = int(day.timestamp()) * 1_000_000_000 + NS_PER_DAY - 1, NS_PER_DAY
    price = dec(row.get("price"))
    return AccountCharge(f"cfee:{row['id']}", ChargeKind.FEE, symbol, asset, amount, ts, period,
                         price if asset == base and price else None)


def iso(ts_ns: int) -> str:
    """ns UTC -> the RFC 3339 form Alpaca takes in queries (microseconds)."""
    from datetime import timedelta
    seconds, rest_ns = divmod(ts_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc) + timedelta(microseconds=rest_ns // 1000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
