"""The `tickbridge backtest` contract, run as a user runs it: a subprocess, its output, its exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA

SPY = DATA / "stocks" / "SPY_daily.csv"
GOOD_ROWS = [
    "Date,Open,High,Low,Close,Volume",
    "2020-01-02,10.00,10.50,9.90,10.20,100",
    "2020-01-03,10.20,10.60,10.00,10.40,120",
    "2020-01-06,10.40,10.80,10.30,10.70,90",
]


def tickbridge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def write_csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_backtest_prints_stats_and_writes_json_trades_and_plot(tmp_path):
    out = tmp_path / "r.json"
    trades = tmp_path / "t.csv"
    plot = tmp_path / "p.png"
    done = tickbridge("backtest", "--strategy", "sma_cross", "--data", SPY, "--param", "fast=10",
                      "--param", "slow=30", "--cash", "10000", "--commission", "0.002",
                      "--json", out, "--trades", trades, "--plot", plot)
    assert done.returncode == 0, done.stderr
    assert "Sharpe" in done.stdout
    from backtest.report import read_json

    report = read_json(out)  # stored by column (format version 2), decoded
    assert report["format"]["version"] == 2
    stats = report["stats"]
    for key in ("trades", "return_pct", "equity_final", "sharpe", "max_drawdown_pct", "win_rate_pct", "exposure_pct"):
        assert key in stats
    assert stats["trades"] == len(report["trades"]) > 0
    assert len(report["equity"]) == sum(1 for _ in SPY.open()) - 1
    assert report["equity"].iloc[-1] == pytest.approx(stats["equity_final"])
    for key in ("entry_time", "exit_time", "entry_price", "exit_price", "size", "pnl"):
        assert key in report["trades"].columns
    assert trades.read_text().splitlines()[0].startswith("entry_time")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("rows, expected", [
    (["Date,Open,High,Low,Volume", "2020-01-02,10.00,10.50,9.90,100", "2020-01-03,10.20,10.60,10.00,120"],
     "close"),
    ([GOOD_ROWS[0], GOOD_ROWS[2], GOOD_ROWS[1], GOOD_ROWS[3]], "sorted"),
    ([GOOD_ROWS[0], GOOD_ROWS[1], GOOD_ROWS[1], GOOD_ROWS[2]], "duplicate"),
    ([GOOD_ROWS[0], GOOD_ROWS[1], "2020-01-03,10.20,10.60,10.00,,120", GOOD_ROWS[3]], "nan"),
    ([GOOD_ROWS[0], GOOD_ROWS[1], "2020-01-03,10.20,10.60,-1.00,10.40,120", GOOD_ROWS[3]], "non-positive"),
])
def test_bad_data_is_refused_with_the_problem_named_and_no_traceback(tmp_path, rows, expected):
    done = tickbridge("backtest", "--strategy", "sma_cross", "--data", write_csv(tmp_path, rows))
    assert done.returncode == 2
    assert expected in done.stderr.lower()
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("args, expected", [
    (["--strategy", "no_such_thing"], "unknown strategy 'no_such_thing'"),
    (["--strategy", "sma_cross", "--param", "speed=3"], "param.speed"),
    (["--strategy", "sma_cross", "--param", "fast=abc"], "param.fast"),
    (["--strategy", "sma_cross", "--param", "fast=30", "--param", "slow=10"], "param.slow"),
    (["--strategy", "sma_cross", "--param", "fast"], "key=value"),
    (["--strategy", "sma_cross", "--cash", "-5"], "cash"),
    (["--strategy", "sma_cross", "--commission", "lots"], "commission"),
])
def test_bad_arguments_are_refused_with_the_field_named(args, expected):
    done = tickbridge("backtest", "--data", SPY, *args)
    assert done.returncode == 2, done.stdout
    assert expected in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_missing_data_file_is_a_clear_error(tmp_path):
    done = tickbridge("backtest", "--strategy", "sma_cross", "--data", tmp_path / "nope.csv")
    assert done.returncode == 2 and "nope.csv" in done.stderr and "Traceback" not in done.stderr


def test_tick_file_is_resampled_to_bars_with_bar_option():
    ticks = DATA / "ticks" / "EURUSD_fxcm_20140505.csv.gz"
    done = tickbridge("backtest", "--strategy", "sma_cross", "--data", ticks, "--bar", "1min")
    assert done.returncode == 0, done.stderr
    hint = tickbridge("backtest", "--strategy", "sma_cross", "--data", ticks)
    assert hint.returncode == 2 and "--bar" in hint.stderr
