"""The risk gate estimates an equity-fraction order on margin by the venue's own rule
(Instrument.fraction_sizing): the paper venue puts fraction x equity up as margin, ccxt USD-M and
MT5 buy fraction x equity of exposure within the free margin. Hand-computed cases."""

from __future__ import annotations

from decimal import Decimal

from engine.instrument import AssetClass, Instrument
from engine.portfolio import Portfolio
from engine.risk import _margin_fraction_qty, _notional_fraction_qty

D = Decimal


def future(sizing: str) -> Instrument:
    return Instrument("BTCUSDT", venue="BINANCEUSDM", asset_class=AssetClass.FUTURE, price_increment=D("0.1"),
                      size_increment=D("0.001"), quote_currency="USDT", currency_increment=D("0.00000001"),
                      leverage=D(10), fraction_sizing=sizing)


def test_notional_sizing_buys_the_fraction_of_equity_as_exposure():
    btc = future("notional")
    books = Portfolio.for_instrument(D(10_000), btc)
    # half of 10,000 USDT at 50,000 = 0.1 BTC (margin 500 at 10x)
    assert _notional_fraction_qty(btc, D("0.5"), books, D(50_000)) == D("0.100")


def test_notional_sizing_stops_at_what_the_free_margin_carries():
    btc = future("notional")
    books = Portfolio.for_instrument(D(10_000), btc)
    # 20 x equity = 200,000 of exposure asked; 10,000 free at 10x carries 100,000: 2 BTC
    assert _notional_fraction_qty(btc, D(20), books, D(50_000)) == D("2.000")


def test_margin_sizing_is_the_paper_venues_leverage_fold_rule():
    btc = future("margin")
    books = Portfolio.for_instrument(D(10_000), btc)
    # 5,000 put up as margin at 10x = 50,000 of exposure = 1 BTC
    assert _margin_fraction_qty(btc, D("0.5"), books, D(50_000)) == D("1.000")


def test_notional_sizing_without_the_accounts_currency_is_not_guessed():
    usdjpy = Instrument("USDJPY", venue="MT5", asset_class=AssetClass.FX, price_increment=D("0.001"),
                        size_increment=D("0.01"), multiplier=D(100_000), quote_currency="JPY", leverage=D(100),
                        fraction_sizing="notional")
    books = Portfolio(D(10_000), 2, "USD")
    assert _notional_fraction_qty(usdjpy, D("0.5"), books, D("150.000")) is None
