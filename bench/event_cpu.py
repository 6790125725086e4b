"""CPU seconds of one backtest (sma_cross 10/20 on 1,000,000 bootstrapped bars), best of 2.

    OMP_NUM_THREADS=1 .venv/bin/python bench/event_cpu.py event|fast

CPU time (time.process_time), not wall time: on a shared machine the wall time of the same work
moves by 2x with the load, its CPU time much less, so two trees run in alternation can be compared.
bench/peers.py does that alternation itself (--before TREE), against the peers too.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backtest.config import BacktestConfig  # noqa: E402
from backtest.runner import run_backtest  # noqa: E402
from bench.backtest_speed import bootstrap_bars  # noqa: E402
from strategies import get_strategy  # noqa: E402


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "event"
    frame = bootstrap_bars(1_000_000, 42)
    cls, params = get_strategy("sma_cross"), {"fast": 10, "slow": 20}
    run_backtest(frame.iloc[:5000], cls, params, BacktestConfig(path=path))  # warm-up (numba, imports)
    best = float("inf")
    for _ in range(2):
        start = time.process_time()
        run_backtest(frame, cls, params, BacktestConfig(path=path))
        best = min(best, time.process_time() - start)
    load = os.getloadavg()
    print(f"{path} cpu {best:.3f}s (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")


if __name__ == "__main__":
    main()
