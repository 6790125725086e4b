"""tickbridge against the tools a quant would otherwise pick, on the same bars with the same rule.

    make bench-peers                                  # builds bench/.venv-peers, then runs this
    OMP_NUM_THREADS=1 .venv/bin/python bench/peers.py [--bars 1000000] [--seed 42] [--rounds 3]
        [--fast 10] [--slow 20] [--before /path/to/an/older/tree] [--only name,name]
    OMP_NUM_THREADS=1 .venv/bin/python bench/peers.py --sweep fast=5:50:5 slow=10:200:10 [--chunk 29] ...
        [--peer-rounds N] (vectorbt-sweep in the first N rounds only) [--only tb-sweep,...]
    ... [--json out.json]   # the figures as JSON too (medians, every round, load), for bench/issue18.py

Sweep mode (--sweep, issue 18's sweep: 174 SMA pairs on the same 1,000,000 bars, every statistic
per pair): tb-sweep is backtest.evaluate.Evaluator.evaluate_many over every pair in one process
(what a `tickbridge sweep` worker runs: fast path + compute_stats' table per pair), with --before
the same from the older tree; vectorbt-sweep runs the same pairs --chunk at a time as columns of
one Portfolio.from_signals call, then pf.stats(agg_func=None) (every statistic of every column),
its SMAs computed once per distinct window. Both are checked to make the same number of round
trips per pair. Pairs/s = pairs / CPU seconds, peak RSS per process, same interleaved rounds.

Contenders, each run in a subprocess of its own (so its peak RSS is its own, imports included):
- tickbridge fast path and event path (run_backtest; this tree's .venv; with --before, the same
  two again from an older tree, so before/after come from one run at the same load); tb-fast-tick
  is the fast path with the tick size given (--price-increment 0.00001) instead of inferred from
  the 4,000,000 OHLC prices: what the grid inference costs is the difference;
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
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / "bench" / ".venv-peers" / "bin" / "python"
CASH = 10_000.0
COMMISSION = 0.0001
WARMUP_BARS = 5_000
TB = ("tb-fast", "tb-event", "tb-fast-tick")
EURUSD_TICK = "0.00001"  # the bootstrapped EURUSD bars' grid (what the fast path infers when not given)
PEERS = ("backtesting.py", "vectorbt", "numpy-loop", "python-loop")
# ratios the issue tracks: (tickbridge contender, peer)
RATIOS = (("tb-fast", "vectorbt"), ("tb-fast", "numpy-loop"), ("tb-event", "backtesting.py"),
          ("tb-event", "python-loop"), ("tb-fast-tick", "vectorbt"), ("tb-fast-tick", "numpy-loop"))


# -- the rule, for the peers (standalone: the peers' venv has no tickbridge) ----------------------
def sma(close: np.ndarray, n: int) -> np.ndarray:
    """pandas-ta's sma arithmetic (nb_sma: one dot product of each window with weights 1/n, as
    strategies.base.numpy_sma computes it), NaN for the warm-up. Not np.convolve: on a CPU with
    AVX-512 numpy's convolve takes its own SIMD loop for short kernels and differs in the last bit,
    which moved a few crossings (27,099 round trips against tickbridge's 27,097)."""
    out = np.full(len(close), np.nan)
    if len(close) >= n:
        _sma_dots(np.ascontiguousarray(close, dtype=np.float64), np.ones(n) / n, out[n - 1:])
    return out


def _sma_dots_py(x: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    n = len(weights)
    for i in range(len(out)):
        out[i] = np.dot(x[i:i + n], weights)


try:  # both venvs have numba (tickbridge's and vectorbt's); without it, numpy's np.dot per window
    import numba

    _sma_dots = numba.njit(cache=False)(_sma_dots_py)
except ImportError:  # pragma: no cover
    _sma_dots = _sma_dots_py


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
    tick = path.endswith("-tick")  # tb-fast-tick: the tick given (--price-increment), not inferred
    path = path.removesuffix("-tick")
    config = make_config(path=path, commission=str(COMMISSION), cash=str(int(CASH)),
                         price_increment=EURUSD_TICK if tick else None)
    strategy = get_strategy("sma_cross")

    def once() -> tuple[np.ndarray, np.ndarray]:
        result = run_backtest(frame, strategy, {"fast": fast, "slow": slow}, config)
        assert result.meta["path"] == path, result.meta
        trades = result.trades
        return trades["entry_bar"].to_numpy(), trades["exit_bar"].to_numpy()

    return once


def run_backtesting(data: dict[str, np.ndarray], fast: int, slow: int, path: str, timed: bool) -> Any:
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


# -- sweep mode (each returns the round trips per pair) --------------------------------------------
def sweep_tickbridge(data: dict[str, np.ndarray], pairs: list[tuple[int, int]], chunk: int) -> Any:
    import pandas as pd

    from backtest.config import make_config
    from backtest.evaluate import Evaluator
    from strategies import get_strategy

    frame = pd.DataFrame({c: data[c] for c in ("open", "high", "low", "close", "volume")},
                         index=pd.DatetimeIndex(data["time"].astype("datetime64[ns]"), name="time"))
    config = make_config(path="fast", commission=str(COMMISSION), cash=str(int(CASH)))
    evaluator = Evaluator(frame, get_strategy("sma_cross"), config, "sharpe")
    combos = [{"fast": f, "slow": s} for f, s in pairs]

    def once() -> list[int]:
        evaluations = evaluator.evaluate_many(combos)
        assert all(e.path == "fast" for e in evaluations)
        return [int(e.stats["trades"]) for e in evaluations]

    return once


def sweep_vectorbt(data: dict[str, np.ndarray], pairs: list[tuple[int, int]], chunk: int) -> Any:
    import pandas as pd
    import vectorbt as vbt

    index = pd.DatetimeIndex(data["time"].astype("datetime64[ns]"))
    close = pd.Series(data["close"], index=index)
    open_ = pd.Series(data["open"], index=index)

    def once() -> list[int]:
        c = close.to_numpy()
        smas = {w: sma(c, w) for w in sorted({w for pair in pairs for w in pair})}  # once per window
        trips: list[int] = []
        for first in range(0, len(pairs), chunk):
            part = pairs[first:first + chunk]
            entries = np.zeros((len(c), len(part)), dtype=bool)
            exits = np.zeros((len(c), len(part)), dtype=bool)
            for j, (f, s) in enumerate(part):
                up, down = cross_masks(smas[f], smas[s])
                entries[1:, j], exits[1:, j] = up[:-1], down[:-1]  # filled at the next open
            columns = pd.Index([f"{f}/{s}" for f, s in part])
            pf = vbt.Portfolio.from_signals(close, pd.DataFrame(entries, index=index, columns=columns),
                                            pd.DataFrame(exits, index=index, columns=columns), price=open_,
                                            size=np.inf, size_granularity=1.0, fees=COMMISSION, init_cash=CASH,
                                            freq="h", engine=ENGINE)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stats = pf.stats(agg_func=None)  # every statistic, per pair
            trips.extend(int(v) for v in stats["Total Trades"].to_numpy())
            del pf, stats, entries, exits
        return trips

    return once


SWEEPERS = {"tb-sweep": sweep_tickbridge, "vectorbt-sweep": sweep_vectorbt}


def sweep_worker(name: str, data_file: str, pairs_file: str, chunk: int, out_file: str) -> None:
    """One sweep contender in this process: warm up on two pairs of the first bars, then one timed
    sweep of every pair."""
    pairs = [tuple(p) for p in json.loads(Path(pairs_file).read_text())]
    make = SWEEPERS[name.split("@")[0]]
    with np.load(data_file) as z:
        data = {k: z[k] for k in z.files}
    small = {k: v[:WARMUP_BARS] for k, v in data.items()}
    make(small, pairs[:2], chunk)()
    once = make(data, pairs, chunk)
    del data, small
    rss_before = peak_rss_mb()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    trips = once()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    Path(out_file).write_text(json.dumps(trips))
    print(json.dumps({"cpu": cpu, "wall": wall, "rss_mb": peak_rss_mb(), "rss_before_mb": rss_before}))


def sweep_pairs(specs: list[str]) -> list[tuple[int, int]]:
    """fast=a:b:c slow=d:e:f into the (fast, slow) pairs sma_cross accepts (slow > fast)."""
    sys.path.insert(0, str(ROOT))
    from backtest.sweep import parse_grid

    grid = parse_grid(specs)
    return [(int(f), int(s)) for f in grid["fast"] for s in grid["slow"] if int(s) > int(f)]


def run_sweeps(args: argparse.Namespace) -> None:
    pairs = sweep_pairs(args.sweep)
    names = ["tb-sweep", *(["tb-sweep@before"] if args.before else []), "vectorbt-sweep"]
    if args.only:
        wanted = set(args.only.split(","))
        names = [n for n in names if n in wanted or n.split("@")[0] in wanted]
    if args.only:
        wanted = set(args.only.split(","))
        names = [n for n in names if n in wanted or n.split("@")[0] in wanted]
    if not PEERS_PYTHON.exists():
        print(f"note: {PEERS_PYTHON} missing (make bench-peers): vectorbt skipped")
        names = [n for n in names if n != "vectorbt-sweep"]
    load0 = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    trips: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory(prefix="peers-sweep-") as tmp:
        data_file = Path(tmp) / "bars.npz"
        pairs_file = Path(tmp) / "pairs.json"
        pairs_file.write_text(json.dumps(pairs))
        write_data(args.bars, args.seed, data_file)
        print(f"{args.bars:,} bars (seed {args.seed}); sweep {' '.join(args.sweep)}: {len(pairs)} sma_cross pairs, "
              f"long only, every statistic per pair; vectorbt {args.chunk} pairs per call; {args.rounds} interleaved "
              f"rounds; load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} ({os.cpu_count()} CPUs)",
              flush=True)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                if name == "vectorbt-sweep" and args.peer_rounds is not None and r >= args.peer_rounds:
                    continue  # --peer-rounds: the peer's sweep is minutes of CPU and GBs of memory per run
                out = Path(tmp) / f"{name}.json"
                kind = "tb-fast" + name[len("tb-sweep"):] if name.startswith("tb-sweep") else "vectorbt"
                cmd, env = command(kind, args.before)
                cmd += ["--sweep-worker", name, "--data", str(data_file), "--pairs", str(pairs_file),
                        "--chunk", str(args.chunk), "--out", str(out)]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=env.get("PWD", str(ROOT)))
                if proc.returncode != 0:
                    print(f"{name}: failed\n{proc.stderr[-3000:]}")
                    continue
                runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                trips[name] = json.loads(out.read_text())
                run = runs[name][-1]
                print(f"  {name}: cpu {run['cpu']:.2f} s ({len(pairs) / run['cpu']:.2f} pairs/s), wall "
                      f"{run['wall']:.2f} s, peak RSS {run['rss_mb']:,.0f} MB; load {os.getloadavg()[0]:.2f}",
                      flush=True)
        load1 = os.getloadavg()
    ref = trips.get("tb-sweep")
    med: dict[str, float] = {}
    print("\n| contender | pairs/s (CPU) | CPU s median (runs) | wall s median | peak RSS MB | same round trips per "
          "pair as tb-sweep |")
    print("|---|---|---|---|---|---|")
    for name in names:
        if not runs[name]:
            print(f"| {name} | failed | | | | |")
            continue
        cpus = [r["cpu"] for r in runs[name]]
        med[name] = statistics.median(cpus)
        differ = [] if ref is None else [f"{f}/{s}: {a:,} vs {b:,}" for (f, s), a, b in zip(pairs, trips[name], ref)
                                         if a != b]
        same = "-" if ref is None else ("yes" if not differ else
                                        f"NO ({len(differ)} pairs differ: {'; '.join(differ[:3])})")
        print(f"| {name} | {len(pairs) / med[name]:,.2f} | {med[name]:.2f} ({', '.join(f'{c:.2f}' for c in cpus)}) | "
              f"{statistics.median(r['wall'] for r in runs[name]):.2f} | {max(r['rss_mb'] for r in runs[name]):,.0f} "
              f"| {same} |")
    if "vectorbt-sweep" in med:
        for name in ("tb-sweep", "tb-sweep@before"):
            if name in med:
                print(f"\n{name} vs vectorbt-sweep: {med['vectorbt-sweep'] / med[name]:.2f}x (CPU, > 1 = tickbridge "
                      "faster)")
    print(f"\nload average: start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}, "
          f"end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}")
    if args.json:
        same = {n: (None if ref is None or n not in trips else trips[n] == ref) for n in names}
        write_json(args.json, "sweep", args, names, runs, same, load0, load1, pairs=len(pairs))


def write_json(path: Path, mode: str, args: argparse.Namespace, names: list[str],
               runs: dict[str, list[dict[str, float]]], same: dict[str, bool | None],
               load0: tuple[float, ...], load1: tuple[float, ...], **extra: Any) -> None:
    """--json: the figures the tables print, for a script to read (bench/issue18.py) instead of
    scraping the text. Per contender: every round's run (cpu, wall, rss_mb, rss_before_mb), the
    medians, the peak RSS over rounds, and whether its round trips match the reference."""
    contenders = {}
    for name in names:
        done = runs[name]
        contenders[name] = {
            "runs": done, "rounds": len(done),
            "cpu": statistics.median(r["cpu"] for r in done) if done else None,
            "wall": statistics.median(r["wall"] for r in done) if done else None,
            "rss_mb": max(r["rss_mb"] for r in done) if done else None,
            "same_as_reference": same.get(name)}
    Path(path).write_text(json.dumps({"mode": mode, "bars": args.bars, "seed": args.seed, "rounds": args.rounds,
                                      "load_start": list(load0), "load_end": list(load1),
                                      "cpus": os.cpu_count(), "contenders": contenders, **extra}, indent=1))


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
        sized = qty > 0  # an entry of zero units (not one affordable) is no trade, as the others count it
        return entries[sized], exits[sized]

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
                if qty:  # not one whole unit affordable (a ruined account): no trade, still flat
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
           "tb-fast-tick": (run_tickbridge, "fast-tick"),
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
    parser.add_argument("--sweep", nargs="+", help="sweep mode: sma_cross grid, e.g. fast=5:50:5 slow=10:200:10")
    parser.add_argument("--chunk", type=int, default=29, help="sweep mode: vectorbt's pairs per call")
    parser.add_argument("--peer-rounds", type=int, help="sweep mode: run vectorbt-sweep in the first N rounds only")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sweep-worker", help=argparse.SUPPRESS)
    parser.add_argument("--pairs", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.fast, args.slow, args.out)
        return
    if args.sweep_worker:
        sweep_worker(args.sweep_worker, args.data, args.pairs, args.chunk, args.out)
        return
    if args.sweep:
        run_sweeps(args)
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
    if args.json:
        ref = trips.get("tb-fast")
        same = {n: (None if ref is None or n not in trips else bool(
            len(trips[n][0]) == len(ref[0]) and np.array_equal(trips[n][0], ref[0])
            and np.array_equal(trips[n][1], ref[1]))) for n in names}
        write_json(args.json, "backtest", args, names, runs, same, load0, load1, fast=args.fast, slow=args.slow,
                   round_trips={n: len(trips[n][0]) for n in names if n in trips})


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
