"""The ccxt adapter against binance as it really behaves (issue 15): real ccxt, the loopback fake
switched to one venue behaviour at a time. Each defect the issue lists has a case here that
failed on the adapter as it was."""

from __future__ import annotations

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
from engine.orders import Order, OrderSide, OrderState, OrderType, TimeInForce  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from tests.conformance.harness_ccxt import binance_on  # noqa: E402
from tests.fakes.binance_fake import BinanceError, BinanceFake, FakeMarket  # noqa: E402

SYMBOL = "BTC/USDT"
D = Decimal


@pytest.fixture
def fake() -> Iterator[BinanceFake]:
    fake = BinanceFake().start()
    yield fake
    fake.stop()


def make_oms(fake: BinanceFake, symbols: list[str] | None = None, **kw) -> OrderManager:
    kw = {"backoff_s": 0.001, "max_backoff_s": 0.005, "poll_interval_s": None, **kw}
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=symbols or [SYMBOL], **kw)
    instruments = adapter.instruments()
    oms = OrderManager("t", LiveClock(), adapter, Portfolio.for_instrument(D(100_000), instruments[SYMBOL]),
                       instruments)
    return oms


def order(oms: OrderManager, side: str = "BUY", kind: OrderType = OrderType.MARKET, qty: str | None = "0.01",
          limit: str | None = None, tif: TimeInForce = TimeInForce.GTC, fraction: str | None = None,
          tag: str = "") -> Order:
    return Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide(side), kind, None if qty is None else D(qty), 0,
                 limit_price=None if limit is None else D(limit), tif=tif,
                 equity_fraction=None if fraction is None else D(fraction), tag=tag)


def adapter_of(oms: OrderManager) -> CcxtAdapter:
    return oms.adapter  # type: ignore[return-value]


# -- fees as the venue charged them ---------------------------------------------------------------
class Recorder:
    """An ExecutionSink that keeps the fills it is given, as the adapter reported them (the
    OMS's books value a fee in another currency, which needs rates: not this test's subject)."""

    def __init__(self) -> None:
        self.fills: list = []

    def on_fill(self, order, fill, bar) -> None:
        self.fills.append(fill)

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def submit_recorded(fake: BinanceFake, sent: Order) -> Recorder:
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SYMBOL], poll_interval_s=None)
    sink = Recorder()
    adapter.connect(sink)
    adapter.submit(sent)
    return sink


def new_order(side: str = "BUY", qty: str = "0.01") -> Order:
    return Order("t-00000001", "t", SYMBOL, OrderSide(side), OrderType.MARKET, D(qty), 0)


def test_a_fee_taken_in_the_coin_bought_is_reported_in_that_coin(fake):
    fake.fee_asset = "received"
    fill = submit_recorded(fake, new_order()).fills[0]
    # binance kept 0.1% of the 0.01 BTC bought: 0.00001 BTC, and no USDT
    assert (fill.fee_currency, fill.fee_native, fill.fee_raw) == ("BTC", D("0.00001"), 0)
    assert fake.trades[0].commission_asset == "BTC"


def test_a_fee_paid_in_bnb_is_reported_in_bnb_not_dropped(fake):
    fake.fee_asset = "BNB"
    fill = submit_recorded(fake, new_order()).fills[0]
    # 0.01 BTC at 50000.01 = 500.0001 USDT; 0.1% = 0.5000001, 75% of it = 0.375000075 USDT,
    # at 600 USDT/BNB = 0.000625000125 -> 0.00062500 BNB on binance's 8-decimal grid
    assert (fill.fee_currency, fill.fee_native, fill.fee_raw) == ("BNB", D("0.000625"), 0)
    assert fake.balances["BNB"] == D("10") - D("0.000625")


def test_a_fee_in_the_quote_asset_stays_cash(fake):
    fill = submit_recorded(fake, new_order()).fills[0]
    assert fill.fee_currency == "" and fill.fee == D("0.50000010")  # 0.1% of 500.0001 USDT


# -- time in force ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
def test_an_ioc_or_fok_limit_that_cannot_execute_expires_instead_of_resting(fake, tif):
    oms = make_oms(fake)
    sent = order(oms, kind=OrderType.LIMIT, limit="49000.00", tif=tif)
    oms.submit(sent)
    at_venue = fake.orders[fake.by_client[sent.client_order_id]]
    assert at_venue.time_in_force == tif.value and at_venue.status == "EXPIRED"
    assert sent.state is OrderState.CANCELED and sent.reason == "EXPIRED" and not oms.open_orders


def test_an_ioc_limit_that_crosses_executes_what_the_book_holds_and_the_rest_expires(fake):
    fake.market_depth = D("0.004")
    oms = make_oms(fake)
    sent = order(oms, kind=OrderType.LIMIT, limit="50100.00", tif=TimeInForce.IOC)
    oms.submit(sent)
    assert sent.filled_qty == D("0.004") and sent.state is OrderState.CANCELED and len(oms.fills) == 1


def test_a_gtc_limit_is_sent_as_gtc_and_rests(fake):
    oms = make_oms(fake)
    sent = order(oms, kind=OrderType.LIMIT, limit="49000.00")
    oms.submit(sent)
    assert fake.orders[fake.by_client[sent.client_order_id]].time_in_force == "GTC"
    assert sent.state is OrderState.ACCEPTED


def test_a_post_only_order_that_would_take_is_refused_by_the_venue(fake):
    oms = make_oms(fake)
    maker = order(oms, kind=OrderType.LIMIT, limit="49000.00", tag=mapping.POST_ONLY_TAG)
    taker = order(oms, kind=OrderType.LIMIT, limit="50100.00", tag=mapping.POST_ONLY_TAG)
    oms.submit(maker)
    oms.submit(taker)
    assert fake.orders[fake.by_client[maker.client_order_id]].type == "LIMIT_MAKER"
    assert maker.state is OrderState.ACCEPTED
    assert taker.state is OrderState.REJECTED and fake.count_client_id(taker.client_order_id) == 0


def test_a_day_order_is_refused_on_a_venue_without_sessions(fake):
    oms = make_oms(fake)
    sent = order(oms, kind=OrderType.LIMIT, limit="49000.00", tif=TimeInForce.DAY)
    oms.submit(sent)
    assert sent.state is OrderState.REJECTED and sent.reason == RejectReason.UNSUPPORTED
    assert ("POST", "/api/v3/order") not in fake.requests


def test_a_market_order_the_book_cannot_fill_expires_with_its_partial_fill_booked_once(fake):
    fake.market_depth = D("0.004")
    oms = make_oms(fake)
    sent = order(oms)
    oms.submit(sent)
    adapter_of(oms).poll()
    assert sent.filled_qty == D("0.004") and sent.state is OrderState.CANCELED and sent.reason == "EXPIRED"
    assert len(oms.fills) == 1


# -- equity-fraction orders never stuck ---------------------------------------------------------------
def test_a_fraction_order_whose_price_cannot_be_read_is_rejected_and_the_next_one_goes_out(fake):
    oms = make_oms(fake)
    fake.inject("503", "GET", "/api/v3/ticker/24hr", times=50)
    first = order(oms, qty=None, fraction="0.1")
    oms.submit(first)
    assert first.state is OrderState.REJECTED and first.reason == RejectReason.VENUE_ERROR
    assert first not in oms.open_orders
    fake.heal()
    second = order(oms, qty=None, fraction="0.1")
    oms.submit(second)
    assert second.state is OrderState.FILLED


def test_a_fraction_order_is_sized_at_the_bots_own_last_quote_without_a_ticker_read(fake):
    fake.balances.update(BTC=D(0), ETH=D(0), BNB=D(0))
    oms = make_oms(fake)
    adapter_of(oms).on_tick(Tick(SYMBOL, 1, 39999.99, 40000.00, 40000.00))
    fake.inject("503", "GET", "/api/v3/ticker/24hr", times=50)  # a ticker read would fail
    sent = order(oms, qty=None, fraction="0.1")
    oms.submit(sent)
    # 10% of 100000 USDT at the bot's ask 40000.00 = 0.25 BTC (filled at the venue's own ask)
    assert sent.qty == D("0.25") and sent.state is OrderState.FILLED


# -- precision for every mode ---------------------------------------------------------------------------
def test_significant_digit_markets_get_a_fine_grid_not_the_digit_count():
    market = {"symbol": "BTC/USD", "quote": "USD", "precision": {"price": 5, "amount": 8},
              "limits": {"amount": {"min": 0.00006, "max": 2000.0}}}
    instrument = mapping.instrument_from_market(market, ccxt.SIGNIFICANT_DIGITS, "BITFINEX")
    assert instrument.price_increment == D("0.00000001") and instrument.size_increment == D("0.00000001")
    assert instrument.min_qty == D("0.00006")


def test_ccxt_precision_refuses_a_price_with_more_significant_digits_than_the_venue_takes():
    exchange = ccxt.bitfinex()
    exchange.set_markets([{
        "id": "tBTCUSD", "symbol": "BTC/USD", "base": "BTC", "quote": "USD", "baseId": "BTC", "quoteId": "USD",
        "active": True, "type": "spot", "spot": True, "contract": False,
        "precision": {"price": 5, "amount": 8}, "limits": {"amount": {"min": 0.00006, "max": 2000.0}}}])
    adapter = CcxtAdapter("bitfinex", exchange=exchange, symbols=["BTC/USD"], poll_interval_s=None)
    fine = Order("a", "t", "BTC/USD", OrderSide.BUY, OrderType.LIMIT, D("0.5"), 0, limit_price=D("12345"))
    coarse = Order("b", "t", "BTC/USD", OrderSide.BUY, OrderType.LIMIT, D("0.5"), 0, limit_price=D("12345.6"))
    assert adapter._precision_refusal(fine) is None
    assert adapter._precision_refusal(coarse) is RejectReason.PRICE_OFF_GRID


# -- venue order types and states --------------------------------------------------------------------
def _parsed(raw: dict) -> dict:
    exchange = ccxt.binance()
    exchange.set_markets([{"id": "BTCUSDT", "symbol": SYMBOL, "base": "BTC", "quote": "USDT", "baseId": "BTC",
                           "quoteId": "USDT", "active": True, "type": "spot", "spot": True, "contract": False,
                           "margin": False, "swap": False, "future": False, "option": False, "linear": None,
                           "inverse": None, "precision": {"price": 0.01, "amount": 0.00001}, "limits": {}}])
    return exchange.parse_order(raw)


def _instrument():
    return mapping.instrument_from_market({"symbol": SYMBOL, "quote": "USDT", "precision": {"price": 0.01,
                                           "amount": 0.00001}, "limits": {}}, ccxt.TICK_SIZE, "BINANCE")


def _binance_order(**over) -> dict:
    raw = {"symbol": "BTCUSDT", "orderId": 11, "orderListId": -1, "clientOrderId": "t-00000001",
           "price": "0.00000000", "origQty": "0.01000000", "executedQty": "0.00000000",
           "cummulativeQuoteQty": "0.00000000", "status": "NEW", "timeInForce": "GTC", "type": "TAKE_PROFIT",
           "side": "SELL", "stopPrice": "52000.00000000", "icebergQty": "0.00000000", "time": 1700000000000,
           "updateTime": 1700000000000, "isWorking": False, "workingTime": -1, "origQuoteOrderQty": "0.00000000",
           "selfTradePreventionMode": "NONE"}
    raw.update(over)
    return raw


def test_a_binance_take_profit_is_not_reported_as_a_stop():
    venue = mapping.venue_order(_parsed(_binance_order()), _instrument())
    # it sells when the price RISES to 52000, as a sell limit there would; a stop would sell on a fall
    assert venue.type is OrderType.LIMIT and venue.limit_price == D("52000.00") and venue.stop_price is None
    limit = mapping.venue_order(_parsed(_binance_order(type="TAKE_PROFIT_LIMIT", price="52010.00000000")),
                                _instrument())
    assert limit.type is OrderType.LIMIT and limit.limit_price == D("52010.00")


def test_a_pending_cancel_with_fills_is_still_partially_filled():
    raw = _binance_order(type="LIMIT", price="50000.00000000", stopPrice="0.00000000", status="PENDING_CANCEL",
                         executedQty="0.00400000", cummulativeQuoteQty="200.00000000")
    venue = mapping.venue_order(_parsed(raw), _instrument())
    assert venue.state is OrderState.PARTIALLY_FILLED and venue.filled_qty == D("0.004")


# -- connect: a bounded lookback, not the whole history ------------------------------------------------
def test_connect_does_not_fetch_the_accounts_history_order_by_order(fake):
    fake.add_history("BTCUSDT", "BUY", D("0.001"), D("30000.00"), 60, age_ms=30 * 86_400_000)  # a month ago
    fake.add_history("BTCUSDT", "SELL", D("0.001"), D("31000.00"), 20, client_prefix="recent", age_ms=3_600_000)
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SYMBOL], poll_interval_s=None)
    OrderManager("t", LiveClock(), adapter, Portfolio(D(0), 8), {})
    assert fake.requests.count(("GET", "/api/v3/order")) == 0  # was one per historical order
    assert fake.requests.count(("GET", "/api/v3/allOrders")) == 1
    assert len(fake.requests) <= 8
    fills = adapter.fills_since(0)
    assert len(fills) == 20 and all(f.client_order_id.startswith("recent-") for f in fills)


def test_trades_are_paged_forward_so_none_is_missed_when_binance_answers_the_newest_first(fake):
    fake.add_history("BTCUSDT", "BUY", D("0.001"), D("30000.00"), 1200, age_ms=3_600_000)
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SYMBOL], poll_interval_s=None)
    assert len(adapter.fills_since(0)) == 1200


def test_the_poll_thread_is_slow_while_nothing_is_working_and_backs_off_on_failures(fake):
    oms = make_oms(fake)
    adapter = adapter_of(oms)
    adapter.poll_interval_s, adapter.idle_poll_s, adapter.max_backoff_s = 1.0, 10.0, 60.0
    assert adapter._next_poll_s() == 10.0
    oms.submit(order(oms, kind=OrderType.LIMIT, limit="49000.00"))
    assert adapter._next_poll_s() == 1.0
    adapter._failures = 3
    assert 4.0 <= adapter._next_poll_s() <= 8.0  # 1 s doubled three times, jittered down by up to half


# -- balances and positions ------------------------------------------------------------------------------
def test_positions_are_what_the_fills_made_not_the_wallet(fake):
    fake.markets.append(FakeMarket("BTCEUR", "BTC", "EUR", D("0.01"), D("0.00001"), D("0.0001"), D("9000"), D("5"),
                                   D("46000.00"), D("46000.01")))
    fake.by_symbol["BTCEUR"] = fake.markets[-1]
    oms = make_oms(fake, symbols=[SYMBOL, "BTC/EUR"])
    assert adapter_of(oms).positions() == []  # 0.5 BTC in the wallet, bought by nobody here
    oms.submit(order(oms))
    positions = {p.symbol: p.qty for p in adapter_of(oms).positions()}
    assert positions == {SYMBOL: D("0.01")}  # not 0.51 for each of BTC/USDT and BTC/EUR
    assert adapter_of(oms).wallet()["BTC"] == D("0.51")


def test_no_holding_is_reported_as_more_than_the_wallet_has(fake):
    fake.markets.append(FakeMarket("LTCUSDT", "LTC", "USDT", D("0.01"), D("0.001"), D("0.001"), D("9000"), D("5"),
                                   D("69.63"), D("69.64")))
    fake.by_symbol["LTCUSDT"] = fake.markets[-1]
    fake.balances["LTC"], fake.locked["LTC"] = D("0.919741"), D(0)
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=["LTC/USDT"], poll_interval_s=None)
    wallet = adapter.wallet()
    assert wallet["LTC"] == D("0.919741")  # exactly, off the 0.001 grid
    assert all(p.qty <= wallet.get(p.symbol.split("/")[0], D(0)) for p in adapter.positions())  # was 0.920


# -- rate limits -------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["429", "418"])
def test_a_throttled_read_is_retried_after_backoff_and_a_throttled_submit_is_looked_up_first(fake, status):
    # a Retry-After (1 s) within max_backoff_s is waited out inside the call, then the read is retried and
    # the submit looked up (and, absent, sent again); a longer one is not waited: test_ccxt_ban.py
    now, waits = [0.0], []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    oms = make_oms(fake, max_backoff_s=2.0, clock=lambda: now[0], sleep=sleep)
    fake.inject(status, "GET", "/api/v3/openOrders")
    assert adapter_of(oms).poll() is True
    assert waits and max(waits) >= fake.retry_after_s
    fake.inject(status)
    sent = order(oms, kind=OrderType.LIMIT, limit="49000.00")
    oms.submit(sent)
    assert sent.state is OrderState.ACCEPTED and fake.count_client_id(sent.client_order_id) == 1
    posts = [i for i, r in enumerate(fake.requests) if r == ("POST", "/api/v3/order")]
    assert len(posts) == 2 and ("GET", "/api/v3/order") in fake.requests[posts[0]:posts[1]]
    assert max(waits) <= 2.0


def test_binance_takes_a_client_id_again_once_its_order_is_finished(fake):
    oms = make_oms(fake)
    sent = order(oms, kind=OrderType.LIMIT, limit="49000.00")
    oms.submit(sent)
    with pytest.raises(BinanceError, match="Duplicate order sent"):  # open: refused as a duplicate
        fake.place_external(sent.client_order_id, "BTCUSDT", "BUY", D("0.01"), D("48000.00"))
    oms.cancel(sent)
    fake.place_external(sent.client_order_id, "BTCUSDT", "BUY", D("0.01"), D("48000.00"))  # finished: taken
    assert fake.count_client_id(sent.client_order_id) == 2


# -- sandbox ---------------------------------------------------------------------------------------
def test_a_sandbox_account_uses_the_testnet_for_orders_and_quotes():
    adapter = CcxtAdapter("binance", {"apiKey": "k", "secret": "s"}, ["BTC/USDT"], sandbox=True, poll_interval_s=None)
    assert adapter.exchange.isSandboxModeEnabled
    assert "testnet" in adapter.exchange.urls["api"]["private"]
    feed = CcxtFeed("binance", rest=adapter.exchange)
    assert feed.pro is not None and feed.pro.isSandboxModeEnabled
    assert "testnet" in feed.pro.urls["api"]["ws"]["spot"]
