"""The price grid inferred from data keeps the data's own precision (no 8-decimal cap), tells a
decimal from float noise, and warns when prices must be rounded. Figures computed by hand."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

import numpy as np
import pandas as pd
import pytest

from backtest.config import make_config
from backtest.runner import run_backtest
from engine.instrument import infer_price_grid, price_dp_limit
from strategies.buy_and_hold import BuyAndHold


def grid(*prices: float) -> tuple[Decimal, int]:
    g = infer_price_grid(np.asarray(prices, dtype=np.float64))
    return g.increment, g.rounded


def test_nine_decimal_prices_keep_nine_decimals():
    # a coin at 0.000012345: the old 8-decimal cap put it on 0.00000001 and rounded every price
    assert grid(0.000012345, 0.000012351, 0.00001236) == (Decimal("1E-9"), 0)
    assert grid(1.234567891, 1.2) == (Decimal("1E-9"), 0)


def test_a_decimal_is_not_taken_for_float_noise():
    # 123.456789012 has 9 decimals; a 1e-9 relative tolerance took it for 123.456789 (6)
    assert grid(123.456789012, 100.0) == (Decimal("1E-9"), 0)


def test_float_noise_is_not_taken_for_decimals():
    assert grid(0.1 + 0.2, 1.5) == (Decimal("0.1"), 0)                 # 0.30000000000000004
    assert grid((1.38755 + 1.38758) / 2, 1.38756) == (Decimal("0.000001"), 0)  # a bid/ask mid
    assert grid(135.5625, 136.5) == (Decimal("0.0001"), 0)


def test_the_limit_follows_the_prices_and_rounding_is_counted():
    assert price_dp_limit(np.array([65432.1])) == 8      # 13 significant digits
    assert price_dp_limit(np.array([0.0000123])) == 17
    assert price_dp_limit(np.array([123.4])) == 10
    # 16 significant digits: more than a grid holds, so no precision of its own to keep: rounded to
    # the customary 8 decimals (not the 1e-10 limit: the books' int64 headroom), and counted
    assert grid(123.4567890123456, 100.0, 123.45) == (Decimal("1E-8"), 1)


def bars(price: float, n: int = 5) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC", name="time")
    return pd.DataFrame({c: np.full(n, price) for c in ("open", "high", "low", "close")} | {"volume": 1.0},
                        index=index)


@pytest.mark.parametrize("path", ["fast", "event"])
def test_nine_decimal_prices_are_traded_at_their_price(path):
    # buy_and_hold puts 10,000 into a coin at 0.000012345: floor(10000 / 0.000012345) units, at
    # that price. On the 8-decimal grid the price became 0.00001234 (half-even) and the size
    # floor(10000 / 0.00001234) = 810,372,771, 328,219 units more than the cash pays for.
    result = run_backtest(bars(0.000012345), BuyAndHold, {}, make_config(path=path))
    assert result.meta["path"] == path
    assert result.meta["price_increment"] == "1E-9"
    assert "warnings" not in result.meta
    expected = int((Decimal(10_000) / Decimal("0.000012345")).to_integral_value(ROUND_FLOOR))
    assert expected == 810_044_552
    trade = result.trades.iloc[0]
    assert int(trade["size"]) == expected
    assert trade["entry_price"] == 0.000012345


def test_rounding_is_reported_as_a_warning():
    result = run_backtest(bars(123.4567890123456), BuyAndHold, {}, make_config())
    assert result.meta["price_increment"] == "1E-8"
    (warning,) = result.meta["warnings"]
    assert "20 of 20 OHLC prices were rounded to the 1E-8 grid" in warning


@pytest.mark.parametrize("dp, step", [(0, 1), (2, 1), (5, 1), (9, 1), (2, 5)])
def test_prices_go_onto_the_raw_grid_as_numpys_arithmetic_puts_them(dp: int, step: int):
    """to_raw_prices' compiled pass is numpy's `rint(values * 10**dp)` bit for bit: exact halves
    (half-even), read-only and strided columns; a NaN or a price past int64 takes numpy's own path."""
    from backtest.runner import to_raw_prices
    from engine.instrument import Instrument

    rng = np.random.default_rng(dp + step)
    unit = 10.0 ** -dp
    values = np.concatenate([rng.uniform(0, 5_000, 50_000), (rng.integers(0, 10**6, 20_000) + 0.5) * unit,
                             np.round(rng.uniform(1, 2, 20_000), dp)])
    instrument = Instrument("X", price_increment=Decimal(step).scaleb(-dp))
    expected = np.rint(values * 10.0**dp).astype(np.int64)
    if step != 1:
        expected = np.rint(expected / step).astype(np.int64) * step
    assert np.array_equal(to_raw_prices(values, instrument), expected)
    strided = values[::3]
    strided.flags.writeable = False
    assert np.array_equal(to_raw_prices(strided, instrument), expected[::3])
    with np.errstate(invalid="ignore"):
        odd = np.array([1.0, np.nan, 2.0])
        numpys = np.rint(odd * 10.0**dp).astype(np.int64)
        if step != 1:
            numpys = np.rint(numpys / step).astype(np.int64) * step
        assert np.array_equal(to_raw_prices(odd, instrument), numpys)
