"""Binance USD-M futures protective orders through the ccxt adapter (issue 17 item 3): real ccxt
binanceusdm against the loopback futures fake, the real OrderManager as the sink. Stops go to the
algo service (POST /fapi/v1/algoOrder), take-profits rest as reduce-only limits, and the adapter
links a bracket's two exits (brokers/ccxt/protective.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.base import RejectReason  # noqa: E402
from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from tests.conformance.harness_ccxt import binanceusdm_on  # noqa: E402
from tests.fakes.binance_futures_fake import BinanceFuturesFake  # noqa: E402

SYMBOL, MARKET_ID = "BTC/USDT:USDT", "BTCUSDT"
D = Decimal


@pytest.fixture
def fake() -> Iterator[BinanceFuturesFake]:
    fake = BinanceFuturesFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def oms(fake: BinanceFuturesFake) -> OrderManager:
    adapter = CcxtAdapter("binanceusdm", exchange=binanceusdm_on(fake), symbols=[SYMBOL], backoff_s=0.001,
                          max_backoff_s=0.005, poll_interval_s=None)
    oms = OrderManager("t", LiveClock(), adapter, Portfolio(D(0), 8), {})
    instruments = adapter.instruments()
    oms.instruments.update(instruments)
    oms.portfolio = Portfolio.for_instrument(adapter.account().cash, instruments[SYMBOL])
    return oms


def bracket(oms: OrderManager, stop: str = "49000.0", take: str | None = "51000.0", trail: str | None = None,
            side: OrderSide = OrderSide.BUY) -> list[Order]:
    entry = Order(oms.next_client_order_id(), "t", SYMBOL, side, OrderType.MARKET, D("0.01"), 0)
    exit_side = OrderSide.SELL if side is OrderSide.BUY else OrderSide.BUY
    group = entry.client_order_id if take is not None else None
    out = [entry, Order(oms.next_client_order_id(), "t", SYMBOL, exit_side, OrderType.STOP, D("0.01"), 0,
                        stop_price=D(stop), parent_id=entry.client_order_id, oco_group=group, tag="sl",
                        trail_percent=None if trail is None else D(trail))]
    if take is not None:
        out.append(Order(oms.next_client_order_id(), "t", SYMBOL, exit_side, OrderType.LIMIT, D("0.01"), 0,
                         limit_price=D(take), parent_id=entry.client_order_id, oco_group=group, tag="tp"))
    for order in out:
        oms.submit(order)
    return out


def algo(fake: BinanceFuturesFake, order: Order):
    return next(a for a in fake.algo_orders.values() if a.client_algo_id == order.client_order_id)


def quote(fake: BinanceFuturesFake, oms: OrderManager, price: str) -> None:
    fake.set_quote(MARKET_ID, D(price), D(price))
    assert oms.adapter.poll()  # type: ignore[attr-defined]


def test_a_brackets_stop_is_a_reduce_only_algo_stop_market_and_its_take_profit_a_reduce_only_limit(fake, oms):
    entry, stop, take = bracket(oms)
    assert entry.state is OrderState.FILLED
    sl = algo(fake, stop)
    assert (sl.type, sl.trigger, sl.qty, sl.reduce_only, sl.status) == ("STOP_MARKET", D("49000.0"), D("0.01"),
                                                                         True, "NEW")
    tp = fake.orders[fake.by_client[take.client_order_id]]
    assert (tp.type, tp.price, tp.reduce_only, tp.status) == ("LIMIT", D("51000.0"), True, "NEW")
    assert (stop.state, take.state) == (OrderState.ACCEPTED, OrderState.ACCEPTED)
    assert fake.count_client_id(stop.client_order_id) == 0   # nothing in the matching engine until it triggers


def test_the_take_profit_filling_cancels_the_algo_stop_and_the_books_end_flat(fake, oms):
    entry, stop, take = bracket(oms)
    quote(fake, oms, "51000.0")
    assert take.state is OrderState.FILLED and take.avg_fill_price == D("51000.0")
    assert stop.state is OrderState.CANCELED and algo(fake, stop).status == "CANCELED"
    assert fake.positions[MARKET_ID].amount == 0 and oms.portfolio.positions[SYMBOL].qty == 0


def test_the_stop_triggering_closes_the_position_under_the_childs_id_and_cancels_the_take_profit(fake, oms):
    entry, stop, take = bracket(oms)
    quote(fake, oms, "49500.0")
    assert stop.state is OrderState.ACCEPTED
    quote(fake, oms, "48900.0")
    assert algo(fake, stop).status in ("TRIGGERED", "FINISHED") and algo(fake, stop).actual_order_id is not None
    assert stop.state is OrderState.FILLED and stop.avg_fill_price == D("48900.0")
    assert take.state is OrderState.CANCELED
    assert fake.orders[fake.by_client[take.client_order_id]].status == "CANCELED"
    assert fake.positions[MARKET_ID].amount == 0 and oms.portfolio.positions[SYMBOL].qty == 0


def test_a_triggered_stop_under_another_client_id_is_followed_through_its_actual_order_id(fake, oms):
    """Binance documents `actualOrderId` on a triggered algo order, not which client id the order
    in the matching engine carries: with one the engine never sent, the stop's fill is still the
    stop's (learned from the algo order), and the trade is not booked as a foreign order's."""
    fake.triggered_client_id = "own"
    entry, stop, take = bracket(oms)
    quote(fake, oms, "48900.0")
    oms.adapter.poll()  # type: ignore[attr-defined]
    assert stop.state is OrderState.FILLED and stop.filled_qty == D("0.01")
    assert take.state is OrderState.CANCELED and oms.portfolio.positions[SYMBOL].qty == 0
    assert [f.client_order_id for f in oms.fills] == [entry.client_order_id, stop.client_order_id] \
        and not oms.external and oms.foreign_reports == 0


def test_a_short_entrys_bracket_mirrors_it(fake, oms):
    entry, stop, take = bracket(oms, stop="51000.0", take="49000.0", side=OrderSide.SELL)
    assert algo(fake, stop).side == "BUY" and algo(fake, stop).reduce_only
    quote(fake, oms, "51100.0")
    assert stop.state is OrderState.FILLED and take.state is OrderState.CANCELED
    assert fake.positions[MARKET_ID].amount == 0


def test_a_trailing_stop_is_an_algo_trailing_stop_market_with_callback_rate(fake, oms):
    entry, trail = bracket(oms, stop="49500.0", take=None, trail="1")
    sl = algo(fake, trail)
    assert (sl.type, sl.callback_rate, sl.reduce_only) == ("TRAILING_STOP_MARKET", D("1"), True)
    quote(fake, oms, "52000.0")
    quote(fake, oms, "51500.0")
    assert trail.state is OrderState.ACCEPTED
    quote(fake, oms, "51480.0")     # 1% off the high
    assert trail.state is OrderState.FILLED and fake.positions[MARKET_ID].amount == 0


def test_an_unfilled_exit_can_be_canceled_at_the_algo_service(fake, oms):
    entry, stop = bracket(oms, take=None)
    oms.cancel(stop)
    assert stop.state is OrderState.CANCELED and algo(fake, stop).status == "CANCELED"


def test_a_stop_on_the_wrong_side_is_refused_by_the_algo_service_as_invalid_stops(fake, oms):
    """binance -2021 "Order would immediately trigger.": a long's stop above the market."""
    entry, stop = bracket(oms, stop="50500.0", take=None)
    assert stop.state is OrderState.REJECTED and stop.reason == RejectReason.INVALID_STOPS


def test_a_reduce_only_exit_with_no_position_is_refused(fake, oms):
    """binance -2022: a reduce-only order that would open a position (the entry was closed by hand
    before the exit went)."""
    entry = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.BUY, OrderType.LIMIT, D("0.01"), 0,
                  limit_price=D("49000.0"))
    stop = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.STOP, D("0.01"), 0,
                 stop_price=D("48000.0"), parent_id=entry.client_order_id, tag="sl")
    oms.submit(entry)
    oms.submit(stop)
    fake.fill(entry.client_order_id)
    fake.positions[MARKET_ID].amount = D(0)   # someone flattened the position meanwhile
    oms.adapter.poll()  # type: ignore[attr-defined]
    assert stop.state is OrderState.REJECTED and not fake.algo_orders


def test_a_trail_futures_cannot_express_is_refused_naming_the_field(fake, oms):
    entry, trail = bracket(oms, take=None, trail="0.05")
    assert trail.state is OrderState.REJECTED and "trail_percent" in trail.reason and not fake.algo_orders


def test_futures_declare_no_native_oco_so_a_standalone_group_is_not_sent_as_one(fake, oms):
    """USD-M has no order list: `native_oco` is False (brackets and trails are native), so the OMS
    holds a standalone OCO group itself (engine/emulation.py) and nothing reaches the venue."""
    assert not oms.adapter.native_oco and oms.adapter.native_brackets and oms.adapter.native_trailing  # type: ignore[attr-defined]
    lone = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.LIMIT, D("0.01"), 0,
                 limit_price=D("51000.0"), oco_group="g")
    oms.submit(lone)
    assert fake.count_client_id(lone.client_order_id) == 0 and not fake.algo_orders


def test_a_plain_stop_without_a_link_stays_refused_on_futures(fake, oms):
    stop = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.STOP, D("0.01"), 0,
                 stop_price=D("48000.0"))
    oms.submit(stop)
    assert stop.state is OrderState.REJECTED and stop.reason == RejectReason.UNSUPPORTED


def test_amend_modifies_a_futures_limit_in_place_and_refuses_an_algo_stop(fake, oms):
    entry, stop, take = bracket(oms)
    assert oms.amend(take, price=D("51500.0")) is None
    tp = fake.orders[fake.by_client[take.client_order_id]]
    assert (tp.price, tp.status, take.limit_price) == (D("51500.0"), "NEW", D("51500.0"))
    quote(fake, oms, "51200.0")
    assert take.state is OrderState.ACCEPTED          # the old price would have filled here
    quote(fake, oms, "51500.0")
    assert take.state is OrderState.FILLED and stop.state is OrderState.CANCELED
    entry2, stop2 = bracket(oms, take=None)
    reason = oms.amend(stop2, price=D("49500.0"))
    assert reason is not None and reason.startswith(RejectReason.UNSUPPORTED) and algo(fake, stop2).trigger == \
        D("49000.0")


def test_after_a_restart_a_stop_at_the_algo_service_is_found_working_then_filled(fake, oms):
    """A restarted adapter does not know which orders it sent to the algo service: a lookup that
    the matching engine cannot answer asks the algo service, so reconciliation finds the stop."""
    entry, stop, take = bracket(oms)
    fresh = CcxtAdapter("binanceusdm", exchange=binanceusdm_on(fake), symbols=[SYMBOL], poll_interval_s=None)
    fresh.instruments()
    status = fresh.order_status(stop.client_order_id)
    assert status is not None and status.state is OrderState.ACCEPTED and status.type is OrderType.STOP
    assert status.stop_price == D("49000.0")
    fake.set_quote(MARKET_ID, D("48900.0"), D("48900.0"))
    status = fresh.order_status(stop.client_order_id)
    assert status is not None and status.state is OrderState.FILLED and status.filled_qty == D("0.01")
