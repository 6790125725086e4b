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


# -- the paper venue sizes by the same rule, so a backtest can size as the live venue does ---------
def fx(sizing: str) -> Instrument:
    return Instrument("EURUSD", asset_class=AssetClass.FX, price_increment=D("0.00001"), size_increment=D(1),
                      leverage=D(10), fraction_sizing=sizing)


def paper_size(instrument: Instrument, fraction: str, price: str) -> Decimal:
    from brokers.paper.venue import SimulatedVenue

    venue = SimulatedVenue(instrument, D(10_000))
    s = instrument.scales
    return s.qty(venue.size_for_fraction(D(fraction), 1, int(D(price).scaleb(s.price_dp))))


def test_the_paper_venue_sizes_notional_as_the_live_venues_do():
    # half of 10,000 as exposure at 1.10000: 5,000 / 1.1 = 4,545 units (margin 454.50 at 10x)
    assert paper_size(fx("notional"), "0.5", "1.10000") == D(4545)
    # the same as the gate's estimate, so a backtest with risk limits checks what it will send
    assert _notional_fraction_qty(fx("notional"), D("0.5"), Portfolio.for_instrument(D(10_000), fx("notional")),
                                  D("1.10000")) == D(4545)


def test_the_paper_venues_notional_sizing_stops_at_the_free_margin():
    # 20 x equity asked; 10,000 free at 10x carries 100,000 of exposure: 90,909 units
    assert paper_size(fx("notional"), "20", "1.10000") == D(90_909)


def test_the_paper_venues_margin_sizing_is_unchanged():
    # 5,000 put up as margin at 10x: 50,000 / 1.1 = 45,454 units
    assert paper_size(fx("margin"), "0.5", "1.10000") == D(45_454)


def test_an_unknown_fraction_sizing_is_refused_naming_the_field():
    import pytest

    from engine.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        fx("leveraged")
    assert refused.value.field == "fraction_sizing"
