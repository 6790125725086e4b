"""Exact fixed-point helpers: rounding rules and sizing."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.money import (FeeModel, Scales, div_round_half_even, max_qty_for_budget, order_cost_raw,
                          slipped_price)


@given(st.integers(-10**12, 10**12), st.integers(1, 10**6))
def test_div_round_half_even_matches_decimal(numerator, denominator):
    expected = (Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    assert div_round_half_even(numerator, denominator) == int(expected)


def test_slippage_rounds_against_the_trader():
    # 100.00 with 3 bps: buy 100.03, sell 99.97; 100.01 with 3 bps: buy 100.040003 -> 100.05
    assert slipped_price(10000, True, 3, 10_000, 1) == 10003
    assert slipped_price(10000, False, 3, 10_000, 1) == 9997
    assert slipped_price(10001, True, 3, 10_000, 1) == 10005
    assert slipped_price(10001, False, 3, 10_000, 1) == 9997  # 99.976997 -> down to 99.97


def test_fee_fraction_folds_rate_and_cash_scale():
    scales = Scales.build(Decimal("0.00001"), Decimal("1"), Decimal("0"), Decimal("0.01"), Decimal("1"))
    num, den = FeeModel(Decimal("0.002")).fraction(scales)
    # notional raw is in 1e-5 USD; fee in cents = notional * 0.002 / 1000
    assert Decimal(num) / Decimal(den) == Decimal("0.002") / Decimal(1000)


@settings(deadline=None)
@given(budget=st.integers(0, 10**9), price=st.integers(1, 10**6), step=st.sampled_from([1, 10, 1000]),
       guess=st.integers(0, 10**7))
def test_max_qty_for_budget_is_the_largest_affordable_multiple_whatever_the_guess(budget, price, step, guess):
    args = (price, 1, 1, 500, 1, 0)  # 0.2 % fee, 1-cent steps
    qty = max_qty_for_budget(budget, *args, step, guess)
    assert qty % step == 0 and qty >= 0
    assert qty == 0 or order_cost_raw(qty, *args) <= budget
    assert order_cost_raw(qty + step, *args) > budget


def test_negative_commission_is_refused_with_its_field():
    with pytest.raises(ConfigError) as err:
        FeeModel(Decimal("-0.1"))
    assert err.value.field == "commission"
