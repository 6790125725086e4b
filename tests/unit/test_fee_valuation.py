"""A fee's value in the books, against hand-computed cases (the probe's D10 and D2).

A fee in the base currency is coins out of the position only where the base is held (spot); on
an FX pair, a CFD or any margin instrument it is cash worth the fee at the fill's price. A fee in
a third coin is valued at a rate; a live bot's books (defer_unvalued_fees) book the fill without
one and value the fee once a rate is known. ConversionRates asks its `source` on a miss;
live.rates.VenueRates caches the venue's answer.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from engine.errors import ConfigError
from engine.instrument import AssetClass, Instrument
from engine.money import ConversionRates, MissingRate
from engine.orders import Fill, OrderSide
from engine.portfolio import Portfolio, holds_base
from live.rates import VenueRates

D = Decimal
T0 = 1_700_000_000_000_000_000

EURUSD = Instrument("EURUSD", "MT5", AssetClass.FX, price_increment=D("0.00001"), size_increment=D("0.01"),
                    multiplier=D(100_000))
CFD = Instrument("EU50", "MT5", AssetClass.CFD, price_increment=D("0.001"), size_increment=D("1"),
                 base_currency="EUR")
SPOT = Instrument("BTC/USDT", "BINANCE", AssetClass.CRYPTO, price_increment=D("0.01"), size_increment=D("0.00001"),
                  quote_currency="USDT", currency_increment=D("0.00000001"))
PERP = Instrument("BTC/USDT:USDT", "BINANCEUSDM", AssetClass.CRYPTO, price_increment=D("0.01"),
                  size_increment=D("0.00001"), quote_currency="USDT", currency_increment=D("0.00000001"),
                  base_currency="BTC", leverage=D(10))


def fill(instrument: Instrument, eid: str, side: OrderSide, qty: str, price: str, fee_currency: str = "",
         fee_native: str = "0", ts: int = T0) -> Fill:
    s = instrument.scales
    native = D(fee_native)
    dp = max(0, -int(native.as_tuple().exponent))  # type: ignore[arg-type]
    return Fill(eid, "bot-1", instrument.symbol, side, int(D(qty).scaleb(s.qty_dp)), int(D(price).scaleb(s.price_dp)),
                0, s.qty_dp, s.price_dp, s.cash_dp, ts, fee_currency=fee_currency,
                fee_native_raw=int(native.scaleb(dp)), fee_native_dp=dp)


def cash_of(p: Portfolio, raw: int) -> Decimal:
    return D(raw).scaleb(-p.cash_dp)


def test_which_instruments_hold_their_base():
    assert holds_base(SPOT)
    assert not holds_base(EURUSD) and not holds_base(CFD) and not holds_base(PERP)


def test_an_eur_fee_on_eurusd_is_cash_at_the_fill_price_and_the_position_is_the_whole_fill():
    p = Portfolio.for_instrument(D(10_000), EURUSD)
    f = p.valued(EURUSD, fill(EURUSD, "e1", OrderSide.BUY, "0.10", "1.10020", "EUR", "0.70"))
    assert cash_of(p, f.fee_raw) == D("0.770140")  # 0.70 x 1.10020
    p.book_fill(EURUSD, f)
    assert p.positions["EURUSD"].quantity == D("0.10")
    assert p.cash == D(10_000) - D("0.10") * 100_000 * D("1.10020") - D("0.77014")
    assert p.fees_native == {"EUR": D("0.70")}


def test_a_base_fee_finer_than_the_cash_grid_rounds_half_to_even():
    p = Portfolio.for_instrument(D(10_000), CFD)  # cash at 3 decimals (cents, price 0.001 x whole lots)
    half = p.valued(CFD, fill(CFD, "e1", OrderSide.BUY, "1", "1.000", "EUR", "0.0125"))
    assert cash_of(p, half.fee_raw) == D("0.012")  # 0.0125 -> the even neighbour
    up = p.valued(CFD, fill(CFD, "e2", OrderSide.BUY, "1", "1.100", "EUR", "0.0125"))
    assert cash_of(p, up.fee_raw) == D("0.014")    # 0.01375


def test_a_base_fee_on_a_margin_perpetual_is_cash_but_on_spot_it_is_coins():
    perp = Portfolio.for_instrument(D(10_000), PERP)
    perp.book_fill(PERP, fill(PERP, "e1", OrderSide.BUY, "0.01", "50000.00", "BTC", "0.00001"))
    assert perp.positions[PERP.symbol].quantity == D("0.01") and cash_of(perp, perp.fees_raw) == D("0.5")
    spot = Portfolio.for_instrument(D(10_000), SPOT)
    spot.book_fill(SPOT, fill(SPOT, "e1", OrderSide.BUY, "0.01", "50000.00", "BTC", "0.00001"))
    assert spot.positions[SPOT.symbol].quantity == D("0.00999") and cash_of(spot, spot.fees_raw) == D("0.5")
    assert spot.cash == D(10_000) - D("500")  # the coins were the fee: no cash beyond the notional
    with pytest.raises(ConfigError):  # still refused on spot: a fee the size of the coins bought
        spot.book_fill(SPOT, fill(SPOT, "e2", OrderSide.BUY, "0.01", "50000.00", "BTC", "0.01"))


def test_a_live_book_defers_a_fee_without_a_rate_and_values_it_when_one_arrives():
    rates = ConversionRates()
    p = Portfolio.for_instrument(D(10_000), SPOT, rates=rates)
    p.defer_unvalued_fees = True
    p.book_fill(SPOT, fill(SPOT, "e1", OrderSide.BUY, "0.01", "30000.00", "BNB", "0.00075"))
    assert p.cash == D(10_000) - D(300) and p.fees_raw == 0
    assert p.fees_native == {"BNB": D("0.00075")} and [f.execution_id for f in p.pending_fees] == ["e1"]
    rates.update("BNB", "USDT", D("300.00"), T0 + 5)  # seen after the fill: the latest rate values it
    assert cash_of(p, p.value_pending_fees()) == D("0.225")
    assert p.pending_fees == [] and p.cash == D(10_000) - D(300) - D("0.225")
    marks = {SPOT.symbol: p.positions[SPOT.symbol].last_price}
    assert p.equity_raw(marks) == p.initial_cash_raw + p.realized_pnl_raw + p.unrealized_pnl_raw(marks)


def test_a_backtest_book_still_refuses_a_fee_without_a_rate():
    p = Portfolio.for_instrument(D(10_000), SPOT, rates=ConversionRates())
    with pytest.raises(MissingRate):
        p.book_fill(SPOT, fill(SPOT, "e1", OrderSide.BUY, "0.01", "30000.00", "BNB", "0.00075"))
    assert p.cash == D(10_000) and p.pending_fees == []


def test_conversion_rates_ask_their_source_on_a_miss_and_keep_the_answer_while_fresh():
    asked: list[tuple[str, str]] = []
    answers = iter([D("600"), D("610")])

    def source(base: str, quote: str) -> Decimal | None:
        asked.append((base, quote))
        return next(answers)

    rates = ConversionRates(max_age_ns=60 * 10**9, source=source)
    assert rates.rate("BNB", "USDT", T0) == 600
    assert rates.rate("BNB", "USDT", T0 + 59 * 10**9) == 600 and len(asked) == 1  # fresh: kept
    assert rates.rate("BNB", "USDT", T0 + 61 * 10**9) == 610 and len(asked) == 2  # stale: asked again
    assert rates.rate("USDT", "BNB", T0 + 61 * 10**9) == Fraction(1, 610) and len(asked) == 2  # the inverse
    assert rates.rate("BNB", "USDT", T0 + 30 * 10**9) == 600  # an earlier time keeps its own rate
    with pytest.raises(MissingRate):
        ConversionRates(source=lambda b, q: None).rate("BNB", "USDT", T0)


class _Venue:
    """An adapter's conversion_rate as a venue answers it: a price, then a failure, then a price."""

    def __init__(self, answers: list) -> None:
        self.answers, self.calls = answers, 0

    def conversion_rate(self, base: str, quote: str) -> Decimal | None:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_venue_rates_cache_the_answer_and_retry_a_failure_later_without_raising():
    now = [0.0]
    venue = _Venue([OSError("down"), D("600"), D("0"), D("605")])
    rates = VenueRates(venue, refresh_s=60, retry_s=10, monotonic=lambda: now[0])
    assert rates("BNB", "USDT") is None                  # the venue failed: no rate, no error
    now[0] = 5
    assert rates("BNB", "USDT") is None and venue.calls == 1  # not asked again before retry_s
    now[0] = 10
    assert rates("BNB", "USDT") == D("600") and venue.calls == 2
    now[0] = 69
    assert rates("BNB", "USDT") == D("600") and venue.calls == 2  # cached for refresh_s
    now[0] = 70
    assert rates("BNB", "USDT") is None and venue.calls == 3  # a zero price is no price
    now[0] = 80
    assert rates("BNB", "USDT") == D("605")
    assert VenueRates(object())("BNB", "USDT") is None  # an adapter that cannot price anything
