"""Loading bundled real data, many spellings, and every kind of bad file."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from backtest.data import BAR_COLUMNS, TICK_COLUMNS, load_bars, load_ticks, ticks_to_bars
from engine.errors import DataError
from tests.conftest import DATA


def lines(path) -> int:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as handle:
        return sum(1 for line in handle if line.strip()) - 1  # minus the header


@pytest.mark.parametrize("relative, first", [
    ("stocks/SPY_daily.csv", "1999-11-01"),
    ("stocks/GOOG_daily.csv", "2004-08-19"),
    ("fx/EURUSD_1h.csv", "2017-04-19 09:00"),
    ("crypto/BTC-PERP_1m.csv", "2021-12-31 23:01"),
])
def test_bundled_bar_files_load_whole(relative, first):
    bars = load_bars(DATA / relative)
    assert list(bars.columns) == BAR_COLUMNS and bars.index.name == "time" and bars.index.unit == "ns"
    assert len(bars) == lines(DATA / relative)
    assert bars.index[0] == pd.Timestamp(first, tz="UTC") and bars.index.is_monotonic_increasing


@pytest.mark.parametrize("relative", ["ticks/USDJPY_truefx_ticks.csv", "ticks/EURUSD_fxcm_20140505.csv.gz"])
def test_bundled_tick_files_load_whole(relative):
    ticks = load_ticks(DATA / relative)
    assert list(ticks.columns) == TICK_COLUMNS and len(ticks) == lines(DATA / relative)
    assert ticks.index.unit == "ns"  # the engine's clock unit, whatever resolution pandas inferred
    assert (ticks[["bid", "ask"]] > 0).all().all() and ticks["last"].isna().all()


def write(tmp_path, text: str, name: str = "x.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text", [
    ",Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,10\n2020-01-03,1.5,2,1,1.8,11\n",       # unnamed index
    "Date,O,H,L,C,V\n2020-01-02,1,2,0.5,1.5,10\n2020-01-03,1.5,2,1,1.8,11\n",                    # short names
    "timestamp,open,high,low,close\n1577923200,1,2,0.5,1.5\n1578009600,1.5,2,1,1.8\n",           # unix s, no volume
    "time;open;high;low;close;volume\n1577923200000;1;2;0.5;1.5;10\n1578009600000;1.5;2;1;1.8;11\n",  # ms, ';'
])
def test_common_spellings_and_time_formats_load_the_same(tmp_path, text):
    bars = load_bars(write(tmp_path, text))
    assert list(bars.index) == [pd.Timestamp("2020-01-02", tz="UTC"), pd.Timestamp("2020-01-03", tz="UTC")]
    assert bars["close"].tolist() == [1.5, 1.8]


def test_parquet_and_feather_round_trip(tmp_path):
    bars = load_bars(DATA / "fx" / "EURUSD_1h.csv").iloc[:50]
    bars.to_parquet(tmp_path / "b.parquet")
    bars.reset_index().to_feather(tmp_path / "b.feather")
    pd.testing.assert_frame_equal(load_bars(tmp_path / "b.parquet"), bars, check_freq=False)
    pd.testing.assert_frame_equal(load_bars(tmp_path / "b.feather"), bars, check_freq=False)


HEADER = "date,open,high,low,close,volume\n"


@pytest.mark.parametrize("body, needle", [
    ("2020-01-02,1,2,0.5,1.5,1\n2020-01-01,1,2,0.5,1.5,1\n2020-01-03,1,2,0.5,1.5,1\n", "not sorted: row 1"),
    ("2020-01-02,1,2,0.5,1.5,1\n2020-01-02,1,2,0.5,1.5,1\n", "duplicate timestamp"),
    ("2020-01-02,1,2,0.5,,1\n2020-01-03,1,2,0.5,1.5,1\n", "nan prices in 'close'"),
    ("2020-01-02,1,2,0,1.5,1\n", "non-positive price 0.0 in 'low'"),
    ("2020-01-02,1,0.4,0.5,0.45,1\n", "high below low"),
    ("2020-01-02,1,2,0.5,1.5,-3\n", "negative volume"),
    ("2020-01-02,1,2,0.5,abc,1\n", "not a number 'abc' in 'close'"),
    ("yesterday,1,2,0.5,1.5,1\n", "cannot parse timestamps"),
])
def test_bad_bars_are_refused_naming_the_problem(tmp_path, body, needle):
    with pytest.raises(DataError) as err:
        load_bars(write(tmp_path, HEADER + body))
    assert needle in str(err.value).lower() and "x.csv" in str(err.value)


def test_missing_column_is_named_with_what_was_found(tmp_path):
    with pytest.raises(DataError, match=r"missing column 'close' \(found: open, high, low, volume\)"):
        load_bars(write(tmp_path, "date,open,high,low,volume\n2020-01-02,1,2,0.5,1\n"))


@pytest.mark.parametrize("name, content, needle", [
    ("empty.csv", "", "empty"),
    ("garbage.parquet", "not parquet at all", "cannot be read"),
])
def test_unreadable_files_are_data_errors(tmp_path, name, content, needle):
    with pytest.raises(DataError, match=needle):
        load_bars(write(tmp_path, content, name))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_bars(tmp_path / "nope.csv")


def test_ticks_resample_to_hand_computed_bars(tmp_path):
    path = write(tmp_path, "time,price,size\n"
                           "2020-01-02T10:00:05Z,10,1\n2020-01-02T10:00:30Z,12,2\n2020-01-02T10:00:59Z,11,1\n"
                           "2020-01-02T10:03:00Z,9,5\n")
    bars = ticks_to_bars(load_ticks(path), "1min")
    assert list(bars.index) == [pd.Timestamp("2020-01-02 10:00", tz="UTC"), pd.Timestamp("2020-01-02 10:03", tz="UTC")]
    assert bars.iloc[0].tolist() == [10, 12, 10, 11, 4] and bars.iloc[1].tolist() == [9, 9, 9, 9, 5]


def test_quote_ticks_use_the_mid_price(tmp_path):
    path = write(tmp_path, "time,bid,ask\n2020-01-02T10:00:00Z,1.0,1.2\n2020-01-02T10:00:10Z,1.1,1.3\n")
    bars = ticks_to_bars(load_ticks(path), "1min")
    assert bars.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == pytest.approx([1.1, 1.2, 1.1, 1.2, 0])


def test_unknown_bar_size_is_refused(tmp_path):
    ticks = load_ticks(DATA / "ticks" / "USDJPY_truefx_ticks.csv")
    with pytest.raises(DataError, match="not a pandas offset alias"):
        ticks_to_bars(ticks, "fortnightly-ish")
