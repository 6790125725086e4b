"""Issue 18's table, before and now, from one run: every row measured on this tree and on an older one.

    make bench-issue18                                   # builds bench/.venv-peers, then runs this
    OMP_NUM_THREADS=1 .venv/bin/python bench/issue18.py [--before /tmp/issue18-before | --no-before]
        [--before-commit f0ffe34]   (extracted into --before DIR by git archive when DIR does not exist)
        [--rounds 3] [--quick] [--out table.md] [--skip peers,process,sweep,submit,fanout]

Issue 18 is done when "the benchmark prints the table above with today's and the new figures from
one run". This script does not measure anything itself: it runs the benches that already measure
each row, each in a subprocess, with --json, and reads their figures:

- rows 1-4 (one backtest of sma_cross 10/20 on 1,000,000 bars): bench/peers.py with tb-fast,
  tb-event, their @before twins, backtesting.py, vectorbt, a numpy loop and a bare Python loop, all
  in interleaved, rotated rounds (peers.py's own); ratios of median CPU seconds;
- row 5 (the whole `tickbridge backtest` process vs backtesting.py's whole script):
  bench/backtest_process.py, interleaved rounds; wall (the issue's unit) and CPU;
- row 6 (the sweep of 175 SMA pairs, fast 5..50 x slow 10..200, on the same bars, every statistic
  per pair; the issue says 174): bench/peers.py --sweep, vectorbt 5 pairs per call (29 per call
  grew past 14 GB: docs/benchmarks.md) and in the first round only (minutes of CPU, ~13 GB); the
  per-pair cost is (tb-sweep CPU s / pairs) / (tb-fast CPU s of one backtest in rows 1-4's run);
- row 7 (tick -> adapter.submit with write-ahead on SQLite): this tree's bench/oms_speed.py
  --submit-only (a live paper bot, risk "full" and "none", the SQLite driver path; thread CPU and
  wall p50/p99); the before tree has no live bot (no live/), so its own bench/oms_speed.py runs
  from inside it (a bare OMS + risk + write-ahead loop, wall only): a narrower path, footnoted;
  the two alternate round by round;
- row 8 (1,000 WebSocket subscribers, 20 signals/s): bench/api_fanout.py --no-rest, the API from
  this tree and from the before tree (--server-path) alternating round by round; wall latency.

Each row's figures print as soon as its bench ends (the benches' own lines stream, indented),
then the table, then per row: the command, rounds run, the load average at start and end, the
CPU seconds and peak RSS (the bench's own figures, and its whole process tree's from wait4), and
the machine. A cell a tree cannot fill says "-" with the reason in a footnote, never a guess.
--quick: 1 round and an 8 s fan-out, a smoke run (7 min). The default (3 rounds) took 15.5 min at
load average 1.5-8 on this 2-core machine; vectorbt's sweep alone is 2-4 min of it, with ~13 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
PEERS_PYTHON = ROOT / "bench" / ".venv-peers" / "bin" / "python"
BEFORE = Path("/tmp/issue18-before")
# The before tree: the last commit before the session that started on issue 18 (2026-11-29 20:50;
# its `sma_cross fast=1` still crashes with the issue's traceback). a8d913f, the first guess, is a
# split intermediate commit whose own CLI fails to import.
BEFORE_COMMIT = "f0ffe34"
SWEEP_GRID = ["fast=5:50:5", "slow=10:200:10"]
SWEEP_CHUNK = 5
GROUPS = ("peers", "process", "sweep", "submit", "fanout")

# the issue's table, quoted verbatim: (key, measure, today, target)
ISSUE = (
    ("fast_vbt", "fast path vs vectorbt (rust engine)", "0.69x (3.35M vs 4.84M bars/s)",
     ">= 1.0x, peak RSS no higher"),
    ("fast_numpy", "fast path vs a plain numpy loop", "0.44x", ">= 0.8x"),
    ("event_bt", "event path vs backtesting.py", "3.0x (190k vs 61k bars/s)", ">= 5x"),
    ("event_py", "event path vs a bare Python loop of the same rule", "0.095x", ">= 0.25x"),
    ("process", "`tickbridge backtest` whole process vs backtesting.py's whole script", "0.76x (24.8 s vs 18.8 s)",
     ">= 2x"),
    ("sweep", "sweep, 174 SMA pairs on 1M bars (every statistic per pair)", "4.3x vectorbt (5.9 vs 1.37 pairs/s)",
     ">= 10x, each pair costing <= 1/3 of a single fast-path backtest, memory bounded"),
    ("submit", "tick -> adapter.submit with write-ahead on SQLite, p50 / p99", "248-361 / 936-1,319 us",
     "<= 100 us / <= 1 ms"),
    ("fanout", "1,000 WebSocket subscribers, 20 signals/s, delivery p99", "944 ms", "<= 100 ms"),
)
# rows 1-4: (key, tickbridge contender, peer, minimum ratio)
PEER_ROWS = (("fast_vbt", "tb-fast", "vectorbt", 1.0), ("fast_numpy", "tb-fast", "numpy-loop", 0.8),
             ("event_bt", "tb-event", "backtesting.py", 5.0), ("event_py", "tb-event", "python-loop", 0.25))


@dataclass
class Row:
    """One line of the table, and what is printed under it."""

    key: str
    measure: str
    issue: str
    target: str
    before: str = "-"
    now: str = "-"
    met: str = "-"
    details: list[str] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)


def issue_rows() -> dict[str, Row]:
    return {key: Row(key, measure, today, target) for key, measure, today, target in ISSUE}


@dataclass
class Run:
    """One bench subprocess: its command, exit code, JSON figures, whole-tree CPU s and peak RSS
    (wait4: the child and its reaped descendants), load average at start and end, stderr tail."""

    argv: list[str]
    cwd: str
    rc: int = 0
    figures: dict[str, Any] | None = None
    stdout: str = ""
    cpu: float = 0.0
    rss_mb: float = 0.0
    wall: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)
    error: str = ""


def run_bench(argv: list[str], cwd: Path, env: dict[str, str], json_path: Path | None, echo: bool = True) -> Run:
    """Run one bench, its stdout streamed (indented: a long run shows progress), reaped by wait4 so
    its own CPU and peak RSS are read; its --json file read back if it wrote one."""
    run = Run(argv, str(cwd))
    if json_path is not None and json_path.exists():
        json_path.unlink()
    load0 = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        lines = []
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            if echo:
                print(f"    {line.rstrip()}", flush=True)
        child.stdout.close()
        _, status, usage = os.wait4(child.pid, 0)
        run.rc = child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
        err.seek(0)
        if run.rc != 0:
            run.error = err.read().decode(errors="replace")[-2000:]
    run.wall = time.perf_counter() - started
    run.stdout = "".join(lines)
    run.cpu, run.rss_mb = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
    run.load = (load0, os.getloadavg()[0])
    if run.rc == 0 and json_path is not None and json_path.exists():
        run.figures = json.loads(json_path.read_text())
    elif run.rc == 0 and json_path is not None:
        run.error = f"no JSON written to {json_path}"
    return run


# -- figures -> cells (pure: tests/unit/test_bench_issue18.py feeds them fake results) ----------
def ratio(peer_cpu: float | None, ours_cpu: float | None) -> float | None:
    """peer / ours: > 1 = tickbridge faster (less time)."""
    if not peer_cpu or not ours_cpu:
        return None
    return peer_cpu / ours_cpu


def yes_no(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "no")


def _contender(figures: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    found = (figures or {}).get("contenders", {}).get(name)
    return found if found and found.get("rounds", len(found.get("runs", []))) else None


def peer_rows(rows: dict[str, Row], figures: dict[str, Any] | None, rounds: int, before: bool, why: str = "") -> None:
    """Rows 1-4 from bench/peers.py's JSON: CPU ratios peer / tickbridge (median over rounds)."""
    bars = (figures or {}).get("bars", 0)
    trips = (figures or {}).get("round_trips", {})
    for key, ours, peer, minimum in PEER_ROWS:
        row = rows[key]
        if figures is None:
            row.footnotes.append(f"bench/peers.py failed: {why}")
            continue
        p, now, old = _contender(figures, peer), _contender(figures, ours), _contender(figures, f"{ours}@before")
        if p is None:
            row.footnotes.append(f"{peer} did not run (failed in every round, or its venv is missing)")
        if now is None:
            row.footnotes.append(f"{ours} failed in every round (see its stderr above)")
        now_r = ratio(p and p["cpu"], now and now["cpu"])
        old_r = ratio(p and p["cpu"], old and old["cpu"])
        row.now = _peer_cell(now_r, now, p, bars)
        row.before = _peer_cell(old_r, old, p, bars) if before else "-"
        if not before:
            row.footnotes.append("--no-before: the before tree was not run")
        elif old is None:
            row.footnotes.append(f"{ours}@before failed in every round (see its stderr above)")
        ok = None if now_r is None else now_r >= minimum
        if key == "fast_vbt" and ok is not None and now and p:
            rss_ok = now["rss_mb"] <= p["rss_mb"]
            row.met = f"{yes_no(ok and rss_ok)} (ratio {yes_no(ok)}, RSS {now['rss_mb']:,.0f} vs {p['rss_mb']:,.0f} MB)"
        else:
            row.met = yes_no(ok)
        for name, c in ((ours, now), (f"{ours}@before", old), (peer, p)):
            if c is not None:
                same = same_note(c, "round trips", "tb-fast")
                made = f"{trips[name]:,} round trips, " if name in trips else ""
                row.details.append(f"{name}: CPU s median {c['cpu']:.3f} over {c['rounds']} of {rounds} rounds "
                                   f"({', '.join(f'{r['cpu']:.3f}' for r in c['runs'])}), wall s median "
                                   f"{c['wall']:.3f}, peak RSS {c['rss_mb']:,.0f} MB; {made}{same}")
            elif name != f"{ours}@before" or before:
                row.details.append(f"{name}: no successful round of {rounds}")


def same_note(contender: dict[str, Any], what: str, reference: str) -> str:
    """Whether a contender's trades matched the reference's, as the bench checked (a speed-up that
    changes a result is a bug: say so loudly)."""
    same = contender.get("same_as_reference")
    if same is None:
        return ""
    return f"same {what} as {reference}" if same else f"{what.upper()} DIFFER from {reference}"


def _peer_cell(value: float | None, ours: dict[str, Any] | None, peer: dict[str, Any] | None, bars: int) -> str:
    if value is None or ours is None or peer is None:
        return "-"
    return f"{value:.2f}x CPU ({_rate(bars / ours['cpu'])} vs {_rate(bars / peer['cpu'])} bars/s)"


def _rate(per_s: float) -> str:
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f}M"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.0f}k"
    return f"{per_s:.0f}"


def process_row(row: Row, figures: dict[str, Any] | None, rounds: int, before: bool, why: str = "") -> None:
    """Row 5 from bench/backtest_process.py's JSON: wall (the issue's unit) and CPU ratios."""
    if figures is None:
        row.footnotes.append(f"bench/backtest_process.py failed: {why}")
        return
    contenders = figures["contenders"]
    peer = contenders.get("backtesting.py script")
    if peer is None:
        row.footnotes.append("backtesting.py's script did not run (bench/.venv-peers missing: make bench-peers)")

    def cell(name: str) -> tuple[str, float | None, float | None]:
        ours = contenders.get(name)
        if ours is None or peer is None:
            return "-", None, None
        wall, cpu = ratio(peer["wall"], ours["wall"]), ratio(peer["cpu"], ours["cpu"])
        return (f"{wall:.2f}x wall, {cpu:.2f}x CPU ({ours['wall']:.1f} s vs {peer['wall']:.1f} s wall)", wall, cpu)

    row.now, wall, cpu = cell("tickbridge --json")
    if before:
        row.before = cell("before: tickbridge --json")[0]
    else:
        row.footnotes.append("--no-before: the before tree was not run")
    row.met = "-" if wall is None else f"{yes_no(wall >= 2)} (wall; CPU {yes_no(cpu is not None and cpu >= 2)})"
    for name, c in contenders.items():
        row.details.append(f"{name}: wall s median {c['wall']:.2f}, CPU s median {c['cpu']:.2f}, peak RSS median "
                           f"{c['rss_mb']:,.0f} MB over {len(c['runs'])} of {rounds} rounds; "
                           f"`{' '.join(c['argv'][1:])}` in {c['cwd']}")


def sweep_row(row: Row, sweep: dict[str, Any] | None, peers: dict[str, Any] | None, rounds: int, before: bool,
              why: str = "") -> None:
    """Row 6 from bench/peers.py --sweep's JSON (and tb-fast's CPU from rows 1-4's run)."""
    if sweep is None:
        row.footnotes.append(f"bench/peers.py --sweep failed: {why}")
        return
    pairs = sweep["pairs"]
    vbt = _contender(sweep, "vectorbt-sweep")
    if vbt is None:
        row.footnotes.append("vectorbt-sweep did not run (failed, skipped for memory, or its venv is missing)")
    if pairs != 174:
        row.footnotes.append(f"the grid {' '.join(SWEEP_GRID)} with slow > fast has {pairs} pairs, not the "
                             "issue's 174 (docs/benchmarks.md: 175)")

    def cell(suffix: str) -> tuple[str, float | None, float | None, dict[str, Any] | None]:
        tb = _contender(sweep, f"tb-sweep{suffix}")
        single = _contender(peers, f"tb-fast{suffix}")
        if tb is None:
            return "-", None, None, None
        r = ratio(vbt and vbt["cpu"], tb["cpu"])
        per_pair = (tb["cpu"] / pairs) / single["cpu"] if single else None
        parts = [f"{r:.1f}x vectorbt CPU ({pairs / tb['cpu']:.1f} vs {pairs / vbt['cpu']:.2f} pairs/s)"
                 if r is not None and vbt else f"{pairs / tb['cpu']:.1f} pairs/s CPU (no vectorbt figure)"]
        parts.append(f"a pair = {per_pair:.2f} of one backtest" if per_pair is not None else
                     "a pair vs one backtest: - (no tb-fast figure)")
        parts.append(f"peak RSS {tb['rss_mb']:,.0f} MB")
        return "; ".join(parts), r, per_pair, tb

    row.now, r, per_pair, tb = cell("")
    if before:
        row.before = cell("@before")[0]
    else:
        row.footnotes.append("--no-before: the before tree was not run")
    single = _contender(peers, "tb-fast")
    mem = (f"memory: tb-sweep peak {tb['rss_mb']:,.0f} MB for {pairs} pairs vs one backtest's "
           f"{single['rss_mb']:,.0f} MB, judge" if tb and single else "memory: -")
    row.met = (f"ratio {yes_no(None if r is None else r >= 10)}, per pair "
               f"{yes_no(None if per_pair is None else per_pair <= 1 / 3)}; {mem}")
    for name in ("tb-sweep", "tb-sweep@before", "vectorbt-sweep"):
        c = _contender(sweep, name)
        if c is not None:
            row.details.append(f"{name}: CPU s median {c['cpu']:.2f} over {c['rounds']} run(s) "
                               f"({', '.join(f'{x['cpu']:.2f}' for x in c['runs'])}), wall s median {c['wall']:.2f}, "
                               f"peak RSS {c['rss_mb']:,.0f} MB; {same_note(c, 'trade counts per pair', 'tb-sweep')}")
        elif name != "tb-sweep@before" or before:
            row.details.append(f"{name}: no successful run")
    row.details.append(f"{pairs} pairs; tickbridge {rounds} interleaved round(s), vectorbt-sweep the first only")


BEFORE_SUBMIT = re.compile(r"SQLite WAL: tick -> adapter.submit with risk \+ write-ahead commit: "
                           r"p50 ([\d,.]+) us, p99 ([\d,.]+) us")


def parse_before_submit(stdout: str) -> tuple[float, float] | None:
    """The before tree's bench/oms_speed.py has no --json: its one tick -> submit line (SQLite)."""
    match = BEFORE_SUBMIT.search(stdout)
    return None if match is None else (float(match[1].replace(",", "")), float(match[2].replace(",", "")))


def _median_round(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return sorted(rounds, key=lambda r: r[key])[len(rounds) // 2]


def submit_row(row: Row, now: list[dict[str, Any]], before: list[tuple[float, float]] | None, rounds: int,
               why_now: str = "", why_before: str = "") -> None:
    """Row 7: this tree's rounds (oms_speed --json results, one dict per round: "full/driver" ->
    {"median": {...}}) and the before tree's (p50, p99) wall per round; the median round by CPU
    (this tree) or wall (before) p50."""
    cells, met = [], []
    for risk in ("full", "none"):
        got = [r["results"][f"{risk}/driver"]["median"] for r in now if f"{risk}/driver" in r.get("results", {})]
        if not got:
            continue
        m = _median_round(got, "cpu50")
        cells.append(f"risk {risk}: CPU {m['cpu50']:,.0f} / {m['cpu99']:,.0f} us, wall {m['wall50']:,.0f} / "
                     f"{m['wall99']:,.0f} us")
        met.append(f"{risk}: CPU {yes_no(m['cpu50'] <= 100 and m['cpu99'] <= 1000)}, wall "
                   f"{yes_no(m['wall50'] <= 100 and m['wall99'] <= 1000)}")
        row.details.append(f"this tree, risk {risk}: {len(got)} of {rounds} rounds; CPU p50 per round "
                           f"{', '.join(f'{g['cpu50']:,.0f}' for g in got)} us, wall p99 per round "
                           f"{', '.join(f'{g['wall99']:,.0f}' for g in got)} us; {m['n']:,} submits in the "
                           "median round")
    row.now = "; ".join(cells) if cells else "-"
    if not cells:
        row.footnotes.append(f"this tree's bench/oms_speed.py --submit-only failed: {why_now}")
    row.met = "; ".join(met) if met else "-"
    if before is None:
        row.footnotes.append(why_before or "--no-before: the before tree was not run")
    elif not before:
        row.footnotes.append(f"the before tree's bench/oms_speed.py gave no figure: {why_before}")
    else:
        p50 = statistics.median(b[0] for b in before)
        p99 = statistics.median(b[1] for b in before)
        row.before = f"wall {p50:,.0f} / {p99:,.0f} us (its own bench, a narrower path: note)"
        row.footnotes.append("before: the before tree has no live bot (no live/, no paper_bot), so this tree's "
                             "--submit-only cannot run there; the figure is its own bench/oms_speed.py item 3: "
                             "an OrderManager with a 2-limit risk gate and the SQL journal over SimulatedVenue, "
                             "a limit order per tick, wall time only (no thread CPU), 5,000 ticks - not the paper "
                             "bot path (runner, tick guard, bars, strategy, signal row) the now column times")
        row.details.append(f"before tree: {len(before)} of {rounds} rounds; wall p50/p99 per round "
                           f"{', '.join(f'{a:,.0f}/{b:,.0f}' for a, b in before)} us")


def fanout_row(row: Row, now: list[dict[str, Any]], before: list[dict[str, Any]] | None, rounds: int,
               why_now: str = "", why_before: str = "") -> None:
    """Row 8 from bench/api_fanout.py's JSON, one dict per round and tree: the median round's p99
    (wall: a delivery latency is wall time by nature) with its p50, deliveries and API CPU."""

    def cell(runs: list[dict[str, Any]]) -> tuple[str, float]:
        m = _median_round(runs, "p99")
        per = max(1, m["deliveries"])
        return (f"p99 {m['p99']:,.0f} ms (p50 {m['p50']:,.0f} ms; {m['deliveries']:,}/{m['expected']:,} "
                f"deliveries; API CPU {m['server_cpu'] / per * 1e6:,.1f} us per delivery)", m["p99"])

    if now:
        row.now, p99 = cell(now)
        row.met = f"{yes_no(p99 <= 100)} (wall)"
    else:
        row.footnotes.append(f"this tree's bench/api_fanout.py failed: {why_now}")
    if before is None:
        row.footnotes.append(why_before or "--no-before: the before tree was not run")
    elif before:
        row.before = cell(before)[0]
    else:
        row.footnotes.append(f"the before tree's API failed in bench/api_fanout.py: {why_before}")
    for name, runs in (("this tree", now), ("before tree", before or [])):
        if runs:
            row.details.append(f"{name}: {len(runs)} of {rounds} rounds; p99 per round "
                               f"{', '.join(f'{r['p99']:,.0f}' for r in runs)} ms; load per round "
                               f"{', '.join(f'{r['load_before'][0]:.1f}->{r['load_after'][0]:.1f}' for r in runs)}; "
                               f"{runs[0]['clients_are']}")


def render(rows: list[Row], machine: str, elapsed: float | None = None) -> str:
    """The table (markdown), then per row what it ran and at what load, the footnotes, the machine."""
    out = ["| measure | issue's figure (quoted, from the issue text) | before tree, this run | this tree, this run "
           "| target | met? |", "|---|---|---|---|---|---|"]
    notes: list[str] = []
    for number, row in enumerate(rows, 1):
        marks = ""
        for note in row.footnotes:
            notes.append(note)
            marks += f"[{len(notes)}]"
        out.append(f"| {row.measure}{marks} | {row.issue} | {row.before} | {row.now} | {row.target} | {row.met} |")
    out.append("")
    out.append("Ratios > 1: tickbridge faster (median CPU seconds unless labelled wall). Per row:")
    for number, row in enumerate(rows, 1):
        out.append(f"- row {number}, {row.measure}:")
        out.extend(f"  - {line}" for line in row.details)
    if notes:
        out.append("")
        out.extend(f"[{i}] {note}" for i, note in enumerate(notes, 1))
    out.append("")
    out.append(machine)
    if elapsed is not None:
        out.append(f"elapsed {elapsed / 60:.1f} min")
    return "\n".join(out)


def machine_line() -> str:
    model = "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"machine: nproc {nproc}, {model}, Python {sys.version.split()[0]}"


# -- the run -------------------------------------------------------------------------------------
def run_detail(run: Run, label: str) -> str:
    return (f"{label}: `{' '.join(run.argv)}` in {run.cwd}: exit {run.rc}, load {run.load[0]:.2f} -> "
            f"{run.load[1]:.2f}, {run.wall:.0f} s wall, its process tree {run.cpu:.1f} s CPU (warm-ups and data "
            f"included), peak RSS {run.rss_mb:,.0f} MB (largest process)")


def why(run: Run) -> str:
    return f"exit {run.rc}: {run.error.strip().splitlines()[-1] if run.error.strip() else 'no output'}"


class Bench:
    """The row groups, each running its bench(es) and filling its rows, printed as they finish."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.before: Path | None = None if args.no_before else args.before.resolve()
        self.rows = issue_rows()
        self.peers: dict[str, Any] | None = None
        self.env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def show(self, *keys: str) -> None:
        for key in keys:
            row = self.rows[key]
            print(f"\n>> {row.measure}: before {row.before} | now {row.now} | target {row.target} | met {row.met}",
                  flush=True)
            for note in row.footnotes:
                print(f"   note: {note}", flush=True)

    def group_peers(self) -> None:
        out = self.work / "peers.json"
        argv = [str(PYTHON), str(ROOT / "bench" / "peers.py"), "--rounds", str(self.args.rounds), "--only",
                "tb-fast,tb-event,backtesting.py,vectorbt,numpy-loop,python-loop", "--json", str(out)]
        if self.before:
            argv += ["--before", str(self.before)]
        run = run_bench(argv, ROOT, self.env, out)
        self.peers = run.figures
        peer_rows(self.rows, run.figures, self.args.rounds, self.before is not None, why(run))
        self.rows[PEER_ROWS[0][0]].details.append(run_detail(run, "bench"))
        for key, *_ in PEER_ROWS[1:]:
            self.rows[key].details.append(f"bench: the same run as row 1 (load {run.load[0]:.2f} -> {run.load[1]:.2f})")
        self.show(*(key for key, *_ in PEER_ROWS))

    def group_process(self) -> None:
        row = self.rows["process"]
        out = self.work / "process.json"
        before, failed = self.before, ""
        if before is not None:
            failed = self.before_cli_fails(before)
        names = ["tickbridge --json", "backtesting.py script", *(["before: tickbridge --json"] if before else [])]
        if failed:  # backtest_process.py stops at a failing contender: leave it out, keep the rest
            names.pop()
        argv = [str(PYTHON), str(ROOT / "bench" / "backtest_process.py"), "--rounds", str(self.args.rounds),
                "--only", ",".join(names), "--json", str(out)]
        if before and not failed:
            argv += ["--before", str(before)]
        run = run_bench(argv, ROOT, self.env, out)
        process_row(row, run.figures, self.args.rounds, before is not None, why(run))
        if failed:
            row.footnotes.append(f"before: the before tree's own `tickbridge backtest` fails on a small file, so it "
                                 f"was left out: {failed}")
        row.details.append(run_detail(run, "bench"))
        self.show("process")

    def before_cli_fails(self, tree: Path) -> str:
        """'' if the tree's `tickbridge backtest` runs sma_cross on the SPY daily bars, else why not."""
        module = "app.cli" if (tree / "app" / "cli.py").exists() else "engine.cli"
        data = next((p for p in (tree / "data" / "stocks" / "SPY_daily.csv", ROOT / "data" / "stocks" / "SPY_daily.csv")
                     if p.exists()), None)
        if data is None:
            return "no SPY_daily.csv to try it on"
        argv = [str(PYTHON), "-m", module, "backtest", "--strategy", "sma_cross", "--data", str(data),
                "--commission", "0.0001", "--json", str(self.work / "before-cli.json")]
        run = run_bench(argv, tree, {**self.env, "COLUMNS": "100"}, None, echo=False)
        self.rows["process"].details.append(run_detail(run, "pre-flight of the before tree's CLI"))
        return why(run) if run.rc else ""

    def group_sweep(self) -> None:
        out = self.work / "sweep.json"
        argv = [str(PYTHON), str(ROOT / "bench" / "peers.py"), "--sweep", *SWEEP_GRID, "--chunk", str(SWEEP_CHUNK),
                "--rounds", str(self.args.rounds), "--peer-rounds", "1", "--json", str(out)]
        if self.before:
            argv += ["--before", str(self.before)]
        available = mem_available_gb()
        row = self.rows["sweep"]
        if available is not None and available < self.args.sweep_min_gb:
            argv += ["--only", "tb-sweep"]
            row.footnotes.append(f"vectorbt-sweep skipped: it grows to ~13 GB and {available:.1f} GB was available "
                                 f"(< --sweep-min-gb {self.args.sweep_min_gb:g}); no ratio to vectorbt this run")
        run = run_bench(argv, ROOT, self.env, out)
        sweep_row(row, run.figures, self.peers, self.args.rounds, self.before is not None, why(run))
        row.details.append(run_detail(run, "bench"))
        self.show("sweep")

    def group_submit(self) -> None:
        row = self.rows["submit"]
        now: list[dict[str, Any]] = []
        before: list[tuple[float, float]] | None = [] if self.before else None
        why_now = why_before = ""
        for r in range(self.args.rounds):  # the two trees alternate, round by round
            out = self.work / f"submit-{r}.json"
            argv = [str(PYTHON), str(ROOT / "bench" / "oms_speed.py"), "--submit-only", "--submit-rounds", "1",
                    "--json", str(out)]
            run = run_bench(argv, ROOT, self.env, out)
            row.details.append(run_detail(run, f"round {r + 1}, this tree"))
            if run.figures:
                now.append(run.figures)
            else:
                why_now = why(run)
            if self.before is not None and before is not None:
                bench = self.before / "bench" / "oms_speed.py"
                argv = [str(PYTHON), str(bench), "--orders", "2000"]
                run = run_bench(argv, self.before, {**self.env, "PYTHONPATH": str(self.before)}, None)
                row.details.append(run_detail(run, f"round {r + 1}, before tree"))
                figure = parse_before_submit(run.stdout) if run.rc == 0 else None
                if figure:
                    before.append(figure)
                else:
                    why_before = why(run) if run.rc else "no 'tick -> adapter.submit' line in its output"
        submit_row(row, now, before, self.args.rounds, why_now, why_before)
        self.show("submit")

    def group_fanout(self) -> None:
        row = self.rows["fanout"]
        now: list[dict[str, Any]] = []
        before: list[dict[str, Any]] | None = [] if self.before else None
        why_now = why_before = ""
        trees = [("this tree", None), *([("before tree", self.before)] if self.before else [])]
        for r in range(self.args.rounds):  # alternating, each tree on a store of its own kept across rounds
            for label, server in (trees if r % 2 == 0 else trees[::-1]):
                out = self.work / f"fanout-{label[:3]}-{r}.json"
                argv = [str(PYTHON), str(ROOT / "bench" / "api_fanout.py"), "--clients", "1000", "--rate", "20",
                        "--seconds", str(self.args.fanout_seconds), "--no-rest", "--port", str(free_port()),
                        "--workdir", str(self.work / f"fanout-{label[:3]}"), "--json", str(out)]
                if server is not None:
                    argv += ["--server-path", str(server)]
                run = run_bench(argv, ROOT, self.env, out)
                row.details.append(run_detail(run, f"round {r + 1}, {label}"))
                target = now if server is None else before
                if run.figures and target is not None:
                    target.append(run.figures)
                elif server is None:
                    why_now = why(run)
                else:
                    why_before = why(run)
        fanout_row(row, now, before, self.args.rounds, why_now, why_before)
        self.show("fanout")


def mem_available_gb() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return None


def free_port() -> int:
    """A loopback port nobody holds now: other jobs on this machine run api_fanout.py on its default."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def extract_tree(commit: str, into: Path) -> None:
    """The repository's tree at `commit`, written to `into` (git archive | tar): the before tree
    rebuilt on any checkout, so the before column needs nothing prepared by hand."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        into.rmdir()
        sys.exit(f"cannot extract commit {commit} (git archive: {archive.stderr.decode(errors='replace').strip()}): "
                 "give --before DIR or --no-before")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    print(f"before tree: commit {commit} extracted into {into}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=BEFORE, help="the older tree (default: %(default)s)")
    parser.add_argument("--no-before", action="store_true", help="measure this tree only")
    parser.add_argument("--before-commit", default=BEFORE_COMMIT,
                        help="when --before DIR does not exist, extract this commit of this repository into it "
                             "(git archive; default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fanout-seconds", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true", help="1 round and an 8 s fan-out: a smoke run")
    parser.add_argument("--skip", default="", help=f"comma-separated row groups to skip: {','.join(GROUPS)}")
    parser.add_argument("--sweep-min-gb", type=float, default=14.0,
                        help="run vectorbt's sweep only with this much memory available (it grows to ~13 GB)")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.fanout_seconds = 1, 8.0
    skip = {g for g in args.skip.split(",") if g}
    unknown = skip - set(GROUPS)
    if unknown:
        parser.error(f"unknown row groups {sorted(unknown)}: {','.join(GROUPS)}")
    if not args.no_before and not args.before.exists():
        extract_tree(args.before_commit, args.before)
    if not args.no_before and not (args.before / "engine").is_dir():
        parser.error(f"{args.before} is not a tickbridge tree (no engine/): give --before DIR or --no-before")
    started = time.perf_counter()
    machine = machine_line()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"issue 18's table: {args.rounds} round(s), before tree {'not run' if args.no_before else args.before}; "
          f"load average {load}; {machine}", flush=True)
    with tempfile.TemporaryDirectory(prefix="issue18-") as tmp:
        bench = Bench(args, Path(tmp))
        steps: dict[str, Callable[[], None]] = {"peers": bench.group_peers, "process": bench.group_process,
                                                "sweep": bench.group_sweep, "submit": bench.group_submit,
                                                "fanout": bench.group_fanout}
        for name in GROUPS:
            if name in skip:
                for key in ([k for k, *_ in PEER_ROWS] if name == "peers" else [name]):
                    bench.rows[key].footnotes.append(f"not measured: --skip {name}")
                continue
            print(f"\n== {name} ({time.perf_counter() - started:.0f} s in; load {os.getloadavg()[0]:.2f})", flush=True)
            steps[name]()
        table = render(list(bench.rows.values()), machine, time.perf_counter() - started)
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
