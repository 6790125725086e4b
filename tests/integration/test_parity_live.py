"""Parity: a recorded paper session replayed through the same BotRunner and through the
backtester's event path on its ticks gives the same signals, orders and fills, including sessions
that were stopped, killed and resumed, and a session whose process was SIGKILLed; a difference is
reported against each replay, with exit status 1 from `tickbridge parity`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from live.config import FeedConfig, parse_bot_config
from live.manager import BotManager
from live.parity import run_parity
from engine.store.db import make_engine, upgrade
from engine.store.models import FillRow
from tests.integration.runtime_helpers import register, rsi_bot, sma_bot, tick_dir

register()


@pytest.fixture(scope="module")
def ticks(tmp_path_factory) -> Path:
    return tick_dir(tmp_path_factory.mktemp("ticks"))


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def assert_agree(session_id: str, state_dir: Path, database_url: str) -> dict:
    report = run_parity(session_id, state_dir, database_url)
    assert report.equal, [vars(d) for d in report.differences[:10]]
    return report.counts


def test_a_paper_session_replays_to_identical_signals_orders_and_fills(ticks, tmp_path, database_url):
    upgrade(database_url)
    with BotManager(FeedConfig(path=str(ticks)), database_url, tmp_path) as manager:
        manager.start(parse_bot_config(sma_bot()))
        manager.start(parse_bot_config(rsi_bot()))  # with the risk engine (config/risk/default.yaml)
        manager.wait(120)
    counts = assert_agree(manager.session_id, tmp_path, database_url)
    for bot_id in ("sma1", "rsi1"):
        for kind in ("signals", "orders", "fills"):
            live, runner, backtest = counts[bot_id][kind]
            assert live == runner == backtest > 0, (bot_id, kind)
        assert counts[bot_id]["bars"][0] == counts[bot_id]["bars"][2] > 30


def test_stopped_killed_and_resumed_sessions_replay_identically(ticks, tmp_path, database_url):
    """Session 1 is stopped part way (a resting order cancelled on stop) after one bot was killed;
    session 2 resumes both. Each session's replay takes the control actions where they happened."""
    upgrade(database_url)
    sma = parse_bot_config(sma_bot(params={"fast": 2, "slow": 3, "mode": "long_short", "fixed_size": 1000}))
    rest = parse_bot_config({"id": "rest1", "strategy": "resting_limit", "symbol": "EURUSD", "on_stop": "cancel"})
    first = BotManager(FeedConfig(path=str(ticks), speed=3000), database_url, tmp_path)
    first.start(sma)
    first.start(rest)
    wait_for(lambda: first.status("sma1")["position"] != 0 and first.status("rest1")["orders"] == 1,
             "a position and a resting order")
    first.kill("sma1", "parity test")
    wait_for(lambda: first.status("sma1")["position"] == 0, "the kill switch to flatten")
    first.close()
    assert first.status("rest1")["ticks"] < 3000, "session 1 must stop part way"
    meta = json.loads((tmp_path / "sessions" / str(first.session_id) / "meta.json").read_text())
    assert [e["action"] for e in meta["bots"]["sma1"]["events"]] == ["start", "kill"]
    assert [e["action"] for e in meta["bots"]["rest1"]["events"]] == ["start", "cancel"]
    with BotManager(FeedConfig(path=str(ticks)), database_url, tmp_path) as second:
        second.resume("sma1")  # a kill halts until a person lifts it
        second.start(sma)
        second.start(rest)
        second.wait(120)
    assert_agree(first.session_id, tmp_path, database_url)
    counts = assert_agree(second.session_id, tmp_path, database_url)
    assert counts["sma1"]["orders"][0] > 3


def test_a_difference_is_reported_and_exits_1(ticks, tmp_path, database_url, monkeypatch, capsys):
    upgrade(database_url)
    with BotManager(FeedConfig(path=str(ticks)), database_url, tmp_path) as manager:
        manager.start(parse_bot_config(sma_bot()))
        manager.wait(120)
    engine = make_engine(database_url)
    with engine.begin() as connection:  # a fill the venue never made at that price
        connection.execute(update(FillRow.__table__).where(FillRow.execution_id == "PAPER-2")
                           .values(price=FillRow.price + 1))
    engine.dispose()
    report = run_parity(manager.session_id, tmp_path, database_url)
    assert [(d.kind, d.key, d.field, d.against) for d in report.differences] == [
        ("fill", "PAPER-2", "price_raw", "runner"), ("fill", "PAPER-2", "price_raw", "backtest")]

    from app.cli import main

    monkeypatch.setattr(sys, "argv", ["tickbridge", "parity", manager.session_id, "--state-dir", str(tmp_path),
                                      "--database-url", database_url])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    assert "2 difference" in capsys.readouterr().out


def test_a_session_killed_with_sigkill_replays_up_to_its_last_journaled_input(ticks, tmp_path, database_url):
    """`tickbridge run` is SIGKILLed while its bots trade: nothing is written at a stop. The ticks
    it read were logged as it read them and the store holds each bot's checkpoint, so parity
    replays the bot up to its checkpoint, through the runner and the backtester, and finds
    no difference with what they did."""
    import signal
    import subprocess

    from engine.store.models import BotRow, OrderRow
    from tests.integration.runtime_helpers import rows, write_config

    upgrade(database_url)
    sma = sma_bot(params={"fast": 2, "slow": 3, "mode": "long_short", "fixed_size": 1000})
    config = write_config(tmp_path / "bots.yaml", [sma], ticks, database_url, speed=1500)
    process = subprocess.Popen([sys.executable, "-m", "tests.integration.runtime_helpers", "run", str(config),
                                "--state-dir", str(tmp_path)], cwd=Path(__file__).resolve().parents[2],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        # five orders in the store: the fourth's tick is then checkpointed too (an order is journaled
        # before its tick's checkpoint commits, and parity replays up to the checkpoint; a kill between
        # the two leaves that order out of the replay, as it should)
        while len(rows(database_url, OrderRow, OrderRow.bot_id == "sma1")) < 5:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "no orders before the deadline"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    (session,) = [p.name for p in (tmp_path / "sessions").iterdir()]
    assert not (tmp_path / "sessions" / session / "ticks.parquet").exists(), "killed: no clean-stop files"
    checkpoints = {r.id: r.checkpoint for r in rows(database_url, BotRow, BotRow.id == "sma1")}
    assert 0 < checkpoints["sma1"] < 2999, "killed part way"
    counts = assert_agree(session, tmp_path, database_url)
    live, runner, backtest = counts["sma1"]["orders"]
    assert live == runner == backtest >= 4
