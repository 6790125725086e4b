"""No silent nothing. Every `tickbridge backtest|sweep|wfo|train` example in README.md runs and
trades; and a run whose entries cannot be sized (one BTC costs more than the cash) says so, with
the count, the reason and the fix, in the result, the table, the JSON and every sweep row, the
same on the fast and the event path.

The README's commands are run as written, with outputs sent to a temporary directory, the store
in a temporary SQLite file, and sweeps cut to the first two values of each grid range on one
worker (a 174-combination sweep on 45,000 bars is the README's business, not a test's)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.evaluate import Evaluator
from backtest.report import stats_table, to_json_dict
from backtest.runner import run_backtest
from backtest.sweep import SweepOutcome, outcome_json, parse_grid
from strategies import get_strategy
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("backtest", "sweep", "wfo", "train")
OUTPUTS = ("--json", "--plot", "--heatmap", "--trades")


def readme_commands() -> list[tuple[dict[str, str], list[str]]]:
    """(environment, words after `tickbridge`) of each README command line that loads bars."""
    blocks, block, fence = [], [], None
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            if fence is None:
                fence, block = line[3:].strip(), []
            else:
                if fence in ("", "bash", "sh", "shell", "console"):
                    blocks.append("\n".join(block))
                fence = None
        elif fence is not None:
            block.append(line)
    found = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            env = {}
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                key, _, value = words.pop(0).partition("=")
                env[key] = value
            if len(words) >= 2 and words[0].endswith("tickbridge") and words[1] in COMMANDS:
                found.append((env, words[1:]))
    return found


def _absolute(word: str) -> str:
    """A repository path (data/..., examples/x.py:Class) made absolute: the commands run elsewhere."""
    head, sep, tail = word.partition(":")
    if head and not word.startswith("-") and "=" not in head and (ROOT / head).exists():
        return str(ROOT / head) + sep + tail
    return word


def _small_grid(spec: str) -> str:
    """The first two values of a --grid (parsed as sweeps parse it)."""
    [(name, values)] = parse_grid([spec]).items()
    return f"{name}={','.join(str(v) for v in values[:2])}"


def prepared(words: list[str], out: Path) -> tuple[list[str], Path | None]:
    """The command with its outputs under `out`, small grids on one worker, and a JSON to read."""
    command, args, json_path = words[0], [words[0]], None
    i = 1
    while i < len(words):
        word = words[i]
        if word in OUTPUTS:
            target = out / f"{command}_{word[2:]}{Path(words[i + 1]).suffix}"
            json_path = target if word == "--json" else json_path
            args += [word, str(target)]
            i += 2
            continue
        if command in ("sweep", "wfo") and word in ("--grid", "--trials", "--workers"):
            value = words[i + 1]
            if word == "--grid":
                args += [word, _small_grid(value)]
            elif word == "--trials":
                args += [word, str(min(int(value), 4))]
            i += 2
            continue
        args.append(_absolute(word))
        i += 1
    if command in ("backtest", "sweep", "wfo") and json_path is None:
        json_path = out / f"{command}_json.json"
        args += ["--json", str(json_path)]
    if command in ("sweep", "wfo"):
        args += ["--workers", "1", "--no-store", "--out", str(out)]
    return args, json_path


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True,
                          timeout=1800, cwd=cwd, env=env)


EXAMPLES = readme_commands()


def test_the_readme_has_examples_of_every_command():
    assert {words[0] for _, words in EXAMPLES} == set(COMMANDS)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A directory to run in, a fresh store, and the README's training runs done first, in order
    (an ml_signal example names the model id they register)."""
    cwd = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "TICKBRIDGE_DATABASE_URL": f"sqlite:///{cwd / 'store.db'}", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    trained = {}
    for i, (extra, words) in enumerate(EXAMPLES):
        if words[0] == "train":
            args, _ = prepared(words, cwd)
            done = run(args, cwd, {**env, **extra})
            model = re.search(r"as model id (\d+)", done.stdout)
            shown = run(["models", "show", model.group(1)], cwd, env) if model else None
            trained[i] = (done, None if shown is None else json.loads(shown.stdout))
    return {"cwd": cwd, "env": env, "trained": trained}


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(EXAMPLES)),
                         ids=[f"{i}-{w[0]}-" + next((w[j + 1] for j, x in enumerate(w)
                                                     if x in ("--strategy", "--model")),
                                                    "") for i, (_, w) in enumerate(EXAMPLES)])
def test_every_readme_example_trades(workspace, index):
    extra, words = EXAMPLES[index]
    if words[0] == "train":
        done, shown = workspace["trained"][index]
        assert done.returncode == 0, done.stderr[-2000:]
        assert shown["metrics"]["signal_backtest"]["trades"] > 0
        return
    out = workspace["cwd"] / f"example_{index}"
    out.mkdir()
    args, json_path = prepared(words, out)
    done = run(args, workspace["cwd"], {**workspace["env"], **extra})
    assert done.returncode == 0, f"{shlex.join(args)}\n{done.stderr[-2000:]}"
    document = json.loads(json_path.read_text())
    if words[0] == "backtest":
        assert document["stats"]["trades"] > 0, document["note"]
        assert document["unsized_orders"] == 0, document["note"]
    elif words[0] == "sweep":
        assert all(row["stats"]["trades"] > 0 for row in document["results"]), document["note"]
        assert document["note"] is None
    else:
        assert document["out_of_sample"]["trades"] > 0 and document["note"] is None, document["note"]


# -- a run that cannot size its entries says so --------------------------------------------------------

@pytest.fixture(scope="module")
def btc():
    return load_bars(DATA / "crypto" / "BTC-PERP_1m.csv").iloc[:4000]


SMA = get_strategy("sma_cross")


@pytest.mark.parametrize("path", ["fast", "event"])
def test_entries_one_unit_of_which_costs_more_than_the_cash_are_counted_with_reason_and_fix(btc, path):
    result = run_backtest(btc, SMA, {}, make_config(path=path, symbol="BTC-PERP"))
    assert result.meta["path"] == path and len(result.trades) == 0
    orders = result.orders
    refused = orders[(orders["tag"] == "open") & (orders["state"] == "REJECTED")]
    assert result.unsized_orders == len(refused) > 0  # every entry refused at its fill, none for another reason
    assert set(refused["reason"]) == {"INSUFFICIENT_FUNDS"}
    assert re.fullmatch(r"one unit \(BTC-PERP at [\d,.]+\) costs more than the cash \(10,000\.00\); "
                        r"use --param units=fractional", result.unsized_reason)
    assert result.sizing_note == (f"0 trades: {result.unsized_orders:,} orders could not be sized: "
                                  f"{result.unsized_reason}")
    fractional = run_backtest(btc, SMA, {"units": "fractional"}, make_config(path=path, symbol="BTC-PERP"))
    assert fractional.unsized_orders == 0 and fractional.sizing_note is None and len(fractional.trades) > 0


@pytest.mark.parametrize("params, cash, min_qty, commission", [
    ({}, "47000", "0", "0"),                                      # one unit at first; after losses, not any more
    ({"mode": "long_short", "size": "0.8"}, "59000", "0", "0.001"),  # shorts too, fees in the budget
    ({"units": "fractional"}, "1", "0.001", "0"),                 # fractions, but below the minimum quantity
])
def test_both_paths_count_the_same_unsized_entries_and_say_the_same(btc, params, cash, min_qty, commission):
    fast, event = (run_backtest(btc, SMA, params, make_config(path=p, symbol="BTC-PERP", cash=cash, min_qty=min_qty,
                                                              commission=commission))
                   for p in ("fast", "event"))
    assert fast.meta["path"] == "fast" and event.meta["path"] == "event"
    assert fast.unsized_orders == event.unsized_orders > 0
    assert fast.unsized_reason == event.unsized_reason
    assert len(fast.trades) == len(event.trades)


@pytest.mark.parametrize("path", ["fast", "event"])
def test_a_run_that_trades_then_runs_out_names_the_cash_it_had_then(btc, path):
    result = run_backtest(btc, SMA, {}, make_config(path=path, symbol="BTC-PERP", cash="47000"))
    assert len(result.trades) > 0 and result.unsized_orders > 0
    assert result.sizing_note.startswith(f"{len(result.trades):,} trades; {result.unsized_orders:,} orders could not")
    said = re.search(r"one unit \(BTC-PERP at ([\d,.]+)\) costs more than the cash \(([\d,.]+)\)",
                     result.unsized_reason)
    price, cash = (float(g.replace(",", "")) for g in said.groups())
    orders = result.orders
    first = orders[(orders["tag"] == "open") & (orders["state"] == "REJECTED")].iloc[0]
    fill = btc.index[btc.index.get_loc(first["time"]) + 1]  # refused at the next bar's open
    trades = result.trades
    assert price == btc.loc[fill, "open"] > cash
    assert cash == pytest.approx(47_000 + trades.loc[trades["exit_time"] <= fill, "pnl"].sum(), abs=1e-6) != 47_000


def test_the_table_and_the_json_say_so(btc):
    from rich.console import Console

    from backtest.metrics import compute_stats

    result = run_backtest(btc, SMA, {}, make_config(symbol="BTC-PERP"))
    stats = compute_stats(result)
    console = Console(width=300, record=True)
    console.print(stats_table(stats, "t", result))
    text = console.export_text()
    assert "Orders not sized" in text and result.sizing_note in " ".join(text.split())
    document = to_json_dict(result, stats)
    assert document["unsized_orders"] == result.unsized_orders and document["note"] == result.sizing_note


def test_every_sweep_row_says_so(btc):
    config = make_config(symbol="BTC-PERP", path="fast")
    evaluator = Evaluator(btc, SMA, config, "sharpe")
    combos = [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 30}, {"fast": 10, "slow": 30, "units": "fractional"}]
    evaluations = [evaluator.evaluate(c) for c in combos]
    for combo, e in zip(combos, evaluations):
        direct = run_backtest(btc, SMA, combo, config)
        assert (e.unsized_orders, e.note) == (direct.unsized_orders, direct.sizing_note)
    outcome = SweepOutcome("sma_cross", "sharpe", {}, {}, evaluations, 1.0, 1)
    document = outcome_json(outcome)
    assert [row["unsized_orders"] > 0 for row in document["results"]] == [True, True, False]
    assert all(row["note"] for row in document["results"][:2]) and document["results"][2]["note"] is None
    assert document["note"].startswith("2 of 3 combinations could not size orders")


def test_backtest_command_prints_the_reason_and_writes_it(tmp_path, btc):
    data = tmp_path / "btc.csv"
    btc.iloc[:1500].to_csv(data)
    out = tmp_path / "r.json"
    done = run(["backtest", "--strategy", "sma_cross", "--data", str(data), "--json", str(out)], tmp_path,
               {**os.environ, "COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "orders could not be sized: one unit" in said and "use --param units=fractional" in said
    document = json.loads(out.read_text())
    assert document["stats"]["trades"] == 0 and document["unsized_orders"] > 0
    assert document["note"].startswith("0 trades:")
