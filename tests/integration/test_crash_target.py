"""A crash does not change the strategy's mind.

A long_short sma_cross bot reverses with two orders: close the long, open the short. A crash
after the open leg was journaled (PENDING_SUBMIT) but before the venue saw it leaves the close at
the venue and the open nowhere. The restart cancels the open as LOST_BEFORE_SUBMIT (right: it
never traded), re-runs the crossing's bar (the checkpoint is before it), but the strategy's go()
waits while the close is in flight, and the crossing never comes again: before issue 11 the bot
then stayed flat while its strategy wanted short. Now the driver keeps the strategy's target and,
after reconciliation, once no order of the strategy is in flight, sends the order that closes
the gap: once, journaled like any other.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from brokers.paper.durable import DurablePaperVenue
from engine.reconcile import LOST_BEFORE_SUBMIT
from live.config import FeedConfig, parse_bot_config
from live.manager import BotManager
from engine.store.db import make_engine, upgrade
from engine.store.journal import settle_write_ahead
from engine.store.models import OrderRow, PositionRow, SignalRow
from tests.integration.runtime_helpers import sma_bot, tick_dir
from tests.unit.test_write_ahead_record import unsettled

BOT = sma_bot(params={"fast": 2, "slow": 3, "mode": "long_short", "fixed_size": 1000})


class Crash(BaseException):
    """The process dying at this line: nothing after it runs (no flush, no venue log write)."""


@pytest.fixture(scope="module")
def ticks(tmp_path_factory) -> Path:
    return tick_dir(tmp_path_factory.mktemp("ticks"))


def table(url: str, model) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(model.__table__)).all()
    finally:
        engine.dispose()


def run_to_the_end(ticks: Path, url: str, state: Path) -> dict:
    with BotManager(FeedConfig(path=str(ticks)), url, state, record=False) as manager:
        manager.start(parse_bot_config(BOT))
        assert manager.wait(120)
        assert manager.errors() == {}, manager.errors()
        return {**manager.status("sma1"), **manager.summary("sma1")}


def test_an_order_lost_before_submit_is_sent_again_after_the_restart(ticks, tmp_path, monkeypatch):
    # the uninterrupted run: where the bot ends, and its last reversal (a close, then an open)
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    upgrade(reference)
    done = run_to_the_end(ticks, reference, tmp_path / "ref")
    orders = sorted(table(reference, OrderRow), key=lambda o: o.client_order_id)
    last_open = max(i for i, o in enumerate(orders) if o.tag == "open")
    assert orders[last_open - 1].tag == "close", "the last decision of the slice is a reversal"
    lost_id = orders[last_open].client_order_id
    final_position = done["position"]
    assert final_position != 0

    # the same bot crashes between journaling that open order and handing it to the venue
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    submit = DurablePaperVenue.submit

    def crashing(venue: DurablePaperVenue, order) -> None:
        if order.client_order_id == lost_id:
            raise Crash(lost_id)
        submit(venue, order)

    monkeypatch.setattr(DurablePaperVenue, "submit", crashing)
    with BotManager(FeedConfig(path=str(ticks)), url, tmp_path / "var", record=False) as crashed:
        crashed.start(parse_bot_config(BOT))
        crashed.wait(120)
        assert isinstance(crashed.errors().get("sma1"), Crash)
    monkeypatch.setattr(DurablePaperVenue, "submit", submit)
    # journaled before the venue call, in the bot's write-ahead record (engine/store/write_ahead.py):
    # not yet in `orders`; whoever reads the books next (here as the restart's load does) moves it there
    assert not [o for o in table(url, OrderRow) if o.client_order_id == lost_id]
    ((_, record),) = unsettled(tmp_path / "store.db")["sma1"]
    assert lost_id.encode() in record
    settle_write_ahead(make_engine(url), "sma1")
    (journaled,) = [o for o in table(url, OrderRow) if o.client_order_id == lost_id]
    assert journaled.state == "PENDING_SUBMIT"
    assert unsettled(tmp_path / "store.db") == {}
    signals = table(url, SignalRow)
    wanted = signals[-1].direction  # the strategy's decision was published before the crash
    assert wanted == (1 if final_position > 0 else -1)

    # the restart: the lost order is cancelled, and the bot ends where its strategy wants it
    after = run_to_the_end(ticks, url, tmp_path / "var")
    assert after["reconciliation"]["lost_before_submit"] == 1
    assert after["gap_orders"] == 1
    stored = {o.client_order_id: o for o in table(url, OrderRow)}
    assert stored[lost_id].state == "CANCELED" and stored[lost_id].reason == LOST_BEFORE_SUBMIT
    assert after["position"] == final_position, "the bot stayed flat while its strategy wanted a position"
    (position,) = table(url, PositionRow)
    assert position.qty == final_position
    # the gap was closed by one order, sent once: the reference's orders plus that one
    resent = [o for cid, o in sorted(stored.items()) if cid > lost_id]
    assert len(resent) == 1 and resent[0].tag == "open" and resent[0].side == journaled.side
    assert resent[0].state == "FILLED" and resent[0].filled_qty == Decimal(1000)
    assert len(stored) == len(orders) + 1
    assert len(table(url, SignalRow)) == len(signals)  # no new decision, so no new signal


def test_a_killed_bot_is_not_put_back_into_its_position_by_a_restart(ticks, tmp_path):
    """The kill switch flattened the bot on purpose: a person starting it again lets the strategy
    decide anew, the runtime does not re-enter the position the strategy held before the kill."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    # The first session replays only the feed's first half: however slow the machine, the bot cannot
    # use up the whole feed before the kill lands (it did under load: FeedExhausted at the resume).
    # The checkpoint counts ticks, so the later sessions go on in the whole feed, whose head this is.
    head = tick_dir(tmp_path / "head", eurusd_ticks=1500)
    with BotManager(FeedConfig(path=str(head), speed=600), url, tmp_path, record=False) as manager:
        manager.start(parse_bot_config(BOT))
        deadline = time.monotonic() + 120
        while manager.status("sma1")["position"] == 0 and manager.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manager.running() == ["sma1"], "the bot ended before it took a position"
        manager.kill("sma1", "test")
        while manager.status("sma1")["position"] != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manager.status("sma1")["state"] == "HALTED"
    assert table(url, SignalRow)[-1].direction != 0  # the strategy still "wants" a position
    with BotManager(FeedConfig(path=str(ticks)), url, tmp_path, record=False) as manager:
        manager.resume("sma1")  # a kill halts until a person lifts it
    after = run_to_the_end(ticks, url, tmp_path)
    assert after["gap_orders"] == 0
