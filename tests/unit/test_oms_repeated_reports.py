"""A venue may report an order's early states again (a reconnect, an adapter that restarted and
reports restored orders from the start): the OMS keeps what it knows and books nothing twice."""

from __future__ import annotations

from decimal import Decimal

from engine.orders import OrderState, OrderType


def test_a_repeated_accept_or_submit_changes_nothing(harness):
    order = harness.order("BUY", "10", kind=OrderType.LIMIT, limit="99.00")
    assert order.state is OrderState.ACCEPTED
    events = len(order.events)
    harness.oms.on_submitted(order, 5)
    harness.oms.on_accepted(order, 6)
    assert order.state is OrderState.ACCEPTED and len(order.events) == events


def test_a_late_accept_after_a_fill_does_not_move_the_order_back(harness):
    order = harness.order("BUY", "10")
    harness.bar("100", "101", "99", "100")
    assert order.state is OrderState.FILLED
    harness.oms.on_accepted(order, 7)
    assert order.state is OrderState.FILLED
    assert harness.oms.portfolio.cash < Decimal("10000")


def test_a_repeated_cancel_or_a_cancel_after_the_fill_changes_nothing(harness):
    canceled = harness.order("BUY", "10", kind=OrderType.LIMIT, limit="99.00")
    harness.oms.cancel(canceled)
    assert canceled.state is OrderState.CANCELED
    events = len(canceled.events)
    harness.oms.on_canceled(canceled, 9, "again")
    assert canceled.state is OrderState.CANCELED and len(canceled.events) == events
    filled = harness.order("BUY", "10")
    harness.bar("100", "101", "99", "100")
    harness.oms.on_canceled(filled, 10, None)
    harness.oms.on_rejected(filled, 11, "late")
    assert filled.state is OrderState.FILLED and filled not in harness.oms.rejected
