"""Bots a person can follow and manage (issue 12, item 5), through the real BotManager on real
EURUSD ticks: equity points at every bar close, why a bot stopped and what it holds (durably),
start refused on an exhausted feed, kill flattening a stopped bot, a kill's halt lasting until
resume, and reset archiving a bot's books so it starts clean."""

from __future__ import annotations

import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from live.bot import venue_log_path
from live.books import BotRunning, iso_ns
from live.config import FeedConfig, parse_bot_config
from live.control import BotHalted, FeedExhausted, NotHalted
from live.manager import BotManager
from engine.store.db import database_url as resolve_url, make_engine, upgrade
from engine.store.journal import SqlJournal
from engine.store.models import BotArchiveRow, BotRow, EquityPointRow, FillRow, OrderRow, PositionRow, SignalRow
from tests.integration.runtime_helpers import rows, sma_bot, tick_dir, wait_for

CASH = Decimal(10_000)


@pytest.fixture(scope="module")
def ticks(tmp_path_factory) -> Path:
    return tick_dir(tmp_path_factory.mktemp("ticks"))


@pytest.fixture
def url(database_url) -> str:
    """A migrated store: SQLite, and PostgreSQL where TICKBRIDGE_TEST_POSTGRES_URL is set."""
    upgrade(database_url)
    return database_url


def config(**overrides):
    return parse_bot_config(sma_bot(**overrides))


def run_to_the_end(ticks: Path, url: str, state: Path, bot=None) -> dict:
    with BotManager(FeedConfig(path=str(ticks)), url, state, record=False) as manager:
        manager.start(bot or config())
        assert manager.wait(120)
        assert manager.errors() == {}, manager.errors()
        return manager.status("sma1")


def points(url: str, bot_id: str = "sma1") -> list[tuple]:
    found = rows(url, EquityPointRow, EquityPointRow.bot_id == bot_id)
    return sorted((p.ts, p.equity, p.cash, p.realized, p.unrealized, p.position) for p in found)


def position(url: str, bot_id: str = "sma1") -> Decimal:
    found = rows(url, PositionRow, PositionRow.bot_id == bot_id)
    return found[0].qty if found else Decimal(0)


# -- following ------------------------------------------------------------------------------------------
def test_an_equity_point_is_written_at_every_bar_close(ticks, url, tmp_path):
    status = run_to_the_end(ticks, url, tmp_path)
    found = points(url)
    assert len(found) == status["bars"] > 60  # one per bar the bot closed
    times = [p[0] for p in found]
    assert all(b - a >= 60 * 10**9 and b % (60 * 10**9) == 0 for a, b in zip(times, times[1:]))  # bar ends
    for _ts, equity, _cash, realized, unrealized, _position in found:  # the books' own identity
        assert equity == CASH + realized + unrealized
    assert found[-1][5] == status["position"] != 0
    assert any(p[4] != 0 for p in found), "marked to market at each close"


def test_equity_points_ride_the_journals_commits_and_ask_for_none(url):
    engine = make_engine(url)
    try:
        journal = SqlJournal(engine, "j1", "PAPER")
        journal.record_equity(60, Decimal("10000.5"), Decimal("9000"), Decimal("0"), Decimal("0.5"), Decimal("1"))
        assert not journal.pending  # the runtime flushes when something else needs it, not for a point
        journal.set_checkpoint(7)
        journal.flush()
        assert journal.commits == 1
    finally:
        engine.dispose()
    assert points(url, "j1") == [(60, Decimal("10000.5"), Decimal("9000"), 0, Decimal("0.5"), 1)]


def test_a_stop_and_a_restart_write_each_bar_close_once(ticks, url, tmp_path):
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    upgrade(reference)
    run_to_the_end(ticks, reference, tmp_path / "ref")
    with BotManager(FeedConfig(path=str(ticks), speed=600), url, tmp_path, record=False) as manager:
        manager.start(config())
        wait_for(lambda: len(points(url)) >= 5 or not manager.running(), "a few bar closes")
        manager.stop("sma1")
    assert 0 < len(points(url)) < len(points(reference)), "the stop must come part way"
    run_to_the_end(ticks, url, tmp_path)
    assert points(url) == points(reference)


def test_a_bot_at_the_end_of_its_feed_says_why_and_what_it_still_holds_after_a_restart(ticks, url, tmp_path):
    status = run_to_the_end(ticks, url, tmp_path)
    assert status["state"] == "STOPPED" and status["stop_reason"] == "END_OF_FEED"
    held = status["holdings"]["positions"]
    assert [(p["symbol"], Decimal(p["qty"])) for p in held] == [("EURUSD", status["position"])]
    assert "whole feed" in status["stop_message"] and f"{status['position']} EURUSD" in status["stop_message"]
    with BotManager(FeedConfig(path=str(ticks)), url, tmp_path, record=False) as fresh:  # a new process
        again = fresh.status("sma1")
    assert (again["state"], again["stop_reason"], again["stop_message"]) == \
        ("STOPPED", "END_OF_FEED", status["stop_message"])
    assert again["holdings"] == status["holdings"]


def test_starting_a_bot_whose_feed_is_exhausted_is_refused_saying_so(ticks, url, tmp_path):
    run_to_the_end(ticks, url, tmp_path)
    orders_before = rows(url, OrderRow)
    with BotManager(FeedConfig(path=str(ticks)), url, tmp_path, record=False) as manager:
        with pytest.raises(FeedExhausted) as refused:
            manager.start(config())
        assert manager.running() == []
    assert "whole feed (3000 ticks)" in str(refused.value) and "reset" in str(refused.value)
    assert rows(url, OrderRow) == orders_before
    assert rows(url, BotRow, BotRow.id == "sma1")[0].stop_reason == "END_OF_FEED"


# -- kill, halt, resume ---------------------------------------------------------------------------------
def test_kill_flattens_a_bot_stopped_at_the_end_of_its_feed_through_its_venue(ticks, url, tmp_path):
    status = run_to_the_end(ticks, url, tmp_path)
    assert status["position"] != 0
    with BotManager(FeedConfig(path=str(ticks)), url, tmp_path, record=False) as manager:
        manager.kill("sma1", "going home")
        killed = manager.status("sma1")
    assert killed["state"] == "HALTED" and killed["stop_reason"] == "KILLED" and killed["position"] == 0
    assert killed["holdings"] == {"positions": [], "open_orders": []}
    assert "going home" in killed["stop_message"]
    assert position(url) == 0
    close = max(rows(url, OrderRow, OrderRow.bot_id == "sma1"), key=lambda o: o.client_order_id)
    assert close.tag == "close" and close.state == "FILLED" and close.filled_qty == abs(status["position"])
    (fill,) = rows(url, FillRow, FillRow.client_order_id == close.client_order_id)
    assert fill.ts == status["last_tick_ts"] + 1  # the last quote, offered once more
    log = venue_log_path(tmp_path, resolve_url(url), "sma1").read_text()
    assert f'"client_order_id":"{close.client_order_id}"' in log  # it went through the venue's log
    assert rows(url, BotRow, BotRow.id == "sma1")[0].status == "HALTED"


def test_kill_of_a_bot_stopped_part_way_flattens_it_on_its_next_tick(ticks, url, tmp_path):
    with BotManager(FeedConfig(path=str(ticks), speed=600), url, tmp_path, record=False) as manager:
        manager.start(config(params={"fast": 2, "slow": 3, "mode": "long_short", "fixed_size": 1000}))
        wait_for(lambda: manager.status("sma1")["position"] != 0, "a position")
        manager.stop("sma1")
        checkpoint = rows(url, BotRow, BotRow.id == "sma1")[0].checkpoint
        assert checkpoint < 2999 and position(url) != 0
        manager.kill("sma1", "test")
        assert manager.status("sma1")["state"] == "HALTED"
    assert position(url) == 0
    assert rows(url, BotRow, BotRow.id == "sma1")[0].checkpoint == checkpoint + 1
    assert all(o.state in ("FILLED", "CANCELED", "REJECTED", "DENIED") for o in rows(url, OrderRow))


def test_a_killed_bot_stays_halted_across_restarts_until_resumed(ticks, url, tmp_path):
    bot = config(params={"fast": 2, "slow": 3, "mode": "long_short", "fixed_size": 1000})
    with BotManager(FeedConfig(path=str(ticks), speed=300), url, tmp_path, record=False) as manager:
        manager.start(bot)
        wait_for(lambda: manager.status("sma1")["position"] != 0, "a position")
        manager.kill("sma1", "test")
        assert manager.status("sma1")["state"] == "HALTED"
        manager.stop("sma1")
        with pytest.raises(BotHalted, match="halted by kill: resume it first"):
            manager.start(bot)
    orders = len(rows(url, OrderRow))
    with BotManager(FeedConfig(path=str(ticks), speed=300), url, tmp_path, record=False) as manager:
        with pytest.raises(BotHalted):
            manager.start(bot)  # the halt is in the store, not in a process's memory
        assert len(rows(url, OrderRow)) == orders
        manager.resume("sma1")
        with pytest.raises(NotHalted):
            manager.resume("sma1")
        manager.start(bot)
        assert manager.status("sma1")["state"] == "RUNNING"
        assert manager.status("sma1")["stop_reason"] is None


def test_a_bot_killed_stopped_and_resumed_starts_again_in_the_same_runtime(ticks, url, tmp_path):
    bot = config(params={"fast": 2, "slow": 3, "mode": "long_short", "fixed_size": 1000})
    with BotManager(FeedConfig(path=str(ticks), speed=300), url, tmp_path, record=False) as manager:
        manager.start(bot)
        wait_for(lambda: manager.status("sma1")["position"] != 0, "a position")
        manager.kill("sma1", "test")
        with pytest.raises(BotHalted):
            manager.start(bot)  # halted while it still runs, too
        manager.stop("sma1")
        manager.resume("sma1")
        manager.start(bot)
        assert manager.status("sma1")["state"] == "RUNNING"


def test_resume_lifts_the_halt_of_a_bot_that_still_runs(ticks, url, tmp_path):
    bot = config(params={"fast": 2, "slow": 3, "mode": "long_short", "fixed_size": 1000})
    with BotManager(FeedConfig(path=str(ticks), speed=300), url, tmp_path, record=False) as manager:
        manager.start(bot)
        wait_for(lambda: manager.status("sma1")["position"] != 0, "a position")
        manager.kill("sma1", "test")
        if manager.status("sma1")["state"] != "HALTED" or not manager._threads["sma1"].is_alive():
            pytest.skip("the replay ended before the resume")  # never seen at 300x, but not impossible
        manager.resume("sma1")
        assert manager.status("sma1")["state"] == "RUNNING"
        assert manager.running() == ["sma1"]
        assert rows(url, BotRow, BotRow.id == "sma1")[0].status == "RUNNING"


# -- reset ----------------------------------------------------------------------------------------------
def test_reset_archives_the_books_and_the_bot_starts_clean(ticks, url, tmp_path):
    first = run_to_the_end(ticks, url, tmp_path)
    orders = {o.client_order_id for o in rows(url, OrderRow, OrderRow.bot_id == "sma1")}
    fills = len(rows(url, FillRow, FillRow.bot_id == "sma1"))
    first_points = points(url)
    (held,) = rows(url, PositionRow, PositionRow.bot_id == "sma1")
    with BotManager(FeedConfig(path=str(ticks)), url, tmp_path, record=False) as manager:
        report = manager.reset("sma1", "ann")
        assert manager.status("sma1")["state"] == "STOPPED"
        assert manager.status("sma1")["holdings"] == {"positions": [], "open_orders": []}
    message = report["message"]
    assert f"archived {len(orders)} orders" in message and f"{fills} fills" in message
    assert f"position {held.qty:f} EURUSD" in message
    assert re.search(r"realized -?\d+\.\d\d USD", message) and re.search(r"fees \d+\.\d\d USD", message)
    assert f"realized {held.realized_pnl:.2f} USD" in message
    archive = report["archive_id"]
    # the history moved, nothing was deleted: the archive id reads as the bot did
    assert {o.client_order_id for o in rows(url, OrderRow, OrderRow.bot_id == archive)} == orders
    assert len(rows(url, FillRow, FillRow.bot_id == archive)) == fills
    assert points(url, archive) == first_points and points(url) == []
    assert rows(url, SignalRow, SignalRow.bot_id == "sma1") == []
    (entry,) = rows(url, BotArchiveRow)
    assert (entry.bot_id, entry.archive_bot_id, entry.actor) == ("sma1", archive, "ann")
    assert list(tmp_path.glob("paper/*/sma1.r1.archived.log"))
    # clean: the whole feed again from its initial cash, the same trades as the first time
    second = run_to_the_end(ticks, url, tmp_path)
    assert second["stop_reason"] == "END_OF_FEED" and second["position"] == first["position"]
    again = rows(url, OrderRow, OrderRow.bot_id == "sma1")
    assert len(again) == len(orders) and not {o.client_order_id for o in again} & orders  # ids continue
    assert len(rows(url, FillRow, FillRow.bot_id == "sma1")) == fills  # the fresh venue's fills are kept
    assert points(url) == first_points


def test_reset_refuses_a_running_bot_and_changes_nothing(ticks, url, tmp_path):
    with BotManager(FeedConfig(path=str(ticks), speed=300), url, tmp_path, record=False) as manager:
        manager.start(config())
        with pytest.raises(BotRunning, match="stop it before resetting it"):
            manager.reset("sma1")
        assert manager.running() == ["sma1"]
    assert rows(url, BotArchiveRow) == [] and rows(url, BotRow, BotRow.id.like("%~%")) == []


# -- the command ----------------------------------------------------------------------------------------
def test_tickbridge_bots_reset_speaks_in_currency_units(ticks, url, tmp_path, monkeypatch, capsys):
    from app.cli import main

    run_to_the_end(ticks, url, tmp_path)
    monkeypatch.setattr(sys, "argv", ["tickbridge", "bots", "reset", "sma1", "--state-dir", str(tmp_path),
                                      "--database-url", url])
    main()
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"archived \d+ orders \(0 open\), \d+ fills, position -?\d+ EURUSD, realized -?\d+\.\d\d USD",
                     out), out
    monkeypatch.setattr(sys, "argv", ["tickbridge", "bots", "resume", "sma1", "--state-dir", str(tmp_path),
                                      "--database-url", url])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2 and "is not halted" in capsys.readouterr().err


def test_tickbridge_run_says_a_bots_feed_is_exhausted_and_exits_3(ticks, url, tmp_path, monkeypatch, capsys):
    from app.cli import main
    from tests.integration.runtime_helpers import write_config

    run_to_the_end(ticks, url, tmp_path)
    path = write_config(tmp_path / "bots.yaml", [sma_bot()], ticks, url)
    monkeypatch.setattr(sys, "argv", ["tickbridge", "run", str(path), "--state-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 3
    assert "has replayed its whole feed" in " ".join(capsys.readouterr().out.split())


def test_iso_times_keep_every_nanosecond():
    assert iso_ns(1399248001123456789) == "2014-05-05T00:00:01.123456789Z"
    assert iso_ns(0) == "1970-01-01T00:00:00.000000000Z" and iso_ns(None) is None


def test_migration_0008_keeps_existing_bots_and_goes_back(database_url):
    from sqlalchemy import inspect, text

    from tests.conftest import migrate_store

    def migrate(target: str, down: bool = False) -> None:
        migrate_store(database_url, target, down)

    migrate("0007")
    engine = make_engine(database_url)
    try:
        with engine.begin() as c:
            c.execute(text("INSERT INTO bots (id, name, strategy, account_id, config, status, next_order_seq, "
                           "checkpoint, created_at) VALUES ('old', 'old', 'sma_cross', 'default', '{}', 'HALTED', 4, "
                           "99, CURRENT_TIMESTAMP)"))
        migrate("0008")
        (bot,) = rows(database_url, BotRow, BotRow.id == "old")
        assert (bot.status, bot.checkpoint, bot.resets, bot.stop_reason) == ("HALTED", 99, 0, None)
        migrate("0007", down=True)
        tables = inspect(engine).get_table_names()
        assert "equity_points" not in tables and "bot_archives" not in tables
        with engine.connect() as c:
            assert c.execute(text("SELECT status FROM bots WHERE id = 'old'")).scalar() == "HALTED"
    finally:
        engine.dispose()


def _child_manager(url: str, ticks: str, state: str):  # type: ignore[no-untyped-def]
    """The runtime of `tickbridge serve`, in a child process (importable by name, as spawn needs)."""
    return BotManager(FeedConfig(path=ticks), url, state, record=False)


def test_kill_resume_and_reset_reach_a_runtime_in_its_own_process(ticks, tmp_path):
    import functools

    from live.remote import ProcessBots

    url = f"sqlite:///{tmp_path / 'remote.db'}"
    upgrade(url)
    with ProcessBots(functools.partial(_child_manager, url, str(ticks), str(tmp_path))) as bots:
        bots.start(config())
        wait_for(lambda: bots.status("sma1").get("stop_reason") == "END_OF_FEED", "the end of the feed")
        with pytest.raises(FeedExhausted):  # rebuilt as itself on this side of the pipe
            bots.start(config())
        bots.kill("sma1", "remote")
        assert bots.status("sma1")["stop_reason"] == "KILLED" and position(url) == 0
        with pytest.raises(BotHalted):
            bots.start(config())
        bots.resume("sma1")
        report = bots.reset("sma1", "ann")
        assert report["archive_id"] == "sma1~r1" and "USD" in report["message"]
        bots.start(config())
        wait_for(lambda: bots.status("sma1").get("stop_reason") == "END_OF_FEED", "the end of the feed again")


def test_a_live_venue_bot_writes_an_equity_point_at_every_bar_close_and_says_why_it_stopped(tmp_path):
    from tests.integration.test_live_venue_bot import BOT, manager as live_manager, quote, terminal, wait_until

    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    fake = terminal()
    with live_manager(url, tmp_path, fake) as bots:
        bots.start(parse_bot_config(BOT))
        for minute in range(1, 12):
            quote(fake, minute)
            wait_until(lambda: bots.status(BOT["id"])["ticks"] >= minute)
        bars = bots.status(BOT["id"])["bars"]
        bots.stop(BOT["id"])
        status = bots.status(BOT["id"])
    found = points(url, BOT["id"])
    assert len(found) == bars >= 9 and all(a[0] < b[0] for a, b in zip(found, found[1:]))
    assert status["stop_reason"] == "STOPPED" and "stopped on request" in status["stop_message"]
