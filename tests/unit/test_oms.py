"""The OMS: ids, the state machine, de-duplication, the risk gate."""

from __future__ import annotations

import pytest

from engine.errors import InvalidTransition
from engine.oms import DuplicateClientOrderId
from engine.orders import Order, OrderSide, OrderState, OrderType, can_transition
from tests.conftest import make_harness


def test_client_order_ids_are_deterministic_and_unique_per_bot():
    a, b = make_harness(), make_harness()
    ids_a = [a.oms.next_client_order_id() for _ in range(3)]
    ids_b = [b.oms.next_client_order_id() for _ in range(3)]
    assert ids_a == ids_b == ["bot1-00000001", "bot1-00000002", "bot1-00000003"]


def test_resubmitting_a_client_order_id_is_refused():
    h = make_harness()
    order = h.order("BUY", "1")
    with pytest.raises(DuplicateClientOrderId):
        h.oms.submit(order)


def test_filled_order_cannot_be_canceled_or_filled_again():
    order = Order("x-1", "x", "TEST", OrderSide.BUY, OrderType.MARKET, None, 0)
    for state in (OrderState.PENDING_SUBMIT, OrderState.SUBMITTED, OrderState.FILLED):
        order.transition(state, 0)
    with pytest.raises(InvalidTransition):
        order.transition(OrderState.CANCELED, 1)
    assert not can_transition(OrderState.FILLED, OrderState.PARTIALLY_FILLED)


def test_every_transition_is_recorded_as_an_event():
    h = make_harness()
    order = h.order("BUY", "1")
    h.bar("10.00", "10.00", "10.00", "10.00")
    assert [e.state for e in order.events] == [OrderState.PENDING_SUBMIT, OrderState.SUBMITTED, OrderState.FILLED]


def test_duplicate_execution_report_is_booked_once():
    h = make_harness()
    order = h.order("BUY", "2")
    h.bar("10.00", "10.00", "10.00", "10.00")
    fill = h.oms.fills[0]
    h.oms.on_fill(order, fill, 0)  # the venue reports the same execution again
    assert h.portfolio.positions["TEST"].qty == 2 and len(h.oms.fills) == 1


class DenyBigOrders:
    def check(self, order, portfolio):
        return "MAX_ORDER_QTY" if order.qty is not None and order.qty > 5 else None


def test_order_denied_by_risk_never_reaches_the_venue():
    h = make_harness(risk=DenyBigOrders())
    order = h.order("BUY", "6")
    assert order.state is OrderState.DENIED and order.reason == "MAX_ORDER_QTY"
    assert not h.venue.has_working_orders and h.oms.denied == [order]
    h.bar("10.00", "10.00", "10.00", "10.00")
    assert h.portfolio.positions["TEST"].qty == 0
