"""A sweep's batched evaluation (many combinations per compiled kernel call, statistics straight
from the kernel's arrays: Evaluator.evaluate_many) gives every combination exactly what the
per-pair path gives it (Evaluator.evaluate: run_fast's BacktestResult, then compute_stats): the
same statistics bit for bit, the same per-period returns, the same trades, the same sizing note,
in the order asked, across chunks and across groups of different kernel inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import backtest.evaluate as evaluate
from backtest.config import make_config
from backtest.data import load_bars
from backtest.evaluate import Evaluator
from backtest.frames import trades_frame
from backtest.metrics import compute_stats
from backtest.report import _json_value
from backtest.runner import build_instrument, run_backtest
from strategies import get_strategy

BTC = Path(__file__).resolve().parents[2] / "data" / "crypto" / "BTC-PERP_1m.csv"
SMA = get_strategy("sma_cross")
# two kernel-input groups interleaved (fractional at full size, fractional at half size), long
# only and long/short, whole units that cannot size an order (BTC costs more than the cash), a
# fixed size, and a tie-heavy pair with fast=1
COMBOS = [
    {"fast": 5, "slow": 20, "units": "fractional"},
    {"fast": 10, "slow": 40, "units": "fractional", "size": "0.5"},
    {"fast": 5, "slow": 40, "units": "fractional", "mode": "long_short"},
    {"fast": 3, "slow": 20, "units": "fractional"},
    {"fast": 10, "slow": 20, "units": "fractional", "size": "0.5", "mode": "long_short"},
    {"fast": 1, "slow": 30, "units": "fractional"},
    {"fast": 10, "slow": 40},
    {"fast": 5, "slow": 60, "units": "fractional", "fixed_size": "0.01"},
    {"fast": 20, "slow": 60, "units": "fractional"},
]


@pytest.fixture(scope="module")
def frame():
    return load_bars(BTC).iloc[:20_000]


def _same(a, b) -> None:
    assert a.params == b.params
    assert a.stats == b.stats  # every statistic, bit for bit (JSON-safe values)
    assert a.score == b.score
    np.testing.assert_array_equal(a.returns, b.returns)
    assert (a.path, a.unsized_orders, a.note) == (b.path, b.unsized_orders, b.note)


@pytest.mark.parametrize("max_runs", [1, 3, 16])
def test_batched_evaluations_equal_the_per_pair_path(frame, monkeypatch, max_runs):
    monkeypatch.setattr(evaluate, "BATCH_MAX_RUNS", max_runs)
    config = make_config(path="fast", commission="0.0004")
    per_pair = Evaluator(frame, SMA, config, "sharpe")
    batched = Evaluator(frame, SMA, config, "sharpe")
    runs = []
    real_run = evaluate.KernelBatch.run

    def counted(self, k, m, events=None):  # the real kernel call, counted
        runs.append(m)
        return real_run(self, k, m, events)

    monkeypatch.setattr(evaluate.KernelBatch, "run", counted)
    got = batched.evaluate_many(COMBOS)
    assert sum(runs) == len(COMBOS) and max(runs) <= max_runs  # all batched, chunks bounded
    assert len(got) == len(COMBOS)
    for params, b in zip(COMBOS, got):
        _same(b, per_pair.evaluate(params))
    assert any(e.unsized_orders for e in got) and any(e.stats["trades"] for e in got)
    assert any(e.stats["sharpe"] is not None for e in got)
    # and a window of the bars, as walk-forward asks for
    for params, b in zip(COMBOS, batched.evaluate_many(COMBOS, 3_000, 15_000)):
        _same(b, per_pair.evaluate(params, 3_000, 15_000))


def test_batched_statistics_equal_compute_stats_and_the_trades_equal_run_backtest(frame, monkeypatch):
    config = make_config(path="fast", commission="0.0004")
    kept: dict[int, dict[str, np.ndarray]] = {}
    real = Evaluator._from_kernel

    def keep(self, window, pending, k, out):  # the real reduction; the run's trades copied aside
        kept[pending.position] = {name: arr.copy() for name, arr in out.trades.items()}
        return real(self, window, pending, k, out)

    monkeypatch.setattr(Evaluator, "_from_kernel", keep)
    got = Evaluator(frame, SMA, config, "sharpe").evaluate_many(COMBOS)
    assert sorted(kept) == list(range(len(COMBOS)))
    for position, (params, evaluation) in enumerate(zip(COMBOS, got)):
        direct = run_backtest(frame, SMA, params, config)
        assert evaluation.stats == {k: _json_value(v) for k, v in compute_stats(direct).items()}
        instrument = build_instrument(frame, config, params.get("units", "whole"))
        pd.testing.assert_frame_equal(trades_frame(kept[position], frame.index, instrument.scales), direct.trades)


def test_event_path_and_per_bar_sizes_are_evaluated_alone(frame):
    """What the batched kernel cannot run (the event path) is evaluate()d as before, in order."""
    config = make_config(path="event", commission="0.0004")
    evaluator = Evaluator(frame.iloc[:3_000], SMA, config, "sharpe")
    combos = COMBOS[:3]
    for params, e in zip(combos, evaluator.evaluate_many(combos)):
        _same(e, evaluator.evaluate(params))
        assert e.path == "event"


@pytest.mark.parametrize("mode", ["long_only", "long_short"])
def test_sma_cross_signals_equal_the_cross_masks_rule(frame, mode):
    """sma_cross.signals() writes the targets in one pass: the same array as cross_masks' up and
    down masks make (1 at a cross up, the exit direction at a cross down, NaN elsewhere), ties
    (rounded closes, fast=1) included."""
    from backtest.runner import _prepared
    from strategies.base import cross_masks

    rounded = frame.assign(close=frame["close"].round(-1))
    for bars in (frame, rounded):
        instrument = build_instrument(bars, make_config(path="fast"), "fractional")
        for fast, slow in ((1, 3), (5, 20), (10, 40)):
            strategy = _prepared(SMA, SMA.Params(fast=fast, slow=slow, mode=mode, units="fractional"), bars,
                                 instrument)
            up, down = cross_masks(np.asarray(strategy.fast_ma, dtype=np.float64),
                                   np.asarray(strategy.slow_ma, dtype=np.float64))
            expected = np.full(len(bars), np.nan)
            expected[up] = 1.0
            expected[down] = -1.0 if mode == "long_short" else 0.0
            got = strategy.signals()
            np.testing.assert_array_equal(got, expected)
            assert up.any() and down.any()
