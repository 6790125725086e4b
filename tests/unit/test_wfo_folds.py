"""Walk-forward windows: out-of-sample windows follow their in-sample ones and end at the last bar."""

from __future__ import annotations

import numpy as np
import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.metrics import compute_stats
from backtest.runner import run_backtest
from backtest.wfo import Fold, make_folds, stitch
from engine.errors import ConfigError
from strategies import get_strategy
from tests.conftest import DATA


def test_default_folds_fill_the_data_with_four_to_one_windows():
    folds = make_folds(900, 5)
    assert folds[0] == Fold(1, 0, 400, 400, 500)
    assert folds[-1] == Fold(5, 400, 800, 800, 900)
    assert all(f.is_stop == f.oos_start and f.oos_start - f.is_start == 400 for f in folds)


def test_anchored_in_sample_grows_from_the_first_bar():
    folds = make_folds(1000, 3, train_bars=400, test_bars=200, anchored=True)
    assert [(f.is_start, f.is_stop, f.oos_stop) for f in folds] == [(0, 400, 600), (0, 600, 800), (0, 800, 1000)]


def test_folds_that_do_not_fit_are_refused():
    with pytest.raises(ConfigError, match="need 1,100 bars"):
        make_folds(1000, 3, train_bars=500, test_bars=200)
    with pytest.raises(ConfigError, match="at least 1"):
        make_folds(1000, 0)
    with pytest.raises(ConfigError, match="cannot hold"):
        make_folds(10, 5)


def test_stitched_windows_chain_cash_and_keep_every_trade():
    frame = load_bars(DATA / "stocks" / "SPY_daily.csv").iloc[-2000:]
    sma = get_strategy("sma_cross")
    first = run_backtest(frame.iloc[:1000], sma, {"fast": 10, "slow": 30}, make_config(path="fast"))
    cash = round(float(first.equity.iloc[-1]), 2)
    second = run_backtest(frame.iloc[1000:], sma, {"fast": 10, "slow": 30}, make_config(path="fast", cash=str(cash)))
    stitched = stitch([first, second], 10_000.0)
    assert len(stitched.equity) == 2000 and stitched.equity.index.is_monotonic_increasing
    assert len(stitched.trades) == len(first.trades) + len(second.trades)
    stats = compute_stats(stitched)
    assert stats["equity_final"] == pytest.approx(float(second.equity.iloc[-1]))
    assert stats["return_pct"] == pytest.approx((float(second.equity.iloc[-1]) / 10_000 - 1) * 100)
    np.testing.assert_allclose(stitched.equity.iloc[1000], cash, rtol=1e-9)
