"""run_kernel_batch (many parameter sets per compiled call, buffers reused chunk by chunk) gives
each set exactly what run_kernel gives it alone, and the fast path's kernel changes (marks
computed when a fill changes the books) leave the equity curve bit for bit as the formula."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas_ta as ta
import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.fast_path import OK, KernelInputs, run_kernel, run_kernel_batch
from backtest.runner import build_instrument, run_backtest
from strategies import get_strategy
from strategies.base import _cross_masks_numpy, cross_masks

DATA = Path(__file__).resolve().parents[2] / "data"
PAIRS = [(5, 20), (10, 30), (2, 7), (20, 60), (1, 3), (8, 9), (15, 100)]


def _inputs(frame, target: np.ndarray, config) -> KernelInputs:
    """KernelInputs as run_fast builds them (one instrument, one fee model), for a given target."""
    captured: dict[str, KernelInputs] = {}
    import backtest.runner as runner

    real = runner.run_kernel

    def spy(k: KernelInputs):
        captured["k"] = k
        return real(k)

    runner.run_kernel = spy
    try:
        run_backtest(frame, get_strategy("sma_cross"), {"fast": 10, "slow": 30}, config)
    finally:
        runner.run_kernel = real
    k = captured["k"]
    k.target = target
    return k


def _target(close, fast: int, slow: int) -> np.ndarray:
    f = ta.sma(close, length=fast, talib=False) if fast > 1 else close
    up, down = cross_masks(np.asarray(f, dtype=np.float64), ta.sma(close, length=slow, talib=False).to_numpy())
    out = np.full(len(close), np.nan)
    out[up], out[down] = 1.0, -1.0
    return out


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_batch_equals_one_kernel_call_per_set(chunk: int) -> None:
    frame = load_bars(DATA / "stocks" / "SPY_daily.csv")
    config = make_config(path="fast", commission="0.001")
    targets = [_target(frame["close"], f, s) for f, s in PAIRS]
    k = _inputs(frame, targets[0], config)
    alone = []
    for t in targets:
        k.target = t
        alone.append(run_kernel(k))
    batched = []
    for out in run_kernel_batch(k, iter(targets), chunk=chunk):  # copied as they come: views are reused
        batched.append((out.status, out.equity.copy(), out.position.copy(),
                        {n: a.copy() for n, a in out.orders.items()}, {n: a.copy() for n, a in out.trades.items()}))
    assert len(batched) == len(alone)
    for one, (status, equity, position, orders, trades) in zip(alone, batched):
        assert status == one.status == OK
        assert equity.tobytes() == one.equity.tobytes()
        assert position.tobytes() == one.position.tobytes()
        for name in one.orders:
            assert np.array_equal(orders[name], one.orders[name]), name
        for name in one.trades:
            assert np.array_equal(trades[name], one.trades[name]), name
    assert sum(len(b[4]["pnl"]) for b in batched) > 100  # the sets traded


def test_batch_refuses_a_target_of_the_wrong_length() -> None:
    frame = load_bars(DATA / "stocks" / "SPY_daily.csv")
    k = _inputs(frame, np.full(len(frame), np.nan), make_config(path="fast"))
    with pytest.raises(ValueError, match="one per bar"):
        list(run_kernel_batch(k, [np.zeros(5)]))
    with pytest.raises(ValueError, match="chunk"):
        list(run_kernel_batch(k, [], chunk=0))


def test_fast_equity_is_the_books_formula_at_every_bar() -> None:
    """equity[i] = cash + qty * close[i], the floats of the raw books at that bar (the event path's
    formula): the kernel now keeps the books' floats between fills instead of recomputing them."""
    frame = load_bars(DATA / "fx" / "EURUSD_1h.csv")
    config = make_config(path="fast", commission="0.0002")
    fast = run_backtest(frame, get_strategy("sma_cross"), {"fast": 5, "slow": 30, "mode": "long_short"}, config)
    event = run_backtest(frame, get_strategy("sma_cross"), {"fast": 5, "slow": 30, "mode": "long_short"},
                         make_config(path="event", commission="0.0002"))
    assert fast.meta["path"] == "fast" and len(fast.trades) > 50
    assert fast.equity.to_numpy().tobytes() == event.equity.to_numpy().tobytes()
    assert np.asarray(fast.position).tobytes() == np.asarray(event.position).tobytes()
    build_instrument(frame, config, "whole")  # the instrument builds (no warning needed)


@pytest.mark.parametrize("path", sorted(p for p in DATA.rglob("*.csv") if "ticks" not in p.parts),
                         ids=lambda p: p.name)
def test_compiled_cross_masks_equal_the_numpy_rule(path: Path) -> None:
    close = load_bars(path)["close"]
    for fast, slow in PAIRS:
        f = np.asarray(close if fast == 1 else ta.sma(close, length=fast, talib=False), dtype=np.float64)
        s = ta.sma(close, length=slow, talib=False).to_numpy()
        for a, b in ((f, s), (np.round(f, 2), np.round(s, 2))):  # rounded: many exact ties
            got, want = cross_masks(a, b), _cross_masks_numpy(a, b)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert [m.tolist() for m in cross_masks(np.array([]), np.array([]))] == [[], []]
