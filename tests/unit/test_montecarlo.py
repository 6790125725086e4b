"""Monte Carlo of trades: seeded, and probabilities within bounds computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from backtest.montecarlo import TradeSample, load_trades, simulate, trade_returns
from engine.errors import ConfigError, DataError


def test_trade_returns_are_on_the_equity_before_each_trade():
    np.testing.assert_allclose(trade_returns(np.array([100.0, -55.0, 20.0]), 1000.0),
                               [0.1, -0.05, 20 / 1045])


def test_same_seed_same_paths_other_seed_other_paths():
    sample = TradeSample(1000.0, np.array([0.1, -0.05, 0.02, -0.08, 0.04]))
    a, b = simulate(sample, 2000, seed=7), simulate(sample, 2000, seed=7)
    np.testing.assert_array_equal(a.final_equity, b.final_equity)
    np.testing.assert_array_equal(a.max_drawdown_pct, b.max_drawdown_pct)
    assert not np.array_equal(a.final_equity, simulate(sample, 2000, seed=8).final_equity)


def test_bootstrap_of_two_trades_matches_the_four_equally_likely_paths():
    # trades +10% and -10%; two draws each path: (+,+) 1.21, (+,-) and (-,+) 0.99, (-,-) 0.81.
    # P(loss >= 5%) = P(-,-) = 1/4; P(drawdown >= 5%) = P(-,- or -,+ or +,-) = 3/4
    # (+,- peaks at 1.1 and falls to 0.99: a 10% drawdown). 10,000 paths: within 5 standard errors.
    result = simulate(TradeSample(1000.0, np.array([0.1, -0.1])), 10_000, seed=1, loss_pct=5)
    se = math.sqrt(0.25 * 0.75 / 10_000)
    assert abs(result.prob_loss - 0.25) < 5 * se
    assert abs(result.prob_drawdown - 0.75) < 5 * se
    assert set(np.round(result.final_equity, 6)) == {1210.0, 990.0, 810.0}


def test_shuffle_keeps_final_equity_and_varies_only_the_drawdown():
    sample = TradeSample(1000.0, np.array([0.1, -0.1, 0.05, -0.2]))
    result = simulate(sample, 500, seed=3, method="shuffle")
    np.testing.assert_allclose(result.final_equity, 1000 * np.prod(1 + sample.returns))
    assert result.max_drawdown_pct.min() < result.max_drawdown_pct.max() <= 0


def test_load_trades_reads_a_backtest_json(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"trades": [{"pnl": 100.0}, {"pnl": -110.0}],
                                "equity": [{"equity": 1000.0}], "meta": {"config": {"cash": "1000"}}}))
    sample = load_trades(path)
    assert sample.initial_cash == 1000.0
    np.testing.assert_allclose(sample.returns, [0.1, -0.1])


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_trades(tmp_path / "missing.json")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"trades": [], "equity": [{"equity": 1.0}], "meta": {}}))
    with pytest.raises(DataError, match="no trades"):
        load_trades(empty)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(DataError, match="not a backtest JSON"):
        load_trades(garbage)
    with pytest.raises(ConfigError, match="paths"):
        simulate(TradeSample(1.0, np.array([0.1])), 0)
    with pytest.raises(ConfigError, match="loss-pct"):
        simulate(TradeSample(1.0, np.array([0.1])), 10, loss_pct=0)
