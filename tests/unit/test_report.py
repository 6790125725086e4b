"""Report outputs are strict JSON, readable CSV and real images."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.metrics import compute_stats
from backtest.plot import plot_result
from backtest.report import stats_table, to_json_dict, write_json, write_trades_csv
from backtest.runner import run_backtest
from engine.errors import ConfigError
from strategies import get_strategy
from tests.conftest import DATA


@pytest.fixture(scope="module")
def run():
    frame = load_bars(DATA / "fx" / "EURUSD_1h.csv")
    result = run_backtest(frame, get_strategy("sma_cross"), {"fast": 10, "slow": 20}, make_config())
    return result, compute_stats(result)


def test_json_is_strict_and_has_the_contract_keys(run, tmp_path):
    result, stats = run
    path = tmp_path / "r.json"
    write_json(path, result, stats)
    # strict: no NaN or Infinity constants (the text may spell "NaN" inside base64, version 2's packed columns)
    data = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert {"format", "stats", "equity", "trades", "orders", "meta"} <= set(data)
    assert data["equity"]["rows"] == len(result.equity)  # stored by column: format version 2
    assert data["stats"]["trades"] == data["trades"]["rows"] == len(result.trades)
    write_json(path, result, stats, full=True)  # version 1: one record per row
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["format"]["version"] == 1 and len(data["equity"]) == len(result.equity)
    assert data["stats"]["trades"] == len(data["trades"]) == len(result.trades)
    assert data["trades"][0]["entry_time"].startswith("2017-")


def test_json_of_an_undefined_stat_is_null():
    index = pd.date_range("2024-01-01", periods=30, freq="h", tz="UTC", name="time")
    frame = pd.DataFrame({c: 1.5 for c in ("open", "high", "low", "close")} | {"volume": 0.0}, index=index)
    result = run_backtest(frame, get_strategy("sma_cross"), {"fast": 10, "slow": 20}, make_config())
    data = to_json_dict(result, compute_stats(result))
    assert data["stats"]["trades"] == 0 and data["stats"]["sharpe"] is None


def test_trades_csv_has_header_and_one_row_per_trade(run, tmp_path):
    result, _ = run
    path = tmp_path / "t.csv"
    write_trades_csv(path, result)
    back = pd.read_csv(path)
    assert list(back.columns) == list(result.trades.columns) and len(back) == len(result.trades)
    np.testing.assert_allclose(back["pnl"], result.trades["pnl"])


def test_stats_table_shows_every_stat(run):
    _, stats = run
    assert stats_table(stats, "t").row_count == len(stats)


def test_plot_writes_png_and_self_contained_html(run, tmp_path):
    result, _ = run
    plot_result(tmp_path / "p.png", result)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_result(tmp_path / "p.html", result)
    html = (tmp_path / "p.html").read_text()
    assert "TickbridgeReport" in html and "<script src" not in html and "href=\"http" not in html


def test_plot_with_unknown_extension_is_refused(run, tmp_path):
    with pytest.raises(ConfigError) as err:
        plot_result(tmp_path / "p.gif", run[0])
    assert err.value.field == "plot"
