"""Fees in the account currency and in a third coin, booked as the venue charged them (issues 15
and 16, the outside probe's D10 and D2). Real SDKs against the loopback fakes, as the probes ran:
the MT5 adapter on FakeMT5, real ccxt on BinanceFake, each through a real OMS whose books are
built the way a live bot builds them (live.bot.trading_core -> live.rates.live_portfolio).

D10: an MT5 commission is charged in the account currency. On an EUR account trading EURUSD (or a
USD account trading USDJPY) that currency is the pair's base, and the books took the fee as base
coins out of the position: a ConfigError at the first fill, or a position halved. A margin FX/CFD
position holds no base coins: the fee is cash worth the fee at the fill's price. On an EUR account
trading GBPUSD the adapter values it at the terminal's own EURUSD rate.

D2: a live Binance bot paying fees in BNB stopped at its first fill (no BNB/USDT rate). Its books
now read the rate from the venue's ticker, and book the fill anyway when the venue cannot price
BNB yet (the fee valued once it can).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import pytest

from brokers.mt5 import MT5Adapter
from engine.clock import LiveClock
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.tick_guard import TickGuard
from live.bot import trading_core
from live.config import parse_bot_config
from live.rates import live_portfolio
from tests.fakes.mt5_fake import FakeMT5
from tests.integration.test_mt5_adapter import RecordingSink

D = Decimal


# -- MT5: the commission in the account currency (D10) ---------------------------------------------
def mt5_bot(fake: FakeMT5, symbol: str) -> tuple[OrderManager, MT5Adapter]:
    """The real adapter on the fake terminal and an OMS over live books, as a live MT5 bot has."""
    adapter = MT5Adapter(fake, [symbol], login=5001, password="secret", server="FakeBroker-Demo",
                         sleep=lambda _s: None, clock_ns=lambda: fake.now_msc * 1_000_000, bot_id="wc")
    adapter.connect(RecordingSink())  # loads the symbols; the OMS then connects itself in its place
    instrument = adapter.instruments()[symbol]
    oms = OrderManager("wc", LiveClock(), adapter, live_portfolio(D(1_000_000), instrument, adapter),
                       {symbol: instrument})
    return oms, adapter


def buy(oms: OrderManager, symbol: str, qty: str) -> Order:
    order = Order(oms.next_client_order_id(), "wc", symbol, OrderSide.BUY, OrderType.MARKET, D(qty), 0)
    oms.submit(order)
    return order


def venue_volume(fake: FakeMT5, symbol: str) -> Decimal:
    return sum((D(repr(p.volume)) for p in fake.positions_get() or () if p.symbol == symbol), D(0))


def test_an_eur_account_on_eurusd_books_the_whole_lot_and_the_commission_as_cash_at_the_fill_price():
    fake = FakeMT5(currency="EUR", commission_per_lot=7.0, balance=10_000_000.0)
    fake.add_symbol("EURUSD", 1.10000, 1.10020)
    oms, _ = mt5_bot(fake, "EURUSD")
    order = buy(oms, "EURUSD", "0.10")  # the old books: ConfigError "a fee of 0.70 EUR is not less than 0.10"
    books = oms.portfolio
    assert order.state is OrderState.FILLED
    assert books.positions["EURUSD"].quantity == D("0.10") == venue_volume(fake, "EURUSD")
    fill, = oms.fills
    assert (fill.fee_currency, fill.fee_native, fill.price) == ("EUR", D("0.70"), D("1.10020"))
    # 0.70 EUR at 1.10020 USD = 0.770140 USD, exactly; the notional 0.10 x 100,000 x 1.10020 = 11,002.00
    assert D(fill.fee_raw).scaleb(-books.cash_dp) == D("0.77014")
    assert books.cash == D(1_000_000) - D("11002.00") - D("0.77014")
    assert books.fees_native == {"EUR": D("0.70")} and books.pending_fees == []


def test_a_whole_lot_on_an_eur_account_is_not_halved_by_its_commission():
    fake = FakeMT5(currency="EUR", commission_per_lot=0.5, balance=10_000_000.0)
    fake.add_symbol("EURUSD", 1.10000, 1.10020)
    oms, _ = mt5_bot(fake, "EURUSD")
    buy(oms, "EURUSD", "1.00")  # the old books: 0.50 lot (the 0.50 EUR taken as 0.50 lot)
    assert oms.portfolio.positions["EURUSD"].quantity == D("1.00") == venue_volume(fake, "EURUSD")
    assert oms.portfolio.cash == D(1_000_000) - D("110020.00") - D("0.5501")


def test_a_usd_account_on_usdjpy_books_the_usd_commission_in_yen_at_the_fill_price():
    fake = FakeMT5(currency="USD", commission_per_lot=5.0, balance=100_000_000.0)
    fake.add_symbol("USDJPY", 150.000, 150.020, digits=3, point=0.001,
                    currency_base="USD", currency_profit="JPY", currency_margin="USD", path="Forex\\USDJPY")
    oms, _ = mt5_bot(fake, "USDJPY")
    buy(oms, "USDJPY", "0.10")  # the old books: ConfigError "a fee of 0.50 USD is not less than the 0.10 bought"
    assert oms.portfolio.currency == "JPY"
    assert oms.portfolio.positions["USDJPY"].quantity == D("0.10") == venue_volume(fake, "USDJPY")
    fill, = oms.fills
    assert (fill.fee_currency, fill.fee_native, fill.price) == ("USD", D("0.50"), D("150.020"))
    assert D(fill.fee_raw).scaleb(-oms.portfolio.cash_dp) == D("75.01")  # 0.50 x 150.020


def test_an_eur_account_on_gbpusd_values_the_commission_at_the_terminals_eurusd_rate():
    fake = FakeMT5(currency="EUR", commission_per_lot=5.0, balance=10_000_000.0)
    fake.add_symbol("GBPUSD", 1.27000, 1.27020, currency_base="GBP", currency_profit="USD", currency_margin="GBP",
                    path="Forex\\GBPUSD")
    fake.add_symbol("EURUSD", 1.10000, 1.10030)  # the conversion symbol, not one the bot trades
    oms, _ = mt5_bot(fake, "GBPUSD")
    buy(oms, "GBPUSD", "0.10")  # the old books: ConfigError "no EUR/USD rate ... (the portfolio has no rates)"
    books = oms.portfolio
    assert books.positions["GBPUSD"].quantity == D("0.10") == venue_volume(fake, "GBPUSD")
    fill, = oms.fills
    assert (fill.fee_currency, fill.fee_native) == ("EUR", D("0.50"))
    # 0.50 EUR at the EURUSD mid 1.10015 = 0.550075 USD (cash grid: 7 decimals, exact)
    assert D(fill.fee_raw).scaleb(-books.cash_dp) == D("0.550075")
    assert books.cash == D(1_000_000) - D("12702.00") - D("0.550075")
    assert books.fees_native == {"EUR": D("0.50")}


def test_an_eur_account_on_gbpusd_without_a_conversion_symbol_books_the_fill_and_keeps_the_fee_pending():
    fake = FakeMT5(currency="EUR", commission_per_lot=5.0, balance=10_000_000.0)
    fake.add_symbol("GBPUSD", 1.27000, 1.27020, currency_base="GBP", currency_profit="USD", currency_margin="GBP",
                    path="Forex\\GBPUSD")
    oms, _ = mt5_bot(fake, "GBPUSD")
    buy(oms, "GBPUSD", "0.10")
    books = oms.portfolio
    assert books.positions["GBPUSD"].quantity == D("0.10") == venue_volume(fake, "GBPUSD")
    assert books.cash == D(1_000_000) - D("12702.00")  # the position exact, the fee not valued yet
    assert books.fees_native == {"EUR": D("0.50")} and [f.currency for f in books.pending_fees] == ["EUR"]


# -- Binance: fees in BNB (D2) ---------------------------------------------------------------------
ccxt = pytest.importorskip("ccxt")

from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from tests.conformance.harness_ccxt import binance_on  # noqa: E402
from tests.fakes.binance_fake import BinanceFake  # noqa: E402

SYMBOL = "BTC/USDT"


@pytest.fixture
def fake() -> Iterator[BinanceFake]:
    fake = BinanceFake().start()
    fake.fee_asset = "BNB"  # Binance's "use BNB for fees": 75 % of 0.1 %, in BNB at bnb_price (600)
    yield fake
    fake.stop()


def binance_bot(fake: BinanceFake) -> OrderManager:
    """An OMS over the books live.bot.trading_core builds, on real ccxt against the fake."""
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SYMBOL], backoff_s=0.001,
                          max_backoff_s=0.005, poll_interval_s=None)
    config = parse_bot_config({"id": "wc", "strategy": "sma_cross", "symbol": SYMBOL, "venue": "ccxt",
                               "cash": "100000"})
    instrument = adapter.instruments()[SYMBOL]
    oms, _, _ = trading_core(config, LiveClock(), adapter, instrument, TickGuard(config.tick_guard), None, None)
    oms.connect()
    return oms


def trade(oms: OrderManager, side: str) -> Order:
    order = Order(oms.next_client_order_id(), "wc", SYMBOL, OrderSide(side), OrderType.MARKET, D("0.01"), 0)
    oms.submit(order)
    return order


def test_a_live_bot_values_its_bnb_fee_at_the_venues_bnb_price(fake):
    oms = binance_bot(fake)
    order = trade(oms, "BUY")  # the old books: ConfigError "no BNB/USDT rate ... (the portfolio has no rates)"
    books = oms.portfolio
    assert order.state is OrderState.FILLED and len(oms.fills) == 1
    assert books.positions[SYMBOL].quantity == D("0.01") and fake.balances["BTC"] == D("0.51")
    # 0.01 x 50,000.01 = 500.0001 USDT; fee 0.000625 BNB (the venue's) x 600 (its ticker) = 0.375 USDT
    assert fake.balances["BNB"] == D("10") - D("0.000625")
    assert books.fees_native == {"BNB": D("0.000625")}
    assert books.cash == D(100_000) - D("500.0001") - D("0.375")
    assert D(books.fees_raw).scaleb(-books.cash_dp) == D("0.375") and books.pending_fees == []


def test_a_bnb_fee_the_venue_cannot_price_yet_is_booked_later_and_never_stops_the_bot(fake):
    oms = binance_bot(fake)
    fake.inject("503", "GET", "/api/v3/ticker/24hr")  # the BNB ticker fails once, at the first fill
    trade(oms, "BUY")
    books = oms.portfolio
    assert books.positions[SYMBOL].quantity == D("0.01")
    assert books.cash == D(100_000) - D("500.0001")  # the fill exact, its fee pending
    assert books.fees_native == {"BNB": D("0.000625")} and len(books.pending_fees) == 1
    books.rates.source.retry_s = 0.0  # the retry interval has passed
    trade(oms, "SELL")  # 0.01 at 50,000.00: the ticker answers now, both fees are valued at 600
    assert books.positions[SYMBOL].quantity == 0 and books.pending_fees == []
    assert books.cash == D(100_000) - D("500.0001") + D("500.00") - 2 * D("0.375")
    assert D(books.fees_raw).scaleb(-books.cash_dp) == D("0.75")
    realized = D(books.realized_pnl_raw).scaleb(-books.cash_dp)
    assert books.cash == D(100_000) + realized  # flat: equity == initial cash + realized P&L


def test_the_venue_is_asked_for_the_bnb_price_once_per_refresh_not_once_per_fill(fake):
    oms = binance_bot(fake)
    for side in ("BUY", "SELL", "BUY"):
        trade(oms, side)
    tickers = [path for method, path in fake.requests if path == "/api/v3/ticker/24hr"]
    assert len(tickers) == 1 and oms.portfolio.pending_fees == []
    assert oms.portfolio.fees_native == {"BNB": 3 * D("0.000625")}
