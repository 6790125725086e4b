"""P&L against hand computation: FIFO lots, partial fills, a long-to-short flip, fees."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.instrument import Instrument
from engine.portfolio import Portfolio

INSTRUMENT = Instrument("TEST", price_increment=Decimal("0.01"), size_increment=Decimal("1"))
S = INSTRUMENT.scales  # price_dp 2, qty_dp 0, cash_dp 2


def px(value: str) -> int:
    return int(Decimal(value).scaleb(S.price_dp))


def cash(value: str) -> int:
    return int(Decimal(value).scaleb(S.cash_dp))


def book(portfolio: Portfolio, side: int, qty: int, price: str, fee: str = "0", ts: int = 0):
    return portfolio.apply_fill(INSTRUMENT, side, qty, px(price), cash(fee), ts)


def test_fifo_realized_pnl_with_partial_closes_and_fees():
    p = Portfolio.for_instrument(Decimal("10000"), INSTRUMENT)
    book(p, +1, 10, "100.00", fee="1.00")   # lot A: 10 @ 100, fee 1.00
    book(p, +1, 10, "110.00", fee="1.10")   # lot B: 10 @ 110, fee 1.10
    closed = book(p, -1, 15, "120.00", fee="1.80")  # closes A fully and 5 of B
    # A: (120-100)*10 = 200.00 - entry fee 1.00 - exit fee share 1.80*10/15 = 1.20 -> 197.80
    # B part: (120-110)*5 = 50.00 - entry share 1.10*5/10 = 0.55 - exit rest 0.60 -> 48.85
    assert [c.pnl for c in closed] == [cash("197.80"), cash("48.85")]
    assert p.realized_pnl_raw == cash("246.65")
    position = p.positions["TEST"]
    assert position.qty == 5 and position.lots[0].price == px("110.00")
    assert position.lots[0].fee == cash("0.55")  # entry fee left on the open 5
    assert p.cash == Decimal("10000") - Decimal("1000") - Decimal("1100") + Decimal("1800") - Decimal("3.90")


def test_long_to_short_flip_closes_the_long_and_opens_a_short_with_the_rest():
    p = Portfolio.for_instrument(Decimal("10000"), INSTRUMENT)
    book(p, +1, 10, "50.00", fee="0.50")
    closed = book(p, -1, 25, "55.00", fee="2.50")  # sells 10 to close, 15 to open a short
    # close: (55-50)*10 = 50.00 - 0.50 entry - 2.50*10/25 = 1.00 exit -> 48.50
    assert len(closed) == 1 and closed[0].pnl == cash("48.50") and closed[0].direction == 1
    position = p.positions["TEST"]
    assert position.qty == -15 and position.lots[0].fee == cash("1.50")
    # later cover the short at 52: (55-52)*15 = 45.00 - 1.50 - 0.75 -> 42.75
    closed = book(p, +1, 15, "52.00", fee="0.75")
    assert closed[0].pnl == cash("42.75") and closed[0].direction == -1
    assert p.realized_pnl_raw == cash("91.25")
    assert p.cash == Decimal("10000") + Decimal("91.25")


def test_unrealized_pnl_marks_open_lots_net_of_their_entry_fees():
    p = Portfolio.for_instrument(Decimal("10000"), INSTRUMENT)
    book(p, -1, 4, "25.00", fee="0.40")
    # short 4 @ 25 marked at 24: +4.00 gross, minus 0.40 entry fee
    assert p.unrealized_pnl_raw({"TEST": px("24.00")}) == cash("3.60")


def test_average_price_is_quantity_weighted_over_open_lots():
    p = Portfolio.for_instrument(Decimal("10000"), INSTRUMENT)
    book(p, +1, 1, "10.00")
    book(p, +1, 3, "14.00")
    assert p.positions["TEST"].avg_price == Decimal("13")


fills = st.lists(
    st.tuples(st.sampled_from([1, -1]), st.integers(1, 50), st.integers(1, 100_000), st.integers(0, 500)),
    min_size=1, max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(fills, st.integers(1, 100_000))
def test_equity_always_equals_initial_cash_plus_realized_plus_unrealized(sequence, mark):
    p = Portfolio.for_instrument(Decimal("10000"), INSTRUMENT)
    for side, qty, price, fee in sequence:
        p.apply_fill(INSTRUMENT, side, qty, price, fee, 0)
    marks = {"TEST": mark}
    assert p.equity_raw(marks) == p.initial_cash_raw + p.realized_pnl_raw + p.unrealized_pnl_raw(marks)
    # fee attribution never loses or invents a cent
    open_fees = sum(lot.fee for lot in p.positions["TEST"].lots)
    attributed = sum(t.fees for t in p.closed_trades)
    assert attributed + open_fees == p.fees_raw
