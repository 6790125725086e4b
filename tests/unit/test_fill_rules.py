"""The simulated venue's documented fill rules, one behaviour per test."""

from __future__ import annotations

from decimal import Decimal

from engine.orders import OrderState, OrderType
from tests.conftest import make_harness


def test_market_order_fills_at_next_bar_open():
    h = make_harness()
    order = h.order("BUY", "10")
    assert order.state is OrderState.SUBMITTED  # nothing fills before the next bar
    h.bar("100.00", "105.00", "99.00", "104.00")
    assert order.state is OrderState.FILLED
    assert order.avg_fill_price == Decimal("100.00")


def test_buy_limit_touched_by_low_fills_at_limit():
    h = make_harness()
    order = h.order("BUY", "1", OrderType.LIMIT, limit="98.50")
    h.bar("100.00", "101.00", "98.00", "99.00")
    assert order.avg_fill_price == Decimal("98.50")


def test_buy_limit_not_touched_stays_working():
    h = make_harness()
    order = h.order("BUY", "1", OrderType.LIMIT, limit="97.00")
    h.bar("100.00", "101.00", "97.01", "99.00")
    assert order.state is OrderState.ACCEPTED


def test_buy_limit_gapped_through_fills_at_open():
    h = make_harness()
    order = h.order("BUY", "1", OrderType.LIMIT, limit="98.00")
    h.bar("95.00", "96.00", "94.00", "95.50")
    assert order.avg_fill_price == Decimal("95.00")


def test_sell_limit_touched_by_high_fills_at_limit():
    h = make_harness()
    h.order("BUY", "1")
    h.bar("100.00", "100.00", "100.00", "100.00")
    order = h.order("SELL", "1", OrderType.LIMIT, limit="103.00")
    h.bar("101.00", "104.00", "100.00", "102.00", index=1)
    assert order.avg_fill_price == Decimal("103.00")


def test_sell_stop_touched_fills_at_stop_and_gap_fills_at_open():
    h = make_harness()
    h.order("BUY", "2")
    h.bar("100.00", "100.00", "100.00", "100.00")
    touched = h.order("SELL", "1", OrderType.STOP, stop="98.00")
    h.bar("99.00", "99.50", "97.00", "98.50", index=1)
    assert touched.avg_fill_price == Decimal("98.00")
    gapped = h.order("SELL", "1", OrderType.STOP, stop="97.00")
    h.bar("95.00", "96.00", "94.00", "95.00", index=2)
    assert gapped.avg_fill_price == Decimal("95.00")


def test_buy_stop_triggered_inside_bar_fills_at_stop_plus_slippage_rounded_up():
    h = make_harness(slippage_bps="10")
    order = h.order("BUY", "1", OrderType.STOP, stop="101.00")
    h.bar("100.00", "102.00", "99.00", "101.50")
    # 101.00 * 1.001 = 101.101 -> rounded up to the tick against the buyer: 101.11
    assert order.avg_fill_price == Decimal("101.11")


def test_stop_limit_triggered_inside_bar_with_limit_below_stop_waits_for_next_bar():
    h = make_harness()
    order = h.order("BUY", "1", OrderType.STOP_LIMIT, stop="101.00", limit="100.50")
    h.bar("100.00", "102.00", "99.00", "101.50")
    assert order.state is OrderState.ACCEPTED and order.stop_triggered
    h.bar("101.00", "101.50", "100.00", "100.80", index=1)
    assert order.avg_fill_price == Decimal("100.50")


def test_stop_limit_triggered_inside_bar_with_limit_above_stop_fills_at_stop():
    h = make_harness()
    order = h.order("BUY", "1", OrderType.STOP_LIMIT, stop="101.00", limit="101.50")
    h.bar("100.00", "102.00", "99.00", "101.50")
    assert order.avg_fill_price == Decimal("101.00")


def test_stop_limit_gapped_above_limit_fills_at_limit_when_bar_trades_back_down():
    h = make_harness()
    order = h.order("BUY", "1", OrderType.STOP_LIMIT, stop="101.00", limit="101.50")
    h.bar("103.00", "104.00", "101.00", "102.00")
    assert order.avg_fill_price == Decimal("101.50")


def test_stop_fills_before_limit_when_both_touched_in_one_bar():
    h = make_harness()
    h.order("BUY", "1")
    h.bar("100.00", "100.00", "100.00", "100.00")
    take_profit = h.order("SELL", "1", OrderType.LIMIT, limit="105.00")
    stop_loss = h.order("SELL", "1", OrderType.STOP, stop="95.00")
    h.bar("100.00", "106.00", "94.00", "100.00", index=1)
    fills = [f.client_order_id for f in h.oms.fills]
    assert fills.index(stop_loss.client_order_id) < fills.index(take_profit.client_order_id)


def test_market_fill_pays_percent_and_per_order_commission_rounded_half_even():
    h = make_harness(commission="0.001", per_order="1.00")
    h.order("BUY", "3")
    h.bar("33.35", "34.00", "33.00", "33.50")
    # notional 100.05 * 0.001 = 0.10005 -> 0.10 (half-even to the cent) + 1.00 fixed
    fill = h.oms.fills[0]
    assert fill.fee == Decimal("1.10")
    assert h.portfolio.cash == Decimal("10000") - Decimal("100.05") - Decimal("1.10")


def test_buy_costing_more_than_cash_is_rejected_and_books_nothing():
    h = make_harness(cash="1000")
    order = h.order("BUY", "11")
    h.bar("100.00", "100.00", "100.00", "100.00")
    assert order.state is OrderState.REJECTED and order.reason == "INSUFFICIENT_FUNDS"
    assert h.portfolio.cash == Decimal("1000") and h.oms.fills == []


def test_equity_fraction_is_sized_at_fill_price_and_never_spends_more_than_cash():
    h = make_harness(cash="1000", commission="0.002")
    order = h.order("BUY", fraction="1")
    h.bar("33.33", "34.00", "33.00", "33.50")
    # 29 * 33.33 = 966.57, fee 1.93 -> 968.50 <= 1000; 30 would cost 999.90 + 2.00 = 1001.90
    assert order.qty == Decimal("29")
    assert h.portfolio.cash == Decimal("1000") - Decimal("966.57") - Decimal("1.93")
    assert h.portfolio.cash >= 0


def test_fractional_units_follow_the_size_increment():
    h = make_harness(cash="100", size_increment="0.001")
    order = h.order("BUY", fraction="1")
    h.bar("30.00", "30.00", "30.00", "30.00")
    assert order.qty == Decimal("3.333")


def test_quantity_off_the_lot_grid_is_rejected_at_submit():
    h = make_harness()
    order = h.order("BUY", "1.5")
    assert order.state is OrderState.REJECTED and order.reason == "QTY_OFF_GRID"
    assert not h.venue.has_working_orders


def test_limit_price_off_the_tick_grid_is_rejected():
    h = make_harness()
    order = h.order("BUY", "1", OrderType.LIMIT, limit="100.005")
    assert order.state is OrderState.REJECTED and order.reason == "PRICE_OFF_GRID"


def test_short_sale_then_cover_books_both_sides():
    h = make_harness()
    h.order("SELL", "10")
    h.bar("50.00", "50.00", "50.00", "50.00")
    assert h.portfolio.positions["TEST"].qty == -10
    h.order("BUY", "10")
    h.bar("45.00", "45.00", "45.00", "45.00", index=1)
    assert h.portfolio.cash == Decimal("10050.00")


# -- ticks ------------------------------------------------------------------------------------


def test_tick_market_buy_fills_at_next_ask_and_sell_at_next_bid():
    h = make_harness(price_increment="0.00001")
    buy = h.order("BUY", "1000")
    h.tick("1.10000", "1.10002")
    assert buy.avg_fill_price == Decimal("1.10002")
    sell = h.order("SELL", "1000")
    h.tick("1.10010", "1.10012", ts=1)
    assert sell.avg_fill_price == Decimal("1.10010")


def test_tick_resting_limit_fills_at_its_price_when_ask_comes_down():
    h = make_harness(price_increment="0.00001")
    order = h.order("BUY", "1000", OrderType.LIMIT, limit="1.09990")
    h.tick("1.10000", "1.10002")
    assert order.state is OrderState.ACCEPTED
    h.tick("1.09980", "1.09985", ts=1)
    assert order.avg_fill_price == Decimal("1.09990")


def test_tick_marketable_limit_fills_at_the_ask_on_its_first_tick():
    h = make_harness(price_increment="0.00001")
    order = h.order("BUY", "1000", OrderType.LIMIT, limit="1.20000")
    h.tick("1.10000", "1.10002")
    assert order.avg_fill_price == Decimal("1.10002")


def test_tick_stop_triggers_on_the_ask_and_fills_there():
    h = make_harness(price_increment="0.00001")
    order = h.order("BUY", "1000", OrderType.STOP, stop="1.10050")
    h.tick("1.10000", "1.10002")
    assert order.state is OrderState.ACCEPTED
    h.tick("1.10055", "1.10060", ts=1)
    assert order.avg_fill_price == Decimal("1.10060")


def test_tick_partial_fills_take_at_most_the_tick_size():
    h = make_harness(price_increment="0.00001", partial_fills=True)
    order = h.order("BUY", "1000")
    h.tick("1.10000", "1.10002", size="400")
    assert order.state is OrderState.PARTIALLY_FILLED and order.filled_qty == Decimal("400")
    h.tick("1.10001", "1.10004", size="1000", ts=1)
    assert order.state is OrderState.FILLED and order.filled_qty == Decimal("1000")
    # average of 400 @ 1.10002 and 600 @ 1.10004
    assert order.avg_fill_price == (Decimal("400") * Decimal("1.10002") + Decimal("600") * Decimal("1.10004")) / 1000
