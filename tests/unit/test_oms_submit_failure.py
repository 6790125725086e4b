"""A submit that raises before any venue saw the order must not leave it in flight for good.

The broken adapter here stands for any adapter whose submit fails before sending (a price read
for sizing that times out, a bug): the shared mechanism is the OMS's, so it is tested on the OMS.
"""

from __future__ import annotations

from decimal import Decimal

from engine.orders import Order, OrderSide, OrderState, OrderType
from tests.conftest import make_harness


class FailsFirstSubmit:
    """Wraps the simulated venue; its first submit raises before reaching the venue."""

    def __init__(self, venue) -> None:
        self.venue = venue
        self.failed = False

    def __getattr__(self, name):
        return getattr(self.venue, name)

    def submit(self, order: Order) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("https://api.example/ticker?signature=SECRET timed out")
        self.venue.submit(order)


def test_a_submit_that_raises_before_the_venue_ends_rejected_and_the_next_order_goes_out():
    h = make_harness()
    h.oms.adapter = FailsFirstSubmit(h.venue)
    first = Order(h.oms.next_client_order_id(), "bot1", "TEST", OrderSide.BUY, OrderType.MARKET, None, 0,
                  equity_fraction=Decimal("0.5"))
    h.oms.submit(first)
    assert first.state is OrderState.REJECTED
    assert first.reason == "SUBMIT_FAILED: ConnectionError" and "SECRET" not in first.reason
    assert first not in h.oms.open_orders and first in h.oms.rejected
    second = h.order("BUY", "1")
    h.bar("10.00", "10.00", "10.00", "10.00")
    assert second.state is OrderState.FILLED
