"""ProcessBots (live.remote): the BotControl protocol over a BotManager in a child
process, as `tickbridge serve` runs it. Real bots on the bundled ticks, a real SQLite store."""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.errors import ConfigError
from live.config import parse_bot_config, parse_feed_config
from live.control import UnknownBot
from live.remote import ProcessBots, RuntimeGone
from engine.store.db import make_engine, upgrade
from engine.store.models import BotRow

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120


def manager(url: str, state_dir: str):  # type: ignore[no-untyped-def]
    """Runs in the child (importable by name, as spawn requires)."""
    from live.manager import BotManager

    return BotManager(parse_feed_config({"path": str(ROOT / "data" / "ticks"), "speed": 600}), url, state_dir,
                      record=False)


def config(bot_id: str, symbol: str = "EURUSD"):  # type: ignore[no-untyped-def]
    return parse_bot_config({"id": bot_id, "strategy": "sma_cross", "symbol": symbol, "bar": "1min",
                             "params": {"fast": 10, "slow": 30}, "cash": "10000", "on_stop": "cancel"})


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'remote.db'}"
    upgrade(url)
    return url, str(tmp_path / "var")


def test_bots_run_in_the_child_and_stop_cleanly_on_close(store):
    url, state = store
    bots = ProcessBots(functools.partial(manager, url, state))
    try:
        assert bots.pid is not None and bots.pid != os.getpid()
        bots.start(config("r1"))
        assert bots.running() == ["r1"]
        first = bots.status("r1")["ticks"]
        deadline = time.monotonic() + WAIT_S
        while bots.status("r1")["ticks"] <= first:  # it trades on, in the other process
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert bots.status("r1")["state"] == "RUNNING"
        # the dashboard's candles come from the child's runner too (live.bars.tail over the pipe)
        deadline = time.monotonic() + WAIT_S
        while not (columns := bots.bars("r1", 5))["time"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert columns["symbol"] == "EURUSD" and len(columns["time"]) <= 6
        assert len(columns["open"]) == len(columns["close"]) == len(columns["time"])
        assert all(lo <= min(o, c) and hi >= max(o, c) for o, hi, lo, c in
                   zip(columns["open"], columns["high"], columns["low"], columns["close"]))
        with pytest.raises(UnknownBot):
            bots.bars("nobody", 5)
    finally:
        bots.close()
    assert not bots.process.is_alive() and bots.process.exitcode == 0
    assert bots.running() == []
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(select(BotRow.status).where(BotRow.id == "r1")).scalar() == "STOPPED"
    engine.dispose()


def test_errors_come_back_as_themselves(store):
    url, state = store
    with ProcessBots(functools.partial(manager, url, state)) as bots:
        with pytest.raises(UnknownBot) as unknown:
            bots.status("nobody")
        assert unknown.value.bot_id == "nobody"
        with pytest.raises(ConfigError) as refused:
            bots.start(config("r2", symbol="ZZZ"))  # no ZZZ_* tick file
        assert refused.value.field == "feed.path"
        assert bots.running() == []


def test_a_dead_runtime_is_an_error_not_a_hang(store):
    url, state = store
    bots = ProcessBots(functools.partial(manager, url, state))
    os.kill(bots.pid, signal.SIGKILL)
    bots.process.join(WAIT_S)
    with pytest.raises(RuntimeGone):
        bots.status("r3")
    bots.close()


def test_the_child_ignores_sigterm_and_sigint(store):
    """A Ctrl-C or a SIGTERM to the process group must not kill the bots behind the parent's back:
    the parent decides when they stop."""
    url, state = store
    with ProcessBots(functools.partial(manager, url, state)) as bots:
        bots.start(config("r4"))
        os.kill(bots.pid, signal.SIGTERM)
        os.kill(bots.pid, signal.SIGINT)
        bots.process.join(1.0)  # had the signals killed it, it would be gone by now
        assert bots.running() == ["r4"]
        assert bots.process.is_alive()
