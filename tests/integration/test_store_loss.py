"""A store lost under a running bot (its SQLite file deleted or replaced) stops trading.

SQLite keeps writing to an unlinked file without complaint, so before issue 11 a bot whose store
was deleted traded on, its journal going nowhere, exited 0, and the restart failed with a message
that did not say why. Now the journal checks the file's identity at every commit: the bot stops
with stop_reason "store_lost" and sends nothing journaled into the lost file, `tickbridge run`
exits non-zero, and the restart says that the store and the paper venue's log disagree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import Field

from live.bot import venue_log_path
from live.config import FeedConfig, parse_bot_config
from live.manager import BotManager
from engine.store.db import database_url as resolve_url, upgrade
from strategies import STRATEGIES
from strategies.base import Strategy, StrategyParams
from tests.conftest import ROOT
from tests.integration.runtime_helpers import sma_bot, tick_dir, write_config, wait_for


class StoreVandal(Strategy):
    """Reverses at every bar close; at bar `vandal_bar` it first deletes the store's files (as a
    stray `rm var/tickbridge.db*` would), so the order it then makes is journaled into a file that
    no longer exists. Runs on the bot's own thread: the moment of the loss is exact."""

    name = "store_vandal"
    submits_at_deletion: ClassVar[dict[str, int]] = {}

    class Params(StrategyParams):
        store: str = ""
        venue_log: str = ""
        vandal_bar: int = Field(6, ge=1)

    def next(self) -> None:
        if self.i == self.p.vandal_bar:
            for suffix in ("", "-wal", "-shm"):
                Path(self.p.store + suffix).unlink(missing_ok=True)
            StoreVandal.submits_at_deletion[self.p.store] = len(submits(Path(self.p.venue_log)))
        self.go(1 if self.i % 2 == 0 else -1)


STRATEGIES.setdefault(StoreVandal.name, StoreVandal)


@pytest.fixture(scope="module")
def ticks(tmp_path_factory) -> Path:
    return tick_dir(tmp_path_factory.mktemp("ticks"))


def submits(log: Path) -> list[str]:
    """The client order ids the paper venue received, from its input log."""
    if not log.exists():
        return []
    return [json.loads(line)["order"]["client_order_id"] for line in log.read_text().splitlines()
            if '"op":"submit"' in line]



def test_a_deleted_store_stops_the_bot_and_nothing_journaled_into_it_reaches_the_venue(ticks, tmp_path):
    store = tmp_path / "store.db"
    url = f"sqlite:///{store}"
    upgrade(url)
    log = venue_log_path(tmp_path, resolve_url(url), "vandal1")
    config = parse_bot_config({"id": "vandal1", "strategy": "store_vandal", "symbol": "EURUSD", "bar": "1min",
                               "params": {"store": str(store), "venue_log": str(log), "fixed_size": 1000}})
    with BotManager(FeedConfig(path=str(ticks)), url, tmp_path, record=False) as manager:
        manager.start(config)
        assert manager.wait(120)
        status = manager.status("vandal1")
        error = manager.errors().get("vandal1")
    sent_before_the_loss = StoreVandal.submits_at_deletion[str(store)]
    assert sent_before_the_loss > 0  # it traded before the loss
    assert error is not None, "the bot traded on into a deleted store"
    assert status["stop_reason"] == "STORE_ERROR"
    assert "store.db was deleted or replaced while the bot ran" in status["error"]
    assert status["state"] == "STOPPED"
    assert status["ticks"] < 3000  # it stopped at once, not at the end of the feed
    # the order made after the loss was journaled into the deleted file: it never reached the venue
    assert len(submits(log)) == sent_before_the_loss


def test_a_store_replaced_by_another_file_is_noticed_too(tmp_path):
    """Not only a deletion: a file moved over the store (a restore done under a running bot)."""
    from engine.errors import StoreUnavailable
    from engine.store.db import StoreLost, StoreFileWatch

    store = tmp_path / "store.db"
    url = f"sqlite:///{store}"
    upgrade(url)
    watch = StoreFileWatch.of(url)
    assert watch is not None
    watch.check()  # the same file: nothing to say
    other = tmp_path / "other.db"
    upgrade(f"sqlite:///{other}")
    other.replace(store)
    with pytest.raises(StoreLost, match="store.db was deleted or replaced") as lost:
        watch.check()
    assert isinstance(lost.value, StoreUnavailable) and lost.value.stop_reason == "store_lost"
    assert StoreFileWatch.of("sqlite://") is None  # in memory: no file to lose
    assert StoreFileWatch.of("postgresql://u:secret@db/x") is None


def test_tickbridge_run_exits_non_zero_and_the_restart_says_what_happened(ticks, tmp_path):
    store = tmp_path / "store.db"
    url = f"sqlite:///{store}"
    upgrade(url)
    config = write_config(tmp_path / "bots.yaml", [sma_bot(params={"fast": 2, "slow": 3, "mode": "long_short",
                                                                   "fixed_size": 1000})],
                          ticks, url, speed=100)  # ~45 s for the slice: time to delete the store mid-run
    state = tmp_path / "var"
    log = venue_log_path(state, resolve_url(url), "sma1")
    command = [sys.executable, "-m", "tests.integration.runtime_helpers", "run", str(config), "--state-dir", str(state)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: submits(log) or process.poll() is not None, "the bot's first order")
        assert process.poll() is None, process.communicate()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0, out + err
    assert "store.db was deleted or replaced while the bot ran" in " ".join((out + err).split())

    # the restart: a new, empty store and the venue log of the lost one
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0
    orders = len(submits(log))
    expected = (f"the store has no record of bot 'sma1' but its paper venue log {log} holds {orders} orders: "
                "the store was lost or replaced; restore it, or archive the venue log to start afresh")
    flat = "".join  # rich wraps long lines, and folds a path longer than the console is wide
    assert flat(expected.split()) in flat((again.stdout + again.stderr).split()), again.stdout + again.stderr
    assert len(submits(log)) == orders  # and the restart sent nothing
