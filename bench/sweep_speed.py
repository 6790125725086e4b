"""Sweep speed: a 5,000-combination sma_cross grid on 100,000 bars, on 1 and on 2 Ray workers.

The bars are bootstrapped from the real FTX BTC-PERP 1-minute bars in data/crypto with a fixed
seed (each synthetic bar copies a real bar's open/high/low/close relative to the previous close,
log drift removed), on the file's 1-dollar grid. The grid is fast = 5..104 (step 1) x slow =
110..600 (step 10): 100 x 50 = 5,000 combinations, all valid. Each combination is a fast-path
backtest plus `compute_stats` (every stat of the report) through backtest.evaluate.Evaluator, which
gives exactly what `run_backtest` + `compute_stats` give (indicators, prices and instrument shared
per worker), and the sweep ends with the deflated Sharpe ratio and the PBO over all 5,000.

    .venv/bin/python bench/sweep_speed.py [--bars 100000] [--workers 1 2] [--seed 42]

Issue 18's sweep (174 SMA pairs on 1,000,000 EURUSD-like hourly bars, every statistic per pair):

    OMP_NUM_THREADS=1 .venv/bin/python bench/sweep_speed.py --source eurusd --bars 1000000 \
        --grid fast=5:50:5 slow=10:200:10 --fixed none --commission 0.0001 --workers 2

Ray start-up, actor creation and numba's one-off compile are done (and warmed with one batch)
before timing. Prints combinations/s per worker count; then, in this process without Ray, the CPU
seconds of one pair (Evaluator.evaluate_many, what a worker runs: the pairs' signals batched
through one compiled kernel call per chunk, every statistic from the kernel's arrays, per-period
returns) against one fast-path backtest (run_backtest + compute_stats) on the same bars: the
sharing and the batching are what make a pair cheaper. vectorbt's sweep on the same grid, in the
same rounds: bench/peers.py --sweep. CPU seconds, peak RSS and the load average are printed with each figure. Not a
test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
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


def eurusd_bars(n: int, seed: int) -> pd.DataFrame:
    """bench/backtest_speed.py's EURUSD hourly bars (the bars of issue 18's table)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from backtest_speed import bootstrap_bars as eurusd

    return eurusd(n, seed)


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def per_pair_cost(frame: pd.DataFrame, strategy: object, combos: list[dict], config: object, pairs: int) -> None:
    """CPU seconds of one pair in a sweep against one whole fast-path backtest, in this process."""
    from backtest.evaluate import Evaluator
    from backtest.metrics import compute_stats
    from backtest.runner import run_backtest

    first = combos[0]
    run_backtest(frame.iloc[:5000], strategy, first, config)  # numba: compile or load the cache
    singles = []
    for _ in range(3):
        started = time.process_time()
        compute_stats(run_backtest(frame, strategy, first, config))
        singles.append(time.process_time() - started)
    evaluator = Evaluator(frame, strategy, config, "sharpe")
    evaluator.evaluate(first)
    chosen = combos[1:pairs + 1]
    started = time.process_time()
    evaluator.evaluate_many(chosen)
    pair = (time.process_time() - started) / len(chosen)
    single = statistics.median(singles)
    print(f"in process: one fast-path backtest + stats {single:.3f} s CPU; one sweep pair {pair:.3f} s CPU "
          f"= {pair / single:.2f} of it ({1 / pair:.1f} pairs per CPU second; {len(chosen)} pairs, the indicator "
          f"cache filling as a sweep's does); peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} "
          f"MB; load average {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--source", choices=("btc", "eurusd"), default="btc")
    parser.add_argument("--grid", nargs="+", default=GRID, help="--grid specs, as `tickbridge sweep` takes them")
    parser.add_argument("--fixed", default="units=fractional", help="fixed k=v,k=v parameters, or none")
    parser.add_argument("--commission", default="0.0004")
    parser.add_argument("--pairs", type=int, default=40, help="pairs timed in process for the per-pair cost")
    args = parser.parse_args()

    import ray

    fixed = {} if args.fixed == "none" else dict(kv.split("=", 1) for kv in args.fixed.split(","))
    frame = bootstrap_bars(args.bars, args.seed) if args.source == "btc" else eurusd_bars(args.bars, args.seed)
    strategy = get_strategy("sma_cross")
    grid = parse_grid(args.grid)
    combos, skipped, _ = expand_grid(strategy, grid, fixed)
    config = make_config(path="fast", commission=args.commission)
    config = config.model_copy(update={"price_increment": build_instrument(frame, config, "whole").price_increment})
    print(f"{len(frame):,} bars bootstrapped ({args.source}, seed {args.seed}), {len(combos):,} combinations "
          f"({skipped} skipped), {' x '.join(args.grid)}, {fixed}; load average {load_average()} on "
          f"{os.cpu_count()} CPUs", flush=True)
    per_pair_cost(frame, strategy, [{**fixed, **c} for c in combos], config, min(args.pairs, len(combos) - 1))
    for workers in args.workers:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            pool = WorkerPool(frame, strategy, config, "sharpe", workers)
            pool.map(batches([{**fixed, **combos[0]}] * workers, 1))  # start, compile, warm
            started = time.perf_counter()
            outcome = run_grid(frame, strategy, combos, fixed, grid, config, "sharpe", pool)
            elapsed = time.perf_counter() - started
            pool.close()
        finally:
            ray.shutdown()
        best = outcome.best
        dsr = outcome.overfitting["dsr"]["deflated_sharpe_ratio"]
        load = load_average()
        print(f"{workers} worker(s): {len(combos):,} combinations in {elapsed:.1f} s = "
              f"{len(combos) / elapsed:,.1f} combinations/s (evaluation {outcome.elapsed_s:.1f} s, "
              f"DSR + PBO {elapsed - outcome.elapsed_s:.1f} s); best {best.params} sharpe "
              f"{best.stats['sharpe']:.2f}, DSR {dsr if dsr is None else round(dsr, 3)}, "
              f"PBO {outcome.overfitting['pbo']['pbo']:.3f}; load average {load} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
