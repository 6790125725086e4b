"""tickbridge against the tools a quant would otherwise pick, on the same bars with the same rule.

    make bench-peers                                  # builds bench/.venv-peers, then runs this
    OMP_NUM_THREADS=1 .venv/bin/python bench/peers.py [--bars 1000000] [--seed 42] [--rounds 3]
        [--fast 10] [--slow 20] [--before /path/to/an/older/tree] [--only name,name]

Contenders, each run in a subprocess of its own (so its peak RSS is its own, imports included):
- tickbridge fast path and event path (run_backtest; this tree's .venv; with --before, the same
  two again from an older tree, so before/after come from one run at the same load);
- backtesting.py and vectorbt (bench/.venv-peers, pinned in bench/requirements-peers.txt);
- a numpy loop (vectorised signals, a Python loop over the trades only) and a bare Python loop
  (one pass over the bars: the cross rule, the position, the cash, the equity).

Same data: 1,000,000 bars bootstrapped from the real EURUSD hourly bars (bench/backtest_speed.py),
written once to an .npz that every contender reads. Same rule: sma_cross fast/slow, long only,
backtrader's cross (d = fast - slow crosses up when d > 0 and the last non-zero d before is < 0;
strategies/sma_cross.py), decided at a bar's close and filled at the next bar's open, all cash per
entry in whole units, commission 0.01 %, the position still open at the end closed at the last
close. Same indicator values: every peer computes the SMAs as numpy's convolution with weights
1/n, which is pandas-ta's arithmetic (tickbridge's), so a crossing never hinges on the last bit.
The script checks every contender made the same round trips (count, entry bar, exit bar) as
tickbridge's fast path and says so per contender.

Timing: CPU seconds (time.process_time) of the backtest call alone, after a warm-up run on the
first 5,000 bars in the same process (numba compiles or loads its cache there); wall seconds too.
Rounds are interleaved (every contender once per round, the order rotated each round) so the
load of this shared machine hits all alike; the table shows medians over rounds and the load
average at the start and end. bars/s = bars / median CPU seconds; a ratio > 1 = tickbridge's
path faster than the peer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / "bench" / ".venv-peers" / "bin" / "python"
CASH = 10_000.0
COMMISSION = 0.0001
WARMUP_BARS = 5_000
TB = ("tb-fast", "tb-event")
PEERS = ("backtesting.py", "vectorbt", "numpy-loop", "python-loop")
# ratios the issue tracks: (tickbridge contender, peer)
RATIOS = (("tb-fast", "vectorbt"), ("tb-fast", "numpy-loop"), ("tb-event", "backtesting.py"),
          ("tb-event", "python-loop"))


# -- the rule, for the peers (standalone: the peers' venv has no tickbridge) ----------------------
def sma(close: np.ndarray, n: int) -> np.ndarray:
    """pandas-ta's sma arithmetic (nb_sma: convolution with weights 1/n), NaN for the warm-up."""
    out = np.full(len(close), np.nan)
    if len(close) >= n:
        out[n - 1:] = np.convolve(close, np.ones(n) / n, mode="valid")
    return out


def cross_masks(fast: np.ndarray, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """backtrader's CrossOver (strategies.base.cross_masks): up where d > 0 and the last non-zero
    d before is < 0; down the other way; NaN ends the look-back."""
    d = fast - slow
    n = len(d)
    idx = np.arange(n)
    last = np.maximum.accumulate(np.where(d != 0, idx, -1)) if n else idx
    nzd = np.where(last >= 0, d[np.maximum(last, 0)], np.nan)
    before = np.full(n, np.nan)
    before[1:] = nzd[:-1]
    return (d > 0) & (before < 0), (d < 0) & (before > 0)


def round_trips(up: np.ndarray, down: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit fill bars of the long-only rule: a cross up while flat enters at the next
    open, a cross down while long exits at the next open; a signal at the last bar is not filled;
    the trade still open at the end exits at bar n - 1 (its close)."""
    events = np.flatnonzero(up | down)
    events = events[events < n - 1]
    is_up = up[events]
    if not len(events):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    change = np.empty(len(events), dtype=bool)  # the wanted direction changes (flat at start)
    change[0] = bool(is_up[0])
    change[1:] = is_up[1:] != is_up[:-1]
    events, is_up = events[change], is_up[change]
    entries = events[is_up] + 1
    exits = events[~is_up] + 1
    if len(exits) < len(entries):
        exits = np.append(exits, n - 1)
    return entries.astype(np.int64), exits.astype(np.int64)


# -- contenders (each returns (entry_bars, exit_bars) of its round trips) ------------------------
def run_tickbridge(data: dict[str, np.ndarray], fast: int, slow: int, path: str, timed: bool) -> Any:
    import pandas as pd

    from backtest.config import make_config
    from backtest.runner import run_backtest
    from strategies import get_strategy

    frame = pd.DataFrame({c: data[c] for c in ("open", "high", "low", "close", "volume")},
                         index=pd.DatetimeIndex(data["time"].astype("datetime64[ns]"), name="time"))
    config = make_config(path=path, commission=str(COMMISSION), cash=str(int(CASH)))
    strategy = get_strategy("sma_cross")

    def once() -> tuple[np.ndarray, np.ndarray]:
        result = run_backtest(frame, strategy, {"fast": fast, "slow": slow}, config)
        assert result.meta["path"] == path, result.meta
        trades = result.trades
        return trades["entry_bar"].to_numpy(), trades["exit_bar"].to_numpy()

    return once


def run_backtesting(data: dict[str, np.ndarray], fast: int, slow: int, path: str, timed: bool) -> Any:
    import warnings

    import pandas as pd
    from backtesting import Backtest, Strategy

    frame = pd.DataFrame({"Open": data["open"], "High": data["high"], "Low": data["low"], "Close": data["close"],
                          "Volume": data["volume"]},
                         index=pd.DatetimeIndex(data["time"].astype("datetime64[ns]")))

    class SmaCross(Strategy):
        def init(self) -> None:
            close = np.asarray(self.data.Close, dtype=np.float64)
            self.fast_ma = self.I(sma, close, fast)
            self.slow_ma = self.I(sma, close, slow)
            self.last_nz = float("nan")  # last non-zero fast - slow (backtrader's rule)

        def next(self) -> None:
            d = self.fast_ma[-1] - self.slow_ma[-1]
            before = self.last_nz
            if d != 0:  # NaN too: it ends the look-back
                self.last_nz = d
            if d > 0 and before < 0 and not self.position:
                self.buy()
            elif d < 0 and before > 0 and self.position:
                self.position.close()

    def once() -> tuple[np.ndarray, np.ndarray]:
        bt = Backtest(frame, SmaCross, cash=CASH, commission=COMMISSION, finalize_trades=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = bt.run()
        trades = stats["_trades"]
        return trades["EntryBar"].to_numpy(np.int64), trades["ExitBar"].to_numpy(np.int64)

    return once


def run_vectorbt(data: dict[str, np.ndarray], fast: int, slow: int, path: str, timed: bool) -> Any:
    import pandas as pd
    import vectorbt as vbt

    index = pd.DatetimeIndex(data["time"].astype("datetime64[ns]"))
    close = pd.Series(data["close"], index=index)
    open_ = pd.Series(data["open"], index=index)

    def once() -> tuple[np.ndarray, np.ndarray]:
        c = close.to_numpy()
        up, down = cross_masks(sma(c, fast), sma(c, slow))
        # decided at bar t's close, filled at t + 1's open: the signals move one bar on
        entries = pd.Series(np.concatenate([[False], up[:-1]]), index=index)
        exits = pd.Series(np.concatenate([[False], down[:-1]]), index=index)
        pf = vbt.Portfolio.from_signals(close, entries, exits, price=open_, size=np.inf, size_granularity=1.0,
                                        fees=COMMISSION, init_cash=CASH, freq="h", engine=ENGINE)
        pf.value()  # the equity curve, as every other contender makes one
        records = pf.exit_trades.records
        return records["entry_idx"].to_numpy(np.int64), records["exit_idx"].to_numpy(np.int64)

    return once


ENGINE = os.environ.get("PEERS_VECTORBT_ENGINE", "rust")


def run_numpy(data: dict[str, np.ndarray], fast: int, slow: int, path: str, timed: bool) -> Any:
    def once() -> tuple[np.ndarray, np.ndarray]:
        o, c = data["open"], data["close"]
        n = len(c)
        up, down = cross_masks(sma(c, fast), sma(c, slow))
        entries, exits = round_trips(up, down, n)
        exit_px = o[exits].copy()
        if len(exits) and exits[-1] == n - 1:
            exit_px[-1] = c[-1]
        cash = CASH
        qty = np.empty(len(entries))
        cash_after = np.empty(len(entries))
        cash_in = np.empty(len(entries))
        for k, (ep, xp) in enumerate(zip(o[entries].tolist(), exit_px.tolist())):  # sizing compounds
            q = float(int(cash / (ep * (1 + COMMISSION))))
            cash_in[k] = cash - q * ep * (1 + COMMISSION)
            cash = cash_in[k] + q * xp * (1 - COMMISSION)
            qty[k], cash_after[k] = q, cash
        # the equity curve: cash + qty * close, held from each fill to the next
        marks = np.full(n, np.nan)
        pos = np.zeros(n)
        marks[0] = CASH
        marks[entries] = cash_in
        pos[entries] = qty
        marks[exits] = cash_after
        pos[exits] = 0.0
        held = np.where(np.isnan(marks), -1, np.arange(n))
        last = np.maximum.accumulate(held)
        equity = marks[last] + np.where(np.isin(last, entries), pos[last], 0.0) * c
        assert np.isfinite(equity).all()
        return entries, exits

    return once


def run_python(data: dict[str, np.ndarray], fast: int, slow: int, path: str, timed: bool) -> Any:
    def once() -> tuple[list[int], list[int]]:
        o, c = data["open"].tolist(), data["close"].tolist()
        n = len(c)
        fma, sma_ = sma(data["close"], fast).tolist(), sma(data["close"], slow).tolist()
        cash, qty, last_nz, pending = CASH, 0.0, float("nan"), 0
        entries: list[int] = []
        exits: list[int] = []
        equity = [0.0] * n
        fee_in, fee_out = 1 + COMMISSION, 1 - COMMISSION
        for i in range(n):
            if pending > 0:
                px = o[i]
                qty = float(int(cash / (px * fee_in)))
                cash -= qty * px * fee_in
                entries.append(i)
            elif pending < 0:
                cash += qty * o[i] * fee_out
                qty = 0.0
                exits.append(i)
            pending = 0
            d = fma[i] - sma_[i]
            before = last_nz
            if d != 0:
                last_nz = d
            if d > 0 and before < 0 and not qty:
                pending = 1
            elif d < 0 and before > 0 and qty:
                pending = -1
            equity[i] = cash + qty * c[i]
        if qty:
            cash += qty * c[-1] * fee_out
            exits.append(n - 1)
            equity[-1] = cash
        return entries, exits

    return once


RUNNERS = {"tb-fast": (run_tickbridge, "fast"), "tb-event": (run_tickbridge, "event"),
           "backtesting.py": (run_backtesting, ""), "vectorbt": (run_vectorbt, ""),
           "numpy-loop": (run_numpy, ""), "python-loop": (run_python, "")}


def worker(name: str, data_file: str, fast: int, slow: int, out_file: str) -> None:
    """One contender in this process: warm up on the first bars, then one timed run."""
    kind = name.split("@")[0]
    make, path = RUNNERS[kind]
    with np.load(data_file) as z:
        data = {k: z[k] for k in z.files}
    small = {k: v[:WARMUP_BARS] for k, v in data.items()}
    make(small, fast, slow, path, False)()  # imports, numba compile or cache load, first-call costs
    once = make(data, fast, slow, path, True)
    # each contender keeps what it built its input from (the loops keep the arrays themselves; a
    # DataFrame or Series copy does not need them): the peak RSS is then its own input's
    del data, small
    rss_before = peak_rss_mb()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    entries, exits = once()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    rss = peak_rss_mb()
    np.savez(out_file, entries=np.asarray(entries, np.int64), exits=np.asarray(exits, np.int64))
    print(json.dumps({"cpu": cpu, "wall": wall, "rss_mb": rss, "rss_before_mb": rss_before}))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries the parent's
    peak over fork + exec into it, so every child would report at least the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the parent ------------------------------------------------------------------------------------
def write_data(bars: int, seed: int, target: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.backtest_speed import bootstrap_bars

    frame = bootstrap_bars(bars, seed)
    np.savez(target, time=frame.index.as_unit("ns").asi8, open=frame["open"].to_numpy(np.float64),
             high=frame["high"].to_numpy(np.float64), low=frame["low"].to_numpy(np.float64),
             close=frame["close"].to_numpy(np.float64), volume=frame["volume"].to_numpy(np.float64))


def command(name: str, before: Path | None) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kind, _, tree = name.partition("@")
    if kind in TB:
        root = before if tree == "before" else ROOT
        env["PYTHONPATH"] = str(root)
        return [str(ROOT / ".venv" / "bin" / "python"), str(Path(__file__).resolve())], env | {"PWD": str(root)}
    python = PEERS_PYTHON if PEERS_PYTHON.exists() else Path(sys.executable)
    return [str(python), str(Path(__file__).resolve())], env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=20)
    parser.add_argument("--before", type=Path, help="an older tickbridge tree: its fast and event paths run too")
    parser.add_argument("--only", help="comma-separated contenders (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.fast, args.slow, args.out)
        return
    names = [*TB, *(f"{t}@before" for t in TB if args.before), *PEERS]
    if args.only:
        wanted = set(args.only.split(","))
        names = [n for n in names if n in wanted or n.split("@")[0] in wanted]
    if not PEERS_PYTHON.exists():
        print(f"note: {PEERS_PYTHON} missing (make bench-peers): backtesting.py and vectorbt skipped")
        names = [n for n in names if n not in ("backtesting.py", "vectorbt")]
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        data_file = Path(tmp) / "bars.npz"
        write_data(args.bars, args.seed, data_file)
        print(f"{args.bars:,} bars bootstrapped from EURUSD_1h (seed {args.seed}); sma_cross {args.fast}/{args.slow} "
              f"long only, commission {COMMISSION:.2%}, cash {CASH:,.0f}; {args.rounds} interleaved rounds; "
              f"load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} ({os.cpu_count()} CPUs)")
        runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        trips: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                out = Path(tmp) / f"{name}.npz"
                cmd, env = command(name, args.before)
                cmd += ["--worker", name, "--data", str(data_file), "--fast", str(args.fast), "--slow", str(args.slow),
                        "--out", str(out)]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                      cwd=env.get("PWD", str(ROOT)))
                if proc.returncode != 0:
                    print(f"{name}: failed\n{proc.stderr[-3000:]}")
                    continue
                runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                with np.load(out) as z:
                    trips[name] = (z["entries"], z["exits"])
                run = runs[name][-1]
                print(f"  {name}: cpu {run['cpu']:.3f} s, wall {run['wall']:.3f} s, peak RSS {run['rss_mb']:,.0f} MB, "
                      f"{len(trips[name][0]):,} round trips", flush=True)
            print(f"round {r + 1}: load {os.getloadavg()[0]:.2f}", flush=True)
        load1 = os.getloadavg()
    report(names, runs, trips, args.bars, load0, load1)


def report(names: list[str], runs: dict[str, list[dict[str, float]]], trips: dict[str, Any], bars: int,
           load0: tuple[float, ...], load1: tuple[float, ...]) -> None:
    ref = trips.get("tb-fast")
    med: dict[str, float] = {}
    print("\n| contender | bars/s (CPU) | CPU s median (runs) | wall s median | peak RSS MB (before the run) | "
          "round trips | same trades as tb-fast |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        if not runs[name]:
            print(f"| {name} | failed | | | | | |")
            continue
        cpus = [r["cpu"] for r in runs[name]]
        med[name] = statistics.median(cpus)
        wall = statistics.median(r["wall"] for r in runs[name])
        rss = max(r["rss_mb"] for r in runs[name])
        rss0 = max(r["rss_before_mb"] for r in runs[name])
        entries, exits = trips[name]
        same = "-" if ref is None else (
            "yes" if len(entries) == len(ref[0]) and np.array_equal(entries, ref[0]) and np.array_equal(exits, ref[1])
            else f"NO ({_first_difference(entries, exits, ref)})")
        print(f"| {name} | {bars / med[name]:,.0f} | {med[name]:.3f} ({', '.join(f'{c:.3f}' for c in cpus)}) | "
              f"{wall:.3f} | {rss:,.0f} ({rss0:,.0f}) | {len(entries):,} | {same} |")
    print("\n| ratio (CPU, > 1 = tickbridge faster) | this tree | before |")
    print("|---|---|---|")
    for tb, peer in RATIOS:
        if peer not in med:
            continue
        now = f"{med[peer] / med[tb]:.3f}x" if tb in med else "-"
        old = f"{med[peer] / med[tb + '@before']:.3f}x" if tb + "@before" in med else "-"
        print(f"| {tb} vs {peer} | {now} | {old} |")
    print(f"\nload average: start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}, "
          f"end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}")


def _first_difference(entries: np.ndarray, exits: np.ndarray, ref: tuple[np.ndarray, np.ndarray]) -> str:
    if len(entries) != len(ref[0]):
        return f"{len(entries)} vs {len(ref[0])} round trips"
    k = int(np.flatnonzero((entries != ref[0]) | (exits != ref[1]))[0])
    return f"trade {k}: bars {entries[k]}-{exits[k]} vs {ref[0][k]}-{ref[1][k]}"


if __name__ == "__main__":
    main()
