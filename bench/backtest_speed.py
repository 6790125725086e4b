"""Backtest speed: sma_cross 10/20 over 1,000,000 bars, fast path and event path.

The bars are bootstrapped from the real EURUSD hourly bars in data/ with a fixed seed: each
synthetic bar copies a real bar's open/high/low/close relative to the previous close, with the
log drift removed so that a million draws stay near real price levels. Prices land on the
instrument's 0.00001 grid.

    .venv/bin/python bench/backtest_speed.py [--bars 1000000] [--seed 42]

Prints bars/s by wall time and by CPU time (time.process_time: on a shared machine the wall
time of the same work moves with the load, its CPU time much less), the load average, and peak
traced memory for each path (numba's one-off compile is done before timing and cached on disk).
For the same rule against backtesting.py, vectorbt, a numpy loop and a bare Python loop, in
interleaved rounds, see bench/peers.py (`make bench-peers`). Not a test: figures go to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.config import make_config
from backtest.data import bootstrap_bars as resample_real
from backtest.data import load_bars
from backtest.runner import run_backtest
from strategies import get_strategy

DATA = Path(__file__).resolve().parents[1] / "data" / "fx" / "EURUSD_1h.csv"


def bootstrap_bars(n: int, seed: int) -> pd.DataFrame:
    """EURUSD hourly bars resampled (see backtest.data.bootstrap_bars), on the 0.00001 grid."""
    return resample_real(load_bars(DATA), n, seed, decimals=5, freq="h", start="2000-01-01")


def measure(frame: pd.DataFrame, path: str) -> tuple[float, float, float, object]:
    """Best of `repeats` wall and CPU times (no tracer attached), then one traced run for peak memory."""
    strategy = get_strategy("sma_cross")
    config = make_config(path=path, commission="0.0001")
    params = {"fast": 10, "slow": 20}
    run_backtest(frame.iloc[:5000], strategy, params, config)  # warm-up: numba compile or cache load
    repeats = 3 if path == "fast" else 1
    elapsed = cpu = float("inf")
    for _ in range(repeats):
        gc.collect()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run_backtest(frame, strategy, params, config)
        elapsed = min(elapsed, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - cpu_started)
    del result
    gc.collect()
    tracemalloc.start()  # tracing slows allocation several-fold, so it never overlaps the timing
    result = run_backtest(frame, strategy, params, config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, cpu, peak / 2**20, result


def bare_loop(frame: pd.DataFrame) -> float:
    """For scale: a Python loop that checks the same crosses and does nothing else."""
    fast = frame["close"].rolling(10).mean().tolist()
    slow = frame["close"].rolling(20).mean().tolist()
    started = time.perf_counter()
    crosses = 0
    for i in range(1, len(fast)):
        if fast[i] > slow[i] and fast[i - 1] <= slow[i - 1]:
            crosses += 1
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    frame = bootstrap_bars(args.bars, args.seed)
    load = os.getloadavg()
    print(f"{len(frame):,} bars bootstrapped from {DATA.name} (seed {args.seed}); sma_cross 10/20, commission 0.01%; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    results = {}
    for path in ("fast", "event"):
        elapsed, cpu, peak_mb, result = measure(frame, path)
        results[path] = result
        print(f"{path:>5} path: {len(frame) / elapsed:>12,.0f} bars/s wall  {elapsed:7.3f} s  "
              f"{len(frame) / cpu:>12,.0f} bars/s CPU  {cpu:7.3f} s  peak {peak_mb:7.1f} MB  "
              f"trades {len(result.trades):,}  orders {len(result.orders):,}  "
              f"final equity {result.equity.iloc[-1]:,.2f}")
    same = np.array_equal(results["fast"].equity.to_numpy(), results["event"].equity.to_numpy())
    print(f"fast and event equity curves identical: {same}")
    loop = bare_loop(frame)
    print(f" bare python loop (cross checks only, no engine): {len(frame) / loop:,.0f} bars/s")
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
