"""Bar files that lie: a close outside its bar, an infinite price, a year-2262 row, a 10x bar.

Each of these once went through `tickbridge backtest` and changed equity and drawdown without a
word (max drawdown -30.98 % -> -92.56 % for one close x10), or failed with pandas internals
blamed on the strategy. Both CSV readers (pyarrow's fast path for a plain comma file, pandas' for
the rest) must refuse the same way, naming the column and the first bad row by its time, and no
error may quote the file's contents."""

from __future__ import annotations

import subprocess
import sys

import pytest

from backtest import data as loader
from backtest.data import DEFAULT_OPTIONS, load_bars
from engine.errors import DataError
from tests.conftest import DATA

ROWS = 300   # of SPY_daily: enough for sma_cross fast=10 slow=20
BAD = 100    # the row that lies
BAD_TIME = "2000-03-24"  # its date in SPY_daily


def spy_rows() -> tuple[list[str], list[list[str]]]:
    """SPY's bars without the unnamed index column, times with a time of day: the layout pyarrow's
    fast path takes (a date-only column is date32 to pyarrow, which goes the general way)."""
    lines = (DATA / "stocks" / "SPY_daily.csv").read_text().splitlines()
    header = lines[0].split(",")[1:]
    rows = [line.split(",")[1:] for line in lines[1:ROWS + 1]]
    for row in rows:
        row[0] += " 00:00:00"
    return header, rows


def write(tmp_path, sep: str, change) -> object:
    """SPY's first ROWS bars with row BAD changed by `change(row: dict)`, written with `sep`
    (",": the pyarrow fast path; ";": the general reader)."""
    header, rows = spy_rows()
    row = dict(zip(header, rows[BAD]))
    assert row["date"].startswith(BAD_TIME)
    change(row)
    rows[BAD] = [row[h] for h in header]
    path = tmp_path / f"bars_{'comma' if sep == ',' else 'semicolon'}.csv"
    path.write_text("\n".join(sep.join(r) for r in [header, *rows]) + "\n")
    return path


def scale(row: dict, names: tuple[str, ...], factor: float) -> None:
    for name in names:
        row[name] = repr(float(row[name]) * factor)


@pytest.fixture(params=[",", ";"], ids=["arrow", "pandas"])
def sep(request, tmp_path):
    """Both readers; the comma file really takes the fast path (else this parametrisation tests one)."""
    path = write(tmp_path, request.param, lambda row: None)
    header = path.read_text().splitlines()[0]
    fast = loader._arrow_csv(path, header, request.param, "utf-8", DEFAULT_OPTIONS)
    assert (fast is not None) == (request.param == ",")
    return request.param


@pytest.mark.parametrize("names, factor, message", [
    (("close",), 10.0, r"'close' above 'high'"),
    (("close",), 0.5, r"'close' below 'low'"),
    (("open",), 10.0, r"'open' above 'high'"),
    (("open",), 0.5, r"'open' below 'low'"),
])
def test_open_or_close_outside_the_bar_is_refused(tmp_path, sep, names, factor, message):
    path = write(tmp_path, sep, lambda row: scale(row, names, factor))
    with pytest.raises(DataError, match=rf"{message} at {BAD_TIME} 00:00:00\+00:00 \(row {BAD}\)"):
        load_bars(path)


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity"])
@pytest.mark.parametrize("column", ["close", "high"])
def test_an_infinite_price_is_refused(tmp_path, sep, column, value):
    def change(row):
        row[column] = value
    path = write(tmp_path, sep, change)
    with pytest.raises(DataError, match=rf"infinite prices in '{column}', first at {BAD_TIME} 00:00:00\+00:00 "
                                        rf"\(row {BAD}\)"):
        load_bars(path)


@pytest.mark.parametrize("when", ["2262-05-01", "1600-01-03"])
def test_a_time_the_engine_cannot_count_is_refused_naming_the_time_column(tmp_path, sep, when):
    def change(row):
        row["date"] = when + " 00:00:00"
    path = write(tmp_path, sep, change)
    with pytest.raises(DataError, match=rf"time out of range in column 'date' at row {BAD} \({when}"):
        load_bars(path)


def test_epoch_milliseconds_beyond_2262_are_refused_too(tmp_path):
    path = tmp_path / "epoch.csv"
    path.write_text("timestamp,open,high,low,close\n1700000000000,1,2,0.5,1.5\n99999999999999,1,2,0.5,1.5\n")
    with pytest.raises(DataError, match=r"time out of range in column 'timestamp' at row 1"):
        load_bars(path)


def test_a_consistent_10x_bar_is_kept_with_a_warning_naming_it(tmp_path, sep):
    path = write(tmp_path, sep, lambda row: scale(row, ("open", "high", "low", "close"), 10.0))
    notes: list[str] = []
    bars = load_bars(path, notes=notes)
    assert len(bars) == ROWS and bars["close"].iloc[BAD] > 1000  # kept as written: real data jumps
    warned = [n for n in notes if "suspect bar" in n]
    assert len(warned) == 1 and f"at {BAD_TIME} 00:00:00+00:00 (row {BAD})" in warned[0], notes


def test_a_wick_10x_the_low_is_warned_about(tmp_path):
    path = write(tmp_path, ",", lambda row: scale(row, ("high",), 10.0))
    notes: list[str] = []
    load_bars(path, notes=notes)
    assert any("suspect bar" in n and "high" in n and BAD_TIME in n for n in notes), notes


@pytest.mark.parametrize("relative", ["stocks/SPY_daily.csv", "stocks/GOOG_daily.csv", "fx/EURUSD_1h.csv",
                                      "crypto/BTC-PERP_1m.csv"])
def test_real_data_loads_without_a_warning(relative):
    notes: list[str] = []
    load_bars(DATA / relative, notes=notes)
    assert not [n for n in notes if "suspect" in n]


def test_a_file_that_is_not_market_data_is_not_quoted(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("operator:$6$s3cretHash:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n")
    with pytest.raises(DataError) as caught:
        load_bars(secret)
    assert "no time column" in str(caught.value)
    assert "s3cretHash" not in str(caught.value) and "20228" not in str(caught.value)


def cli(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross", "--data",
                           str(path), "--param", "fast=10", "--param", "slow=20"],
                          capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                            "OMP_NUM_THREADS": "1", "COLUMNS": "400"})


@pytest.mark.parametrize("change, words", [
    (lambda row: scale(row, ("close",), 10.0), "'close' above 'high'"),
    (lambda row: row.update(close="inf"), "infinite prices in 'close'"),
    (lambda row: row.update(date="2262-05-01 00:00:00"), "time out of range in column 'date'"),
], ids=["close-above-high", "inf-close", "year-2262"])
def test_the_backtest_command_refuses_in_one_line(tmp_path, change, words):
    bad = cli(write(tmp_path, ",", change))
    assert bad.returncode == 2, bad.stdout + bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in bad.stderr, bad.stderr
    assert "strategy:" not in lines[0] and f"row {BAD}" in lines[0]


def test_the_backtest_command_warns_of_a_10x_bar_and_runs(tmp_path):
    run = cli(write(tmp_path, ",", lambda row: scale(row, ("open", "high", "low", "close"), 10.0)))
    assert run.returncode == 0, run.stderr
    assert "suspect bar at 2000-03-24" in run.stderr.replace("\n", " "), run.stderr
