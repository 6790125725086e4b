"""Real data layouts: split date and time, MT5 exports, no header, separators, decimal commas,
newest-first files, Adj Close, freqtrade JSON, LEAN zips, NinjaTrader; and files that are not
market data refused after bounded work. The files are small real cuts in tests/fixtures/data
(origin and licence in its README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.data import LoadOptions, load_bars, load_ticks
from engine.errors import ConfigError, DataError
from tests.conftest import DATA

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# -- split date and time columns -----------------------------------------------------------------

def test_split_date_and_time_columns_over_two_days_load_with_their_dates():
    bars = load_bars(FIXTURES / "backtrader" / "2006-min-005.txt")
    assert len(bars) == 120
    assert bars.index[0] == ts("2006-01-02 09:05") and bars.index[-1] == ts("2006-01-03 10:30")
    assert bars.index.is_monotonic_increasing
    assert bars["close"].iloc[0] == 3582.99


def test_rows_one_field_longer_than_the_header_take_the_date_from_the_extra_field():
    # header Date,Open,...; rows date,time,open,...: today's date must never be invented
    bars = load_bars(FIXTURES / "backtrader" / "2006-01-02-volume-min-001.txt")
    assert len(bars) == 40
    assert bars.index[0] == ts("2006-01-02 09:01") and bars.index[-1] == ts("2006-01-02 09:40")
    assert bars.iloc[0].tolist() == [3602.0, 3603.0, 3597.0, 3599.0, 5699.0]


def test_times_of_day_without_a_date_are_refused_not_given_todays_date(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("Time,Open,High,Low,Close\n09:00:00,1,2,0.5,1.5\n09:01:00,1.5,2,1,1.8\n")
    with pytest.raises(DataError, match="times of day") as err:
        load_bars(path)
    assert "t.csv" in str(err.value) and "09:00:00" in str(err.value)


# -- MetaTrader 5 ----------------------------------------------------------------------------------

def _eurusd_first(n: int) -> pd.DataFrame:
    return load_bars(DATA / "fx" / "EURUSD_1h.csv").iloc[:n]


@pytest.mark.parametrize("options", [None, LoadOptions(format="mt5")])
def test_mt5_export_loads_the_bars_it_was_written_from(options):
    bars = load_bars(FIXTURES / "mt5" / "EURUSD_H1.csv", options)
    expected = _eurusd_first(60)
    pd.testing.assert_frame_equal(bars, expected, check_freq=False)  # <TICKVOL> is the volume: <VOL> is all 0


def test_mt5_export_in_utf16_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "EURUSD_H1.csv"
    path.write_bytes((FIXTURES / "mt5" / "EURUSD_H1.csv").read_text().encode("utf-16"))
    pd.testing.assert_frame_equal(load_bars(path), _eurusd_first(60), check_freq=False)


def test_mt5_format_named_on_a_file_of_another_layout_is_refused():
    with pytest.raises(DataError, match="not a MetaTrader 5 export"):
        load_bars(FIXTURES / "backtrader" / "2006-min-005.txt", LoadOptions(format="mt5"))


# -- no header, separators, decimal commas -----------------------------------------------------------

def _headerless(tmp_path: Path, sep: str = ",", decimal: str = ".") -> Path:
    """The MT5 sample as a header-less MT4/HistData-style file: date,time,o,h,l,c,v."""
    lines = (FIXTURES / "mt5" / "EURUSD_H1.csv").read_text().splitlines()[1:]
    rows = []
    for line in lines:
        d, t, o, h, lo, c, v, _, _ = line.split("\t")
        rows.append(sep.join([d, t[:5]] + [x.replace(".", decimal) for x in (o, h, lo, c)] + [v]))
    path = tmp_path / "EURUSD60.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_headerless_file_loads_with_named_columns(tmp_path):
    path = _headerless(tmp_path)
    bars = load_bars(path, LoadOptions(columns=("date", "time", "open", "high", "low", "close", "volume")))
    pd.testing.assert_frame_equal(bars, _eurusd_first(60), check_freq=False)


def test_headerless_file_without_column_names_is_refused_saying_how(tmp_path):
    with pytest.raises(DataError, match="no header.*--columns"):
        load_bars(_headerless(tmp_path))


def test_column_names_must_match_the_fields(tmp_path):
    with pytest.raises(ConfigError, match="columns: 6 names for 7 fields"):
        load_bars(_headerless(tmp_path), LoadOptions(columns=("date", "open", "high", "low", "close", "volume")))


def test_decimal_commas_with_a_semicolon_separator(tmp_path):
    path = _headerless(tmp_path, sep=";", decimal=",")
    names = ("date", "time", "open", "high", "low", "close", "volume")
    bars = load_bars(path, LoadOptions(columns=names, decimal=","))
    pd.testing.assert_frame_equal(bars, _eurusd_first(60), check_freq=False)
    assert load_bars(path, LoadOptions(columns=names, decimal=",", sep=";")).equals(bars)
    with pytest.raises(DataError, match="--decimal ,"):  # without the option: a hint, not a guess
        load_bars(path, LoadOptions(columns=names))


def test_separator_can_be_named(tmp_path):
    path = tmp_path / "pipe.csv"
    path.write_text("date|open|high|low|close\n2020-01-02|1|2|0.5|1.5\n2020-01-03|1.5|2|1|1.8\n")
    assert load_bars(path, LoadOptions(sep="|"))["close"].tolist() == [1.5, 1.8]
    assert load_bars(path)["close"].tolist() == [1.5, 1.8]  # and sniffed


@pytest.mark.parametrize("kwargs, field", [
    (dict(format="excel"), "format"), (dict(sep=";;"), "sep"), (dict(decimal=";"), "decimal"),
    (dict(sep=",", decimal=","), "decimal"), (dict(columns=("date", "", "close")), "columns"),
    (dict(columns=("date", "close", "close")), "columns"),
])
def test_bad_load_options_name_their_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        LoadOptions(**kwargs)
    assert err.value.field == field


# -- order and adjustment --------------------------------------------------------------------------

ORCL = FIXTURES / "pyalgotrade" / "orcl-2000-yahoofinance.csv"


def test_newest_first_file_is_sorted_with_a_note():
    notes: list[str] = []
    bars = load_bars(ORCL, notes=notes)
    assert len(bars) == 60 and bars.index.is_monotonic_increasing
    assert bars.index[0] == ts("2000-10-05") and bars.index[-1] == ts("2000-12-29")
    assert bars["close"].iloc[-1] == 29.06  # the newest row, now last
    assert any("newest first" in n for n in notes)


def test_adj_close_is_noted_when_ignored_and_scales_ohlc_when_asked():
    notes: list[str] = []
    raw = load_bars(ORCL, notes=notes)
    assert any("Adj Close" in n and "--adjusted" in n for n in notes)
    adjusted = load_bars(ORCL, LoadOptions(adjusted=True))
    source = pd.read_csv(ORCL, index_col=0).iloc[::-1]
    factor = (source["Adj Close"] / source["Close"]).to_numpy()
    assert adjusted["close"].to_numpy() == pytest.approx(source["Adj Close"].to_numpy(), rel=1e-12)
    for column in ("open", "high", "low"):
        assert adjusted[column].to_numpy() == pytest.approx(raw[column].to_numpy() * factor, rel=1e-12)
    assert adjusted["volume"].equals(raw["volume"])


def test_adjusted_without_an_adj_close_column_is_refused():
    with pytest.raises(DataError, match="--adjusted.*Adj Close"):
        load_bars(FIXTURES / "backtrader" / "2006-min-005.txt", LoadOptions(adjusted=True))


# -- freqtrade, LEAN, NinjaTrader --------------------------------------------------------------------

def test_freqtrade_json_candles():
    path = FIXTURES / "freqtrade" / "UNITTEST_BTC-1m.json"
    rows = json.loads(path.read_text())
    bars = load_bars(path)
    assert len(bars) == len(rows) == 120
    assert bars.index[0] == ts("2017-11-04 23:02")
    assert bars.to_numpy().tolist() == [r[1:6] for r in rows]


def test_json_that_is_not_candles_is_refused(tmp_path):
    path = tmp_path / "trades.json"
    path.write_text(json.dumps([[1570752011620, "13519807", None, "sell", 0.00141342, 23.0, 0.0325]] * 3))
    with pytest.raises(DataError, match="not freqtrade candles"):
        load_bars(path)


LEAN = FIXTURES / "lean"


def test_lean_equity_minute_zip_deci_cents_new_york_time_date_from_the_file_name():
    bars = load_bars(LEAN / "equity" / "usa" / "minute" / "spy" / "20131007_trade.zip")
    with zipfile.ZipFile(LEAN / "equity" / "usa" / "minute" / "spy" / "20131007_trade.zip") as z:
        first = z.read(z.namelist()[0]).decode().splitlines()[0].split(",")
    assert first[0] == "14400000"  # 04:00 in New York = 08:00 UTC in October (EDT)
    assert bars.index[0] == ts("2013-10-07 08:00")
    assert bars.iloc[0].tolist() == [int(x) / 10_000 for x in first[1:5]] + [int(first[5])]
    assert bars.index.max() < ts("2013-10-08")


def test_lean_directory_of_day_files_loads_as_one_series():
    bars = load_bars(LEAN / "equity" / "usa" / "minute" / "spy")
    one = load_bars(LEAN / "equity" / "usa" / "minute" / "spy" / "20131007_trade.zip")
    two = load_bars(LEAN / "equity" / "usa" / "minute" / "spy" / "20131008_trade.zip")
    assert len(bars) == len(one) + len(two) and bars.index.is_monotonic_increasing
    assert sorted(set(bars.index.tz_convert("America/New_York").date.astype(str))) == ["2013-10-07", "2013-10-08"]


def test_lean_equity_daily_zip():
    bars = load_bars(LEAN / "equity" / "usa" / "daily" / "spy.zip")
    assert len(bars) == 300 and bars.index[0] == ts("1998-01-02")
    assert bars.iloc[0].tolist() == [97.31, 97.53, 96.53, 97.36, 2150000.0]


def test_lean_forex_minute_quote_bars_are_bid_ask_mids_in_utc():
    notes: list[str] = []
    bars = load_bars(LEAN / "forex" / "fxcm" / "minute" / "eurusd" / "20140504_quote.zip", notes=notes)
    assert bars.index[0] == ts("2014-05-04 14:00")  # 50,400,000 ms after midnight UTC
    assert bars["open"].iloc[0] == pytest.approx((1.38700 + 1.38790) / 2, abs=1e-12)
    assert any("mid" in n for n in notes)


def test_ninjatrader_minute_export():
    bars = load_bars(FIXTURES / "pyalgotrade" / "nt-spy-minute-2011.csv")
    assert len(bars) == 100 and bars.index[0] == ts("2011-01-03 09:01")
    assert bars.iloc[0].tolist() == [126.35, 126.39, 126.35, 126.39, 1579.0]


# -- bounded work on files that are not market data ---------------------------------------------------

@pytest.fixture
def csv_parses(monkeypatch):
    """Every call of pandas' CSV parser (each one stubbed: the file is never parsed)."""
    calls: list[object] = []

    def record(*args, **kwargs):
        calls.append(args[0] if args else kwargs)
        raise ValueError("stub")
    monkeypatch.setattr(pd, "read_csv", record)
    return calls


@pytest.mark.parametrize("name, content", [
    ("blob.csv", bytes(range(256)) * 8192),                      # binary
    ("one_line.csv", b"1," * 1_000_000),                          # a 2 MB line: no CSV of bars
    ("dict.json", json.dumps({"a": list(range(1000))}).encode()),  # JSON, not candles
])
def test_files_that_are_not_market_data_are_refused_before_any_parse(tmp_path, csv_parses, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        load_bars(path)
    assert name in str(err.value) and csv_parses == []


def test_the_full_freqtrade_file_when_shared_data_is_present():
    path = SHARED / "freqtrade" / "UNITTEST_BTC-1m.json"
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared data sits beside the clone in CI)")
    bars = load_bars(path)
    assert len(bars) == 13_681 and bars.index[-1] == ts("2017-11-14 22:59")


def test_lean_forex_tick_zip_loads_as_ticks():
    path = SHARED / "lean" / "forex" / "fxcm" / "tick" / "eurusd" / "20140501_quote.zip"
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared data sits beside the clone in CI)")
    ticks = load_ticks(path)
    assert ticks.index[0] == pd.Timestamp("2014-05-01 00:00:01.787", tz="UTC")
    assert ticks[["bid", "ask"]].iloc[0].tolist() == [1.38727, 1.38729] and np.isnan(ticks["last"].iloc[0])


# -- the command line --------------------------------------------------------------------------------

def tickbridge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["backtest", "sweep", "wfo", "train"])
def test_every_command_that_loads_bars_has_the_loading_options(command):
    from typer.testing import CliRunner

    from app.cli import app

    text = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
    for option in ("--format", "--columns", "--sep", "--decimal", "--adjusted"):
        assert option in text, f"{command} lacks {option}"


def test_backtest_cli_reads_a_headerless_file_and_prints_notes(tmp_path):
    path = _headerless(tmp_path, sep=";", decimal=",")
    out = tmp_path / "r.json"
    done = tickbridge("backtest", "--strategy", "sma_cross", "--data", path, "--columns",
                      "date,time,open,high,low,close,volume", "--decimal", ",", "--param", "units=fractional",
                      "--json", out)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["meta"]["bars"] == 60
    done = tickbridge("backtest", "--strategy", "sma_cross", "--data", ORCL, "--param", "fast=3",
                      "--param", "slow=8")
    assert done.returncode == 0, done.stderr
    assert "newest first" in done.stderr and "Adj Close" in done.stderr


def test_backtest_cli_refuses_a_bad_option_in_one_line(tmp_path):
    done = tickbridge("backtest", "--strategy", "sma_cross", "--data", ORCL, "--decimal", "x")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "decimal" in done.stderr
