"""The live runtime: configs refused with their field named, bots trading real ticks into the
store, control from other threads, clean stops on SIGINT, and restarts that resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from engine.errors import ConfigError
from live.bot import venue_log_path
from live.config import FeedConfig, load_runtime_config, parse_bot_config, parse_runtime_config
from live.control import BotControl, UnknownBot
from live.manager import BotManager
from engine.store.db import database_url as resolve_url, upgrade
from engine.store.models import BotRow, FillRow, OrderRow, SignalRow
from tests.conftest import ROOT
from tests.integration.runtime_helpers import register, rsi_bot, sma_bot, tick_dir, write_config, rows, wait_for

register()  # the resting_limit strategy, for the in-process tests too


@pytest.fixture(scope="module")
def ticks(tmp_path_factory) -> Path:
    return tick_dir(tmp_path_factory.mktemp("ticks"))




# -- configs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, field", [
    ({"strategy": "no_such"}, "strategy"),
    ({"params": {"fast": 0}}, "params.fast"),
    ({"params": {"fast": 30, "slow": 10}}, "params.slow"),
    ({"params": {"speed": 3}}, "params.speed"),
    ({"venue": "nyse"}, "venue"),
    ({"id": "Bad Id!"}, "id"),
    ({"on_stop": "flatten"}, "on_stop"),
    ({"bar": "1month"}, "bar"),
    ({"cash": "-5"}, "cash"),
    ({"colour": "red"}, "colour"),
])
def test_bad_bot_config_is_refused_naming_the_field(change, field):
    with pytest.raises(ConfigError) as refused:
        parse_bot_config({**sma_bot(), **change})
    assert refused.value.field == field


def test_duplicate_bot_ids_are_refused_naming_the_second():
    with pytest.raises(ConfigError) as refused:
        parse_runtime_config({"bots": [sma_bot("a"), rsi_bot("b"), sma_bot("a")], "feed": {"path": "x"}})
    assert refused.value.field == "bots.2.id"


def test_runtime_file_errors_name_the_dotted_field(tmp_path):
    bad = write_config(tmp_path / "bad.yaml", [sma_bot(), rsi_bot(params={"period": "x"})], tmp_path, "sqlite://")
    with pytest.raises(ConfigError) as refused:
        load_runtime_config(bad)
    assert refused.value.field == "bots.1.params.period"
    empty = tmp_path / "empty.yaml"
    empty.write_text("bots: []\nfeed: {path: x}\n")
    with pytest.raises(ConfigError) as refused:
        load_runtime_config(empty)
    assert refused.value.field == "bots"


def test_demo_config_is_valid():
    config = load_runtime_config(ROOT / "config" / "bots" / "demo.yaml")
    assert {b.symbol for b in config.bots} == {"EURUSD", "USDJPY"}


def test_run_refuses_a_bad_config_with_exit_2_and_the_field(tmp_path, monkeypatch, capsys):
    from app.cli import main

    bad = write_config(tmp_path / "bad.yaml", [sma_bot(venue="nyse")], tmp_path, "sqlite://")
    monkeypatch.setattr(sys, "argv", ["tickbridge", "run", str(bad)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert "bots.0.venue" in capsys.readouterr().err


# -- trading -----------------------------------------------------------------------------------------
def test_bots_trade_real_ticks_into_the_store(ticks, tmp_path, database_url):
    upgrade(database_url)
    with BotManager(FeedConfig(path=str(ticks)), database_url, tmp_path) as manager:
        assert isinstance(manager, BotControl)
        manager.start(parse_bot_config(sma_bot()))
        manager.start(parse_bot_config(rsi_bot()))
        assert manager.wait(120)
        sma, rsi = manager.status("sma1"), manager.status("rsi1")
    assert sma["state"] == rsi["state"] == "STOPPED"
    assert sma["ticks"] == 3000 and rsi["ticks"] == 1000
    assert sma["bars"] > 60 and rsi["bars"] > 30
    for bot_id in ("sma1", "rsi1"):
        orders = rows(database_url, OrderRow, OrderRow.bot_id == bot_id)
        fills = rows(database_url, FillRow, FillRow.bot_id == bot_id)
        signals = rows(database_url, SignalRow, SignalRow.bot_id == bot_id)
        assert orders and fills and signals, bot_id
        assert {f.client_order_id for f in fills} <= {o.client_order_id for o in orders}
        assert all(s.model_id == "0" and s.confidence == 1 for s in signals)
        directions = [s.direction for s in signals]
        assert all(a != b for a, b in zip(directions, directions[1:])), "a signal is a change of direction"
    (bot,) = rows(database_url, BotRow, BotRow.id == "sma1")
    assert bot.status == "STOPPED" and bot.checkpoint == 2999 and bot.strategy == "sma_cross"
    # each bot's paper venue numbers executions from 1: both bots' fills are all there
    assert len(rows(database_url, FillRow)) == len(rows(database_url, FillRow, FillRow.bot_id == "sma1")) + \
        len(rows(database_url, FillRow, FillRow.bot_id == "rsi1"))


def _orders(url: str, bot_id: str) -> list[tuple]:
    return sorted((o.client_order_id, o.side, o.type, o.qty, o.state, o.filled_qty, o.avg_fill_price, o.ts_init)
                  for o in rows(url, OrderRow, OrderRow.bot_id == bot_id))


def _fills(url: str, bot_id: str) -> list[tuple]:
    return sorted((f.execution_id, f.client_order_id, f.qty, f.price, f.fee, f.ts)
                  for f in rows(url, FillRow, FillRow.bot_id == bot_id))


def test_a_stopped_bot_resumes_where_it_stopped_and_sends_nothing_twice(ticks, tmp_path, database_url):
    """Stop at an arbitrary point, start again: the orders and fills are those of a run that was
    never interrupted (on_stop keep: nothing is cancelled in between)."""
    upgrade(database_url)
    bot = parse_bot_config(sma_bot(on_stop="keep"))
    paced = FeedConfig(path=str(ticks), speed=3000)  # ~1.5 s for the slice: time to stop it half way
    first = BotManager(paced, database_url, tmp_path / "a")
    first.start(bot)
    wait_for(lambda: first.status("sma1")["ticks"] >= 1200 or not first.running(), "1200 ticks")
    first.stop("sma1")
    stopped_at = first.status("sma1")["ticks"]
    first.close()
    assert 0 < stopped_at < 3000
    with BotManager(FeedConfig(path=str(ticks)), database_url, tmp_path / "a") as second:
        second.start(bot)
        second.wait(120)
        assert second.status("sma1")["ticks"] == 3000 - stopped_at  # only what was left

    other = f"sqlite:///{tmp_path / 'reference.db'}"  # the uninterrupted run, in a store of its own
    upgrade(other)
    with BotManager(FeedConfig(path=str(ticks)), other, tmp_path / "b") as reference:
        reference.start(bot)
        reference.wait(120)
    assert _orders(database_url, "sma1") == _orders(other, "sma1")
    assert _fills(database_url, "sma1") == _fills(other, "sma1")
    log = venue_log_path(tmp_path / "a", resolve_url(database_url), "sma1")
    submits = Counter(json.loads(line)["order"]["client_order_id"] for line in log.read_text().splitlines()
                      if '"op":"submit"' in line)
    assert submits and max(submits.values()) == 1


def test_start_stop_kill_status_from_another_thread(ticks, tmp_path, database_url):
    upgrade(database_url)
    manager = BotManager(FeedConfig(path=str(ticks), speed=600), database_url, tmp_path)
    results: dict[str, object] = {}

    def api_thread() -> None:  # what the control API does, from its own thread
        try:
            manager.start(parse_bot_config(sma_bot(params={"fast": 2, "slow": 3, "mode": "long_short",
                                                            "fixed_size": 1000})))
            results["running"] = manager.running()
            results["status"] = manager.status("sma1")
            wait_for(lambda: manager.status("sma1")["position"] != 0, "a position to flatten")
            manager.kill("sma1", "test")
            results["killed"] = manager.status("sma1")
            wait_for(lambda: manager.status("sma1")["position"] == 0, "the kill switch to flatten")
            results["flat"] = manager.status("sma1")
            results["running_after_kill"] = manager.running()
            manager.stop("sma1")
            results["stopped"] = manager.status("sma1")
        except BaseException as exc:  # reported by the assertions below
            results["error"] = exc

    thread = threading.Thread(target=api_thread)
    thread.start()
    thread.join(120)
    manager.close()
    assert "error" not in results, results.get("error")
    assert results["running"] == ["sma1"]
    status = results["status"]
    assert set(status) >= {"bot_id", "state", "bars", "ticks", "orders", "equity", "position", "last_tick_ts"}
    assert status["state"] == "RUNNING"
    assert results["killed"]["state"] == "HALTED"
    assert results["running_after_kill"] == []
    assert results["stopped"]["state"] == "HALTED"
    (bot,) = rows(database_url, BotRow, BotRow.id == "sma1")
    assert bot.status == "HALTED"
    orders = rows(database_url, OrderRow, OrderRow.bot_id == "sma1")
    assert all(o.state in ("FILLED", "CANCELED", "REJECTED", "DENIED") for o in orders)
    with pytest.raises(UnknownBot):
        manager.status("nobody")
    manager.kill("sma1", "again")  # a halted, flat bot: nothing more to flatten, it stays halted
    assert rows(database_url, BotRow, BotRow.id == "sma1")[0].status == "HALTED"
    assert len(rows(database_url, OrderRow, OrderRow.bot_id == "sma1")) == len(orders)


# -- the command ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("on_stop, expected", [("cancel", "CANCELED"), ("keep", "ACCEPTED")])
def test_sigint_stops_tickbridge_run_cleanly(ticks, tmp_path, database_url, on_stop, expected):
    upgrade(database_url)
    config = write_config(tmp_path / "bots.yaml",
                          [{"id": "rest1", "strategy": "resting_limit", "symbol": "EURUSD", "on_stop": on_stop}],
                          ticks, database_url, speed=300)
    command = [sys.executable, "-m", "tests.integration.runtime_helpers", "run", str(config),
               "--state-dir", str(tmp_path / "var")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: rows(database_url, OrderRow, OrderRow.bot_id == "rest1") or process.poll() is not None,
                 "the resting order")
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "rest1" in out and "session recorded" in out
    (order,) = rows(database_url, OrderRow, OrderRow.bot_id == "rest1")
    assert order.state == expected
    (bot,) = rows(database_url, BotRow, BotRow.id == "rest1")
    assert bot.status == "STOPPED" and 0 < bot.checkpoint < 2999
    (session,) = (tmp_path / "var" / "sessions").iterdir()
    meta = json.loads((session / "meta.json").read_text())
    assert meta["stopped"] and (session / "ticks.parquet").exists()
    assert [e["action"] for e in meta["bots"]["rest1"]["events"]] == (
        ["start", "cancel"] if on_stop == "cancel" else ["start"])
    if on_stop == "cancel":
        return
    # a second run resumes: the kept order is restored, not sent again; nothing is re-done
    again = subprocess.run([*command[:-4], "run", str(write_config(config, [
        {"id": "rest1", "strategy": "resting_limit", "symbol": "EURUSD", "on_stop": on_stop}], ticks, database_url)),
        "--state-dir", str(tmp_path / "var")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    (order_after,) = rows(database_url, OrderRow, OrderRow.bot_id == "rest1")
    assert order_after.client_order_id == order.client_order_id
    (bot,) = rows(database_url, BotRow, BotRow.id == "rest1")
    assert bot.checkpoint == 2999


def test_a_live_venue_bot_without_credentials_is_refused_not_paper_traded(ticks, tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with BotManager(FeedConfig(path=str(ticks)), url, tmp_path) as manager:
        manager.credential_sources = lambda config: []  # no account store, no environment
        with pytest.raises(ConfigError, match="no credentials for account 'binance-main'") as err:
            manager.start(parse_bot_config(sma_bot(venue="ccxt", account="binance-main")))
        assert err.value.field == "account" and manager.running() == []
