"""Sweep speed: a 5,000-combination sma_cross grid on 100,000 bars, on 1 and on 2 Ray workers.

The bars are bootstrapped from the real FTX BTC-PERP 1-minute bars in data/crypto with a fixed
seed (each synthetic bar copies a real bar's open/high/low/close relative to the previous close,
log drift removed), on the file's 1-dollar grid. The grid is fast = 5..104 (step 1) x slow =
110..600 (step 10): 100 x 50 = 5,000 combinations, all valid. Each combination is a fast-path
backtest plus `compute_stats` (every stat of the report) through backtest.evaluate.Evaluator, which
gives exactly what `run_backtest` + `compute_stats` give (indicators, prices and instrument shared
per worker), and the sweep ends with the deflated Sharpe ratio and the PBO over all 5,000.

    .venv/bin/python bench/sweep_speed.py [--bars 100000] [--workers 1 2] [--seed 42]

Ray start-up, actor creation and numba's one-off compile are done (and warmed with one batch)
before timing. Prints combinations/s per worker count. Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from backtest.config import make_config
from backtest.data import bootstrap_bars as resample_real
from backtest.data import load_bars
from backtest.ray_pool import WorkerPool, batches
from backtest.runner import build_instrument
from backtest.sweep import expand_grid, parse_grid, run_grid
from strategies import get_strategy

DATA = Path(__file__).resolve().parents[1] / "data" / "crypto" / "BTC-PERP_1m.csv"
GRID = ["fast=5:104:1", "slow=110:600:10"]
FIXED = {"units": "fractional"}


def bootstrap_bars(n: int, seed: int) -> pd.DataFrame:
    """BTC-PERP minute bars resampled (see backtest.data.bootstrap_bars), on a whole-dollar grid."""
    return resample_real(load_bars(DATA), n, seed, decimals=0, freq="min", start="2022-01-01")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import ray

    frame = bootstrap_bars(args.bars, args.seed)
    strategy = get_strategy("sma_cross")
    grid = parse_grid(GRID)
    combos, skipped, _ = expand_grid(strategy, grid, FIXED)
    config = make_config(path="fast", commission="0.0004")
    config = config.model_copy(update={"price_increment": build_instrument(frame, config, "whole").price_increment})
    print(f"{len(frame):,} bars bootstrapped from {DATA.name} (seed {args.seed}), {len(combos):,} combinations "
          f"({skipped} skipped), {' x '.join(GRID)}, {FIXED}")
    for workers in args.workers:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            pool = WorkerPool(frame, strategy, config, "sharpe", workers)
            pool.map(batches([{**FIXED, "fast": 10, "slow": 200}] * workers, 1))  # start, compile, warm
            started = time.perf_counter()
            outcome = run_grid(frame, strategy, combos, FIXED, grid, config, "sharpe", pool)
            elapsed = time.perf_counter() - started
            pool.close()
        finally:
            ray.shutdown()
        best = outcome.best
        dsr = outcome.overfitting["dsr"]["deflated_sharpe_ratio"]
        load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
        print(f"{workers} worker(s): {len(combos):,} combinations in {elapsed:.1f} s = "
              f"{len(combos) / elapsed:,.1f} combinations/s (evaluation {outcome.elapsed_s:.1f} s, "
              f"DSR + PBO {elapsed - outcome.elapsed_s:.1f} s); best {best.params} sharpe "
              f"{best.stats['sharpe']:.2f}, DSR {dsr if dsr is None else round(dsr, 3)}, "
              f"PBO {outcome.overfitting['pbo']['pbo']:.3f}; load average {load} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
