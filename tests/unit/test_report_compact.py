"""The backtest JSON is small by default (stored by column, format version 2), decodes back to the
very equity, trades, orders and signals of the run, and the old record shape is one flag away."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.metrics import compute_stats
from backtest.montecarlo import load_trades
from backtest.report import read_json, tables_of, to_json_dict, write_json
from backtest.runner import run_backtest
from strategies import get_strategy
from tests.conftest import DATA


@pytest.fixture(scope="module", params=["fast", "event"])
def run(request):
    frame = load_bars(DATA / "fx" / "EURUSD_1h.csv")
    result = run_backtest(frame, get_strategy("sma_cross"), {"fast": 10, "slow": 20},
                          make_config(path=request.param, commission="0.001"))
    return result, compute_stats(result)


def test_the_default_json_is_a_fraction_of_the_records(run, tmp_path):
    result, stats = run
    compact, full = tmp_path / "compact.json", tmp_path / "full.json"
    write_json(compact, result, stats)
    write_json(full, result, stats, full=True)
    document = json.loads(compact.read_text())
    assert document["format"]["version"] == 2 and document["format"]["shape"] == "compact"
    assert "by column" in document["format"]["layout"]  # the file says how to read it
    assert json.loads(full.read_text())["format"]["version"] == 1
    # 2,000 hourly bars: the records take about four times the columns; a million bars ten
    assert compact.stat().st_size * 3 < full.stat().st_size


def test_columns_decode_to_the_same_equity_trades_orders_and_signals(run, tmp_path):
    result, stats = run
    path = tmp_path / "r.json"
    write_json(path, result, stats)
    json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))  # strict
    back = read_json(path)
    np.testing.assert_array_equal(back["equity"].to_numpy(), result.equity.to_numpy())  # bit for bit
    assert back["equity"].index.equals(result.equity.index)
    pd.testing.assert_frame_equal(back["trades"], result.trades.reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(back["orders"], result.orders.reset_index(drop=True), check_dtype=False)
    assert back["signals"] == result.signals and len(result.signals) > 0
    assert back["stats"] == json.loads(json.dumps(to_json_dict(result, stats)["stats"], default=str))
    assert back["meta"] == json.loads(json.dumps(result.meta, default=str))


def test_irregular_times_and_missing_values_survive(tmp_path):
    """Bars with gaps (weekends) are not one regular run of steps; NaN prices and NaT times (a
    rejected order has no fill) come back as NaN and NaT, never as numbers."""
    index = pd.DatetimeIndex(pd.to_datetime(["2024-01-05 21:00", "2024-01-07 22:00"], utc=True)).append(
        pd.date_range("2024-01-08", periods=200, freq="h", tz="UTC"))
    frame = pd.DataFrame({"time": index, "x": np.where(np.arange(len(index)) % 7 == 0, np.nan, 1.5),
                          "n": np.arange(len(index)), "flag": np.arange(len(index)) % 2 == 0,
                          "label": ["a" if i % 3 else None for i in range(len(index))]})
    frame.loc[5, "time"] = pd.NaT
    from backtest.report import _table, decode_table

    back = decode_table(json.loads(json.dumps(_table(frame), allow_nan=False)))
    pd.testing.assert_frame_equal(back, frame.assign(time=frame["time"].dt.as_unit("ns")), check_dtype=False)


def test_full_shape_is_the_records_readers_had(run):
    result, stats = run
    document = to_json_dict(result, stats, full=True)
    assert len(document["equity"]) == len(result.equity)
    assert document["equity"][0] == {"time": result.equity.index[0].strftime("%Y-%m-%dT%H:%M:%S%z"),
                                      "equity": float(result.equity.iloc[0])}
    first = result.trades.iloc[0]
    assert document["trades"][0]["entry_time"] == first["entry_time"].strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    assert tables_of(document)["trades"]["pnl"].tolist() == result.trades["pnl"].tolist()


def test_montecarlo_reads_either_shape(run, tmp_path):
    result, stats = run
    for full in (False, True):
        path = tmp_path / f"{full}.json"
        write_json(path, result, stats, full=full)
        sample = load_trades(path)
        assert sample.initial_cash == result.initial_cash and len(sample.returns) == len(result.trades)


def test_the_command_writes_columns_by_default_and_records_on_request(tmp_path):
    import subprocess
    import sys

    data = tmp_path / "bars.csv"
    load_bars(DATA / "fx" / "EURUSD_1h.csv").iloc[:600].to_csv(data)
    base = [sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross", "--data", str(data)]
    done = subprocess.run([*base, "--json", str(tmp_path / "c.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*base, "--json", str(tmp_path / "f.json"), "--json-full"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    compact, full = read_json(tmp_path / "c.json"), read_json(tmp_path / "f.json")
    assert (compact["format"]["version"], full["format"]["version"]) == (2, 1)
    assert compact["trades"]["pnl"].tolist() == full["trades"]["pnl"].tolist() and len(compact["trades"]) > 0
    assert compact["equity"].tolist() == full["equity"].tolist()
    refused = subprocess.run([*base, "--json-full"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "json-full" in refused.stderr and "Traceback" not in refused.stderr
