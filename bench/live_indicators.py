"""Live indicators: a bot's driver over 100,000 bars, indicators extended per bar vs recomputed.

A live bot's StrategyDriver closes a bar at each new bar's first tick and calls next() with the
strategy's indicators brought up to that bar. Before issue 13 every indicator was recomputed over
all the bars so far (O(bars) per bar: a long-running bot slowed down as it ran); now sma, ema and
rsi are extended by one value (live/indicators.py). `--mode full` is the old way
(LiveIndicators(kernels=False)), `--mode kernels` the new one.

The bars are the real EURUSD hourly bars in data/ resampled with a fixed seed (as
bench/backtest_speed.py does), fed as one tick per bar into the driver and the paper venue
(orders fill, positions flip, as live). Prints bars/s over windows of 1,000 bars at several
points of the run: flat for kernels, falling as 1/bars for the full recompute, which stops after
--budget-s seconds.

    .venv/bin/python bench/live_indicators.py [--bars 100000] [--budget-s 30] [--strategy sma_cross]

Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from pathlib import Path

from backtest.data import bootstrap_bars, load_bars
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.market import Tick
from engine.oms import OrderManager
from engine.portfolio import Portfolio
from live.driver import StrategyDriver, raw_price
from live.indicators import LiveIndicators
from models.signals import MemorySignals
from strategies.registry import resolve_strategy

DATA = Path(__file__).resolve().parents[1] / "data" / "fx" / "EURUSD_1h.csv"
EURUSD = Instrument("EURUSD", price_increment=Decimal("0.00001"), size_increment=Decimal("1"))
WINDOW = 1_000
MARKS = (1_000, 2_000, 5_000, 10_000, 50_000, 100_000)


def run(strategy_name: str, params: dict, mode: str, bars: int, budget_s: float) -> dict[int, float]:
    """bars/s over the WINDOW bars ending at each mark reached within the budget."""
    frame = bootstrap_bars(load_bars(DATA), bars + 1, 42, decimals=5, freq="h", start="2000-01-01")
    clock = SimulatedClock()
    venue = SimulatedVenue(EURUSD, Decimal(100_000))
    oms = OrderManager("bench", clock, venue, Portfolio.for_instrument(Decimal(100_000), EURUSD), {"EURUSD": EURUSD})
    cls = resolve_strategy(strategy_name, allow_code_refs=True)  # the operator's own command line
    strategy = cls(cls.Params(**params))
    strategy.attach(None, "EURUSD")  # type: ignore[arg-type]
    strategy.connect(oms)
    driver = StrategyDriver(strategy, oms, "EURUSD", "1h", MemorySignals())
    driver.indicators = LiveIndicators(strategy, kernels=(mode == "kernels"))
    s = EURUSD.scales
    times = frame.index.as_unit("ns").asi8.tolist()
    closes = frame["close"].tolist()
    rates: dict[int, float] = {}
    started = window_start = time.perf_counter()
    for k, (ts, price) in enumerate(zip(times, closes)):
        raw = raw_price(price, s.price_dp, s.price_step)
        clock.ts = ts
        venue.on_tick(raw, raw, 0, ts)
        driver.on_tick(Tick("EURUSD", ts, price, price))
        done = driver.bars
        if done and done % WINDOW == 0 and done in MARKS and done not in rates:
            now = time.perf_counter()
            rates[done] = WINDOW / (now - window_start)
        if done % WINDOW == 0:
            window_start = time.perf_counter()
            if time.perf_counter() - started > budget_s:
                break
    rates[-1] = driver.bars  # how far it got
    rates[-2] = len(oms.fills)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--budget-s", type=float, default=30.0, help="stop a run after this long")
    parser.add_argument("--strategy", default="all", help="sma_cross, rsi_reversion, examples/my_cross.py:MyCross")
    parser.add_argument("--mode", default="both", choices=("both", "kernels", "full"))
    args = parser.parse_args()
    strategies = {"sma_cross": {"fast": 10, "slow": 20, "fixed_size": "1000"},
                  "rsi_reversion": {"period": 14, "fixed_size": "1000"},
                  "examples/my_cross.py:MyCross": {"fast": 10, "slow": 30, "fixed_size": "1000"}}
    names = list(strategies) if args.strategy == "all" else [args.strategy]
    modes = ("kernels", "full") if args.mode == "both" else (args.mode,)
    print(f"bars/s over the {WINDOW:,} bars ending at each mark ({args.bars:,} bars, "
          f"budget {args.budget_s:.0f} s a run)")
    print(f"{'strategy':<30} {'mode':<8} " + " ".join(f"{m:>9,}" for m in MARKS) + "   bars   fills")
    for name in names:
        for mode in modes:
            rates = run(name, strategies.get(name, {}), mode, args.bars, args.budget_s)
            cells = " ".join(f"{rates[m]:>9,.0f}" if m in rates else f"{'-':>9}" for m in MARKS)
            print(f"{name:<30} {mode:<8} {cells} {int(rates[-1]):>6,} {int(rates[-2]):>7,}", flush=True)


if __name__ == "__main__":
    main()
