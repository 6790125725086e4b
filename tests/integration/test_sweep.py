"""Sweeps and searches on a real (local, two-CPU) Ray: the best result is what a direct backtest of
its parameters gives, the outputs are written and the run is stored. Ray starts once per module."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app import research_cli
from backtest.config import make_config
from backtest.data import load_bars
from backtest.metrics import compute_stats
from backtest.ray_pool import WorkerPool, batches
from backtest.report import _json_value
from backtest.runner import run_backtest
from backtest.sweep_store import load_runs
from engine.store.db import make_engine
from strategies import get_strategy

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]
SPY = ROOT / "data" / "stocks" / "SPY_daily.csv"
SMA = get_strategy("sma_cross")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def cli(*args: str):
    app = typer.Typer()
    research_cli.register(app)
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def direct_stats(params: dict) -> dict:
    """What `tickbridge backtest` reports for these parameters (default path, inferred tick)."""
    stats = compute_stats(run_backtest(load_bars(SPY), SMA, params, make_config(symbol="SPY_daily")))
    return {k: _json_value(v) for k, v in stats.items()}


def test_grid_sweep_best_equals_a_direct_backtest_and_is_written_and_stored(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    out = tmp_path / "sweep.json"
    result = cli("sweep", "--strategy", "sma_cross", "--data", str(SPY), "--grid", "fast=5:15:5",
                 "--grid", "slow=10:40:10", "--objective", "return_pct", "--workers", "2", "--json", str(out),
                 "--heatmap", str(tmp_path / "heat.html"), "--url", url)
    document = json.loads(out.read_text())
    # 3 fast x 4 slow = 12; slow must exceed fast, so (10, 10) and (15, 10) are skipped
    assert document["combinations"] + document["skipped"] == 12 and document["skipped"] == 2
    values = [r["stats"]["return_pct"] for r in document["results"]]
    assert values == sorted(values, reverse=True)
    best = document["best"]
    assert best["stats"] == direct_stats(best["params"])
    assert document["results"][-1]["stats"] == direct_stats(document["results"][-1]["params"])
    assert 0.0 <= document["overfitting"]["dsr"]["deflated_sharpe_ratio"] <= 1.0
    assert 0.0 <= document["overfitting"]["pbo"]["pbo"] <= 1.0
    assert (tmp_path / "heat.html").read_text().startswith("<!doctype html>")
    runs = load_runs(make_engine(url))
    assert len(runs) == 1 and runs[0]["kind"] == "grid" and runs[0]["best_params"] == best["params"]
    assert runs[0]["trials"] == 10 and runs[0]["best_value"] == best["stats"]["return_pct"]
    assert "deflated Sharpe ratio" in result.output


def test_pool_returns_batches_in_submission_order():
    frame = load_bars(SPY).iloc[-1500:]
    config = make_config(path="fast", symbol="SPY")
    pool = WorkerPool(frame, SMA, config, "sharpe", workers=2)
    try:
        combos = [{"fast": f, "slow": 30} for f in (5, 10, 15, 20, 25)]
        evaluations = pool.map(batches(combos, 2), on_done=None)
        assert [e.params for e in evaluations] == combos
        window = pool.map(batches(combos[:1], 1, 500, 1500))[0]
    finally:
        pool.close()
    direct = compute_stats(run_backtest(frame.iloc[500:1500], SMA, combos[0], config))
    assert window.stats["equity_final"] == direct["equity_final"]
    assert window.stats["trades"] == direct["trades"]


def test_optuna_search_runs_its_trials_on_the_workers_and_its_best_is_reproducible(tmp_path):
    out = tmp_path / "search.json"
    cli("sweep", "--strategy", "sma_cross", "--data", str(SPY), "--grid", "fast=5:30:5", "--grid", "slow=20:80:10",
        "--search", "optuna", "--trials", "12", "--seed", "3", "--objective", "sortino", "--workers", "2",
        "--json", str(out), "--heatmap", str(tmp_path / "heat.png"), "--no-store")
    document = json.loads(out.read_text())
    assert document["search"] == "optuna"
    assert document["combinations"] + document["skipped"] == 12
    assert document["best"]["stats"] == direct_stats(document["best"]["params"])
    for row in document["results"]:
        assert row["params"]["fast"] in range(5, 31, 5) and row["params"]["slow"] in range(20, 81, 10)
    assert (tmp_path / "heat.png").stat().st_size > 0


def test_walk_forward_trades_each_in_sample_winner_on_the_next_window(tmp_path):
    from backtest.wfo import make_folds

    out = tmp_path / "wfo.json"
    cli("wfo", "--strategy", "sma_cross", "--data", str(SPY), "--grid", "fast=5:10:5", "--grid", "slow=20:40:20",
        "--folds", "2", "--workers", "2", "--json", str(out), "--plot", str(tmp_path / "wfo.png"), "--no-store")
    document = json.loads(out.read_text())
    frame = load_bars(SPY)
    folds = make_folds(len(frame), 2)
    config = make_config(symbol="SPY_daily")
    cash = 10_000.0
    for fold, row in zip(folds, document["folds"]):
        in_sample = frame.iloc[fold.is_start:fold.is_stop]
        sharpes = {(f, s): compute_stats(run_backtest(in_sample, SMA, {"fast": f, "slow": s}, config))["sharpe"]
                   for f in (5, 10) for s in (20, 40)}
        assert (row["params"]["fast"], row["params"]["slow"]) == max(sharpes, key=lambda k: sharpes[k])
        oos = run_backtest(frame.iloc[fold.oos_start:fold.oos_stop], SMA, row["params"],
                           config.model_copy(update={"cash": Decimal(repr(cash)).quantize(Decimal("0.01"))}))
        assert row["out_of_sample_stats"]["equity_final"] == pytest.approx(float(oos.equity.iloc[-1]))
        cash = float(oos.equity.iloc[-1])
    assert len(document["equity"]) == sum(f.oos_stop - f.oos_start for f in folds)
    assert document["out_of_sample"]["equity_final"] == pytest.approx(cash)
    assert set(document["in_sample_mean"]) >= {"sharpe", "return_pct"}
    assert (tmp_path / "wfo.png").stat().st_size > 0
