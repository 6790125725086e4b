"""Venue payloads as account-level charges (engine.charges): Alpaca's CFEE activity as its
documentation shows it ("Crypto Activities": the fee in the coin on a buy, in dollars on a sell,
posted at the end of the day), and Binance's funding income through ccxt's own parser."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.alpaca import mapping
from brokers.ccxt import futures
from engine.charges import AccountCharge, ChargeKind

ccxt = pytest.importorskip("ccxt")

D = Decimal
DAY_NS = 86_400 * 10**9
AUG_12 = 1_660_262_400 * 10**9  # 2022-08-12T00:00:00Z

# Alpaca's documented example of a CFEE object (docs: crypto/activities, "Crypto Fees")
CFEE_BUY = {"id": "20220812000000000::53be51ba-46f9-43de-b81f-576f241dc680", "activity_type": "CFEE",
            "date": "2022-08-12", "net_amount": "0", "description": "Coin Pair Transaction Fee (Non USD)",
            "symbol": "ETHUSD", "qty": "-0.000195", "price": "1884.5", "status": "executed"}


def test_a_cfee_in_the_coin_is_a_base_asset_fee_covering_its_day():
    charge = mapping.cfee_charge(CFEE_BUY, {"ETH/USD"})
    assert charge == AccountCharge("cfee:20220812000000000::53be51ba-46f9-43de-b81f-576f241dc680", ChargeKind.FEE,
                                   "ETH/USD", "ETH", D("-0.000195"), AUG_12 + DAY_NS - 1, DAY_NS, D("1884.5"))
    assert charge.start == AUG_12


def test_a_cfee_in_dollars_on_a_sale_is_a_quote_currency_fee_and_a_zero_one_is_nothing():
    sale = {**CFEE_BUY, "id": "20220812000000000::x", "qty": "0", "net_amount": "-0.47",
            "description": "Coin Pair Transaction Fee (USD)"}
    charge = mapping.cfee_charge(sale, ())                 # no known symbols: split before the quote
    assert (charge.symbol, charge.asset, charge.amount, charge.price) == ("ETH/USD", "USD", D("-0.47"), None)
    assert mapping.cfee_charge({**CFEE_BUY, "qty": "0", "net_amount": "0"}, ()) is None


def test_a_cfee_with_a_transaction_time_is_charged_at_that_instant():
    timed = {**CFEE_BUY, "transaction_time": "2022-08-12T14:01:04.650275Z"}
    charge = mapping.cfee_charge(timed, {"ETH/USD"})
    assert charge.period_ns == 0 and charge.ts == mapping.ns("2022-08-12T14:01:04.650275Z")


def test_binance_funding_income_becomes_a_funding_charge_with_the_venues_digits():
    exchange = ccxt.binanceusdm({"options": {"fetchMarkets": {"types": ["linear"]}}})
    from tests.fakes.binance_futures_fake import BinanceFuturesFake
    info = BinanceFuturesFake().handle("GET", "/fapi/v1/exchangeInfo", {}, {})
    exchange.set_markets([exchange.parse_market(m) for m in info["symbols"]])
    raw = {"symbol": "ETHUSDT", "incomeType": "FUNDING_FEE", "income": "-0.00134317", "asset": "USDT",
           "time": "1621584000000", "info": "FUNDING_FEE", "tranId": "4480321991774044580", "tradeId": ""}
    charge = futures.funding_charge(futures.funding_from_income(exchange.parse_income(raw)))
    assert charge == AccountCharge("funding:4480321991774044580", ChargeKind.FUNDING, "ETH/USDT:USDT", "USDT",
                                   D("-0.00134317"), 1621584000000 * 1_000_000)
