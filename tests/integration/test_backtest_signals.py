"""A backtest emits the same signals as live for every strategy (issue 13 item 3): the event path
and the fast path publish a rule strategy's direction changes, identical to each other (that a
paper bot publishes the same as the backtester on the same ticks is tests/integration/
test_parity_live.py's)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backtest.config import BacktestConfig
from backtest.data import load_bars
from backtest.runner import run_backtest
from strategies import get_strategy
from tests.conftest import DATA

SPY = DATA / "stocks" / "SPY_daily.csv"


@pytest.fixture(scope="module")
def spy():
    return load_bars(SPY)


@pytest.mark.parametrize("name, params", [
    ("sma_cross", {"fast": 10, "slow": 30, "mode": "long_short"}),
    ("rsi_reversion", {"period": 7, "mode": "long_short"}),
])
def test_fast_and_event_paths_publish_the_same_signals_on_real_data(spy, name, params):
    cls = get_strategy(name)
    fast = run_backtest(spy, cls, params, BacktestConfig(path="fast", bot_id="b1"))
    event = run_backtest(spy, cls, params, BacktestConfig(path="event", bot_id="b1"))
    assert fast.signals == event.signals
    assert len(event.signals) >= 5
    directions = [s["direction"] for s in event.signals]
    assert all(a != b for a, b in zip(directions, directions[1:])), "a signal is a change of direction"
    first = event.signals[0]
    assert first["bot_id"] == "b1" and first["confidence"] == "1" and first["model_id"] == 0
    # each signal is stamped with the bar it was decided at, and carries that bar's close
    closes = dict(zip(spy.index.as_unit("ns").asi8.tolist(), spy["close"].tolist()))
    assert all(closes[s["ts"]] == s["price"] for s in event.signals)
    assert {s["target_weight"] for s in event.signals if s["direction"]} == {str(Decimal(1))}
