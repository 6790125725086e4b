"""What the ccxt adapter does beyond the shared contract, with real ccxt against the binance fake."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Iterator

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.base import RejectReason  # noqa: E402
from brokers.ccxt import mapping  # noqa: E402
from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from brokers.ccxt.feed import CcxtFeed  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.market import Tick  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from tests.conformance.harness_ccxt import binance_on  # noqa: E402
from tests.fakes.binance_fake import BinanceFake, BinanceWsFake, redirect  # noqa: E402

SYMBOL = "BTC/USDT"


@pytest.fixture
def fake() -> Iterator[BinanceFake]:
    fake = BinanceFake().start()
    yield fake
    fake.stop()


def make_oms(fake: BinanceFake, poll_interval_s: float | None = None) -> OrderManager:
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SYMBOL], backoff_s=0.001,
                          max_backoff_s=0.005, poll_interval_s=poll_interval_s)
    oms = OrderManager("t", LiveClock(), adapter, Portfolio(Decimal(0), 8), {})
    instruments = adapter.instruments()
    oms.instruments.update(instruments)
    oms.portfolio = Portfolio.for_instrument(adapter.account().cash, instruments[SYMBOL])
    return oms


def order(oms: OrderManager, side: str = "BUY", kind: OrderType = OrderType.MARKET, qty: str | None = "0.01",
          limit: str | None = None, stop: str | None = None, fraction: str | None = None) -> Order:
    return Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide(side), kind,
                 None if qty is None else Decimal(qty), 0,
                 limit_price=None if limit is None else Decimal(limit),
                 stop_price=None if stop is None else Decimal(stop),
                 equity_fraction=None if fraction is None else Decimal(fraction))


def test_binance_filters_become_the_instrument_grid(fake):
    instrument = make_oms(fake).instruments[SYMBOL]
    assert instrument.price_increment == Decimal("0.01")
    assert instrument.size_increment == Decimal("0.00001")
    assert instrument.min_qty == Decimal("0.0001") and instrument.max_qty == Decimal("9000")
    assert instrument.quote_currency == "USDT" and instrument.venue == "BINANCE"


def test_orders_reach_binance_with_our_client_id_exact_amounts_and_stop_types(fake):
    oms = make_oms(fake)
    oms.submit(order(oms, kind=OrderType.LIMIT, qty="0.01234", limit="49000.01"))
    oms.submit(order(oms, kind=OrderType.STOP, stop="51000.00"))
    oms.submit(order(oms, kind=OrderType.STOP_LIMIT, stop="51000.00", limit="51010.00"))
    limit, stop, stop_limit = (fake.orders[fake.by_client[f"t-{i:08d}"]] for i in (1, 2, 3))
    assert (limit.type, limit.qty, limit.price) == ("LIMIT", Decimal("0.01234"), Decimal("49000.01"))
    assert (stop.type, stop.stop_price) == ("STOP_LOSS", Decimal("51000.00"))
    assert (stop_limit.type, stop_limit.stop_price, stop_limit.price) == ("STOP_LOSS_LIMIT", Decimal("51000.00"),
                                                                         Decimal("51010.00"))


def test_the_engines_books_equal_binances_to_the_last_unit_after_fees(fake):
    oms = make_oms(fake)
    adapter: CcxtAdapter = oms.adapter  # type: ignore[assignment]
    oms.submit(order(oms, qty="0.01234"))
    sell = order(oms, "SELL", OrderType.LIMIT, qty="0.00617", limit="50123.45")
    oms.submit(sell)
    fake.fill(sell.client_order_id, Decimal("0.003"))
    fake.fill(sell.client_order_id)
    adapter.poll()
    assert oms.portfolio.cash == adapter.account().cash == fake.balances["USDT"]
    assert oms.portfolio.positions[SYMBOL].quantity == Decimal("0.00617") == adapter.positions()[0].qty
    assert oms.portfolio.fees_raw > 0
    assert {f.execution_id for f in adapter.fills_since(0)} == {f"BTCUSDT:{t.trade_id}" for t in fake.trades}


def test_a_venue_error_for_a_bad_lot_maps_to_the_quantity_reason():
    instrument = mapping.instrument_from_market(
        {"symbol": SYMBOL, "quote": "USDT", "precision": {"price": 0.01, "amount": 1e-05},
         "limits": {"amount": {"min": 0.0001, "max": 9000.0}}}, ccxt.TICK_SIZE, "BINANCE")
    lot = ccxt.InvalidOrder('binance {"code":-1013,"msg":"Filter failure: LOT_SIZE"}')
    small = Order("a", "t", SYMBOL, OrderSide.BUY, OrderType.MARKET, Decimal("0.00005"), 0)
    assert mapping.reject_reason(lot, small, instrument) is RejectReason.QTY_BELOW_MIN
    assert mapping.reject_reason(ccxt.InvalidOrder("binance Filter failure: NOTIONAL")) is RejectReason.QTY_BELOW_MIN
    assert mapping.reject_reason(ccxt.InsufficientFunds("x")) is RejectReason.INSUFFICIENT_FUNDS
    assert mapping.reject_reason(ccxt.InvalidOrder("binance Duplicate order sent.")) is RejectReason.DUPLICATE
    assert mapping.reject_reason(ccxt.RateLimitExceeded("x")) is RejectReason.RATE_LIMITED


def test_an_order_lost_before_the_venue_saw_it_is_sent_again_once_with_the_same_id(fake):
    oms = make_oms(fake)
    fake.inject("drop_before")
    sent = order(oms, kind=OrderType.LIMIT, limit="49000.00")
    oms.submit(sent)
    assert sent.state is OrderState.ACCEPTED and fake.count_client_id(sent.client_order_id) == 1
    assert fake.requests.count(("POST", "/api/v3/order")) == 2
    assert ("GET", "/api/v3/order") in fake.requests  # looked up before sending again


def test_a_lost_answer_that_cannot_be_looked_up_waits_for_the_next_poll(fake):
    oms = make_oms(fake)
    adapter: CcxtAdapter = oms.adapter  # type: ignore[assignment]
    fake.inject("drop")                                        # booked, answer lost
    fake.inject("drop_before", "GET", "/api/v3/order", times=adapter.max_attempts)  # and the lookup fails
    sent = order(oms, kind=OrderType.LIMIT, limit="49000.00")
    oms.submit(sent)
    assert sent.state is OrderState.SUBMITTED
    adapter.poll()
    assert sent.state is OrderState.ACCEPTED
    assert fake.count_client_id(sent.client_order_id) == 1 and fake.requests.count(("POST", "/api/v3/order")) == 1


def test_an_unresolved_order_the_venue_never_got_is_rejected_not_sent_late(fake):
    oms = make_oms(fake)
    adapter: CcxtAdapter = oms.adapter  # type: ignore[assignment]
    fake.inject("drop_before")
    fake.inject("drop_before", "GET", "/api/v3/order", times=adapter.max_attempts)
    sent = order(oms, kind=OrderType.LIMIT, limit="49000.00")
    oms.submit(sent)
    assert sent.state is OrderState.SUBMITTED
    adapter.poll()
    assert sent.state is OrderState.REJECTED and sent.reason == RejectReason.TIMEOUT
    assert fake.count_client_id(sent.client_order_id) == 0 and fake.requests.count(("POST", "/api/v3/order")) == 1


def test_an_equity_fraction_market_order_is_sized_at_the_last_price(fake):
    fake.balances.update(BTC=Decimal(0), ETH=Decimal(0))  # an account of 100000 USDT only
    oms = make_oms(fake)
    sent = order(oms, qty=None, fraction="0.1")
    oms.submit(sent)
    # 10% of 100000 USDT at the ask 50000.01, floored to the 0.00001 lot
    assert sent.qty == Decimal("0.19999") and sent.state is OrderState.FILLED


def test_the_stream_thread_reports_a_fill_made_at_the_venue(fake):
    oms = make_oms(fake, poll_interval_s=0.01)
    filled = threading.Event()
    oms.fill_listeners.append(lambda order, fill, closed: filled.set())
    sent = order(oms, kind=OrderType.LIMIT, limit="49000.00")
    oms.submit(sent)
    fake.fill(sent.client_order_id)
    assert filled.wait(30)
    oms.adapter.close()  # type: ignore[attr-defined]
    assert sent.state is OrderState.FILLED


# -- market data --------------------------------------------------------------------------------
@pytest.fixture
def ws() -> Iterator[BinanceWsFake]:
    ws = BinanceWsFake()
    yield ws
    ws.stop()


def make_feed(fake: BinanceFake, ws: BinanceWsFake | None, **kw) -> CcxtFeed:
    import ccxt.pro

    rest = binance_on(fake)
    pro = None
    if ws is not None:
        pro = ccxt.pro.binance({"enableRateLimit": True, "rateLimit": 1, "options": {
            "fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}})
        redirect(pro, fake.url, ws.url)
    return CcxtFeed("binance", rest=rest, pro=pro, use_pro=ws is not None, **kw)


class Ticks:
    def __init__(self) -> None:
        self.items: list[Tick] = []
        self.cond = threading.Condition()

    def __call__(self, tick: Tick) -> None:
        with self.cond:
            self.items.append(tick)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 30) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.items), timeout)


def test_ticks_arrive_through_ccxt_pro_watch_ticker(fake, ws):
    feed = make_feed(fake, ws)
    ticks = Ticks()
    try:
        feed.subscribe([SYMBOL], ticks)
        assert ws.wait_subscribed("btcusdt@ticker")
        ws.push("BTCUSDT", Decimal("50100.00"), Decimal("50100.02"))
        assert ticks.wait_for(lambda items: any(t.bid == 50100.0 for t in items))
        assert feed.mode[SYMBOL] == "ws"
        tick = next(t for t in ticks.items if t.bid == 50100.0)
        assert tick.symbol == SYMBOL and tick.ask == 50100.02 and tick.ts > 0
    finally:
        feed.close()


def test_a_failing_websocket_falls_back_to_rest_polling(fake, ws):
    feed = make_feed(fake, ws, poll_interval_s=0.01, max_ws_failures=2)
    ticks = Ticks()
    try:
        ws.refuse = True
        feed.subscribe([SYMBOL], ticks)
        fake.set_quote("BTCUSDT", Decimal("50200.00"), Decimal("50200.01"))
        assert ticks.wait_for(lambda items: any(t.bid == 50200.0 for t in items))
        assert feed.mode[SYMBOL] == "rest" and feed.errors
    finally:
        feed.close()


def test_history_pages_ohlcv_into_the_backtesters_frame(fake):
    feed = make_feed(fake, None)
    start = 1_699_999_980_000 * 1_000_000  # a minute boundary
    frame = feed.history(SYMBOL, "1m", start, start + 59 * 60 * 1_000_000_000)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert len(frame) == 60 and frame.index.name == "time" and str(frame.index.tz) == "UTC"
    assert frame.index[0].value == start and frame.index.is_monotonic_increasing


def test_a_poll_during_a_dropped_connection_loses_nothing(fake):
    oms = make_oms(fake)
    adapter: CcxtAdapter = oms.adapter  # type: ignore[assignment]
    sent = order(oms, kind=OrderType.LIMIT, limit="49000.00")
    oms.submit(sent)
    fake.stream_down = True
    fake.fill(sent.client_order_id, Decimal("0.004"))
    assert adapter.poll() is False and adapter.connected is False
    assert sent.state is OrderState.ACCEPTED
    fake.stream_down = False
    fake.fill(sent.client_order_id)
    assert adapter.poll() is True and adapter.connected is True
    assert sent.state is OrderState.FILLED and sent.filled_qty == Decimal("0.01")
    assert len(oms.fills) == 2
