"""The CLI contract's trading rules, checked on a real series through the event path."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.runner import run_backtest
from strategies import get_strategy
from tests.conftest import DATA


@pytest.fixture(scope="module")
def spy():
    return load_bars(DATA / "stocks" / "SPY_daily.csv")


def run(frame, params, **settings):
    return run_backtest(frame, get_strategy("sma_cross"), params, make_config(path="event", **settings))


def test_orders_made_at_a_close_fill_at_the_next_bars_open(spy):
    result = run(spy, {"fast": 10, "slow": 30})
    opens = spy["open"].to_numpy()
    entries = result.trades["entry_bar"].to_numpy()
    np.testing.assert_allclose(result.trades["entry_price"].to_numpy(), opens[entries], rtol=0, atol=1e-9)
    # the signal bar is the one before the fill bar: fast crossed above slow at its close
    fast = spy["close"].rolling(10).mean().to_numpy()
    slow = spy["close"].rolling(30).mean().to_numpy()
    signal = entries - 1
    assert np.all(fast[signal] > slow[signal]) and np.all(fast[signal - 1] <= slow[signal - 1])


def test_equity_fraction_sizing_never_spends_more_cash_than_there_is(spy):
    result = run(spy, {"fast": 10, "slow": 30, "size": "1"}, commission="0.002", slippage_bps="10")
    notional = result.trades["entry_price"] * result.trades["size"]
    equity_before = result.equity.shift(1).fillna(result.initial_cash).to_numpy()[result.trades["entry_bar"]]
    assert (notional.to_numpy() * 1.002 <= equity_before + 1e-9).all()
    assert len(result.trades) > 10


def test_whole_units_are_whole_and_fractional_units_follow_the_lot_step(spy):
    whole = run(spy, {"fast": 10, "slow": 30})
    assert (whole.trades["size"] == whole.trades["size"].round()).all()
    fractional = run(spy, {"fast": 10, "slow": 30, "units": "fractional"})
    steps = fractional.trades["size"].to_numpy() * 1e6
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)
    assert (fractional.trades["size"] != fractional.trades["size"].round()).any()


def test_position_open_at_the_end_is_closed_at_the_last_close_and_counted(spy):
    cut = spy.iloc[:400]
    result = run(cut, {"fast": 10, "slow": 30})
    last = result.trades.iloc[-1]
    assert last["exit_bar"] == len(cut) - 1
    assert last["exit_price"] == pytest.approx(cut["close"].iloc[-1], abs=1e-9)
    assert result.equity.iloc[-1] == pytest.approx(result.initial_cash + result.trades["pnl"].sum(), abs=1e-6)


def test_long_short_reverses_at_every_cross(spy):
    result = run(spy, {"fast": 10, "slow": 30, "mode": "long_short"})
    sides = result.trades["side"].tolist()
    assert all(a != b for a, b in zip(sides, sides[1:]))
    # each reversal: the exit of one trade and the entry of the next fill at the same bar
    assert (result.trades["exit_bar"].to_numpy()[:-1] == result.trades["entry_bar"].to_numpy()[1:]).all()


def test_fixed_size_trades_that_many_units(spy):
    result = run(spy, {"fast": 10, "slow": 30, "fixed_size": "3"})
    assert set(result.trades["size"]) == {3.0}


def test_final_equity_is_cash_plus_realized_pnl_exactly(spy):
    result = run(spy, {"fast": 10, "slow": 30}, commission="0.001")
    pnl = sum(Decimal(str(p)) for p in result.trades["pnl"])
    assert Decimal(str(result.equity.iloc[-1])) == Decimal("10000") + pnl
