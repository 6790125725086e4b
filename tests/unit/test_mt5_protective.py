"""Which engine protective orders MT5 can carry as a position's SL/TP (brokers/mt5/protective.py),
and the levels a request carries after an amend or a cancel of one child."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.mt5.protective import Bracket, refusal
from engine.orders import Order, OrderSide, OrderState, OrderType

D = Decimal


def _order(cid: str, side: str, kind: OrderType, parent: str | None = None, **terms: object) -> Order:
    return Order(cid, "b", "EURUSD", OrderSide(side), kind, D("0.10"), 0, parent_id=parent, **terms)  # type: ignore[arg-type]


ENTRY = _order("b-00000001", "BUY", OrderType.MARKET)


@pytest.mark.parametrize("child,reason", [
    (_order("c", "SELL", OrderType.STOP, "b-00000001", stop_price=D("1.09")), None),
    (_order("c", "SELL", OrderType.LIMIT, "b-00000001", limit_price=D("1.11")), None),
    (_order("c", "SELL", OrderType.STOP, "b-00000001", stop_price=D("1.09"), trail_distance=D("0.001")),
     "UNSUPPORTED"),                                                                   # trails in the terminal only
    (_order("c", "BUY", OrderType.STOP, "b-00000001", stop_price=D("1.12")), "UNSUPPORTED"),   # same side as entry
    (_order("c", "SELL", OrderType.STOP_LIMIT, "b-00000001", stop_price=D("1.09"), limit_price=D("1.08")),
     "UNSUPPORTED"),
    (_order("c", "SELL", OrderType.LIMIT, "b-00000001", limit_price=D("1.11"), oco_group="other"), "UNSUPPORTED"),
    (_order("c", "SELL", OrderType.LIMIT, None, limit_price=D("1.11"), oco_group="g"), "UNSUPPORTED"),  # plain OCO
    (_order("c", "SELL", OrderType.LIMIT, "b-00000001", limit_price=D("1.11"), expire_ns=1), "UNSUPPORTED"),
])
def test_what_maps_onto_a_positions_sl_tp(child, reason):
    parent = ENTRY if child.parent_id else None
    assert refusal(child, parent, None) == reason


def test_one_sl_and_one_tp_per_entry_and_none_for_an_entry_that_ended_unfilled():
    stop = _order("s", "SELL", OrderType.STOP, "b-00000001", stop_price=D("1.09"))
    bracket = Bracket(ENTRY, stop=stop)
    again = _order("s2", "SELL", OrderType.STOP, "b-00000001", stop_price=D("1.08"))
    assert refusal(again, ENTRY, bracket) == "UNSUPPORTED"
    dead = _order("b-00000002", "BUY", OrderType.LIMIT, limit_price=D("1.0"), state=OrderState.CANCELED)
    child = _order("c", "SELL", OrderType.STOP, "b-00000002", stop_price=D("0.9"))
    assert refusal(child, dead, None) == "INVALID_ORDER"


def test_levels_follow_an_amend_or_a_cancel_of_one_child():
    stop = _order("s", "SELL", OrderType.STOP, "b-00000001", stop_price=D("1.09500"))
    take = _order("t", "SELL", OrderType.LIMIT, "b-00000001", limit_price=D("1.10500"))
    bracket = Bracket(ENTRY, stop=stop, take=take)
    assert bracket.levels() == (1.095, 1.105)
    assert bracket.levels(replacing=take, price=D("1.10800")) == (1.095, 1.108)
    assert bracket.levels(dropping=stop) == (0.0, 1.105)
