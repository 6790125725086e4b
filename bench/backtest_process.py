"""The whole `tickbridge backtest` process against backtesting.py's whole script, as a user meets them.

    OMP_NUM_THREADS=1 .venv/bin/python bench/backtest_process.py [--bars 1000000] [--seed 42]
        [--rounds 3] [--before /path/to/an/older/tree] [--only name,name] [--keep DIR] [--json out.json]

Each contender is a fresh process timed from spawn to exit (imports, loading the CSV, the
backtest, the statistics, and the output a user asks for):
- `tickbridge backtest --strategy sma_cross --data bars.csv --json out.json` (this tree's .venv),
  and `... --json-full` (the version-1 records), and, with --before, the same command run from an
  older copy of the tree (its app/, backtest/... first on sys.path) so before and after come from
  one run at the same load (a tree from before app/ existed runs its own CLI, engine.cli);
- backtesting.py's whole script (bench/.venv-peers, `make bench-peers`): pandas.read_csv of the
  same file, Backtest(SmaCross 10/20, commission 0.01 %, all cash per entry, finalize_trades),
  run(), print the stats, and write its trades and equity curve the way a user saves them
  (`stats._trades.to_csv`, `stats._equity_curve.to_csv`).

Same bars: bootstrapped from the real EURUSD hourly bars (bench/backtest_speed.py), written once
as a CSV under a temporary directory (or --keep DIR). Timing: wall seconds, the child's CPU
seconds (user + system, from wait4) and its peak RSS. Rounds are interleaved (every contender
once per round, the order rotated each round) so the load of this shared machine hits all alike;
the table shows medians over rounds, and the load average at the start and at the end. A ratio
> 1 means tickbridge took less. Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / "bench" / ".venv-peers" / "bin" / "python"

BACKTESTING_PY = r'''
import sys
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover


def sma(values, n):
    return pd.Series(values).rolling(n).mean().to_numpy()


class SmaCross(Strategy):
    fast, slow = 10, 20

    def init(self):
        self.a = self.I(sma, self.data.Close, self.fast)
        self.b = self.I(sma, self.data.Close, self.slow)

    def next(self):
        if crossover(self.a, self.b):
            self.buy()
        elif crossover(self.b, self.a):
            self.position.close()


frame = pd.read_csv(sys.argv[1], index_col=0, parse_dates=True)
frame = frame.rename(columns=str.capitalize)
bt = Backtest(frame, SmaCross, cash=10_000, commission=0.0001, finalize_trades=True)
stats = bt.run()
print(stats)
stats._trades.to_csv(sys.argv[2] + ".trades.csv")
stats._equity_curve.to_csv(sys.argv[2] + ".equity.csv")
'''


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of `argv`, the child reaped by wait4 so its own usage is read
    (stderr goes to a file: a pipe nobody reads while waiting could fill and stall the child)."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(argv)} failed ({child.returncode}):\n{err.read().decode(errors='replace')[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def write_bars(path: Path, bars: int, seed: int) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from backtest_speed import bootstrap_bars

    bootstrap_bars(bars, seed).reset_index().to_csv(path, index=False)


def cli_module(tree: Path) -> str:
    """The CLI module of a tree: app.cli, or engine.cli in a tree from before app/ existed (there
    `-m app.cli` would import this tree's app through the editable install, over the old engine)."""
    return "app.cli" if (tree / "app" / "cli.py").exists() else "engine.cli"


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="an older copy of the tree (app/, backtest/, ...)")
    parser.add_argument("--only", help="comma-separated contender names")
    parser.add_argument("--keep", type=Path, help="write the bars and outputs here (default: a temporary dir)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="backtest_process_")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"bars_{args.bars}_{args.seed}.csv"
    if not data.exists():
        write_bars(data, args.bars, args.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}
    python = sys.executable
    backtest = ["backtest", "--strategy", "sma_cross", "--data", str(data), "--commission", "0.0001"]
    contenders: dict[str, tuple[list[str], Path]] = {
        "tickbridge --json": ([python, "-m", "app.cli", *backtest, "--json", str(work / "now.json")], ROOT),
        "tickbridge --json-full": ([python, "-m", "app.cli", *backtest, "--json", str(work / "full.json"),
                                    "--json-full"], ROOT),
    }
    if args.before is not None:
        contenders["before: tickbridge --json"] = (
            [python, "-m", cli_module(args.before.resolve()), *backtest, "--json", str(work / "before.json")],
            args.before.resolve())
    if PEERS_PYTHON.exists():
        script = work / "backtesting_py_script.py"
        script.write_text(BACKTESTING_PY)
        contenders["backtesting.py script"] = ([str(PEERS_PYTHON), str(script), str(data), str(work / "bt")], work)
    else:
        print(f"no {PEERS_PYTHON}: `make bench-peers` builds it; backtesting.py is skipped")
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        contenders = {k: v for k, v in contenders.items() if k in wanted}
    load0 = load_average()
    print(f"{args.bars:,} bars (seed {args.seed}) in {data}; {args.rounds} interleaved rounds; "
          f"load average {load0} on {os.cpu_count()} CPUs", flush=True)
    for argv, cwd in contenders.values():  # warm-up: numba caches, .pyc files, the page cache
        timed(argv, cwd, env)
    figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            argv, cwd = contenders[name]
            figures[name].append(timed(argv, cwd, env))
            wall, cpu, rss = figures[name][-1]
            print(f"  round {r + 1} {name:<28} wall {wall:6.2f} s  cpu {cpu:6.2f} s  rss {rss:7.0f} MB",
                  flush=True)
    print(f"\nmedians over {args.rounds} rounds (load average at the end {load_average()}):")
    print(f"{'contender':<28} {'wall s':>8} {'cpu s':>8} {'peak RSS MB':>12} {'output MB':>10}")
    outputs = {"tickbridge --json": work / "now.json", "tickbridge --json-full": work / "full.json",
               "before: tickbridge --json": work / "before.json"}
    medians = {}
    for name, runs in figures.items():
        wall, cpu, rss = (statistics.median(x[i] for x in runs) for i in range(3))
        medians[name] = (wall, cpu, rss)
        out = outputs.get(name)
        size = (out.stat().st_size / 2**20) if out is not None and out.exists() else \
            sum(p.stat().st_size for p in work.glob("bt.*.csv")) / 2**20
        print(f"{name:<28} {wall:8.2f} {cpu:8.2f} {rss:12.0f} {size:10.1f}")
    peer = medians.get("backtesting.py script")
    for name in ("tickbridge --json", "before: tickbridge --json"):
        if peer is not None and name in medians:
            wall, cpu, _ = medians[name]
            print(f"{name} vs backtesting.py's whole script: wall {peer[0] / wall:.2f}x, cpu {peer[1] / cpu:.2f}x")
    if args.json:
        write_json(args.json, args, contenders, figures, medians, load0)
    tmp.cleanup()


def write_json(path: Path, args: argparse.Namespace, contenders: dict[str, tuple[list[str], Path]],
               figures: dict[str, list[tuple[float, float, float]]],
               medians: dict[str, tuple[float, float, float]], load0: str) -> None:
    """--json: per contender its command, every round (wall s, CPU s, peak RSS MB) and the medians,
    for a script to read (bench/issue18.py) instead of scraping the table."""
    Path(path).write_text(json.dumps({
        "bars": args.bars, "seed": args.seed, "rounds": args.rounds, "load_start": load0, "load_end": load_average(),
        "cpus": os.cpu_count(),
        "contenders": {name: {"argv": contenders[name][0], "cwd": str(contenders[name][1]),
                              "runs": [{"wall": w, "cpu": c, "rss_mb": r} for w, c, r in figures[name]],
                              "wall": medians[name][0], "cpu": medians[name][1], "rss_mb": medians[name][2]}
                       for name in figures}}, indent=1))


if __name__ == "__main__":
    main()
