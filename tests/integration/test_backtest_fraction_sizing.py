"""`tickbridge backtest --fraction-sizing notional`: a leveraged backtest sized as the live MT5
and ccxt USD-M bots size (fraction x equity of exposure), so it holds what live would hold; the
default stays backtesting.py's rule (fraction x equity put up as margin). Found at stop 27: with
--leverage 10 the backtest entered ~100,000 of EURUSD on 10,000 while a live bot enters 10,000."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data" / "fx" / "EURUSD_1h.csv"


def backtest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross", "--data", str(DATA),
                           "--leverage", "10", "--path", "event", *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)


def first_entry(trades: Path) -> tuple[Decimal, Decimal]:
    with trades.open() as f:
        row = next(csv.DictReader(f))
    return Decimal(row["size"]), Decimal(row["entry_price"])


def test_notional_sizing_enters_the_equitys_worth_and_margin_sizing_ten_times_it(tmp_path):
    notional = backtest(tmp_path, "--fraction-sizing", "notional", "--trades", "n.csv", "--json", "n.json")
    assert notional.returncode == 0, notional.stderr
    size, price = first_entry(tmp_path / "n.csv")
    assert Decimal(9_900) < size * price <= Decimal(10_000)         # all of the 10,000 equity, as exposure
    assert json.loads((tmp_path / "n.json").read_text())["meta"]["margin"]["fraction_sizing"] == "notional"
    margin = backtest(tmp_path, "--trades", "m.csv")                # the default: backtesting.py's rule
    assert margin.returncode == 0, margin.stderr
    size, price = first_entry(tmp_path / "m.csv")
    assert Decimal(99_000) < size * price <= Decimal(100_000)       # 10,000 put up as margin at 10x


def test_a_bad_fraction_sizing_is_refused_naming_the_option(tmp_path):
    refused = backtest(tmp_path, "--fraction-sizing", "leveraged")
    assert refused.returncode == 2 and "fraction_sizing" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr
