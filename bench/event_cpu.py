"""CPU seconds of one backtest (sma_cross 10/20 on 1,000,000 bootstrapped bars), best of 2.

    OMP_NUM_THREADS=1 .venv/bin/python bench/event_cpu.py event|fast

CPU time (time.process_time), not wall time: on a shared machine the wall time of the same work
moves by 2x with the load, its CPU time much less, so two trees run in alternation can be compared.
"""
import sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from bench.backtest_speed import bootstrap_bars
from backtest.runner import run_backtest
from backtest.config import BacktestConfig
from strategies import get_strategy
frame = bootstrap_bars(1_000_000, 42)
cls = get_strategy("sma_cross"); params = {"fast": 10, "slow": 20}
run_backtest(frame.iloc[:5000], cls, params, BacktestConfig(path=sys.argv[1]))
best = 1e9
for _ in range(2):
    t = time.process_time(); run_backtest(frame, cls, params, BacktestConfig(path=sys.argv[1])); best = min(best, time.process_time() - t)
print(f"{sys.argv[1]} cpu {best:.3f}s")
