"""Alpaca's native protective orders (issue 17 item 3): which engine orders make one Alpaca
request, that request, and how Alpaca's legs map back to the engine's orders. Pure functions;
the adapter does the I/O and the timing (adapter.py's docstring).

Alpaca's advanced orders (Orders at Alpaca, "Bracket Orders", "OCO Orders", "OTO Orders",
"Trailing Stop Orders"; alpaca-py's OrderClass, TakeProfitRequest, StopLossRequest):
- bracket: an entry (market or limit here) with a take-profit LIMIT leg and a stop-loss STOP or
  STOP_LIMIT leg, in one request; Alpaca holds the legs until the entry fills, then one filling
  cancels the other. The engine's bracket (strategies/protective.py): the entry and two children
  (`parent_id` = the entry, one `oco_group`).
- oto: an entry and one such leg (a child without a group, or `order(parent=entry)`).
- oco: an exit only, two orders in one group, no parent: the take-profit LIMIT is the order
  Alpaca returns (it carries the request's client id), the stop is its leg.
- trailing_stop: a STOP with `trail_distance` (`trail_price`) or `trail_percent`; Alpaca takes it
  as a single order only, never as a leg.
All advanced classes are US equities only (crypto takes simple orders), whole shares, time in
force day or gtc. A leg's client_order_id is Alpaca's own: the adapter maps the leg's order id to
the engine child's client id by the leg's type (limit: the take-profit; stop / stop_limit: the
stop-loss), which is unambiguous since a group has at most one of each.
An amend replaces the order (PATCH /v2/orders/{id}): the replacement is a new Alpaca order, sent
with the client id `<engine id>~<n>` so it reads back as the engine's order (`engine_id`) even
after a restart, when the adapter has no memory of the replace.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Sequence

from brokers.base import RejectReason
from engine.instrument import AssetClass, Instrument
from engine.orders import Order, OrderSide, OrderType, TimeInForce

BRACKET, OTO, OCO, TRAILING = "bracket", "oto", "oco", "trailing_stop"
TAKE_PROFIT, STOP_LOSS = "take_profit", "stop_loss"
REPLACEMENT_MARK = "~"


@dataclass(frozen=True, slots=True)
class Plan:
    """One Alpaca request for a group of engine orders.

    `main` carries the request's client id (the entry; for an OCO exit, its take-profit);
    `legs` maps a leg role (TAKE_PROFIT / STOP_LOSS) to the engine order Alpaca makes as that leg."""

    kind: str
    main: Order
    legs: dict[str, Order]
    qty: Decimal

    @property
    def orders(self) -> list[Order]:
        return [self.main, *self.legs.values()]


def unsupported(why: str) -> str:
    """A refusal reason the OMS journals: the code, then why (no venue was asked)."""
    return f"{RejectReason.UNSUPPORTED}: alpaca {why}"


def role(order: Order) -> str | None:
    """The leg an exit order can be: a LIMIT takes profit, a STOP / STOP_LIMIT stops the loss;
    a trailing stop or a market order is no leg."""
    if order.is_trailing:
        return None
    if order.type is OrderType.LIMIT:
        return TAKE_PROFIT
    if order.type in (OrderType.STOP, OrderType.STOP_LIMIT):
        return STOP_LOSS
    return None


def leg_role(leg_json: dict[str, Any]) -> str | None:
    kind = str(leg_json.get("type") or leg_json.get("order_type"))
    return TAKE_PROFIT if kind == "limit" else STOP_LOSS if kind in ("stop", "stop_limit") else None


def _common(orders: Sequence[Order], instrument: Instrument, qty: Decimal | None, what: str) -> str | None:
    if instrument.asset_class is not AssetClass.EQUITY:
        return unsupported(f"takes {what} orders for US equities only (crypto: simple orders)")
    if qty is None or qty <= 0 or qty != qty.to_integral_value():
        return unsupported(f"takes {what} orders in whole shares only (got qty {qty})")
    if any(o.symbol != orders[0].symbol for o in orders):
        return unsupported(f"takes a {what} order on one symbol")
    return None


def _exits(entry_side: OrderSide | None, members: Sequence[Order], what: str) -> dict[str, Order] | str:
    """The members by leg role, or why they make no `what`."""
    legs: dict[str, Order] = {}
    for member in members:
        kind = role(member)
        if kind is None:
            return unsupported(f"takes no {'trailing stop' if member.is_trailing else member.type.value} order as "
                               f"a {what} leg: a take-profit is a LIMIT, a stop-loss a STOP or STOP_LIMIT")
        if kind in legs:
            return unsupported(f"takes one take-profit and one stop-loss in a {what} order, got two {kind} legs")
        if entry_side is not None and member.side is entry_side:
            return unsupported(f"takes {what} legs on the side opposite the entry")
        legs[kind] = member
    return legs


def bracket_plan(entry: Order, children: Sequence[Order], instrument: Instrument) -> Plan | str:
    """The bracket (two children) or OTO (one) for `entry`, or the refusal reason."""
    what = BRACKET if len(children) == 2 else OTO
    if len(children) not in (1, 2):
        return unsupported(f"takes one or two legs on an entry, got {len(children)}")
    if entry.type not in (OrderType.MARKET, OrderType.LIMIT):
        return unsupported(f"{what} entries here are MARKET or LIMIT, got {entry.type.value}")
    if entry.tif not in (TimeInForce.DAY, TimeInForce.GTC):
        return unsupported(f"takes {what} orders as day or gtc only, got {entry.tif.value}")
    if len(children) == 2 and children[0].oco_group != children[1].oco_group:
        return unsupported("takes two legs of one entry only as one OCO group (a bracket)")
    for child in children:
        if child.qty is not None and child.qty != entry.qty:
            return unsupported(f"sizes a {what}'s legs as its entry: {child.client_order_id} has qty {child.qty}, "
                               f"the entry {entry.qty}")
    refusal = _common([entry, *children], instrument, entry.qty, what)
    if refusal is not None:
        return refusal
    legs = _exits(entry.side, children, what)
    if isinstance(legs, str):
        return legs
    if what == BRACKET and len(legs) != 2:
        return unsupported("takes a bracket as one take-profit LIMIT and one stop-loss STOP / STOP_LIMIT")
    return Plan(what, entry, legs, entry.qty)  # type: ignore[arg-type]


def oco_plan(members: Sequence[Order], instrument: Instrument, qty: Decimal | None) -> Plan | str:
    """An OCO exit of `qty` (a take-profit LIMIT and a stop-loss STOP / STOP_LIMIT on one side),
    or the refusal reason."""
    if len(members) != 2:
        return unsupported(f"takes an OCO order of exactly two orders, got {len(members)}")
    if members[0].side is not members[1].side:
        return unsupported("takes OCO orders on one side (an exit)")
    if any(m.tif not in (TimeInForce.DAY, TimeInForce.GTC) for m in members):
        return unsupported("takes OCO orders as day or gtc only")
    refusal = _common(members, instrument, qty, OCO)
    if refusal is not None:
        return refusal
    legs = _exits(None, members, OCO)
    if isinstance(legs, str):
        return legs
    if len(legs) != 2:
        return unsupported("takes an OCO order as one take-profit LIMIT and one stop-loss STOP / STOP_LIMIT")
    main = legs.pop(TAKE_PROFIT)
    return Plan(OCO, main, legs, qty)  # type: ignore[arg-type]


def trailing_refusal(order: Order, instrument: Instrument) -> str | None:
    if instrument.asset_class is not AssetClass.EQUITY:
        return unsupported("takes trailing stops for US equities only")
    if order.tif not in (TimeInForce.DAY, TimeInForce.GTC):
        return unsupported(f"takes trailing stops as day or gtc only, got {order.tif.value}")
    return None


def _stop_loss(order: Order) -> Any:
    from alpaca.trading.requests import StopLossRequest
    return StopLossRequest(stop_price=float(order.stop_price),  # type: ignore[arg-type]
                           limit_price=None if order.limit_price is None else float(order.limit_price))


def plan_request(plan: Plan, tif: str) -> Any:
    """The alpaca-py request for a plan (raises pydantic.ValidationError on bad terms)."""
    from alpaca.trading.enums import OrderClass
    from alpaca.trading.enums import OrderSide as Side
    from alpaca.trading.enums import TimeInForce as Tif
    from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest, TakeProfitRequest
    main = plan.main
    common: dict[str, Any] = {"symbol": main.symbol, "qty": float(plan.qty), "side": Side(main.side.value.lower()),
                              "time_in_force": Tif(tif), "client_order_id": main.client_order_id,
                              "order_class": OrderClass(plan.kind)}
    if TAKE_PROFIT in plan.legs:
        common["take_profit"] = TakeProfitRequest(limit_price=float(plan.legs[TAKE_PROFIT].limit_price))  # type: ignore[arg-type]
    if STOP_LOSS in plan.legs:
        common["stop_loss"] = _stop_loss(plan.legs[STOP_LOSS])
    if plan.kind == OCO:  # the take-profit is the order itself; Alpaca reads its price from take_profit
        common["take_profit"] = TakeProfitRequest(limit_price=float(main.limit_price))  # type: ignore[arg-type]
        return LimitOrderRequest(**common)
    if main.type is OrderType.MARKET:
        return MarketOrderRequest(**common)
    return LimitOrderRequest(**common, limit_price=float(main.limit_price))  # type: ignore[arg-type]


def trailing_request(order: Order, qty: Decimal, tif: str) -> Any:
    from alpaca.trading.enums import OrderSide as Side
    from alpaca.trading.enums import TimeInForce as Tif
    from alpaca.trading.requests import TrailingStopOrderRequest
    trail = ({"trail_price": float(order.trail_distance)} if order.trail_distance is not None
             else {"trail_percent": float(order.trail_percent)})  # type: ignore[arg-type]
    return TrailingStopOrderRequest(symbol=order.symbol, qty=float(qty), side=Side(order.side.value.lower()),
                                    time_in_force=Tif(tif), client_order_id=order.client_order_id, **trail)


def replace_request(order: Order, price: Decimal | None, qty: Decimal | None, replacement_id: str) -> Any:
    """PATCH /v2/orders/{id} for engine.orders.amend_terms' `price` (a STOP's stop price, else the
    limit price) and `qty` (the new total; alpaca-py's ReplaceOrderRequest takes whole shares)."""
    from alpaca.trading.requests import ReplaceOrderRequest
    fields: dict[str, Any] = {"client_order_id": replacement_id}
    if qty is not None:
        fields["qty"] = int(qty)
    if price is not None:
        fields["stop_price" if order.type is OrderType.STOP else "limit_price"] = float(price)
    return ReplaceOrderRequest(**fields)


def amend_refusal(order: Order, price: Decimal | None, qty: Decimal | None) -> str | None:
    if order.is_trailing and price is not None:
        return unsupported("changes a trailing stop's trail, not its level: amend of its price is not mapped")
    if qty is not None and qty != qty.to_integral_value():
        return unsupported("replaces orders in whole shares only")
    if order.filled_qty:
        return unsupported("replaces a partly filled order with a new one whose fills start again: not mapped")
    return None


def replacement_id(engine_id: str, n: int) -> str:
    return f"{engine_id}{REPLACEMENT_MARK}{n}"


def engine_id(client_order_id: str) -> str:
    """The engine's client id for an Alpaca client id: a replacement's (`<id>~<n>`) is its original's."""
    root, mark, n = client_order_id.rpartition(REPLACEMENT_MARK)
    return root if mark and root and n.isdigit() else client_order_id


def expected_members(order: Order) -> int:
    """How many orders a linked order's group holds: two when it is in an OCO group (a bracket's
    children, or an OCO pair), else one."""
    return 2 if order.oco_group is not None else 1
