"""Binance USD-M futures through the ccxt adapter (issue 15 item 5): real ccxt `binanceusdm`
against the loopback futures fake (tests/fakes/binance_futures_fake.py). Leverage and margin mode
from the account settings (set, or refused naming the field with nothing changed), the venue's
signed positions, the margin wallet, reduce-only orders and funding payments."""

from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.base import RejectReason  # noqa: E402
from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from brokers.ccxt.futures import FundingFee  # noqa: E402
from brokers.factory import make_adapter, validate_credentials, EnvCredentials  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.errors import ConfigError  # noqa: E402
from engine.instrument import AssetClass  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from tests.conformance.harness_ccxt import binance_on, binanceusdm_on  # noqa: E402
from tests.fakes.binance_fake import BinanceFake  # noqa: E402
from tests.fakes.binance_futures_fake import BinanceFuturesFake  # noqa: E402

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
D = Decimal


@pytest.fixture
def fake() -> Iterator[BinanceFuturesFake]:
    fake = BinanceFuturesFake().start()
    yield fake
    fake.stop()


def make_adapter_on(fake: BinanceFuturesFake, **kw) -> CcxtAdapter:
    return CcxtAdapter("binanceusdm", exchange=binanceusdm_on(fake), symbols=[BTC, ETH], backoff_s=0.001,
                       max_backoff_s=0.005, poll_interval_s=None, **kw)


def make_oms(fake: BinanceFuturesFake, **kw) -> OrderManager:
    adapter = make_adapter_on(fake, **kw)
    instruments = adapter.instruments()
    return OrderManager("t", LiveClock(), adapter, Portfolio(adapter.account().cash, instruments[BTC].scales.cash_dp),
                        instruments)


def order(oms: OrderManager, side: str = "BUY", qty: str = "0.010", kind: OrderType = OrderType.MARKET,
          limit: str | None = None, reduce_only: bool = False, stop: str | None = None) -> Order:
    return Order(oms.next_client_order_id(), "t", BTC, OrderSide(side), kind, D(qty), 0,
                 limit_price=None if limit is None else D(limit), stop_price=None if stop is None else D(stop),
                 reduce_only=reduce_only)


def posted(fake: BinanceFuturesFake, path: str) -> int:
    return sum(1 for method, p in fake.requests if method == "POST" and p == path)


# -- instruments, leverage and margin mode ------------------------------------------------------------
def test_instruments_are_futures_on_margin_at_the_venues_leverage_when_the_config_gives_none(fake):
    adapter = make_adapter_on(fake)
    btc = adapter.instruments()[BTC]
    assert btc.asset_class is AssetClass.FUTURE and btc.on_margin and btc.leverage == D(20)
    assert btc.quote_currency == "USDT" and btc.base == "BTC" and btc.multiplier == D(1)
    assert btc.price_increment == D("0.1") and btc.size_increment == D("0.001") and btc.min_qty == D("0.001")
    assert posted(fake, "/fapi/v1/leverage") == 0 and posted(fake, "/fapi/v1/marginType") == 0


def test_leverage_and_margin_mode_from_the_account_are_set_on_every_symbol(fake):
    adapter = make_adapter_on(fake, leverage=10, margin_mode="isolated")
    instruments = adapter.instruments()
    assert fake.leverages == {"BTCUSDT": 10, "ETHUSDT": 10}
    assert fake.margin_types == {"BTCUSDT": "ISOLATED", "ETHUSDT": "ISOLATED"}
    assert instruments[BTC].leverage == D(10) and instruments[ETH].leverage == D(10)
    again = make_adapter_on(fake, leverage=10, margin_mode="isolated")  # already so: nothing is sent
    before = (posted(fake, "/fapi/v1/leverage"), posted(fake, "/fapi/v1/marginType"))
    again.instruments()
    assert (posted(fake, "/fapi/v1/leverage"), posted(fake, "/fapi/v1/marginType")) == before


@pytest.mark.parametrize("settings, field", [
    ({"leverage": 0}, "leverage"), ({"leverage": 126}, "leverage"), ({"leverage": "2.5"}, "leverage"),
    ({"leverage": "ten"}, "leverage"), ({"leverage": True}, "leverage"), ({"margin_mode": "hedge"}, "margin_mode"),
])
def test_a_malformed_setting_is_refused_naming_the_field_before_anything_is_sent(fake, settings, field):
    with pytest.raises(ConfigError) as refused:
        make_adapter_on(fake, **settings)
    assert refused.value.field == field
    assert fake.requests == []


def test_a_leverage_above_a_symbols_maximum_is_refused_and_nothing_changes(fake):
    adapter = make_adapter_on(fake, leverage=110, margin_mode="isolated")  # ETHUSDT allows 100x at most
    with pytest.raises(ConfigError) as refused:
        adapter.instruments()
    assert refused.value.field == "leverage" and "ETH/USDT:USDT" in refused.value.message
    assert fake.leverages == {"BTCUSDT": 20, "ETHUSDT": 20}            # BTC's 110x was allowed: not set either
    assert fake.margin_types == {"BTCUSDT": "CROSSED", "ETHUSDT": "CROSSED"}


def test_a_margin_mode_change_under_an_open_position_is_refused_and_nothing_changes(fake):
    oms = make_oms(fake)
    filled = order(oms)
    oms.submit(filled)
    assert filled.state is OrderState.FILLED
    adapter = make_adapter_on(fake, leverage=5, margin_mode="isolated")
    with pytest.raises(ConfigError) as refused:
        adapter.instruments()
    assert refused.value.field == "margin_mode" and "BTC/USDT:USDT" in refused.value.message
    assert fake.margin_types == {"BTCUSDT": "CROSSED", "ETHUSDT": "CROSSED"}
    assert fake.leverages == {"BTCUSDT": 20, "ETHUSDT": 20}


def test_futures_settings_on_a_spot_account_are_refused_naming_the_field():
    spot = BinanceFake().start()
    try:
        adapter = CcxtAdapter("binance", exchange=binance_on(spot), symbols=["BTC/USDT"], poll_interval_s=None,
                              leverage=3)
        with pytest.raises(ConfigError) as refused:
            adapter.instruments()
        assert refused.value.field == "leverage"
    finally:
        spot.stop()


def test_the_account_fields_reach_the_adapter_and_bad_ones_are_refused_naming_the_field():
    env = {"TICKBRIDGE_ACCOUNT_FUT_EXCHANGE": "binanceusdm", "TICKBRIDGE_ACCOUNT_FUT_API_KEY": "k",
           "TICKBRIDGE_ACCOUNT_FUT_SECRET": "s", "TICKBRIDGE_ACCOUNT_FUT_LEVERAGE": "7",
           "TICKBRIDGE_ACCOUNT_FUT_MARGIN_MODE": "cross"}
    adapter = make_adapter("ccxt", "fut", [BTC], [EnvCredentials(env)])
    assert (adapter.settings.leverage, adapter.settings.margin_mode) == (7, "cross")
    assert adapter.exchange.id == "binanceusdm"
    fields = {"exchange": "binanceusdm", "api_key": "k", "secret": "s"}
    assert validate_credentials("ccxt", {**fields, "leverage": 20, "margin_mode": "isolated"})["leverage"] == "20"
    with pytest.raises(ConfigError) as refused:
        validate_credentials("ccxt", {**fields, "leverage": "s3cret-typed-here"})
    assert refused.value.field == "credentials.leverage" and "s3cret" not in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        validate_credentials("ccxt", {**fields, "margin_mode": "portfolio"})
    assert refused.value.field == "credentials.margin_mode"


# -- positions and the margin wallet ---------------------------------------------------------------
def test_positions_are_the_venues_signed_per_symbol_and_flip_through_zero(fake):
    oms = make_oms(fake)
    adapter = oms.adapter
    short = order(oms, "SELL", "0.010")
    oms.submit(short)
    assert short.state is OrderState.FILLED
    (position,) = adapter.positions()
    assert (position.symbol, position.qty, position.avg_price) == (BTC, D("-0.010"), D("50000.00"))
    flip = order(oms, "BUY", "0.030")
    oms.submit(flip)
    (position,) = adapter.positions()
    assert (position.qty, position.avg_price) == (D("0.020"), D("50000.10"))
    fake.place_external("manual-1", "ETHUSDT", "SELL", D("0.500"), D("3000.00"))  # someone else's short
    fake.fill("manual-1")
    positions = {p.symbol: p.qty for p in adapter.positions()}
    assert positions == {BTC: D("0.020"), ETH: D("-0.500")}  # the venue's, whoever traded them
    assert oms.portfolio.positions[BTC].quantity == D("0.020")


def test_the_account_is_the_margin_wallet_cash_moves_by_fees_and_realized_pnl_only(fake):
    oms = make_oms(fake)
    adapter = oms.adapter
    start = adapter.account()
    assert (start.currency, start.cash, start.equity, start.buying_power) == ("USDT", D(10_000), D(10_000),
                                                                                D(10_000))
    buy = order(oms, "BUY", "0.100")
    oms.submit(buy)
    fee = D("50000.10") * D("0.100") * D("0.0005")
    after = adapter.account()
    assert after.cash == D(10_000) - fee.quantize(D("0.00000001"))   # no notional left the wallet
    mark = (D("50000.00") + D("50000.10")) / 2
    assert after.equity == after.cash + (mark - D("50000.10")) * D("0.100")  # unrealized P&L at the mark
    assert after.buying_power == after.equity - mark * D("0.100") / 20     # less the position's margin
    assert adapter.wallet() == {"USDT": after.cash}
    fill = oms.fills[0]
    assert fill.fee_currency == "" and fill.fee == fee.quantize(D("0.00000001"))


def test_an_order_beyond_the_margin_is_refused_as_insufficient_funds(fake):
    oms = make_oms(fake, leverage=2)
    too_big = order(oms, "BUY", "0.500")   # 25,000 USDT of notional needs 12,500 of margin at 2x
    oms.submit(too_big)
    assert too_big.state is OrderState.REJECTED and too_big.reason == RejectReason.INSUFFICIENT_FUNDS
    fits = order(oms, "BUY", "0.300")
    oms.submit(fits)
    assert fits.state is OrderState.FILLED


def test_an_equity_fraction_order_is_sized_by_the_margin_it_needs(fake):
    oms = make_oms(fake, leverage=1)
    sized = Order(oms.next_client_order_id(), "t", BTC, OrderSide.SELL, OrderType.MARKET, None, 0,
                  equity_fraction=D("2"))  # a notional of twice the equity: at 1x only the equity's worth fits
    oms.submit(sized)
    assert sized.state is OrderState.FILLED and sized.filled_qty == D("0.200")  # 10,000 / 50,000, on the lot grid
    assert {p.symbol: p.qty for p in oms.adapter.positions()} == {BTC: D("-0.200")}


def test_fills_older_than_the_venues_one_week_window_are_all_found(fake):
    """binance USD-M answers userTrades one week at a time: a restart asking from ten days back
    must still see the trades of the days after the first week."""
    day = 86_400_000
    fake.add_history("t-00000001", "BTCUSDT", "BUY", D("0.010"), D("48000.0"), 10 * day)
    fake.add_history("t-00000002", "BTCUSDT", "SELL", D("0.010"), D("49000.0"), 2 * day)
    adapter = make_adapter_on(fake)
    adapter.instruments()
    fills = adapter.fills_since(fake.trades[0].time * 1_000_000 - day * 1_000_000)
    assert [(f.client_order_id, f.price) for f in fills] == [("t-00000001", D("48000.0")),
                                                              ("t-00000002", D("49000.0"))]


# -- orders ------------------------------------------------------------------------------------------
def test_a_reduce_only_order_closes_the_position_and_one_that_would_open_is_refused(fake):
    oms = make_oms(fake)
    opening = order(oms, "BUY", "0.010", reduce_only=True)  # nothing to reduce
    oms.submit(opening)
    assert opening.state is OrderState.REJECTED and opening.reason == RejectReason.INVALID_ORDER
    assert fake.count_client_id(opening.client_order_id) == 0
    oms.submit(order(oms, "BUY", "0.010"))
    closing = order(oms, "SELL", "0.010", reduce_only=True)
    oms.submit(closing)
    assert closing.state is OrderState.FILLED
    assert fake.orders[fake.by_client[closing.client_order_id]].reduce_only is True
    assert oms.adapter.positions() == []
    small = order(oms, "BUY", "0.001")   # 50 USDT: below the 100 minimum notional
    oms.submit(small)
    assert small.state is OrderState.REJECTED and small.reason == RejectReason.QTY_BELOW_MIN


def test_stop_orders_are_refused_as_unsupported_without_a_request(fake):
    oms = make_oms(fake)
    before = len(fake.requests)
    stop = order(oms, "BUY", "0.010", kind=OrderType.STOP, stop="51000.0")
    oms.submit(stop)
    assert stop.state is OrderState.REJECTED and stop.reason == RejectReason.UNSUPPORTED
    assert len(fake.requests) == before


def test_a_post_only_order_that_would_take_is_refused_by_the_venue(fake):
    from brokers.ccxt import mapping

    oms = make_oms(fake)
    maker = Order(oms.next_client_order_id(), "t", BTC, OrderSide.BUY, OrderType.LIMIT, D("0.010"), 0,
                  limit_price=D("49000.0"), tag=mapping.POST_ONLY_TAG)
    taker = Order(oms.next_client_order_id(), "t", BTC, OrderSide.BUY, OrderType.LIMIT, D("0.010"), 0,
                  limit_price=D("50100.0"), tag=mapping.POST_ONLY_TAG)
    oms.submit(maker)
    oms.submit(taker)
    assert maker.state is OrderState.ACCEPTED
    assert fake.orders[fake.by_client[maker.client_order_id]].time_in_force == "GTX"
    assert taker.state is OrderState.REJECTED and fake.count_client_id(taker.client_order_id) == 0


def test_fees_in_bnb_are_reported_in_bnb_as_charged(fake):
    fake.fee_asset = "BNB"
    fake.wallet["BNB"] = D(1)
    oms_adapter = make_adapter_on(fake)
    fills: list = []

    class Sink:
        def on_fill(self, order, fill, bar):
            fills.append(fill)

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    oms_adapter.connect(Sink())
    oms_adapter.submit(Order("t-00000001", "t", BTC, OrderSide.BUY, OrderType.MARKET, D("0.010"), 0))
    (fill,) = fills
    expected = (D("50000.10") * D("0.010") * D("0.0005") * D("0.9") / 600).quantize(D("0.00000001"))
    assert fill.fee_currency == "BNB" and fill.fee_native == expected and fill.fee_raw == 0


# -- funding --------------------------------------------------------------------------------------------
def test_funding_is_listed_as_typed_payments_not_fills_each_once(fake):
    oms = make_oms(fake)
    adapter = oms.adapter
    oms.submit(order(oms, "BUY", "0.100"))
    paid = fake.charge_funding("BTCUSDT", D("0.0001"))       # a long pays a positive rate
    first = adapter.funding_since(0)
    received = fake.charge_funding("BTCUSDT", D("-0.0003"))  # and receives a negative one
    fake.charge_funding("ETHUSDT", D("0.0001"))              # no ETH position: nothing charged
    listed = adapter.funding_since(0)
    assert paid == D("-0.50000050") and received == D("1.50000150")  # 0.1 x the mark 50,000.05 x the rate
    assert [f.amount for f in listed] == [paid, received]
    assert all(isinstance(f, FundingFee) and f.symbol == BTC and f.asset == "USDT" for f in listed)
    assert [f.funding_id for f in first] == [listed[0].funding_id]
    assert adapter.funding_since(listed[1].ts) == [listed[1]]
    assert adapter.funding_since(0) == listed                 # asked again: each payment once
    assert [f.execution_id for f in adapter.fills_since(0)] == [f.execution_id for f in oms.fills]
    assert len(oms.fills) == 1                                # funding is not a fill
    assert adapter.account().cash == D(10_000) - oms.fills[0].fee + paid + received


def test_funding_is_paged_forward_from_the_start_time(fake):
    adapter = make_adapter_on(fake)
    adapter.instruments()
    fake.positions["BTCUSDT"].amount = D("1.000")
    fake.positions["BTCUSDT"].entry = D("50000")
    start_ms = 1_700_000_000_000
    for i in range(1_203):  # more than a page (1,000)
        fake.charge_funding("BTCUSDT", D("0.0001"), at_ms=start_ms + i)
    listed = adapter.funding_since(start_ms * 1_000_000)
    assert len(listed) == 1_203 and len({f.funding_id for f in listed}) == 1_203
    assert sum(f.amount for f in listed) == D("-5.00000500") * 1_203
    assert sum(1 for method, path in fake.requests if path == "/fapi/v1/income") == 2


def test_funding_on_a_spot_account_is_an_empty_list():
    spot = BinanceFake().start()
    try:
        adapter = CcxtAdapter("binance", exchange=binance_on(spot), symbols=["BTC/USDT"], poll_interval_s=None)
        adapter.instruments()
        assert adapter.funding_since(0) == []
    finally:
        spot.stop()
