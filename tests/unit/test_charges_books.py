"""Account-level charges in the books (engine.charges, Portfolio.book_charge): funding on a
futures position, a crypto fee in the coin (Alpaca CFEE on a buy) and in dollars (on a sell), a
charge in a third currency, and the attribution rule. Every figure is computed by hand in the
comments; one test checks the books against an independent computation in Fractions.
"""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pytest

from engine.charges import AccountCharge, ChargeKind, Holding, holdings_at, is_sole_holder
from engine.errors import ConfigError
from engine.instrument import AssetClass, Instrument
from engine.money import ConversionRates
from engine.orders import Fill, OrderSide
from engine.portfolio import Portfolio

T0 = 1_700_000_000_000_000_000
D = Decimal

# BTC/USDT:USDT perpetual: price grid 0.1, size 0.001, on margin at 20x; cash grid 1e-8 USDT
PERP = Instrument("BTC/USDT:USDT", venue="BINANCEUSDM", asset_class=AssetClass.FUTURE, price_increment=D("0.1"),
                  size_increment=D("0.001"), quote_currency="USDT", currency_increment=D("0.00000001"),
                  leverage=D(20), base_currency="BTC")
# BTC/USD spot at Alpaca: price 0.01, size 1e-9 (Alpaca's crypto increment), cash in USD
SPOT = Instrument("BTC/USD", venue="ALPACA", asset_class=AssetClass.CRYPTO, price_increment=D("0.01"),
                  size_increment=D("0.000000001"), quote_currency="USD")


def fill(instrument: Instrument, eid: str, side: OrderSide, qty: str, price: str, ts: int = T0) -> Fill:
    s = instrument.scales
    return Fill(eid, "bot-00000001", instrument.symbol, side, int(D(qty).scaleb(s.qty_dp)),
                int(D(price).scaleb(s.price_dp)), 0, s.qty_dp, s.price_dp, s.cash_dp, ts)


def charge(cid: str, amount: str, asset: str, kind: ChargeKind = ChargeKind.FUNDING, symbol: str = PERP.symbol,
           ts: int = T0 + 1) -> AccountCharge:
    return AccountCharge(cid, kind, symbol, asset, D(amount), ts)


def check_identity(p: Portfolio, instrument: Instrument, mark: str) -> None:
    s = instrument.scales
    marks = {instrument.symbol: int(D(mark).scaleb(s.price_dp))}
    assert p.equity_raw(marks) == p.initial_cash_raw + p.realized_pnl_raw + p.unrealized_pnl_raw(marks)


def test_funding_paid_and_received_moves_cash_and_realized_pnl_exactly():
    p = Portfolio.for_instrument(D("10000"), PERP)
    p.book_fill(PERP, fill(PERP, "e1", OrderSide.BUY, "0.010", "50000.0"))
    # a long pays funding: 0.010 BTC * 50,000.05 mark * 0.0001 rate = 0.05000005 USDT
    value = p.book_charge(PERP, charge("f1", "-0.05000005", "USDT"))
    assert value == -5000005                     # raw, 8 decimals: exact, not rounded to a cent
    assert p.cash == D("9999.94999995")
    assert p.realized_pnl_raw == -5000005
    # funding received later: +0.01234567
    assert p.book_charge(PERP, charge("f2", "0.01234567", "USDT", ts=T0 + 2)) == 1234567
    assert p.cash == D("9999.96234562")
    assert p.fees_raw == 0                        # funding is no fee
    check_identity(p, PERP, "50100.0")


def test_a_charge_finer_than_the_cash_grid_is_refused_and_changes_nothing():
    p = Portfolio.for_instrument(D("10000"), SPOT)  # cash grid: cash_dp of BTC/USD (2 + 9 = 11)
    cash_before = p.cash_raw
    with pytest.raises(ConfigError) as error:
        p.book_charge(SPOT, charge("x", "-0.000000000001", "USD", ChargeKind.FEE, SPOT.symbol))
    assert error.value.field == "amount"
    assert p.cash_raw == cash_before and p.realized_pnl_raw == 0


def test_a_crypto_fee_in_the_coin_bought_reduces_the_position_like_a_base_fee():
    p = Portfolio.for_instrument(D("1000"), SPOT)
    p.book_fill(SPOT, fill(SPOT, "e1", OrderSide.BUY, "0.01", "30000.00"))
    assert p.cash == D("700")                                      # 1,000 - 0.01 * 30,000
    # Alpaca CFEE on that buy: qty -0.000025 BTC (0.25 %), posted in the coin, valued at the fill price
    value = p.book_charge(SPOT, charge("c1", "-0.000025", "BTC", ChargeKind.FEE, SPOT.symbol), price_raw=3_000_000)
    s = SPOT.scales
    assert value == s.cash_raw(D("-0.75"))                         # 0.000025 * 30,000 = 0.75 USD
    position = p.positions[SPOT.symbol]
    assert position.quantity == D("0.009975")                      # the wallet's coins
    assert p.cash == D("700")                                      # no cash moved
    assert p.realized_pnl_raw == s.cash_raw(D("-0.75"))
    assert p.fees_raw == s.cash_raw(D("0.75")) and position.fees == s.cash_raw(D("0.75"))
    # marked at 31,000: 700 + 0.009975 * 31,000 = 1,009.225
    assert p.equity_raw({SPOT.symbol: 3_100_000}) == s.cash_raw(D("1009.225"))
    check_identity(p, SPOT, "31000.00")
    # the whole rest sold at 31,000, with a CFEE in dollars on the sale (0.25 % of 309.225 = 0.77)
    p.book_fill(SPOT, fill(SPOT, "e2", OrderSide.SELL, "0.009975", "31000.00", ts=T0 + 5))
    p.book_charge(SPOT, charge("c2", "-0.77", "USD", ChargeKind.FEE, SPOT.symbol, ts=T0 + 5))
    assert position.qty == 0
    assert p.cash == D("1008.455")                                 # 700 + 309.225 - 0.77
    # realized: -0.75 (coin fee) + (31,000 - 30,000) * 0.009975 - 0.77 = -0.75 + 9.975 - 0.77
    assert p.realized_pnl_raw == s.cash_raw(D("8.455"))
    check_identity(p, SPOT, "29000.00")


def test_a_base_asset_fee_off_the_quantity_grid_or_above_the_holding_is_refused():
    p = Portfolio.for_instrument(D("1000"), SPOT)
    p.book_fill(SPOT, fill(SPOT, "e1", OrderSide.BUY, "0.01", "30000.00"))
    with pytest.raises(ConfigError) as off_grid:
        p.book_charge(SPOT, charge("c1", "-0.0000000001", "BTC", ChargeKind.FEE, SPOT.symbol))
    assert off_grid.value.field == "amount"
    with pytest.raises(ConfigError) as too_much:
        p.book_charge(SPOT, charge("c2", "-0.02", "BTC", ChargeKind.FEE, SPOT.symbol))
    assert too_much.value.field == "amount"
    assert p.positions[SPOT.symbol].quantity == D("0.01") and p.realized_pnl_raw == 0


def test_a_charge_in_a_third_currency_is_valued_at_its_time_and_refused_without_a_rate():
    p = Portfolio.for_instrument(D("10000"), PERP)
    p.book_fill(PERP, fill(PERP, "e1", OrderSide.BUY, "0.010", "50000.0"))
    with pytest.raises(ConfigError) as error:
        p.book_charge(PERP, charge("b1", "-0.0001", "BNB"))
    assert error.value.field == "conversion_rate" and p.realized_pnl_raw == 0
    rates = ConversionRates()
    rates.update("BNB", "USDT", "600.5", T0)
    p.rates = rates
    # 0.0001 BNB * 600.5 = 0.06005 USDT
    assert p.book_charge(PERP, charge("b1", "-0.0001", "BNB")) == -6005000


def test_swap_as_a_charge_counts_as_swap_and_a_fee_credit_is_no_negative_fee():
    p = Portfolio.for_instrument(D("10000"), PERP)
    p.book_fill(PERP, fill(PERP, "e1", OrderSide.SELL, "0.010", "50000.0"))
    p.book_charge(PERP, charge("s1", "-1.5", "USDT", ChargeKind.SWAP))
    assert p.swap_raw == -150000000 and p.positions[PERP.symbol].swap == -150000000
    p.book_charge(PERP, charge("r1", "0.25", "USDT", ChargeKind.FEE))  # a rebate
    assert p.fees_raw == 0
    assert p.cash == D("9998.75")
    check_identity(p, PERP, "49000.0")


def test_charges_against_an_independent_computation():
    """Random fills and charges on the spot pair, the books against a ledger kept in Fractions
    (coins and dollars, nothing on a grid): cash, coins and equity agree exactly."""
    rng = random.Random(7)
    p = Portfolio.for_instrument(D("100000"), SPOT)
    s = SPOT.scales
    cash_usd, coins = Fraction(100000), Fraction(0)
    ts = T0
    for i in range(300):
        ts += 1
        price = D(rng.randint(2_500_000, 3_500_000)).scaleb(-2)
        if coins > Fraction(1, 100) and rng.random() < 0.4:
            qty = D(rng.randint(1, int(coins * 10**9) // 2)).scaleb(-9)
            p.book_fill(SPOT, fill(SPOT, f"s{i}", OrderSide.SELL, str(qty), str(price), ts))
            cash_usd += Fraction(qty) * Fraction(price)
            coins -= Fraction(qty)
        else:
            qty = D(rng.randint(1, 10**7)).scaleb(-9)
            p.book_fill(SPOT, fill(SPOT, f"b{i}", OrderSide.BUY, str(qty), str(price), ts))
            cash_usd -= Fraction(qty) * Fraction(price)
            coins += Fraction(qty)
        if rng.random() < 0.5 and coins > Fraction(1, 10**6):  # a coin fee: 0.25 % of what is held, on the grid
            fee = D(int(coins * 10**9 * Fraction(1, 400))).scaleb(-9)
            if fee:
                p.book_charge(SPOT, charge(f"c{i}", str(-fee), "BTC", ChargeKind.FEE, SPOT.symbol, ts),
                              price_raw=int(price.scaleb(2)))
                coins -= Fraction(fee)
        if rng.random() < 0.3:
            usd = D(rng.randint(-500, 100)).scaleb(-2)
            if usd:
                p.book_charge(SPOT, charge(f"u{i}", str(usd), "USD", ChargeKind.FEE, SPOT.symbol, ts))
                cash_usd += Fraction(usd)
        mark = D(rng.randint(2_500_000, 3_500_000)).scaleb(-2)
        marks = {SPOT.symbol: int(mark.scaleb(2))}
        assert Fraction(p.cash) == cash_usd
        assert Fraction(p.positions[SPOT.symbol].quantity) == coins
        assert Fraction(s.cash(p.equity_raw(marks))) == cash_usd + coins * Fraction(mark)
        assert p.equity_raw(marks) == p.initial_cash_raw + p.realized_pnl_raw + p.unrealized_pnl_raw(marks)


# -- attribution ---------------------------------------------------------------------------------
F = D("0.010")


def test_the_sole_holder_gets_the_charge_and_anyone_else_does_not():
    c = charge("f1", "-0.05", "USDT", ts=T0 + 100)
    bot_fills = [(T0, F)]
    # the bot alone holds 0.010: the account holds 0.010
    assert is_sole_holder(holdings_at(c, bot_fills, [], F, F))
    # another holder has 0.020 more on the account
    assert not is_sole_holder(holdings_at(c, bot_fills, [], F + D("0.020"), F))
    # a bot that holds nothing there (the other bot of the account)
    assert not is_sole_holder(holdings_at(c, [], [], F, D(0)))
    # the bot opened after the charge: it did not hold at the charge's time
    assert not is_sole_holder(holdings_at(c, [(T0 + 200, F)], [], F, F))
    # someone held 0.005 at the charge and sold it after: the account held more then than now
    assert not is_sole_holder(holdings_at(c, bot_fills, [(T0 + 150, D("-0.005"))], F, F))
    # someone else's fill at the charge's instant
    assert not is_sole_holder(holdings_at(c, bot_fills, [(T0 + 100, D("0.001")), (T0 + 100, D("-0.001"))], F, F))
    # opposite holders netting to the bot's quantity now, but not at the time: external
    assert not is_sole_holder(Holding(F, F, D(0), D(0)))


def test_a_fee_at_the_instant_of_its_fill_belongs_to_the_position_around_it():
    buy, fee_coin = D("0.01"), D("-0.000025")
    # CFEE on a buy at T: the venue already took the coin; the bot has not booked it yet
    c = charge("c1", str(fee_coin), "BTC", ChargeKind.FEE, SPOT.symbol, ts=T0)
    holding = holdings_at(c, [(T0, buy)], [], buy + fee_coin, buy, [(T0, fee_coin)])
    assert holding == Holding(D(0), buy, D(0), buy, False, True) and is_sole_holder(holding)
    # CFEE in dollars on the sale that closed it (its coin fee booked before): held just before
    held = buy + fee_coin
    sale = charge("c2", "-0.77", "USD", ChargeKind.FEE, SPOT.symbol, ts=T0 + 5)
    holding = holdings_at(sale, [(T0, buy), (T0 + 5, -held)], [], D(0), D(0))
    assert is_sole_holder(holding)


def test_a_days_fee_is_the_bots_when_it_alone_traded_and_held_the_symbol_that_day():
    day = 86_400 * 10**9
    fee = AccountCharge("d1", ChargeKind.FEE, SPOT.symbol, "USD", D("-1.50"), T0 + day, period_ns=day)
    round_trip = [(T0 + 10, D("0.01")), (T0 + 20, D("-0.01"))]
    assert is_sole_holder(holdings_at(fee, round_trip, [], D(0), D(0)))        # flat at both ends, traded
    # someone else traded the symbol that day too: whose fee it is cannot be told
    assert not is_sole_holder(holdings_at(fee, round_trip, [(T0 + 30, D("0.5")), (T0 + 40, D("-0.5"))], D(0), D(0)))
    # the bot did not trade it that day and held nothing
    assert not is_sole_holder(holdings_at(fee, [(T0 - 10, D("0.01")), (T0 - 5, D("-0.01"))], [], D(0), D(0)))


def test_a_charge_needs_an_id_an_asset_and_a_finite_amount():
    with pytest.raises(ConfigError) as no_id:
        AccountCharge("", ChargeKind.FUNDING, "X", "USDT", D(1), T0)
    assert no_id.value.field == "charge_id"
    with pytest.raises(ConfigError) as nan:
        AccountCharge("a", ChargeKind.FUNDING, "X", "USDT", D("NaN"), T0)
    assert nan.value.field == "amount"
    with pytest.raises(ConfigError) as no_asset:
        AccountCharge("a", ChargeKind.FUNDING, "X", "", D(1), T0)
    assert no_asset.value.field == "asset"


# EURUSD as an FX pair (cash account, and on margin): its base, EUR, is a currency of account, not coins
EURUSD_FX = Instrument("EURUSD", asset_class=AssetClass.FX, price_increment=D("0.00001"), size_increment=D("1"),
                       quote_currency="USD", currency_increment=D("0.01"))
EURUSD_MARGIN = Instrument("EURUSD", asset_class=AssetClass.FX, price_increment=D("0.00001"), size_increment=D("1"),
                           quote_currency="USD", currency_increment=D("0.01"), leverage=D(30))


@pytest.mark.parametrize("instrument", [EURUSD_FX, EURUSD_MARGIN], ids=["cash", "margin"])
def test_a_charge_in_an_fx_pairs_base_is_cash_at_the_price_not_coins(instrument):
    """A swap of -1.50 EUR on a long EURUSD, the account in USD: 1.65 USD at 1.10000 leave the cash
    and the position keeps its 10,000 EUR (before: 1.50 units were taken from the position as if
    EUR were coins held, on the cash account; refused on margin). As a fee in EUR is valued
    (Portfolio._fee_value): amount x price on the cash grid."""
    p = Portfolio.for_instrument(D("10000"), instrument)
    p.book_fill(instrument, fill(instrument, "e1", OrderSide.BUY, "10000", "1.10000"))
    cash, qty = p.cash_raw, p.positions["EURUSD"].qty
    value = p.book_charge(instrument, charge("sw1", "-1.50", "EUR", ChargeKind.SWAP, symbol="EURUSD"),
                          price_raw=110000)
    usd = int(D("-1.65").scaleb(instrument.scales.cash_dp))
    assert value == usd and p.cash_raw == cash + usd            # -1.65 USD, exactly
    assert p.positions["EURUSD"].qty == qty                     # 10,000 EUR still held
    assert p.swap_raw == usd
    check_identity(p, instrument, "1.10010")
    with pytest.raises(ConfigError, match="finer than"):        # a USD amount finer than the cash grid: refused
        p.book_charge(instrument, charge("sw2", "-0.0000001", "USD", ChargeKind.SWAP, symbol="EURUSD"))
    assert p.cash_raw == cash + usd


def test_a_charge_in_a_held_coin_still_moves_the_position():
    """Spot BTC/USD: a fee of 0.0001 BTC posted apart from its fill leaves the position, no cash moves."""
    p = Portfolio.for_instrument(D("100000"), SPOT)
    p.book_fill(SPOT, fill(SPOT, "e1", OrderSide.BUY, "1", "50000.00"))
    cash = p.cash_raw
    p.book_charge(SPOT, charge("f1", "-0.0001", "BTC", ChargeKind.FEE, symbol=SPOT.symbol), price_raw=5000000)
    assert p.cash_raw == cash and p.positions[SPOT.symbol].quantity == D("0.9999")
