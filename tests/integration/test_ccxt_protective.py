"""Binance spot's native protective orders through the ccxt adapter (issue 17 item 3): real ccxt
against the loopback binance fake, the real OrderManager as the sink (brokers/ccxt/protective.py)."""

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
from tests.conformance.harness_ccxt import binance_on, bybit_on  # noqa: E402
from tests.fakes.binance_fake import BinanceFake  # noqa: E402

SYMBOL, MARKET_ID = "BTC/USDT", "BTCUSDT"
D = Decimal


@pytest.fixture
def fake() -> Iterator[BinanceFake]:
    fake = BinanceFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def oms(fake: BinanceFake) -> OrderManager:
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SYMBOL], backoff_s=0.001,
                          max_backoff_s=0.005, poll_interval_s=None)
    oms = OrderManager("t", LiveClock(), adapter, Portfolio(D(0), 8), {})
    instruments = adapter.instruments()
    oms.instruments.update(instruments)
    oms.portfolio = Portfolio.for_instrument(adapter.account().cash, instruments[SYMBOL])
    return oms


def entry(oms: OrderManager, kind: OrderType = OrderType.MARKET, limit: str | None = None,
          qty: str = "0.01") -> Order:
    return Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.BUY, kind, D(qty), 0,
                 limit_price=None if limit is None else D(limit))


def exits(oms: OrderManager, parent: Order | None, stop: str = "49000.00", take: str | None = "51000.00",
          trail: str | None = None, group: str | None = None, qty: str | None = None) -> list[Order]:
    """A stop-loss (trailing when `trail` is a percent) and, unless `take` is None, a take-profit:
    children of `parent` in one OCO group (or, with no parent, a standalone OCO `group`)."""
    size = D(qty) if qty is not None else parent.qty  # type: ignore[union-attr]
    pid = None if parent is None else parent.client_order_id
    oco = group if parent is None else (pid if take is not None else None)
    out = [Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.STOP, size, 0,
                 stop_price=D(stop), parent_id=pid, oco_group=oco, tag="sl",
                 trail_percent=None if trail is None else D(trail))]
    if take is not None:
        out.append(Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.LIMIT, size, 0,
                         limit_price=D(take), parent_id=pid, oco_group=oco, tag="tp"))
    return out


def venue(fake: BinanceFake, order: Order):
    return fake.orders[fake.by_client[order.client_order_id]]


def quote(fake: BinanceFake, oms: OrderManager, price: str) -> None:
    fake.set_quote(MARKET_ID, D(price), D(price))
    assert oms.adapter.poll()  # type: ignore[attr-defined]


def test_a_bracket_goes_as_one_oco_order_list_once_the_entry_fills_and_the_take_profit_expires_the_stop(fake, oms):
    buy = entry(oms)
    stop, take = exits(oms, buy)
    for order in (buy, stop, take):
        oms.submit(order)
    assert buy.state is OrderState.FILLED
    assert (stop.state, take.state) == (OrderState.ACCEPTED, OrderState.ACCEPTED)
    sl, tp = venue(fake, stop), venue(fake, take)
    assert sl.order_list_id == tp.order_list_id >= 0   # one list, each leg under the engine child's id
    assert (sl.type, sl.stop_price, sl.qty) == ("STOP_LOSS", D("49000.00"), D("0.01"))
    assert (tp.type, tp.price, tp.qty) == ("LIMIT_MAKER", D("51000.00"), D("0.01"))
    quote(fake, oms, "51000.00")
    assert take.state is OrderState.FILLED and take.avg_fill_price == D("51000.00")
    assert (stop.state, stop.reason, sl.status) == (OrderState.CANCELED, "EXPIRED", "EXPIRED")
    assert oms.portfolio.positions[SYMBOL].qty == 0 and fake.locked["BTC"] == 0


def test_the_stop_leg_triggering_fills_at_the_market_and_expires_the_take_profit(fake, oms):
    buy = entry(oms)
    stop, take = exits(oms, buy)
    for order in (buy, stop, take):
        oms.submit(order)
    quote(fake, oms, "49500.00")       # above the stop: nothing happens
    assert (stop.state, take.state) == (OrderState.ACCEPTED, OrderState.ACCEPTED)
    quote(fake, oms, "48990.00")       # through the stop: a market sell at the bid
    assert stop.state is OrderState.FILLED and stop.avg_fill_price == D("48990.00")
    assert take.state is OrderState.CANCELED and venue(fake, take).status == "EXPIRED"
    assert oms.portfolio.positions[SYMBOL].qty == 0


def test_children_wait_unsent_until_a_limit_entry_is_done_then_go_sized_to_what_it_filled(fake, oms):
    buy = entry(oms, OrderType.LIMIT, limit="49500.00", qty="0.02")
    stop, take = exits(oms, buy)
    for order in (buy, stop, take):
        oms.submit(order)
    assert (stop.state, take.state) == (OrderState.PENDING_SUBMIT, OrderState.PENDING_SUBMIT)
    assert fake.count_client_id(stop.client_order_id) == fake.count_client_id(take.client_order_id) == 0
    fake.fill(buy.client_order_id, D("0.005"))
    oms.adapter.poll()  # type: ignore[attr-defined]
    # the entry still works: its exits are at the venue from the first fill, sized to it (D7a)
    assert (stop.state, take.state) == (OrderState.ACCEPTED, OrderState.ACCEPTED)
    assert venue(fake, stop).qty == venue(fake, take).qty == D("0.005")
    oms.cancel(buy)
    assert buy.state is OrderState.CANCELED and buy.filled_qty == D("0.005")
    assert (stop.state, take.state) == (OrderState.ACCEPTED, OrderState.ACCEPTED)
    assert venue(fake, stop).qty == venue(fake, take).qty == D("0.005") == stop.qty == take.qty


def test_an_entry_canceled_unfilled_cancels_its_waiting_children_and_sends_nothing(fake, oms):
    buy = entry(oms, OrderType.LIMIT, limit="49500.00")
    stop, take = exits(oms, buy)
    for order in (buy, stop, take):
        oms.submit(order)
    oms.cancel(buy)
    assert (stop.state, take.state) == (OrderState.CANCELED, OrderState.CANCELED)
    assert stop.reason == "PARENT_NOT_FILLED"
    assert len(fake.orders) == 1


def test_a_waiting_child_can_be_canceled_before_it_was_ever_sent(fake, oms):
    """OrderManager.cancel skips an order still PENDING_SUBMIT; cancel_all hands every order in
    flight to the adapter, which drops a waiting child without asking the venue."""
    buy = entry(oms, OrderType.LIMIT, limit="49500.00")
    (stop,) = exits(oms, buy, take=None)
    oms.submit(buy)
    oms.submit(stop)
    oms.adapter.cancel(stop)
    assert stop.state is OrderState.CANCELED
    fake.fill(buy.client_order_id)
    oms.adapter.poll()  # type: ignore[attr-defined]
    assert buy.state is OrderState.FILLED and fake.count_client_id(stop.client_order_id) == 0


def test_a_child_whose_entry_never_reached_the_adapter_is_refused_not_left_waiting(fake, oms):
    """An entry the risk gate denied never reaches the adapter: its child must not wait forever
    (still PENDING_SUBMIT, it would count as in flight)."""
    buy = entry(oms)
    (stop,) = exits(oms, buy, take=None)
    oms.submit(stop)
    assert stop.state is OrderState.REJECTED and buy.client_order_id in stop.reason


def test_a_lone_stop_child_is_a_stop_loss_sized_to_the_fill(fake, oms):
    buy = entry(oms)
    (stop,) = exits(oms, buy, take=None)
    oms.submit(buy)
    oms.submit(stop)
    sl = venue(fake, stop)
    assert (sl.type, sl.stop_price, sl.order_list_id, stop.state) == ("STOP_LOSS", D("49000.00"), -1,
                                                                       OrderState.ACCEPTED)


def test_a_trailing_stop_is_a_stop_loss_with_trailing_delta_that_ratchets_behind_the_price(fake, oms):
    buy = entry(oms)
    (trail,) = exits(oms, buy, stop="49500.00", take=None, trail="1")
    oms.submit(buy)
    oms.submit(trail)
    sl = venue(fake, trail)
    assert (sl.type, sl.trailing_delta, sl.stop_price) == ("STOP_LOSS", 100, 0)   # 1% = 100 bps, no activation
    quote(fake, oms, "52000.00")
    quote(fake, oms, "51500.00")          # 0.96% below the high: still working
    assert trail.state is OrderState.ACCEPTED
    quote(fake, oms, "51480.00")          # 1% below 52,000: triggered
    assert trail.state is OrderState.FILLED and trail.avg_fill_price == D("51480.00")


def test_a_trailing_stop_leg_rides_in_the_oco_list(fake, oms):
    buy = entry(oms)
    stop, take = exits(oms, buy, stop="49500.00", trail="0.5")
    for order in (buy, stop, take):
        oms.submit(order)
    assert venue(fake, stop).trailing_delta == 50 and venue(fake, stop).order_list_id == venue(fake, take).order_list_id
    quote(fake, oms, "50800.00")
    quote(fake, oms, "50540.00")          # 0.51% off the high
    assert stop.state is OrderState.FILLED and take.state is OrderState.CANCELED


@pytest.mark.parametrize("field, trail, expected", [
    ("trail_distance", None, "trail_distance"),
    ("trail_percent", "0.05", "trail_percent"),      # 5 bps: below binance's TRAILING_DELTA minimum
    ("trail_percent", "0.125", "trail_percent"),     # 12.5 bps: not a whole number of bps
])
def test_a_trail_binance_cannot_express_is_refused_naming_the_field(fake, oms, field, trail, expected):
    buy = entry(oms)
    stop = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.STOP, buy.qty, 0,
                 stop_price=D("49000.00"), parent_id=buy.client_order_id, tag="trail",
                 trail_distance=D("500") if field == "trail_distance" else None,
                 trail_percent=None if trail is None else D(trail))
    oms.submit(buy)
    oms.submit(stop)
    assert stop.state is OrderState.REJECTED
    assert stop.reason.startswith(RejectReason.UNSUPPORTED) and expected in stop.reason
    assert fake.count_client_id(stop.client_order_id) == 0


def held(oms: OrderManager) -> str:
    """The bot's position as text: what a standalone exit on spot may sell (a fee taken in the
    coin bought leaves less than the entry's quantity; more would be a short sale: engine.oms)."""
    return str(oms.portfolio.positions[SYMBOL].quantity)


def test_a_standalone_oco_exit_waits_for_its_sibling_then_goes_as_one_list(fake, oms):
    oms.submit(entry(oms))
    stop, take = exits(oms, None, group="exit-1", qty=held(oms))
    oms.submit(stop)
    assert stop.state is OrderState.PENDING_SUBMIT and fake.count_client_id(stop.client_order_id) == 0
    oms.submit(take)
    assert venue(fake, stop).order_list_id == venue(fake, take).order_list_id >= 0
    assert (stop.state, take.state) == (OrderState.ACCEPTED, OrderState.ACCEPTED)


def test_an_order_list_whose_answer_is_lost_is_found_by_its_legs_client_ids_and_never_sent_twice(fake, oms):
    buy = entry(oms)
    stop, take = exits(oms, buy)
    fake.inject("hang", "POST", "/api/v3/orderList/oco")   # booked, then no answer: ccxt times out
    for order in (buy, stop, take):
        oms.submit(order)
    assert (stop.state, take.state) == (OrderState.SUBMITTED, OrderState.SUBMITTED)
    fake.release.set()
    oms.adapter.poll()  # type: ignore[attr-defined]
    assert (stop.state, take.state) == (OrderState.ACCEPTED, OrderState.ACCEPTED)
    assert fake.count_client_id(stop.client_order_id) == fake.count_client_id(take.client_order_id) == 1
    assert fake.requests.count(("POST", "/api/v3/orderList/oco")) == 1


def test_binances_oco_price_rule_refuses_a_stop_above_the_market(fake, oms):
    """A SELL OCO needs limit > last > stop: a stop above the last price is refused by the venue,
    and both exits end REJECTED with the reason (nothing left working)."""
    oms.submit(entry(oms))
    stop, take = exits(oms, None, stop="50500.00", take="51000.00", group="exit-1", qty=held(oms))
    oms.submit(stop)
    oms.submit(take)
    assert (stop.state, take.state) == (OrderState.REJECTED, OrderState.REJECTED)
    assert stop.reason == RejectReason.INVALID_STOPS and not any(o.order_list_id >= 0 for o in fake.orders.values())


def test_a_stop_on_the_wrong_side_of_the_market_is_refused_as_invalid_stops(fake, oms):
    """binance -2010 "Stop price would trigger immediately." is an invalid stop, not a price off the grid."""
    oms.submit(entry(oms))
    sell_stop = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.STOP, D(held(oms)), 0,
                      stop_price=D("50500.00"))
    oms.submit(sell_stop)
    assert sell_stop.state is OrderState.REJECTED and sell_stop.reason == RejectReason.INVALID_STOPS


def test_canceling_one_leg_cancels_the_list_and_the_poll_reports_the_sibling(fake, oms):
    buy = entry(oms)
    stop, take = exits(oms, buy)
    for order in (buy, stop, take):
        oms.submit(order)
    oms.cancel(take)
    oms.adapter.poll()  # type: ignore[attr-defined]
    assert (stop.state, take.state) == (OrderState.CANCELED, OrderState.CANCELED)
    assert venue(fake, stop).status == "CANCELED" and fake.locked["BTC"] == 0


def test_other_ccxt_exchanges_declare_no_native_protective_orders():
    """Only binance is mapped: elsewhere (bybit here) the capability flags stay False, so the OMS
    refuses (or emulates) linked orders instead of the adapter sending a stop-loss as a plain stop."""
    from tests.fakes.bybit_fake import BybitFake
    fake = BybitFake().start()
    try:
        adapter = CcxtAdapter("bybit", exchange=bybit_on(fake), symbols=None, poll_interval_s=None)
        adapter.instruments()
        assert not any(getattr(adapter, flag) for flag in ("protective_orders", "native_brackets", "native_oco",
                                                            "native_trailing"))
    finally:
        fake.stop()


def test_binance_spot_declares_its_native_capabilities(oms):
    adapter = oms.adapter
    assert all(getattr(adapter, flag) for flag in ("protective_orders", "native_brackets", "native_oco",
                                                    "native_trailing"))


# -- amend: binance spot's cancel-replace -------------------------------------------------------------
def test_amend_replaces_a_resting_limit_and_the_replacement_reads_back_as_the_engines_order(fake, oms):
    buy = entry(oms, OrderType.LIMIT, limit="49000.00")
    oms.submit(buy)
    assert oms.amend(buy, price=D("49100.00"), qty=D("0.02")) is None
    old, new = venue(fake, buy), fake.orders[fake.by_client[f"{buy.client_order_id}.r1"]]
    assert old.status == "CANCELED" and (new.status, new.price, new.qty) == ("NEW", D("49100.00"), D("0.02"))
    assert (buy.limit_price, buy.qty, buy.state) == (D("49100.00"), D("0.02"), OrderState.ACCEPTED)
    oms.adapter.poll()  # type: ignore[attr-defined]
    assert buy.state is OrderState.ACCEPTED            # the replaced order's cancel is no cancel
    fake.fill(new.client_order_id)
    oms.adapter.poll()  # type: ignore[attr-defined]
    assert buy.state is OrderState.FILLED and buy.filled_qty == D("0.02") and buy.avg_fill_price == D("49100.00")
    assert oms.amend(buy, price=D("1")) == "NOT_WORKING"


def test_amend_moves_a_stops_trigger_and_a_second_amend_replaces_the_replacement(fake, oms):
    oms.submit(entry(oms))
    stop = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.STOP, D("0.01"), 0,
                 stop_price=D("49000.00"))
    oms.submit(stop)
    assert oms.amend(stop, price=D("49500.00")) is None
    assert oms.amend(stop, price=D("49600.00")) is None
    latest = fake.orders[fake.by_client[f"{stop.client_order_id}.r2"]]
    assert (latest.type, latest.stop_price, latest.status) == ("STOP_LOSS", D("49600.00"), "NEW")
    assert stop.stop_price == D("49600.00")
    quote(fake, oms, "49550.00")
    assert stop.state is OrderState.FILLED


def test_amend_of_what_binance_cannot_replace_is_refused_and_changes_nothing(fake, oms):
    buy = entry(oms, OrderType.LIMIT, limit="49000.00", qty="0.02")
    oms.submit(buy)
    fake.fill(buy.client_order_id, D("0.005"))
    oms.adapter.poll()  # type: ignore[attr-defined]
    reason = oms.amend(buy, price=D("49100.00"))
    assert reason is not None and "partly filled" in reason and buy.limit_price == D("49000.00")
    oms.cancel(buy)
    sell = entry(oms)
    stop, take = exits(oms, sell)
    for order in (sell, stop, take):
        oms.submit(order)
    reason = oms.amend(take, price=D("52000.00"))
    assert reason is not None and "oco_group" in reason and venue(fake, take).price == D("51000.00")
    assert oms.amend(take, price=D("51000.015")) is not None   # off the grid: checked before the venue


def test_amend_the_venue_refuses_leaves_the_order_as_it_was(fake, oms):
    """A replacement binance refuses (a stop above the market) after canceling the original
    ("partially failed"): the amend reports the refusal, and the original's cancel is reported."""
    oms.submit(entry(oms))
    stop = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.SELL, OrderType.STOP, D("0.01"), 0,
                 stop_price=D("49000.00"))
    oms.submit(stop)
    reason = oms.amend(stop, price=D("50500.00"))
    assert reason is not None and stop.stop_price == D("49000.00")
    assert stop.state is OrderState.CANCELED and fake.count_client_id(f"{stop.client_order_id}.r1") == 0


# -- over the push stream (ccxt.pro, binance's user-data stream) ---------------------------------------
@pytest.fixture
def pushed() -> Iterator[tuple[BinanceFake, object]]:
    from tests.fakes.binance_fake import BinanceWsFake
    fake = BinanceFake().start()
    ws = BinanceWsFake().attach(fake)
    yield fake, ws
    ws.stop()
    fake.stop()


def test_over_the_push_stream_a_leg_fill_and_its_siblings_expiry_reach_the_books(pushed):
    from tests.integration.test_ccxt_push_stream import Books
    fake, ws = pushed
    books = Books(fake, ws)  # type: ignore[arg-type]
    try:
        assert books.wait_live()
        oms = books.oms
        buy = entry(oms, OrderType.LIMIT, limit="49500.00")
        stop, take = exits(oms, buy)
        for order in (buy, stop, take):
            oms.submit(order)
        fake.fill(buy.client_order_id)                       # the entry's fill arrives pushed: the list goes
        assert books.wait(lambda: take.state is OrderState.ACCEPTED and stop.state is OrderState.ACCEPTED)
        fake.set_quote(MARKET_ID, D("51000.00"), D("51000.00"))
        assert books.wait(lambda: take.state is OrderState.FILLED and stop.state is OrderState.CANCELED)
        assert stop.reason == "EXPIRED" and oms.portfolio.positions[SYMBOL].qty == 0
    finally:
        books.adapter.close()


def test_over_the_push_stream_the_replaced_orders_cancel_is_no_cancel(pushed):
    from tests.integration.test_ccxt_push_stream import Books
    fake, ws = pushed
    books = Books(fake, ws)  # type: ignore[arg-type]
    try:
        assert books.wait_live()
        oms = books.oms
        buy = entry(oms, OrderType.LIMIT, limit="49000.00")
        oms.submit(buy)
        assert oms.amend(buy, price=D("49100.00")) is None
        fake.fill(f"{buy.client_order_id}.r1")    # pushed after the old order's CANCELED report
        assert books.wait(lambda: buy.state is OrderState.FILLED)
        assert OrderState.CANCELED not in [e.state for e in buy.events] and buy.avg_fill_price == D("49100.00")
    finally:
        books.adapter.close()


def test_after_a_restart_an_amended_order_is_found_as_its_replacement_not_as_canceled(fake, oms):
    """A restarted adapter has no memory of the cancel-replace: the lookup by the engine's client id
    finds the canceled original, then its `<id>.r<n>` replacement, which is the engine's order."""
    buy = entry(oms, OrderType.LIMIT, limit="49000.00")
    oms.submit(buy)
    assert oms.amend(buy, price=D("49100.00")) is None
    fresh = CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SYMBOL], poll_interval_s=None)
    fresh.instruments()
    status = fresh.order_status(buy.client_order_id)
    assert status is not None and status.state is OrderState.ACCEPTED and status.limit_price == D("49100.00")
    assert [o.client_order_id for o in fresh.open_orders()] == [buy.client_order_id]
