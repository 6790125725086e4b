"""The ccxt adapter's futures mapping (brokers/ccxt/mapping.py, brokers/ccxt/futures.py) over the
payloads binance USD-M answers with: the futures fake's answers (tests/fakes/binance_futures_fake.py,
called in-process, no socket) and the payloads quoted in ccxt 4.5.90's own binance.py, each parsed
by the installed ccxt `binanceusdm` and then mapped; the tests assert the domain result."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.base import RejectReason  # noqa: E402
from brokers.ccxt import futures, mapping  # noqa: E402
from engine.instrument import AssetClass  # noqa: E402
from engine.orders import Liquidity, Order, OrderSide, OrderState, OrderType, TimeInForce  # noqa: E402
from tests.fakes.binance_futures_fake import BinanceFuturesFake  # noqa: E402

D = Decimal
SIGNED = {"signature": "x", "timestamp": "1"}
HEADERS = {"X-MBX-APIKEY": "k"}
BTC = "BTC/USDT:USDT"

# Quoted in ccxt 4.5.90 binance.py (fetch_positions_risk / parse_position_risk, parse_income):
# what binance USD-M answers, verbatim.
POSITION_RISK_V3_WLD = {
    "symbol": "WLDUSDT", "positionSide": "BOTH", "positionAmt": "5", "entryPrice": "2.3483",
    "breakEvenPrice": "2.349356735", "markPrice": "2.39560000", "unRealizedProfit": "0.23650000",
    "liquidationPrice": "0", "isolatedMargin": "0", "notional": "11.97800000", "isolatedWallet": "0",
    "updateTime": "1722062678998", "initialMargin": "2.39560000", "maintMargin": "0.07186800",
    "positionInitialMargin": "2.39560000", "openOrderInitialMargin": "0", "adl": "2", "bidNotional": "0",
    "askNotional": "0", "marginAsset": "USDT",
}
POSITION_RISK_HEDGED_BTC = [  # hedge mode: a LONG and a SHORT leg of one symbol
    {"entryPrice": "6563.66500", "marginType": "isolated", "isAutoAddMargin": "false",
     "isolatedMargin": "15517.54150468", "leverage": "10", "liquidationPrice": "5930.78",
     "markPrice": "6679.50671178", "maxNotionalValue": "20000000", "positionSide": "LONG", "positionAmt": "20.000",
     "symbol": "BTCUSDT", "unRealizedProfit": "2316.83423560", "updateTime": 1625474304765},
    {"entryPrice": "6600.00000", "marginType": "isolated", "isAutoAddMargin": "false",
     "isolatedMargin": "1000.00000000", "leverage": "10", "liquidationPrice": "7000.00",
     "markPrice": "6679.50671178", "maxNotionalValue": "20000000", "positionSide": "SHORT", "positionAmt": "-5.000",
     "symbol": "BTCUSDT", "unRealizedProfit": "-397.53355890", "updateTime": 1625474304765},
]
INCOME_FUNDING_ETH = {
    "symbol": "ETHUSDT", "incomeType": "FUNDING_FEE", "income": "0.00134317", "asset": "USDT",
    "time": "1621584000000", "info": "FUNDING_FEE", "tranId": "4480321991774044580", "tradeId": "",
}


@pytest.fixture
def venue() -> BinanceFuturesFake:
    return BinanceFuturesFake()  # not started: its answers are taken in-process


@pytest.fixture
def exchange(venue: BinanceFuturesFake) -> Any:
    ex = ccxt.binanceusdm({"options": {"fetchMarkets": {"types": ["linear"]}}})
    info = venue.handle("GET", "/fapi/v1/exchangeInfo", {}, {})
    extra = {**info["symbols"][0], "symbol": "WLDUSDT", "pair": "WLDUSDT", "baseAsset": "WLD"}
    ex.set_markets([ex.parse_market(m) for m in [*info["symbols"], extra]])
    return ex


def ask(venue: BinanceFuturesFake, method: str, path: str, **params: str) -> Any:
    return venue.handle(method, path, {**params, **SIGNED}, HEADERS)


def test_a_perpetual_market_is_a_future_on_margin_on_the_venues_grid(exchange):
    market = exchange.market(BTC)
    instrument = mapping.instrument_from_market(market, exchange.precisionMode, "BINANCEUSDM", D(20))
    assert instrument.symbol == BTC and instrument.asset_class is AssetClass.FUTURE
    assert instrument.on_margin and instrument.leverage == D(20) and instrument.margin_fraction() == (1, 20)
    assert (instrument.price_increment, instrument.size_increment, instrument.min_qty, instrument.max_qty) == \
        (D("0.1"), D("0.001"), D("0.001"), D("1000"))
    assert instrument.quote_currency == "USDT" and instrument.base == "BTC" and instrument.multiplier == 1
    assert mapping.min_cost(market) == D(100)
    spot_like = mapping.instrument_from_market({**market, "contract": False, "linear": None},
                                               exchange.precisionMode, "X", D(20))
    assert not spot_like.on_margin and spot_like.asset_class is AssetClass.CRYPTO  # leverage is for contracts


def test_an_order_answer_maps_side_quantities_status_and_client_id(venue, exchange):
    instrument = mapping.instrument_from_market(exchange.market(BTC), exchange.precisionMode, "B", D(20))
    raw = ask(venue, "POST", "/fapi/v1/order", symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.010",
              newClientOrderId="t-00000001", newOrderRespType="RESULT")
    assert "fills" not in raw  # RESULT: the status, no fills (the adapter fetches the trades)
    parsed = exchange.parse_order(raw, exchange.market(BTC))
    venue_order = mapping.venue_order(parsed, instrument)
    assert (venue_order.client_order_id, venue_order.side, venue_order.type, venue_order.state) == \
        ("t-00000001", OrderSide.SELL, OrderType.MARKET, OrderState.FILLED)
    assert (venue_order.qty, venue_order.filled_qty, venue_order.avg_fill_price) == (D("0.01"), D("0.01"), D(50000))
    assert venue_order.ts == raw["updateTime"] * 1_000_000
    resting = ask(venue, "POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.010",
                  price="49000.0", timeInForce="GTC", newClientOrderId="t-00000002")
    canceled = ask(venue, "DELETE", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="t-00000002")
    mapped = mapping.venue_order(exchange.parse_order(canceled, exchange.market(BTC)), instrument)
    assert mapped.client_order_id == "t-00000002" and mapped.state is OrderState.CANCELED  # futures: the order's id
    assert mapped.limit_price == D("49000.0") and mapped.venue_order_id == str(resting["orderId"])


@pytest.mark.parametrize("fee_asset, currency", [("USDT", ""), ("BNB", "BNB")])
def test_a_user_trade_maps_to_a_fill_with_the_fee_as_charged(venue, exchange, fee_asset, currency):
    venue.fee_asset = fee_asset
    venue.wallet["BNB"] = D(1)
    instrument = mapping.instrument_from_market(exchange.market(BTC), exchange.precisionMode, "B", D(20))
    ask(venue, "POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.020",
        newClientOrderId="t-00000001")
    (raw,) = ask(venue, "GET", "/fapi/v1/userTrades", symbol="BTCUSDT")
    trade = exchange.parse_trade(raw, exchange.market(BTC))
    fill = mapping.fill_from_trade(trade, "BTCUSDT", "t-00000001", OrderSide.BUY, instrument, 0)
    assert fill.execution_id == f"BTCUSDT:{raw['id']}" and fill.symbol == BTC
    assert (fill.side, fill.qty, fill.price, fill.liquidity) == (OrderSide.BUY, D("0.02"), D("50000.1"),
                                                                 Liquidity.TAKER)
    assert fill.ts == raw["time"] * 1_000_000 and fill.fee_currency == currency
    charged = D(raw["commission"])
    assert (fill.fee if not currency else fill.fee_native) == charged and charged > 0


def test_positions_from_position_risk_are_signed_and_exact(venue, exchange):
    ask(venue, "POST", "/fapi/v1/order", symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.015",
        newClientOrderId="t-00000001")
    raws = ask(venue, "GET", "/fapi/v3/positionRisk")
    assert [r["symbol"] for r in raws] == ["BTCUSDT"]  # v3 lists only symbols with a position
    parsed = [exchange.parse_position_risk(r) for r in raws]
    assert futures.positions_from_venue(parsed, {BTC}) == [futures.VenuePosition(BTC, D("-0.015"), D(50000))]
    wld = exchange.parse_position_risk(POSITION_RISK_V3_WLD)
    assert futures.positions_from_venue([wld], {"WLD/USDT:USDT"}) == \
        [futures.VenuePosition("WLD/USDT:USDT", D(5), D("2.3483"))]
    hedged = [exchange.parse_position_risk(r) for r in POSITION_RISK_HEDGED_BTC]
    assert futures.positions_from_venue(hedged, {BTC}) == [futures.VenuePosition(BTC, D(15), D("6563.66500"))]
    assert futures.positions_from_venue(hedged, {"ETH/USDT:USDT"}) == []  # not a symbol asked for


def test_the_margin_account_is_read_from_the_venues_strings(venue, exchange):
    ask(venue, "POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.100",
        newClientOrderId="t-00000001")
    raw = ask(venue, "GET", "/fapi/v3/account")
    balance = exchange.parse_balance_custom(raw, "linear")
    account = futures.margin_account(balance, "USDT")
    (usdt,) = [a for a in raw["assets"] if a["asset"] == "USDT"]
    assert account.wallet == D(usdt["walletBalance"]) == D(10_000) - D("2.50000500")
    assert account.margin_balance == D(usdt["marginBalance"]) == account.wallet - D("0.005")
    assert account.available == D(usdt["availableBalance"])
    assert futures.margin_account(balance, "BUSD") == futures.MarginAccount("BUSD", D(0), D(0), D(0))


def test_funding_income_maps_to_a_typed_payment_exactly(exchange):
    fee = futures.funding_from_income(exchange.parse_income(INCOME_FUNDING_ETH))
    assert fee == futures.FundingFee("4480321991774044580", "ETH/USDT:USDT", "USDT", D("0.00134317"),
                                     1621584000000 * 1_000_000)


def test_reduce_only_and_post_only_reach_the_venue_as_ccxt_builds_the_request(exchange):
    order = Order("t-00000001", "t", BTC, OrderSide.SELL, OrderType.LIMIT, D("0.010"), 0, limit_price=D("51000.0"),
                  reduce_only=True, tag=mapping.POST_ONLY_TAG)
    kind, params = mapping.ccxt_type_and_params(order, str, contract=True)
    assert params == {"clientOrderId": "t-00000001", "reduceOnly": True, "postOnly": True}
    request = exchange.create_order_request(BTC, kind, "sell", 0.01, 51000.0, params)
    assert (request["timeInForce"], request["reduceOnly"], request["newClientOrderId"]) == ("GTX", True, "t-00000001")
    ioc = Order("t-00000002", "t", BTC, OrderSide.BUY, OrderType.LIMIT, D("0.010"), 0, limit_price=D("49000.0"),
                tif=TimeInForce.IOC, reduce_only=True)
    assert mapping.ccxt_type_and_params(ioc, str, contract=False)[1] == {"clientOrderId": "t-00000002",
                                                                         "timeInForce": "IOC"}  # spot: no flag


def test_the_futures_refusals_map_to_reasons(venue, exchange):
    instrument = mapping.instrument_from_market(exchange.market(BTC), exchange.precisionMode, "B", D(20))
    stop = Order("t-1", "t", BTC, OrderSide.BUY, OrderType.STOP, D("0.010"), 0, stop_price=D("51000.0"))
    assert mapping.check_order(stop, instrument, stops=False) is RejectReason.UNSUPPORTED
    assert mapping.check_order(stop, instrument) is None
    linear = {**exchange.exceptions["exact"], **exchange.exceptions["linear"]["exact"]}
    for code, message, reason in [
        ("-2019", "Margin is insufficient.", RejectReason.INSUFFICIENT_FUNDS),
        ("-4164", "Order's notional must be no smaller than 100 (unless you choose reduce only).",
         RejectReason.QTY_BELOW_MIN),
        ("-4023", "Qty not increased by step size.", RejectReason.QTY_OFF_GRID),
        ("-4014", "Price not increased by tick size.", RejectReason.PRICE_OFF_GRID),
        ("-2022", "ReduceOnly Order is rejected.", RejectReason.INVALID_ORDER),
        ("-4116", "ClientOrderId is duplicated.", RejectReason.DUPLICATE),  # resolved by client id, not resent
    ]:
        error = linear[code](f'binanceusdm {{"code":{code},"msg":"{message}"}}')
        assert mapping.reject_reason(error) is reason, code


@pytest.mark.parametrize("leverage, mode, expected", [
    (None, None, futures.FuturesSettings()), ("10", "CROSSED", futures.FuturesSettings(10, "cross")),
    (125, "Isolated", futures.FuturesSettings(125, "isolated")), ("", "", futures.FuturesSettings()),
])
def test_settings_are_parsed(leverage, mode, expected):
    assert futures.parse_settings(leverage, mode) == expected
