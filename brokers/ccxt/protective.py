"""Binance's native protective orders through ccxt, spot and USD-M futures (issue 17 item 3): which
engine orders make which Binance request, its parameters, and the refusals for what Binance cannot
express.
Pure functions and a small book of waiting children; the adapter (adapter.py) does the I/O.

Why these venue orders (Binance spot API, "Trading endpoints" and "Order types"; ccxt 4.5.90's
binance.py for the parameters it sends):
- a stop-loss (engine STOP / STOP_LIMIT) is STOP_LOSS / STOP_LOSS_LIMIT with `stopPrice`: ccxt's
  unified `triggerPrice` makes it (create_order_request: stopLossPrice falls back to triggerPrice);
- a take-profit (engine LIMIT) alone is a plain GTC LIMIT: it rests on the book at its price,
  which is what a take-profit does; Binance's TAKE_PROFIT / TAKE_PROFIT_LIMIT trigger types are
  read back as LIMIT (mapping.order_type);
- a bracket's two exits (one OCO group) are ONE order list, POST /api/v3/orderList/oco (ccxt's
  implicit `privatePostOrderListOco`): for a SELL the above leg is the take-profit (LIMIT_MAKER at
  its price) and the below leg the stop (STOP_LOSS, or STOP_LOSS_LIMIT with its limit price and
  GTC); for a BUY the other way round. Binance's price rule (a SELL: limit > last > stop; a BUY:
  limit < last < stop) is checked here between the two prices and by the venue against the last
  price. Each leg carries the engine child's client id (`aboveClientOrderId` /
  `belowClientOrderId`), so every read of a leg (open orders, a lookup, a trade's order) is the
  engine's order without a translation table. When one leg executes (fully or partly) or
  triggers, Binance expires the other (listStatusType ALL_DONE, the leg EXPIRED): the adapter
  reports that as the sibling's cancel (reason EXPIRED). Canceling one leg cancels the list.
- a trailing stop is STOP_LOSS with `trailingDelta` in basis points (ccxt: `trailingPercent` x 100,
  `stopLossOrTakeProfit="stopLoss"`), without a stopPrice, so Binance trails from the price when
  it arrives; in an OCO it is the stop leg with `belowTrailingDelta` / `aboveTrailingDelta`.
  Binance trails by a percentage only (TRAILING_DELTA filter: 10 to 2000 bps, whole bps), so a
  trail in price units (`trail_distance`) and a percent that is not a whole number of bps, or out
  of that range, are refused naming the field.
Children of an entry wait in the adapter, still PENDING_SUBMIT (nothing reported), until the entry
is done (filled, canceled or rejected); they then go sized to what it filled (an entry that filled
nothing cancels them, PARENT_NOT_FILLED). Binance spot has no one-triggers-other list for an entry
the engine already sent alone, so this protects from the entry's fill on while the adapter runs
(the entry's fill and the exits' send are one poll apart). A bracket's two exits (a take-profit and a
plain stop in one OCO group) go earlier, from the entry's first fill while it still works, sized to
what filled (D7a), and grow with its later fills: neither having a fill, they are replaced (an
order list cannot be amended, nor a USD-M algo order: cancel, then the exits for the whole filled
quantity under `<id>.r<n>`), so the venue never holds more protection than what filled; once the
stop has executed, what the entry fills after is sold at once (a MARKET `<stop id>.r<n>`, reduce-only
on futures) as the stop's fill.

Amend (`amend_refusal`; the adapter's `amend`): Binance spot replaces an order (POST /api/v3/order/cancelReplace, ccxt's
edit_order with cancelReplaceMode STOP_ON_FAILURE): a new order with a new client id (`<id>.r<n>`,
Binance's allowed characters), which the adapter maps back to the engine's order (after a restart
too: a canceled original leads to its latest `<id>.r<n>` in the lookback window). Refused: an OCO
leg (a cancel-replace of one leg would cancel the list), a trailing stop's level, a partly filled
order (the replacement's fills would start again).

USD-M futures (binanceusdm; Binance's USD-M API, "New Algo Order", and ccxt 4.5.90's create_order):
- every conditional futures order goes to the algo service (POST /fapi/v1/algoOrder, algoType
  CONDITIONAL, `clientAlgoId` = the engine's client id): ccxt sends a STOP as STOP_MARKET, a
  STOP_LIMIT as STOP, a trailing stop as TRAILING_STOP_MARKET with `callbackRate` (percent, 0.1 to
  10 in steps of 0.1); the adapter follows them with ccxt's `trigger` param (openAlgoOrders,
  GET / DELETE algoOrder; after a restart, a client id the matching engine does not know is asked
  at the algo service). Once triggered the algo service places an order in the matching engine
  (`actualOrderId`), whose trades carry that order's id. Binance does not document that order's
  client id: the adapter finds it by the client algo id, else through the algo order's
  actualOrderId, and reports its fills as the engine child's;
- a take-profit (LIMIT) is a plain GTC LIMIT on /fapi/v1/order: it rests at its price;
- every exit a child sends is `reduceOnly` (-2022 if it would open or grow a position), sent
  only once the entry has filled (part of it, for a bracket's exits sized to that part), so a
  leftover leg can never open a position;
- there is no OCO list on futures: the two exits go as two orders and the ADAPTER cancels the
  other once one has a fill (or ends), reported as that sibling's cancel. That link holds while
  the adapter runs; reduce-only keeps what it leaves behind from opening a position.
Amend on futures: a LIMIT order (a take-profit, a resting entry) is modified in place (PUT
/fapi/v1/order, ccxt's edit_order: same order id and client id); a stop at the algo service is not
mapped (refused UNSUPPORTED).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Sequence

from brokers.base import RejectReason
from engine.orders import Order, OrderSide, OrderType, TimeInForce

TAKE_PROFIT, STOP_LOSS = "take_profit", "stop_loss"
MIN_TRAILING_BPS, MAX_TRAILING_BPS = 10, 2000      # binance spot's TRAILING_DELTA filter
REPLACEMENT_MARK = ".r"
NATIVE = frozenset({("binance", False), ("binanceusdm", True)})   # (ccxt id, futures) mapped here
MIN_CALLBACK, MAX_CALLBACK, CALLBACK_STEP = Decimal("0.1"), Decimal("10"), Decimal("0.1")  # USD-M callbackRate

Text = Callable[[Decimal | None], str | None]


def supported(exchange_id: str, futures: bool) -> bool:
    """Whether this module maps protective orders for the exchange and market type."""
    return (exchange_id, futures) in NATIVE


def unsupported(why: str) -> str:
    """A refusal the OMS journals: the code, then why (nothing was sent)."""
    return f"{RejectReason.UNSUPPORTED}: binance {why}"


def role(order: Order) -> str | None:
    """The exit an order can be: a LIMIT takes profit, a STOP / STOP_LIMIT (trailing or not) stops
    the loss; a market order is no exit leg."""
    if order.type is OrderType.LIMIT and not order.is_trailing:
        return TAKE_PROFIT
    if order.type in (OrderType.STOP, OrderType.STOP_LIMIT):
        return STOP_LOSS
    return None


def trailing_bps(order: Order) -> int | str:
    """The trail as Binance's trailingDelta (basis points), or the refusal naming the field."""
    if order.trail_distance is not None:
        return unsupported("trails by a percentage only (trailingDelta, basis points): trail_distance "
                           f"{order.trail_distance} in price units cannot be sent; give trail as a percent")
    percent = order.trail_percent
    if percent is None:
        return unsupported("needs trail_percent for a trailing stop")
    bps = percent * 100
    if bps != bps.to_integral_value() or not MIN_TRAILING_BPS <= bps <= MAX_TRAILING_BPS:
        return unsupported(f"takes trail_percent as whole basis points from {MIN_TRAILING_BPS} to "
                           f"{MAX_TRAILING_BPS} (0.1% to 20%), got {percent}%")
    return int(bps)


def callback_rate(order: Order) -> Decimal | str:
    """The trail as USD-M's callbackRate (percent), or the refusal naming the field."""
    if order.trail_distance is not None:
        return unsupported("futures trail by a percentage only (callbackRate): trail_distance "
                           f"{order.trail_distance} in price units cannot be sent; give trail as a percent")
    rate = order.trail_percent
    if rate is None or not MIN_CALLBACK <= rate <= MAX_CALLBACK or rate % CALLBACK_STEP:
        return unsupported(f"futures take trail_percent (callbackRate) from {MIN_CALLBACK} to {MAX_CALLBACK} in "
                           f"steps of {CALLBACK_STEP}, got {rate}")
    return rate


def refusal(order: Order, futures: bool = False) -> str | None:
    """What Binance cannot take about one linked order, known at submit (before any wait)."""
    if order.is_trailing:
        if order.type is not OrderType.STOP:
            return unsupported(f"trails STOP orders only, got a trailing {order.type.value}")
        trail = callback_rate(order) if futures else trailing_bps(order)
        if isinstance(trail, str):
            return trail
    if futures and order.parent_id is None and not order.is_trailing:
        return unsupported("futures take a standalone OCO group only as a bracket's exits (parent_id): "
                           "there is no order list to send it as")
    if order.parent_id is not None or order.oco_group is not None:
        if role(order) is None:
            return unsupported(f"takes no {order.type.value} order as an exit leg: a take-profit is a LIMIT, "
                               "a stop-loss a STOP or STOP_LIMIT")
        if order.tif is not TimeInForce.GTC:
            return unsupported(f"takes exit legs as GTC only (an order list's legs), got {order.tif.value}")
    return None


def expected_members(order: Order) -> int:
    """How many orders a linked order's group holds: two in an OCO group, else one."""
    return 2 if order.oco_group is not None else 1


def _legs(members: Sequence[Order]) -> dict[str, Order] | str:
    if len(members) != 2:
        return unsupported(f"takes an OCO order list of exactly two orders, got {len(members)}")
    first, second = members
    if first.side is not second.side or first.symbol != second.symbol:
        return unsupported("takes an OCO order list on one symbol and one side (an exit)")
    legs: dict[str, Order] = {}
    for member in members:
        kind = role(member)
        if kind is None or kind in legs:
            return unsupported("takes an OCO order list as one take-profit LIMIT and one stop-loss STOP / "
                               "STOP_LIMIT")
        legs[kind] = member
    if legs[TAKE_PROFIT].is_trailing:
        return unsupported("trails the stop leg of an OCO order list only")
    return legs


@dataclass(frozen=True)
class OcoPlan:
    """One POST /api/v3/orderList/oco for two engine orders, `qty` each."""

    take_profit: Order
    stop_loss: Order
    qty: Decimal
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def orders(self) -> list[Order]:
        return [self.stop_loss, self.take_profit]


def oco_plan(members: Sequence[Order], qty: Decimal, market_id: str, text: Text) -> OcoPlan | str:
    """The order list for an OCO exit of `qty`, or the refusal reason. `text` writes a Decimal as
    the exact string Binance takes."""
    legs = _legs(members)
    if isinstance(legs, str):
        return legs
    take, stop = legs[TAKE_PROFIT], legs[STOP_LOSS]
    limit, trigger = take.limit_price, stop.stop_price
    sell = take.side is OrderSide.SELL
    if not stop.is_trailing and limit is not None and trigger is not None and (limit <= trigger if sell
                                                                              else limit >= trigger):
        return unsupported(f"takes a {'SELL' if sell else 'BUY'} OCO with the take-profit limit_price {limit} "
                           f"{'above' if sell else 'below'} the stop's stop_price {trigger}")
    # a SELL: the take-profit is above the market, the stop below; a BUY the other way round
    tp_pos, sl_pos = ("above", "below") if sell else ("below", "above")
    params: dict[str, Any] = {
        "symbol": market_id, "side": take.side.value, "quantity": text(qty),
        "listClientOrderId": list_client_id(stop.client_order_id), "newOrderRespType": "FULL",
        f"{tp_pos}Type": "LIMIT_MAKER", f"{tp_pos}Price": text(limit), f"{tp_pos}ClientOrderId": take.client_order_id,
        f"{sl_pos}ClientOrderId": stop.client_order_id,
    }
    if stop.is_trailing:
        params[f"{sl_pos}Type"] = "STOP_LOSS"
        params[f"{sl_pos}TrailingDelta"] = str(trailing_bps(stop))
    elif stop.type is OrderType.STOP_LIMIT:
        params.update({f"{sl_pos}Type": "STOP_LOSS_LIMIT", f"{sl_pos}StopPrice": text(trigger),
                       f"{sl_pos}Price": text(stop.limit_price), f"{sl_pos}TimeInForce": "GTC"})
    else:
        params.update({f"{sl_pos}Type": "STOP_LOSS", f"{sl_pos}StopPrice": text(trigger)})
    return OcoPlan(take, stop, qty, params)


def list_client_id(stop_client_id: str) -> str:
    """The order list's own client id (Binance: unique among open lists, 36 characters at most)."""
    return f"{stop_client_id}.oco"[-36:]


def trailing_params(order: Order, futures: bool = False) -> tuple[str, dict[str, Any]]:
    """ccxt's unified type and params for a single trailing stop. Spot: STOP_LOSS with trailingDelta
    (ccxt multiplies `trailingPercent` by 100), no stopPrice (the trail starts at the price).
    Futures: TRAILING_STOP_MARKET with callbackRate = `trailingPercent`, reduce-only, no
    activation price (it trails from the price when it arrives)."""
    percent = format(order.trail_percent, "f")
    if futures:
        return "market", {"clientOrderId": order.client_order_id, "trailingPercent": percent, "reduceOnly": True}
    return "market", {"clientOrderId": order.client_order_id, "trailingPercent": percent,
                      "stopLossOrTakeProfit": "stopLoss"}


def is_algo(order: Order, futures: bool) -> bool:
    """A futures order ccxt sends to the algo service (a stop, a stop-limit, a trailing stop)."""
    return futures and order.type in (OrderType.STOP, OrderType.STOP_LIMIT)


# -- amend ----------------------------------------------------------------------------------------------
def amend_refusal(order: Order, price: Decimal | None, qty: Decimal | None, futures: bool = False) -> str | None:
    if futures:
        if order.type is not OrderType.LIMIT:
            return unsupported("futures modify LIMIT orders only (PUT /fapi/v1/order): a stop at the algo service "
                               f"cannot be changed, got {order.type.value}")
        if order.filled_qty:
            return unsupported("modify of a partly filled order is not mapped")
        return None
    if order.oco_group is not None:
        return unsupported("cancels a whole OCO order list when one leg is replaced: amend of an OCO leg "
                           "(oco_group) is not mapped")
    if order.is_trailing and price is not None:
        return unsupported("changes a trailing stop's trailingDelta, not its level: amend of its price is "
                           "not mapped")
    if order.filled_qty:
        return unsupported("replaces a partly filled order with a new one whose fills start again: not mapped")
    if order.type is OrderType.MARKET:
        return unsupported("has nothing to amend on a market order")
    return None


def replacement_id(engine_id: str, n: int) -> str:
    return f"{engine_id}{REPLACEMENT_MARK}{n}"


def engine_id(client_order_id: str) -> str:
    """The engine's client id for a Binance client id: a replacement's (`<id>.r<n>`) is its original's."""
    root, mark, n = client_order_id.rpartition(REPLACEMENT_MARK)
    return root if mark and root and n.isdigit() else client_order_id


# -- children waiting for their entry ------------------------------------------------------------------
@dataclass
class Waiting:
    """Linked orders the adapter holds, never sent: children by parent id, and standalone OCO
    members by group until their sibling arrives. Not thread-safe (the adapter's lock)."""

    children: dict[str, list[Order]] = field(default_factory=dict)
    oco: dict[str, list[Order]] = field(default_factory=dict)

    def add_child(self, order: Order) -> None:
        self.children.setdefault(order.parent_id, []).append(order)  # type: ignore[arg-type]

    def add_oco(self, order: Order) -> list[Order] | None:
        """The group once both members are here (and no longer waiting), else None."""
        group = self.oco.setdefault(order.oco_group, [])  # type: ignore[arg-type]
        group.append(order)
        if len(group) < 2:
            return None
        return self.oco.pop(order.oco_group)  # type: ignore[arg-type]

    def complete(self, parent_id: str) -> list[Order] | None:
        """The children of `parent_id` if all have arrived (two in an OCO group, else one each)."""
        group = self.children.get(parent_id)
        if not group:
            return None
        grouped = [c for c in group if c.oco_group is not None]
        if grouped and len(grouped) < 2:
            return None
        return group

    def take(self, parent_id: str) -> list[Order]:
        return self.children.pop(parent_id, [])

    def drop(self, client_order_id: str) -> Order | None:
        """Remove a waiting order (a cancel before it was sent): the order, or None if not waiting."""
        for store in (self.children, self.oco):
            for key, group in list(store.items()):
                for member in group:
                    if member.client_order_id == client_order_id:
                        group.remove(member)
                        if not group:
                            del store[key]
                        return member
        return None

    def holds(self, client_order_id: str) -> bool:
        return any(o.client_order_id == client_order_id for store in (self.children, self.oco)
                   for group in store.values() for o in group)
