"""The fast path and the event path give identical orders, fills and equity on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.result import BacktestResult
from backtest.runner import run_backtest
from strategies import get_strategy
from tests.conftest import DATA

# (file, settings the dataset needs: whole BTC at $46k needs more than the default $10k)
DATASETS = {
    "spy_daily": (DATA / "stocks" / "SPY_daily.csv", {}),
    "eurusd_1h": (DATA / "fx" / "EURUSD_1h.csv", {}),
    "btc_1m": (DATA / "crypto" / "BTC-PERP_1m.csv", {"cash": "1000000"}),
}

CASES = [
    ("sma_cross", {"fast": 10, "slow": 20}, {}),
    ("sma_cross", {"fast": 10, "slow": 20, "mode": "long_short"}, {"commission": "0.002"}),
    ("sma_cross", {"fast": 5, "slow": 40, "units": "fractional", "size": "0.5"},
     {"commission": "0.001", "slippage_bps": "3", "commission_per_order": "1"}),
    ("sma_cross", {"fast": 8, "slow": 21, "fixed_size": "7", "mode": "long_short"}, {"slippage_bps": "2"}),
    ("rsi_reversion", {"period": 14}, {"commission": "0.0005"}),
    ("rsi_reversion", {"period": 7, "lower": 25, "upper": 75, "mode": "long_short", "units": "fractional"},
     {"slippage_bps": "1.5"}),
]


@pytest.fixture(scope="module", params=list(DATASETS))
def bars(request) -> tuple[pd.DataFrame, dict]:
    path, settings = DATASETS[request.param]
    return load_bars(path), settings


def both_paths(bars: pd.DataFrame, name: str, params: dict, settings: dict) -> tuple[BacktestResult, BacktestResult]:
    strategy = get_strategy(name)
    fast = run_backtest(bars, strategy, params, make_config(path="fast", **settings))
    event = run_backtest(bars, strategy, params, make_config(path="event", **settings))
    assert fast.meta["path"] == "fast" and event.meta["path"] == "event"
    return fast, event


@pytest.mark.parametrize("name, params, settings", CASES)
def test_fast_and_event_paths_are_identical(bars, name, params, settings):
    frame, dataset_settings = bars
    fast, event = both_paths(frame, name, params, {**dataset_settings, **settings})
    assert len(event.trades) > 0, "a parity test that trades nothing proves nothing"
    np.testing.assert_array_equal(fast.equity.to_numpy(), event.equity.to_numpy())
    np.testing.assert_array_equal(fast.position, event.position)
    pd.testing.assert_frame_equal(fast.trades, event.trades, check_exact=True)
    pd.testing.assert_frame_equal(fast.orders, event.orders, check_exact=True)
    assert fast.fees_total == event.fees_total
