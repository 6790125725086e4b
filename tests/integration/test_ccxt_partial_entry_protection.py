"""A bracket whose LIMIT entry fills partly and keeps resting (issue 17 item 2, defect D7): the
filled part must be protected at the venue from the first partial fill, by exits sized to what
filled, resized as more fills come. Real ccxt against the loopback Binance fakes (spot and USD-M),
the real OrderManager as the sink, as tests/integration/test_ccxt_protective.py does.

The assertions read the venue, not the books, and do not depend on how the adapter resizes (one
list per filled increment, or a replace): they sum what works at the venue for each engine exit
(its own client id or a `<id>.r<n>` replacement id), so the stop covers exactly what filled."""

from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from brokers.ccxt.protective import engine_id  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from tests.conformance.harness_ccxt import binance_on, binanceusdm_on  # noqa: E402
from tests.fakes.binance_fake import BinanceFake  # noqa: E402
from tests.fakes.binance_futures_fake import BinanceFuturesFake  # noqa: E402

D = Decimal
MARKET_ID = "BTCUSDT"
WORKING = ("NEW", "PARTIALLY_FILLED")


def manager(adapter: CcxtAdapter, symbol: str) -> OrderManager:
    oms = OrderManager("t", LiveClock(), adapter, Portfolio(D(0), 8), {})
    instruments = adapter.instruments()
    oms.instruments.update(instruments)
    oms.portfolio = Portfolio.for_instrument(adapter.account().cash, instruments[symbol])
    return oms


def bracket(oms: OrderManager, symbol: str, qty: str, limit: str, stop: str, take: str) -> list[Order]:
    """A resting LIMIT BUY entry with a stop and a take-profit in one OCO group, submitted linked."""
    entry = Order(oms.next_client_order_id(), "t", symbol, OrderSide.BUY, OrderType.LIMIT, D(qty), 0,
                  limit_price=D(limit))
    with oms.linked():
        oms.submit(entry)
        sl = Order(oms.next_client_order_id(), "t", symbol, OrderSide.SELL, OrderType.STOP, D(qty), 0,
                   stop_price=D(stop), parent_id=entry.client_order_id, oco_group=entry.client_order_id, tag="sl")
        tp = Order(oms.next_client_order_id(), "t", symbol, OrderSide.SELL, OrderType.LIMIT, D(qty), 0,
                   limit_price=D(take), parent_id=entry.client_order_id, oco_group=entry.client_order_id, tag="tp")
        oms.submit(sl)
        oms.submit(tp)
    return [entry, sl, tp]


def poll(oms: OrderManager) -> None:
    assert oms.adapter.poll()  # type: ignore[attr-defined]


# -- Binance spot ---------------------------------------------------------------------------------------
SPOT = "BTC/USDT"


@pytest.fixture
def spot() -> Iterator[BinanceFake]:
    fake = BinanceFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def spot_oms(spot: BinanceFake) -> OrderManager:
    return manager(CcxtAdapter("binance", exchange=binance_on(spot), symbols=[SPOT], backoff_s=0.001,
                               max_backoff_s=0.005, poll_interval_s=None), SPOT)


def spot_legs(fake: BinanceFake, order: Order, statuses: tuple[str, ...] = WORKING) -> list:
    """The venue orders working for one engine exit (its id or a replacement `<id>.r<n>`)."""
    with fake.lock:
        return [o for o in fake.orders.values()
                if engine_id(o.client_order_id) == order.client_order_id and o.status in statuses]


def covered(legs: list) -> Decimal:
    return sum((o.qty - o.executed for o in legs), D(0))


def test_spot_the_first_partial_fill_puts_an_oco_list_sized_to_it_at_the_venue(spot, spot_oms):
    entry, sl, tp = bracket(spot_oms, SPOT, "0.02", "49000.00", "45000.00", "60000.00")
    poll(spot_oms)
    assert spot_legs(spot, sl) == [] and spot_legs(spot, tp) == []   # nothing filled: nothing to protect
    spot.fill(entry.client_order_id, D("0.01"))
    poll(spot_oms)
    assert entry.state is OrderState.PARTIALLY_FILLED
    stops, takes = spot_legs(spot, sl), spot_legs(spot, tp)
    assert covered(stops) == D("0.01") and covered(takes) == D("0.01")
    assert {o.type for o in stops} == {"STOP_LOSS"} and {o.type for o in takes} == {"LIMIT_MAKER"}
    assert all(o.order_list_id >= 0 for o in stops + takes)       # each stop is linked to a take-profit
    assert sl.state is OrderState.ACCEPTED and tp.state is OrderState.ACCEPTED


def test_spot_each_further_fill_grows_the_protection_to_exactly_what_filled(spot, spot_oms):
    entry, sl, tp = bracket(spot_oms, SPOT, "0.03", "49000.00", "45000.00", "60000.00")
    for filled in ("0.01", "0.02", "0.03"):
        spot.fill(entry.client_order_id, D("0.01"))
        poll(spot_oms)
        # never more than the bot holds (it would sell the account's other coins), never less
        assert covered(spot_legs(spot, sl)) == D(filled) == covered(spot_legs(spot, tp))
        assert sl.state is OrderState.ACCEPTED and tp.state is OrderState.ACCEPTED
    assert entry.state is OrderState.FILLED


def test_spot_a_gap_through_the_stop_after_the_first_partial_fill_is_sold_by_the_venues_stop(spot, spot_oms):
    entry, sl, tp = bracket(spot_oms, SPOT, "0.02", "49000.00", "45000.00", "60000.00")
    spot.fill(entry.client_order_id, D("0.01"))
    poll(spot_oms)
    btc = spot.balances["BTC"]
    spot.set_quote(MARKET_ID, D("40000.00"), D("40000.01"))    # the market gaps through the stop
    sold = spot_legs(spot, sl, ("FILLED",))
    assert sum((o.executed for o in sold), D(0)) >= D("0.01")  # the venue's stop sold, with no poll between
    for _ in range(3):
        poll(spot_oms)
    assert spot_oms.portfolio.positions[SPOT].quantity == 0     # the entry's rest (filled at the gap) left too
    assert spot.balances["BTC"] <= btc                          # nothing bought is held at the venue
    assert tp.state in (OrderState.CANCELED, OrderState.EXPIRED)


# -- Binance USD-M futures ------------------------------------------------------------------------------
FUT = "BTC/USDT:USDT"


@pytest.fixture
def futures() -> Iterator[BinanceFuturesFake]:
    fake = BinanceFuturesFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def futures_oms(futures: BinanceFuturesFake) -> OrderManager:
    return manager(CcxtAdapter("binanceusdm", exchange=binanceusdm_on(futures), symbols=[FUT], backoff_s=0.001,
                               max_backoff_s=0.005, poll_interval_s=None), FUT)


def algo_stops(fake: BinanceFuturesFake, order: Order) -> list:
    with fake.lock:
        return [a for a in fake.algo_orders.values()
                if engine_id(a.client_algo_id) == order.client_order_id and a.status == "NEW"]


def limits(fake: BinanceFuturesFake, order: Order) -> list:
    with fake.lock:
        return [o for o in fake.orders.values()
                if engine_id(o.client_order_id) == order.client_order_id and o.status in WORKING]


def test_futures_partial_fills_get_a_reduce_only_algo_stop_and_take_profit_sized_to_what_filled(futures,
                                                                                               futures_oms):
    entry, sl, tp = bracket(futures_oms, FUT, "0.03", "49500.0", "45000.0", "60000.0")
    poll(futures_oms)
    assert algo_stops(futures, sl) == [] and limits(futures, tp) == []
    for filled in ("0.01", "0.02", "0.03"):
        futures.fill(entry.client_order_id, D("0.01"))
        poll(futures_oms)
        stops, takes = algo_stops(futures, sl), limits(futures, tp)
        assert sum((a.qty for a in stops), D(0)) == D(filled)
        assert sum((o.qty - o.executed for o in takes), D(0)) == D(filled)
        assert all(a.reduce_only for a in stops) and all(o.reduce_only for o in takes)
        assert {a.type for a in stops} == {"STOP_MARKET"}
    assert entry.state is OrderState.FILLED
    assert sl.state is OrderState.ACCEPTED and tp.state is OrderState.ACCEPTED


# -- how the protection grows (spot): a replace, under `<id>.r<n>`, never reported as the exits' cancel --------
def test_spot_a_fill_replaces_the_order_list_under_new_ids_and_the_engine_sees_no_cancel(spot, spot_oms):
    entry, sl, tp = bracket(spot_oms, SPOT, "0.03", "49000.00", "45000.00", "60000.00")
    spot.fill(entry.client_order_id, D("0.01"))
    poll(spot_oms)
    spot.fill(entry.client_order_id, D("0.01"))
    poll(spot_oms)
    with spot.lock:
        ours = [o for o in spot.orders.values() if engine_id(o.client_order_id) in (sl.client_order_id,
                                                                                    tp.client_order_id)]
    # the first list was canceled whole (one leg's cancel cancels the list), the second works under new ids
    assert sorted((o.client_order_id, o.status, o.qty) for o in ours) == sorted([
        (sl.client_order_id, "CANCELED", D("0.01")), (tp.client_order_id, "CANCELED", D("0.01")),
        (f"{sl.client_order_id}.r1", "NEW", D("0.02")), (f"{tp.client_order_id}.r1", "NEW", D("0.02"))])
    for _ in range(2):
        poll(spot_oms)   # the replaced list's cancel is read back as nothing: the engine's exits work on
    assert sl.state is OrderState.ACCEPTED and tp.state is OrderState.ACCEPTED
    assert sl.qty == tp.qty == D("0.02")
    # and the replacement is the engine's order: it executes as the take-profit, the stop's leg expires
    spot.fill(f"{tp.client_order_id}.r1")
    poll(spot_oms)
    assert tp.state is OrderState.FILLED and tp.filled_qty == D("0.02")
    assert sl.state in (OrderState.CANCELED, OrderState.EXPIRED)


def test_spot_an_entry_canceled_after_growing_keeps_exits_sized_to_what_filled(spot, spot_oms):
    entry, sl, tp = bracket(spot_oms, SPOT, "0.03", "49000.00", "45000.00", "60000.00")
    spot.fill(entry.client_order_id, D("0.01"))
    poll(spot_oms)
    spot.fill(entry.client_order_id, D("0.005"))
    spot_oms.cancel(entry)
    poll(spot_oms)   # the cancel's answer says 0.015 filled; the poll brings the fill, then the cancel
    assert entry.state is OrderState.CANCELED and entry.filled_qty == D("0.015")
    assert covered(spot_legs(spot, sl)) == D("0.015") == covered(spot_legs(spot, tp))
    assert sl.state is OrderState.ACCEPTED and tp.state is OrderState.ACCEPTED


def test_spot_a_first_fill_the_venue_would_not_take_as_an_exit_waits_for_more(spot, spot_oms):
    """0.00005 BTC is under the market's minimum quantity (0.0001): an order list for it would be refused
    and the exits lost to the emulator, so they wait for the next fill."""
    entry, sl, tp = bracket(spot_oms, SPOT, "0.02", "49000.00", "45000.00", "60000.00")
    spot.fill(entry.client_order_id, D("0.00005"))
    poll(spot_oms)
    assert entry.state is OrderState.PARTIALLY_FILLED
    assert spot_legs(spot, sl) == [] and sl.state is OrderState.PENDING_SUBMIT
    spot.fill(entry.client_order_id, D("0.00995"))
    poll(spot_oms)
    assert covered(spot_legs(spot, sl)) == D("0.01") == covered(spot_legs(spot, tp))
    assert sl.state is OrderState.ACCEPTED and tp.state is OrderState.ACCEPTED


def test_futures_a_fill_replaces_the_algo_stop_and_the_limit_under_new_ids(futures, futures_oms):
    entry, sl, tp = bracket(futures_oms, FUT, "0.03", "49500.0", "45000.0", "60000.0")
    futures.fill(entry.client_order_id, D("0.01"))
    poll(futures_oms)
    futures.fill(entry.client_order_id, D("0.01"))
    poll(futures_oms)
    assert [a.client_algo_id for a in algo_stops(futures, sl)] == [f"{sl.client_order_id}.r1"]
    assert [o.client_order_id for o in limits(futures, tp)] == [f"{tp.client_order_id}.r1"]
    poll(futures_oms)
    assert sl.state is OrderState.ACCEPTED and tp.state is OrderState.ACCEPTED
    # the replacement stop is the engine's: the market gaps through it (the entry's rest fills there too);
    # the venue's stop closes what it covered, the adapter the rest at once, reduce-only, as the stop's
    futures.set_quote(MARKET_ID, D("44000.0"), D("44000.1"))
    for _ in range(3):
        poll(futures_oms)
    assert entry.state is OrderState.FILLED
    assert sl.state is OrderState.FILLED and sl.filled_qty == D("0.03")
    assert tp.state is OrderState.CANCELED and limits(futures, tp) == []
    with futures.lock:
        assert futures.positions[MARKET_ID].amount == 0


@pytest.mark.parametrize("fault", ["drop", "503"])
def test_spot_a_replacement_list_whose_answer_is_lost_is_looked_up_never_sent_twice(spot, spot_oms, fault):
    """"drop": the venue made the list and the answer was lost; "503": nothing was made. Either way the
    poll looks the replacement up by its `<id>.r1` ids: found, it works on; provably absent, it is sent again
    under the same ids. Never two lists, never more than what filled."""
    entry, sl, tp = bracket(spot_oms, SPOT, "0.03", "49000.00", "45000.00", "60000.00")
    spot.fill(entry.client_order_id, D("0.01"))
    poll(spot_oms)
    spot.fill(entry.client_order_id, D("0.01"))
    spot.inject(fault, "POST", "/api/v3/orderList/oco")
    spot_oms.adapter.poll()   # type: ignore[attr-defined]   the old list canceled, the new one's outcome unknown
    for _ in range(3):
        poll(spot_oms)
    assert spot.count_client_id(f"{sl.client_order_id}.r1") == spot.count_client_id(f"{tp.client_order_id}.r1") == 1
    assert covered(spot_legs(spot, sl)) == D("0.02") == covered(spot_legs(spot, tp))
    assert sl.state is OrderState.ACCEPTED and tp.state is OrderState.ACCEPTED
    spot.fill(entry.client_order_id)
    poll(spot_oms)
    assert covered(spot_legs(spot, sl)) == D("0.03") == covered(spot_legs(spot, tp))


def test_over_the_push_stream_each_partial_fill_grows_the_list_and_the_old_lists_cancel_is_no_cancel():
    """The entry's fills arrive pushed (no poll): the list goes at the first and is replaced at the second;
    the replaced list's CANCELED events are pushed too, and are not the engine's exits' cancel."""
    from tests.fakes.binance_fake import BinanceWsFake
    from tests.integration.test_ccxt_push_stream import SYMBOL, Books
    fake = BinanceFake().start()
    ws = BinanceWsFake().attach(fake)
    books = Books(fake, ws)
    try:
        assert books.wait_live()
        entry, sl, tp = bracket(books.oms, SYMBOL, "0.03", "49000.00", "45000.00", "60000.00")
        fake.fill(entry.client_order_id, D("0.01"))
        assert books.wait(lambda: covered(spot_legs(fake, sl)) == D("0.01") and sl.state is OrderState.ACCEPTED)
        fake.fill(entry.client_order_id, D("0.01"))
        assert books.wait(lambda: covered(spot_legs(fake, sl)) == D("0.02") == covered(spot_legs(fake, tp)))
        books.adapter.poll()
        assert sl.state is OrderState.ACCEPTED and tp.state is OrderState.ACCEPTED
        assert OrderState.CANCELED not in [e.state for e in sl.events + tp.events]
    finally:
        books.adapter.close()
        ws.stop()
        fake.stop()
