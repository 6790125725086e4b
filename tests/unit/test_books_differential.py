"""The books against an independent, simple implementation (issue 14, item 5).

Random fill sequences (seeded) go into the real Portfolio and into a model written here with
Decimal and a plain FIFO list, sharing no code with engine/: a spot BTC/USDT account with fees in
the quote currency, in the coin bought and in BNB; a margin EURUSD account with commission, swap
and reversals. After every step the cash, position, fees, gross realized P&L, equity and margin
must agree to the last unit.
"""

from __future__ import annotations

import random
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

import pytest

from engine.instrument import AssetClass, Instrument
from engine.money import ConversionRates
from engine.orders import Fill, OrderSide
from engine.portfolio import Portfolio

BTC = Instrument("BTC/USDT", asset_class=AssetClass.CRYPTO, price_increment=Decimal("0.01"),
                 size_increment=Decimal("0.00001"), quote_currency="USDT")
EURUSD = Instrument("EURUSD", asset_class=AssetClass.FX, price_increment=Decimal("0.00001"),
                    size_increment=Decimal("0.01"), multiplier=Decimal(100_000), leverage=Decimal(30),
                    swap_long=Decimal("-6.85"), swap_short=Decimal("1.33"))
CENT = Decimal("0.01")


class FifoModel:
    """A position as a list of [signed qty, price] lots; realized P&L gross of fees."""

    def __init__(self) -> None:
        self.lots: list[list[Decimal]] = []
        self.realized_gross = Decimal(0)

    @property
    def qty(self) -> Decimal:
        return sum((lot[0] for lot in self.lots), Decimal(0))

    def trade(self, signed_qty: Decimal, price: Decimal, multiplier: Decimal) -> None:
        while signed_qty and self.lots and (self.lots[0][0] > 0) != (signed_qty > 0):
            lot = self.lots[0]
            take = min(abs(lot[0]), abs(signed_qty))
            direction = 1 if lot[0] > 0 else -1
            self.realized_gross += (price - lot[1]) * take * direction * multiplier
            lot[0] -= take * direction
            signed_qty += take * direction
            if lot[0] == 0:
                self.lots.pop(0)
        if signed_qty:
            self.lots.append([signed_qty, price])

    def floating(self, mark: Decimal, multiplier: Decimal) -> Decimal:
        return sum(((mark - lot[1]) * lot[0] * multiplier for lot in self.lots), Decimal(0))


def _fill(n: int, side: int, qty: Decimal, price: Decimal, instrument: Instrument, fee: Decimal = Decimal(0),
          fee_currency: str = "", native: Decimal = Decimal(0), ts: int = 0) -> Fill:
    s = instrument.scales
    dp = max(0, -int(native.normalize().as_tuple().exponent)) if native else 0  # type: ignore[arg-type]
    return Fill(f"e{n}", f"c{n}", instrument.symbol, OrderSide.BUY if side > 0 else OrderSide.SELL,
                int(qty.scaleb(s.qty_dp)), int(price.scaleb(s.price_dp)), s.cash_raw(fee), s.qty_dp, s.price_dp,
                s.cash_dp, ts, fee_currency=fee_currency, fee_native_raw=int(native.scaleb(dp)), fee_native_dp=dp)


@pytest.mark.parametrize("seed", range(40))
def test_spot_books_with_fees_in_any_currency_match_the_model(seed):
    rng = random.Random(seed)
    rates = ConversionRates()
    p = Portfolio.for_instrument(Decimal(100_000), BTC, rates=rates)
    s = BTC.scales
    model, cash, fees = FifoModel(), Decimal(100_000), Decimal(0)
    native: dict[str, Decimal] = {}
    for n in range(60):
        ts = (n + 1) * 10**9
        price = Decimal(rng.randint(2_500_000, 3_500_000)).scaleb(-2)        # 25,000.00 .. 35,000.00
        bnb = Decimal(rng.randint(20_000, 40_000)).scaleb(-2)                # 200.00 .. 400.00 USDT
        rates.update("BNB", "USDT", bnb, ts)
        qty = Decimal(rng.randint(1, 2_000)).scaleb(-5)                      # 0.00001 .. 0.02 BTC
        side = rng.choice((1, -1))
        kind = rng.choice(("cash", "base", "bnb", "none"))
        if kind == "cash":
            fee = (qty * price * Decimal("0.001")).quantize(CENT, ROUND_HALF_EVEN)
            f = _fill(n, side, qty, price, BTC, fee=fee, ts=ts)
            cash -= side * qty * price + fee
            fees += fee
            model.trade(side * qty, price, Decimal(1))
        elif kind == "base" and qty > Decimal("0.00001"):
            fee_qty = max(Decimal("0.00001"), (qty * Decimal("0.001")).quantize(Decimal("0.00001")))
            f = _fill(n, side, qty, price, BTC, fee_currency="BTC", native=fee_qty, ts=ts)
            cash -= side * qty * price                                       # the notional exchanged
            fees += fee_qty * price                                          # the fee's value
            native["BTC"] = native.get("BTC", Decimal(0)) + fee_qty
            model.trade(side * qty - fee_qty, price, Decimal(1))             # what the wallet moved
        elif kind == "bnb":
            fee_bnb = Decimal(rng.randint(1, 9_999)).scaleb(-6)
            f = _fill(n, side, qty, price, BTC, fee_currency="BNB", native=fee_bnb, ts=ts)
            value = (fee_bnb * bnb).quantize(Decimal(1).scaleb(-s.cash_dp), ROUND_HALF_EVEN)
            cash -= side * qty * price + value
            fees += value
            native["BNB"] = native.get("BNB", Decimal(0)) + fee_bnb
            model.trade(side * qty, price, Decimal(1))
        else:
            f = _fill(n, side, qty, price, BTC, ts=ts)
            cash -= side * qty * price
            model.trade(side * qty, price, Decimal(1))
        closed = p.book_fill(BTC, f)
        mark = Decimal(rng.randint(2_500_000, 3_500_000)).scaleb(-2)
        marks = {BTC.symbol: int(mark.scaleb(s.price_dp))}
        assert p.cash == cash and p.positions[BTC.symbol].quantity == model.qty
        assert s.cash(p.fees_raw) == fees and p.fees_native == {k: v for k, v in native.items() if v}
        assert del_closed(p) == model.realized_gross, f"step {n}"
        assert s.cash(p.equity_raw(marks)) == cash + model.qty * mark
        assert p.equity_raw(marks) == p.initial_cash_raw + p.realized_pnl_raw + p.unrealized_pnl_raw(marks)
        assert all(t.fees >= 0 for t in closed)


def del_closed(p: Portfolio) -> Decimal:
    """Gross realized P&L of every closed trade (net P&L plus the fees attributed to it)."""
    return p.positions[BTC.symbol].scales.cash(sum(t.pnl + t.fees for t in p.closed_trades))


@pytest.mark.parametrize("seed", range(40))
def test_margin_books_with_commission_and_swap_match_the_model(seed):
    rng = random.Random(1000 + seed)
    p = Portfolio.for_instrument(Decimal(50_000), EURUSD)
    s = EURUSD.scales
    contract = Decimal(100_000)
    model, fees, swap = FifoModel(), Decimal(0), Decimal(0)
    for n in range(60):
        price = Decimal(rng.randint(100_000, 120_000)).scaleb(-5)            # 1.00000 .. 1.20000
        qty = Decimal(rng.randint(1, 300)).scaleb(-2)                        # 0.01 .. 3 lots
        side = rng.choice((1, -1))
        fee = (qty * Decimal("3.50")).quantize(CENT, ROUND_HALF_EVEN)        # commission per lot
        p.book_fill(EURUSD, _fill(n, side, qty, price, EURUSD, fee=fee))
        fees += fee
        model.trade(side * qty, price, contract)
        if rng.random() < 0.3 and model.qty:
            nights = rng.choice((1, 3))
            rate = EURUSD.swap_long if model.qty > 0 else EURUSD.swap_short
            amount = (rate * abs(model.qty) * nights).quantize(CENT, ROUND_HALF_EVEN)
            assert s.cash(p.charge_swap(EURUSD, nights, 0)) == amount
            swap += amount
        mark = Decimal(rng.randint(100_000, 120_000)).scaleb(-5)
        marks = {EURUSD.symbol: int(mark.scaleb(s.price_dp))}
        balance = Decimal(50_000) + model.realized_gross - fees + swap       # no notional moves
        assert p.cash == balance and p.positions["EURUSD"].quantity == model.qty, f"step {n}"
        equity = balance + model.floating(mark, contract)
        assert s.cash(p.equity_raw(marks)) == equity
        margin = (abs(model.qty) * contract * mark / 30).quantize(CENT, ROUND_CEILING)
        assert s.cash(p.margin_used_raw(marks)) == margin
        assert s.cash(p.free_margin_raw(marks)) == equity - margin
        assert p.equity_raw(marks) == p.initial_cash_raw + p.realized_pnl_raw + p.unrealized_pnl_raw(marks)
