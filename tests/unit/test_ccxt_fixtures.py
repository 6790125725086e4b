"""ccxt's own recorded venue answers (tests/fixtures/ccxt, from ccxt's static tests) through the
installed ccxt and then the adapter's mapping: the domain result of every response the adapter's
calls get, on binance and on bybit (another family: ids-only create answers, fees in the coin
bought, quote-denominated market buys).

The raw answer is handed to ccxt in place of the HTTP layer (`exchange.fetch`), as ccxt's own
static tests do, so ccxt builds the request and parses the answer exactly as in production.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.ccxt import mapping  # noqa: E402
from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from engine.orders import Liquidity, Order, OrderSide, OrderState, OrderType  # noqa: E402

D = Decimal
MS = 1_000_000
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ccxt"


def load(exchange: str) -> dict[str, list[dict[str, Any]]]:
    return json.loads((FIXTURES / f"{exchange}.json").read_text())["methods"]


def case(exchange: str, method: str, index: int = 0) -> dict[str, Any]:
    return load(exchange)[method][index]


def spot(symbol: str, price: float, amount: float, order_types: list[str] | None = None) -> dict[str, Any]:
    base, quote = symbol.split("/")
    return {"id": base + quote, "symbol": symbol, "base": base, "quote": quote, "baseId": base, "quoteId": quote,
            "settle": None, "active": True, "type": "spot", "spot": True, "margin": False, "swap": False,
            "future": False, "option": False, "contract": False, "linear": None, "inverse": None,
            "contractSize": None, "precision": {"price": price, "amount": amount, "quote": 0.00000001},
            "limits": {"amount": {"min": amount}, "cost": {"min": 1}},
            "info": {"orderTypes": order_types or ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT",
                                                   "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"]}}


def replaying(exchange: Any, answers: dict[str, Any]) -> list[tuple[str, str]]:
    """Serve `answers` (url path suffix -> recorded body) instead of HTTP; returns the calls made."""
    calls: list[tuple[str, str]] = []

    def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        path = url.split("?")[0]
        calls.append((method, path))
        for suffix, answer in answers.items():
            if path.endswith(suffix):
                return answer
        return {"retCode": 0, "retMsg": "OK", "result": {}}  # bybit's account probes before a create

    exchange.fetch = fetch
    return calls


@pytest.fixture
def binance() -> Any:
    exchange = ccxt.binance({"apiKey": "k", "secret": "s",
                             "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}})
    exchange.set_markets([spot("SOL/USDT", 0.01, 0.001), spot("LTC/USDT", 0.01, 0.001)])
    return exchange


@pytest.fixture
def bybit() -> Any:
    exchange = ccxt.bybit({"apiKey": "k", "secret": "s"})
    exchange.set_markets([spot("LTC/USDT", 0.01, 0.00001), spot("BTC/USDT", 0.01, 0.000001),
                          spot("XRP/USDT", 0.0001, 0.01), spot("ETH/USDT", 0.01, 0.00001)])
    return exchange


def instrument(exchange: Any, symbol: str):
    return mapping.instrument_from_market(exchange.markets[symbol], exchange.precisionMode, exchange.id.upper())


def call(exchange: Any, fixture: dict[str, Any], endpoint: str) -> Any:
    calls = replaying(exchange, {endpoint: fixture["httpResponse"]})
    out = getattr(exchange, fixture["method"])(*fixture["input"])
    assert calls[-1][1].endswith(endpoint)
    return out


def same_as_recorded(parsed: dict[str, Any], recorded: dict[str, Any], drift: tuple[str, ...] = ()) -> None:
    """The installed ccxt parses the answer as the recorded parse says (fields the mapping reads)."""
    for key in ("id", "clientOrderId", "timestamp", "symbol", "type", "side", "price", "amount", "filled",
                "status", "order", "takerOrMaker", "average"):
        if key in recorded and key not in drift:
            assert parsed.get(key) == recorded[key], key


# -- binance --------------------------------------------------------------------------------------
def test_binance_create_order_answer(binance):
    fixture = case("binance", "createOrder")
    raw = call(binance, fixture, "/api/v3/order")
    same_as_recorded(raw, fixture["parsedResponse"])
    venue = mapping.venue_order(raw, instrument(binance, "SOL/USDT"))
    assert (venue.client_order_id, venue.venue_order_id) == ("x-R4BD3S824d31be3228a348eaa0a303", "9780331417")
    assert (venue.side, venue.type, venue.qty, venue.limit_price) == (OrderSide.BUY, OrderType.LIMIT, D("0.05"),
                                                                    D("241"))
    assert (venue.state, venue.filled_qty, venue.ts) == (OrderState.ACCEPTED, 0, 1737635557417 * MS)


def test_binance_fetch_order_answer_a_filled_market_sell(binance):
    fixture = case("binance", "fetchOrder")
    raw = call(binance, fixture, "/api/v3/order")
    same_as_recorded(raw, fixture["parsedResponse"])
    venue = mapping.venue_order(raw, instrument(binance, "LTC/USDT"))
    assert venue.client_order_id == "x-R4BD3S825806ed40c861260428a48c"
    assert (venue.side, venue.type, venue.qty, venue.filled_qty) == (OrderSide.SELL, OrderType.MARKET, D("0.1"),
                                                                     D("0.1"))
    assert (venue.state, venue.avg_fill_price, venue.limit_price) == (OrderState.FILLED, D("90.8"), None)
    assert venue.ts == 1679571174472 * MS


def test_binance_open_orders_answer_a_post_only_buy(binance):
    fixture = case("binance", "fetchOpenOrders")
    [raw] = call(binance, fixture, "/api/v3/openOrders")
    same_as_recorded(raw, fixture["parsedResponse"][0])
    assert raw["postOnly"] is True  # binance LIMIT_MAKER
    venue = mapping.venue_order(raw, instrument(binance, "LTC/USDT"))
    assert venue.client_order_id == "x-R4BD3S82102a551f8c1642bba06728" and venue.venue_order_id == "3811057334"
    assert (venue.side, venue.type, venue.qty, venue.limit_price) == (OrderSide.BUY, OrderType.LIMIT, D("0.2"),
                                                                    D("50"))
    assert (venue.state, venue.ts) == (OrderState.ACCEPTED, 1699380855570 * MS)


def test_binance_my_trades_answer_a_taker_sell_with_its_fee_in_usdt(binance):
    fixture = case("binance", "fetchMyTrades")
    [raw] = call(binance, fixture, "/api/v3/myTrades")
    same_as_recorded(raw, fixture["parsedResponse"][0])
    ltc = instrument(binance, "LTC/USDT")
    fill = mapping.fill_from_trade(raw, "LTCUSDT", "x-1", OrderSide.SELL, ltc, 0)
    assert (fill.execution_id, fill.side, fill.qty, fill.price) == ("LTCUSDT:309520010", OrderSide.SELL, D("0.2"),
                                                                    D("69.63"))
    assert (fill.fee, fill.fee_currency, fill.fee_native_raw) == (D("0.013926"), "", 0)
    assert (fill.liquidity, fill.ts) == (Liquidity.TAKER, 1698138992358 * MS)
    # on books whose cash grid is coarser (5 decimals) the fee is not rounded to 0.01393 USDT:
    coarse = mapping.instrument_from_market({**binance.markets["LTC/USDT"], "precision": {
        "price": 0.01, "amount": 0.001}}, binance.precisionMode, "BINANCE")
    fill = mapping.fill_from_trade(raw, "LTCUSDT", "x-1", OrderSide.SELL, coarse, 0)
    assert (fill.fee_raw, fill.fee_currency, fill.fee_native) == (0, "USDT", D("0.013926"))


def test_binance_balance_answer_is_the_wallet_to_the_last_unit(binance):
    fixture = case("binance", "fetchBalance")
    replaying(binance, {"/api/v3/account": fixture["httpResponse"]})
    adapter = CcxtAdapter("binance", exchange=binance, symbols=["LTC/USDT"], poll_interval_s=None)
    wallet = adapter.wallet()
    assert wallet == {"LTC": D("0.919741"), "ETH": D("0.02229833")}  # not 0.920 LTC on the 0.001 grid


# -- bybit ----------------------------------------------------------------------------------------
def test_bybit_create_answer_carries_ids_only_and_the_order_fills_in_the_rest(bybit):
    fixture = case("bybit", "createOrder")
    raw = call(bybit, fixture, "/v5/order/create")
    same_as_recorded(raw, fixture["parsedResponse"])
    sent = Order("1609920528444036608", "t", "LTC/USDT", OrderSide.BUY, OrderType.LIMIT, D("0.1"), 1706653482432 * MS,
                 limit_price=D("60"))
    venue = mapping.venue_order(raw, instrument(bybit, "LTC/USDT"), sent.client_order_id, sent)
    assert venue.venue_order_id == "1609920528435648000" and venue.client_order_id == "1609920528444036608"
    # without the order: a SELL of 0, which the engine would have booked against the buy
    assert (venue.side, venue.type, venue.qty, venue.limit_price) == (OrderSide.BUY, OrderType.LIMIT, D("0.1"),
                                                                    D("60"))
    assert (venue.state, venue.filled_qty) == (OrderState.ACCEPTED, 0)


def test_bybit_quote_denominated_market_buy_reports_the_coins_it_bought(bybit):
    fixture = case("bybit", "fetchOrder", 0)
    raw = bybit.parse_order(fixture["httpResponse"]["result"]["list"][0])  # ccxt disables spot fetchOrder
    # ccxt 4.5.90 no longer reads bybit's quote qty (50 USDT) as the amount: amount = filled + remaining
    same_as_recorded(raw, fixture["parsedResponse"], drift=("amount",))
    venue = mapping.venue_order(raw, instrument(bybit, "BTC/USDT"))
    assert venue.client_order_id == "1609602210852247041"
    assert (venue.side, venue.type, venue.qty, venue.filled_qty) == (OrderSide.BUY, OrderType.MARKET,
                                                                     D("0.001614"), D("0.001614"))
    assert (venue.state, venue.avg_fill_price, venue.ts) == (OrderState.FILLED, D("30966.41"), 1706615536019 * MS)


def test_bybit_filled_market_sell(bybit):
    fixture = case("bybit", "fetchOrder", 1)
    raw = bybit.parse_order(fixture["httpResponse"]["result"]["list"][0])
    same_as_recorded(raw, fixture["parsedResponse"])
    venue = mapping.venue_order(raw, instrument(bybit, "XRP/USDT"))
    assert (venue.client_order_id, venue.side, venue.qty, venue.filled_qty) == ("1609604284784580097", OrderSide.SELL,
                                                                                D("123"), D("123"))
    assert (venue.state, venue.avg_fill_price, venue.ts) == (OrderState.FILLED, D("0.5351"), 1706615783251 * MS)


@pytest.mark.parametrize("index, symbol, exec_id, qty, price, fee, ts", [
    (0, "BTC/USDT", "2100000000047087120", "0.000336", "29708.7", "0.000000336", 1699612608878),
    (1, "ETH/USDT", "2110000000034095620", "0.001", "2453.65", "0.000001", 1710762303659),
])
def test_bybit_spot_buys_pay_their_fee_in_the_coin_bought(bybit, index, symbol, exec_id, qty, price, fee, ts):
    fixture = case("bybit", "fetchMyTrades", index)
    [raw] = call(bybit, fixture, "/v5/execution/list")
    same_as_recorded(raw, fixture["parsedResponse"][0])
    market_id = bybit.markets[symbol]["id"]
    fill = mapping.fill_from_trade(raw, market_id, "c-1", OrderSide.BUY, instrument(bybit, symbol), 0)
    base = symbol.split("/")[0]
    assert (fill.execution_id, fill.side, fill.qty, fill.price) == (f"{market_id}:{exec_id}", OrderSide.BUY, D(qty),
                                                                    D(price))
    assert (fill.fee_currency, fill.fee_native, fill.fee_raw) == (base, D(fee), 0)  # was booked as quote cash
    assert (fill.liquidity, fill.ts) == (Liquidity.TAKER, ts * MS)
