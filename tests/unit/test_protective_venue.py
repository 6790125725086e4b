"""Protective orders in the simulated venue (issue 17): brackets, OCO, trailing stops, amend.

Each test drives the venue through the OMS as a backtest does (tests/conftest.py harness) and
checks fills by hand-computed prices."""

from __future__ import annotations

from decimal import Decimal

from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from tests.conftest import Harness, make_harness


def _send(h: Harness, side: str, kind: OrderType, qty: str | None, limit: str | None = None,
          stop: str | None = None, parent: Order | None = None, group: str | None = None,
          trail: str | None = None, trail_percent: str | None = None, fraction: str | None = None) -> Order:
    order = Order(h.oms.next_client_order_id(), h.oms.bot_id, h.instrument.symbol, OrderSide(side), kind,
                  None if qty is None else Decimal(qty), h.clock.ts,
                  limit_price=None if limit is None else Decimal(limit),
                  stop_price=None if stop is None else Decimal(stop),
                  equity_fraction=None if fraction is None else Decimal(fraction),
                  parent_id=None if parent is None else parent.client_order_id, oco_group=group,
                  trail_distance=None if trail is None else Decimal(trail),
                  trail_percent=None if trail_percent is None else Decimal(trail_percent))
    h.oms.submit(order)
    return order


def _bracket(h: Harness, entry: Order, sl: str, tp: str) -> tuple[Order, Order]:
    group = entry.client_order_id
    stop = _send(h, "SELL", OrderType.STOP, entry.qty and str(entry.qty), stop=sl, parent=entry, group=group)
    take = _send(h, "SELL", OrderType.LIMIT, entry.qty and str(entry.qty), limit=tp, parent=entry, group=group)
    return stop, take


def _position(h: Harness) -> Decimal:
    return h.portfolio.positions["TEST"].quantity


def test_bracket_children_wait_for_the_entry_then_work_sized_to_its_fill():
    h = make_harness()
    entry = _send(h, "BUY", OrderType.LIMIT, "10", limit="90.00")
    stop, take = _bracket(h, entry, "85.00", "110.00")
    assert stop.state is OrderState.ACCEPTED and take.state is OrderState.ACCEPTED
    # the entry does not fill; the bar reaches the take-profit: it must not act (nothing to protect)
    h.bar("100.00", "111.00", "95.00", "100.00", index=0)
    assert entry.state is OrderState.ACCEPTED and take.filled_qty == 0 and _position(h) == 0
    h.bar("95.00", "96.00", "89.00", "92.00", index=1)
    assert entry.state is OrderState.FILLED and _position(h) == 10
    assert stop.state is OrderState.ACCEPTED and take.state is OrderState.ACCEPTED and stop.qty == 10
    h.bar("92.00", "93.00", "84.00", "86.00", index=2)
    assert stop.avg_fill_price == Decimal("85.00") and take.state is OrderState.CANCELED and _position(h) == 0


def test_bracket_with_unsized_children_takes_the_entry_fraction_fill():
    h = make_harness(cash="1000")
    entry = _send(h, "BUY", OrderType.MARKET, None, fraction="0.5")
    stop = _send(h, "SELL", OrderType.STOP, None, stop="90.00", parent=entry, group=entry.client_order_id)
    take = _send(h, "SELL", OrderType.LIMIT, None, limit="120.00", parent=entry, group=entry.client_order_id)
    assert stop.qty is None and take.qty is None
    h.bar("100.00", "101.00", "99.00", "100.00")
    assert entry.filled_qty == Decimal(5)  # 500 of equity at 100
    assert stop.qty == Decimal(5) and take.qty == Decimal(5)
    assert stop.state is OrderState.ACCEPTED


def test_take_profit_fill_cancels_the_stop_loss_oco():
    h = make_harness()
    entry = _send(h, "BUY", OrderType.MARKET, "10")
    stop, take = _bracket(h, entry, "95.00", "110.00")
    h.bar("100.00", "101.00", "99.00", "100.00", index=0)
    h.bar("105.00", "112.00", "104.00", "111.00", index=1)
    assert take.state is OrderState.FILLED and take.avg_fill_price == Decimal("110.00")
    assert stop.state is OrderState.CANCELED and stop.reason == "OCO"
    assert _position(h) == 0


def test_bar_touching_stop_and_take_profit_fills_the_stop_conservative_rule():
    """The documented rule: a bar that reaches both fills the stop-loss (a bar does not say which
    came first), and the OCO cancels the take-profit."""
    h = make_harness()
    entry = _send(h, "BUY", OrderType.MARKET, "10")
    stop, take = _bracket(h, entry, "95.00", "110.00")
    h.bar("100.00", "101.00", "99.00", "100.00", index=0)
    h.bar("100.00", "111.00", "94.00", "100.00", index=1)
    assert stop.state is OrderState.FILLED and stop.avg_fill_price == Decimal("95.00")
    assert take.state is OrderState.CANCELED
    assert _position(h) == 0
    assert h.portfolio.cash == Decimal("10000") - 10 * Decimal("100.00") + 10 * Decimal("95.00")


def test_entry_at_the_open_lets_its_children_act_in_the_same_bar():
    h = make_harness()
    entry = _send(h, "BUY", OrderType.MARKET, "10")
    stop, take = _bracket(h, entry, "95.00", "110.00")
    h.bar("100.00", "111.00", "99.00", "108.00")  # the whole bar came after the fill at the open
    assert entry.avg_fill_price == Decimal("100.00")
    assert take.state is OrderState.FILLED and take.avg_fill_price == Decimal("110.00")
    assert stop.state is OrderState.CANCELED


def test_take_profit_waits_a_bar_after_an_entry_filled_inside_the_bar():
    h = make_harness()
    entry = _send(h, "BUY", OrderType.LIMIT, "10", limit="99.00")
    stop, take = _bracket(h, entry, "95.00", "110.00")
    h.bar("100.00", "112.00", "98.00", "101.00", index=0)  # the high may have come before the dip to 99
    assert entry.avg_fill_price == Decimal("99.00")
    assert take.state is OrderState.ACCEPTED and take.filled_qty == 0
    h.bar("101.00", "111.00", "100.00", "105.00", index=1)
    assert take.avg_fill_price == Decimal("110.00") and stop.state is OrderState.CANCELED


def test_stop_loss_can_fill_in_the_bar_its_entry_filled_in():
    h = make_harness()
    entry = _send(h, "BUY", OrderType.LIMIT, "10", limit="99.00")
    stop, take = _bracket(h, entry, "95.00", "110.00")
    h.bar("100.00", "100.50", "94.00", "96.00")
    assert entry.avg_fill_price == Decimal("99.00")
    assert stop.avg_fill_price == Decimal("95.00") and take.state is OrderState.CANCELED
    assert _position(h) == 0


def test_partial_entry_fills_resize_the_children_and_a_partial_take_profit_shrinks_the_stop():
    h = make_harness(partial_fills=True)
    entry = _send(h, "BUY", OrderType.MARKET, "10")
    stop, take = _bracket(h, entry, "95.00", "110.00")
    h.tick("99.99", "100.00", size="4", ts=1)
    assert entry.filled_qty == 4 and stop.qty == 4 and take.qty == 4
    h.tick("99.99", "100.00", size="6", ts=2)
    assert entry.state is OrderState.FILLED and stop.qty == 10 and take.qty == 10
    h.tick("110.00", "110.01", size="3", ts=3)  # the take-profit sells 3 of 10
    assert take.filled_qty == 3 and take.state is OrderState.PARTIALLY_FILLED
    assert stop.qty == 7 and stop.leaves_qty == 7  # protects what is left, no more
    h.tick("94.00", "94.01", size="100", ts=4)
    assert stop.state is OrderState.FILLED and stop.filled_qty == 7
    assert take.state is OrderState.CANCELED
    assert _position(h) == 0


def test_exit_that_closes_a_partly_filled_entry_cancels_the_entry_rest():
    h = make_harness(partial_fills=True)
    entry = _send(h, "BUY", OrderType.LIMIT, "10", limit="100.00")
    stop, take = _bracket(h, entry, "95.00", "110.00")
    h.tick("99.99", "100.00", size="4", ts=1)
    assert entry.filled_qty == 4
    h.tick("94.00", "94.01", size="100", ts=2)  # the stop sells the 4 held; the entry still works
    assert stop.state is OrderState.FILLED and stop.filled_qty == 4
    assert entry.state is OrderState.CANCELED and entry.reason == "EXIT_FILLED"
    assert take.state is OrderState.CANCELED
    assert _position(h) == 0


def test_entry_canceled_before_any_fill_cancels_its_held_children():
    h = make_harness()
    entry = _send(h, "BUY", OrderType.LIMIT, "10", limit="90.00")
    stop, take = _bracket(h, entry, "85.00", "110.00")
    h.oms.cancel(entry)
    assert entry.state is OrderState.CANCELED
    assert stop.state is OrderState.CANCELED and stop.reason == "PARENT_CANCELED"
    assert take.state is OrderState.CANCELED
    assert not h.venue.has_working_orders


def test_child_of_an_order_not_working_at_the_venue_is_rejected():
    h = make_harness()
    entry = _send(h, "BUY", OrderType.MARKET, "1")
    h.bar("100.00", "100.00", "100.00", "100.00")
    late = _send(h, "SELL", OrderType.STOP, "1", stop="95.00", parent=entry)
    assert late.state is OrderState.REJECTED and late.reason == "INVALID_ORDER"


def test_standalone_oco_first_fill_cancels_the_other():
    h = make_harness()
    h.order("BUY", "10")
    h.bar("100.00", "100.00", "100.00", "100.00", index=0)
    take = _send(h, "SELL", OrderType.LIMIT, "10", limit="105.00", group="g1")
    stop = _send(h, "SELL", OrderType.STOP, "10", stop="95.00", group="g1")
    h.bar("101.00", "106.00", "100.00", "104.00", index=1)
    assert take.state is OrderState.FILLED and stop.state is OrderState.CANCELED and stop.reason == "OCO"
    late = _send(h, "SELL", OrderType.STOP, "1", stop="90.00", group="g1")  # the group was settled
    assert late.state is OrderState.CANCELED


def test_trailing_stop_ratchets_on_bars_after_matching_each_bar():
    """Hand-checked: entry at the open 100, trail 5. Bar 0 (high 108): the stop starts at 95
    (fill 100 - 5), is not touched (low 99), then ratchets to 103 (108 - 5). Bar 1 (high 109,
    low 102): matched at 103 first (the bar's own high is not used before it is matched): fills
    at 103."""
    h = make_harness()
    entry = _send(h, "BUY", OrderType.MARKET, "10")
    trail = _send(h, "SELL", OrderType.STOP, "10", stop="90.00", parent=entry, trail="5.00")
    h.bar("100.00", "108.00", "99.00", "107.00", index=0)
    assert trail.stop_price == Decimal("103.00") and trail.state is OrderState.ACCEPTED
    h.bar("106.00", "107.00", "104.00", "105.00", index=1)
    assert trail.stop_price == Decimal("103.00")  # never loosened: 107 - 5 = 102 < 103
    h.bar("107.00", "109.00", "102.00", "104.00", index=2)
    assert trail.state is OrderState.FILLED and trail.avg_fill_price == Decimal("103.00")
    assert _position(h) == 0


def test_trailing_stop_gap_through_fills_at_the_open():
    h = make_harness()
    h.order("BUY", "1")
    h.bar("100.00", "100.00", "100.00", "100.00", index=0)
    trail = _send(h, "SELL", OrderType.STOP, "1", stop="97.00", trail="3.00")
    h.bar("100.00", "110.00", "100.00", "110.00", index=1)
    assert trail.stop_price == Decimal("107.00")
    h.bar("101.00", "102.00", "100.00", "101.00", index=2)
    assert trail.avg_fill_price == Decimal("101.00")


def test_trailing_stop_ratchets_on_ticks_by_percent():
    h = make_harness()
    h.order("BUY", "1")
    h.tick("99.99", "100.00", ts=1)
    trail = _send(h, "SELL", OrderType.STOP, "1", stop="90.00", trail_percent="10")
    h.tick("119.99", "120.00", ts=2)
    assert trail.stop_price == Decimal("107.99")  # 119.99 x 0.9 = 107.991, down to the tick
    h.tick("110.00", "110.01", ts=3)
    assert trail.stop_price == Decimal("107.99")
    h.tick("107.50", "107.51", ts=4)
    assert trail.state is OrderState.FILLED and trail.avg_fill_price == Decimal("107.50")


def test_short_trailing_buy_stop_follows_the_ask_down():
    h = make_harness()
    h.order("SELL", "1")
    h.tick("99.99", "100.00", ts=1)
    trail = _send(h, "BUY", OrderType.STOP, "1", stop="102.00", trail="2.00")
    h.tick("94.99", "95.00", ts=2)
    assert trail.stop_price == Decimal("97.00")
    h.tick("96.99", "97.00", ts=3)
    assert trail.state is OrderState.FILLED and trail.avg_fill_price == Decimal("97.00")


def test_amend_changes_a_working_order_and_refuses_a_filled_one():
    h = make_harness()
    order = _send(h, "BUY", OrderType.LIMIT, "5", limit="90.00")
    assert h.oms.amend(order, price=Decimal("99.00"), qty=Decimal("7")) is None
    assert order.limit_price == Decimal("99.00") and order.qty == 7
    assert order.events[-1].reason == "AMENDED price=99.00 qty=7"
    h.bar("100.00", "101.00", "98.00", "100.00")
    assert order.state is OrderState.FILLED and order.avg_fill_price == Decimal("99.00") and order.filled_qty == 7
    assert h.oms.amend(order, price=Decimal("95.00")) == "NOT_WORKING"
    assert order.limit_price == Decimal("99.00")


def test_amend_refuses_off_grid_and_below_filled_and_changes_nothing():
    h = make_harness()
    order = _send(h, "BUY", OrderType.LIMIT, "5", limit="90.00")
    assert h.oms.amend(order, price=Decimal("90.005")) == "PRICE_OFF_GRID"
    assert h.oms.amend(order, qty=Decimal("0")) == "QTY_BELOW_MIN"
    assert order.limit_price == Decimal("90.00") and order.qty == 5


def test_amend_of_a_stop_moves_its_stop_and_of_a_held_child_before_activation():
    h = make_harness()
    entry = _send(h, "BUY", OrderType.MARKET, "10")
    stop, take = _bracket(h, entry, "95.00", "110.00")
    assert h.oms.amend(stop, price=Decimal("97.00")) is None
    h.bar("100.00", "101.00", "96.50", "100.00")
    assert stop.stop_price == Decimal("97.00") and stop.avg_fill_price == Decimal("97.00")


class _NoAmend:
    """An adapter without `amend` (as the live ones are today)."""

    name = "NOAMEND"

    def __init__(self, venue: SimulatedVenue) -> None:
        self.venue = venue

    def connect(self, sink):  # noqa: ANN001
        self.venue.connect(sink)

    def submit(self, order: Order) -> None:
        self.venue.submit(order)

    def cancel(self, order: Order) -> None:
        self.venue.cancel(order)


def test_oms_refuses_amend_and_links_on_an_adapter_without_them():
    instrument = Instrument("TEST", price_increment=Decimal("0.01"))
    venue = SimulatedVenue(instrument, Decimal(1000))
    oms = OrderManager("bot1", SimulatedClock(), _NoAmend(venue), Portfolio.for_instrument(Decimal(1000), instrument),
                       {"TEST": instrument})  # type: ignore[arg-type]
    order = Order(oms.next_client_order_id(), "bot1", "TEST", OrderSide.BUY, OrderType.LIMIT, Decimal(1), 0,
                  limit_price=Decimal("90.00"))
    oms.submit(order)
    assert oms.amend(order, price=Decimal("91.00")) == "UNSUPPORTED"
    assert order.limit_price == Decimal("90.00")
    child = Order(oms.next_client_order_id(), "bot1", "TEST", OrderSide.SELL, OrderType.STOP, Decimal(1), 0,
                  stop_price=Decimal("80.00"), parent_id=order.client_order_id)
    assert oms.submit(child) is True  # held and triggered by the OMS (engine/emulation.py), never sent
    assert child.emulated and child.state is OrderState.ACCEPTED and child.reason == "EMULATED"
    assert venue._working == [order]
