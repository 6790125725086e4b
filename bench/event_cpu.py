"""CPU seconds of one backtest (sma_cross 10/20 on 1,000,000 bootstrapped bars), best of 2.

    OMP_NUM_THREADS=1 .venv/bin/python bench/event_cpu.py event|fast

CPU time (time.process_time, with its user and system parts), not wall time: on a shared machine
the wall time of the same work moves by 2x with the load, its CPU time much less, so two trees run
in alternation can be compared.
bench/peers.py does that alternation itself (--before TREE), against the peers too.
"""

from __future__ import annotations

import os
import resource
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
    best, split = float("inf"), (0.0, 0.0)
    for _ in range(2):
        start, before = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
        run_backtest(frame, cls, params, BacktestConfig(path=path))
        spent, after = time.process_time() - start, resource.getrusage(resource.RUSAGE_SELF)
        if spent < best:
            best, split = spent, (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)
    load = os.getloadavg()
    # user and system apart: on this VM a page fault of fresh memory costs ~5 us of system time,
    # whose noise dominates small A/B differences (helper E2's observation)
    print(f"{path} cpu {best:.3f}s (user {split[0]:.3f}s, sys {split[1]:.3f}s; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")


if __name__ == "__main__":
    main()
