"""A bot holding a position with a trailing stop is SIGKILLed and restarted (issue 17 item 4).

tests/e2e/protective_bot.py buys at the first tick with a trailing stop; the price rises (the stop
trails from 1.09800 up to 1.10300), the feed blocks, the test reads the store and SIGKILLs the
process, then restarts it. The first tick after the restart gaps down to 1.10250: below the trailed
level, above the first one. So the exit fills at 1.10250 on that very tick only if the stop came
back at its trailed level and was armed before the tick was traded.

- emulated (the venue declares no links, the OMS holds the stop): the stop's ratcheted level is in
  the store before the kill; reconciliation leaves it alone (the venue never saw it); it is re-armed
  at that level; it fires once, and only its exit ever reaches the venue;
- native (the paper venue holds the stop): after the kill the restarted bot finds the venue's stop
  (resolved by reconciliation), sends nothing twice, and the venue's stop fills at the same price.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.paper.durable import DurablePaperVenue
from engine.money import FeeModel
from engine.orders import OrderState, OrderType
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal
from tests.conftest import ROOT
from tests.e2e.crash_bot import EURUSD
from tests.e2e.protective_bot import GAP_AT, QTY

D = Decimal


def _command(db: str, venue_log: Path, emulate: bool, hold_after: int | None = None) -> list[str]:
    command = [sys.executable, "-m", "tests.e2e.protective_bot", "--db", db, "--venue-log", str(venue_log)]
    if emulate:
        command.append("--emulate")
    if hold_after is not None:
        command += ["--hold-after", str(hold_after)]
    return command


def _load(db: str):
    return SqlJournal(make_engine(db), "prot1", "PAPER").load({"EURUSD": EURUSD})


def _kill_while_holding(db: str, venue_log: Path, emulate: bool) -> list[dict]:
    """Run until the feed blocks after the last tick before the gap, then SIGKILL."""
    process = subprocess.Popen(_command(db, venue_log, emulate, GAP_AT - 1), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in process.stdout:  # type: ignore[union-attr]
            if line.startswith("HOLD"):
                break
            lines.append(line)
        else:
            pytest.fail(f"the bot ended before holding: {process.stderr.read()}")  # type: ignore[union-attr]
    finally:
        process.kill()
        process.communicate(timeout=60)
    assert process.returncode == -9
    return [json.loads(line) for line in lines if line.startswith("{")]


def _restart(db: str, venue_log: Path, emulate: bool) -> dict:
    final = subprocess.run(_command(db, venue_log, emulate), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    return [json.loads(line) for line in final.stdout.splitlines() if line.startswith("{")][0]


def _venue_submits(venue_log: Path) -> Counter:
    return Counter(json.loads(line)["order"]["client_order_id"]
                   for line in venue_log.read_text().splitlines() if '"op":"submit"' in line)


@pytest.mark.parametrize("emulate", [True, False], ids=["emulated", "native"])
def test_a_trailing_stop_survives_sigkill_and_fires_at_its_trailed_level(tmp_path, database_url, emulate):
    db = database_url
    venue_log = tmp_path / "venue.log"
    upgrade(db)
    _kill_while_holding(db, venue_log, emulate)

    before = _load(db)
    entry = next(o for o in before.orders if o.tag == "open" or o.parent_id is None)
    stop = next(o for o in before.orders if o.parent_id == entry.client_order_id)
    assert entry.state is OrderState.FILLED and entry.filled_qty == QTY
    assert stop.is_open and stop.emulated is emulate
    if emulate:  # the OMS's level, journaled as it moved: a restart resumes at it, not at 1.09800
        assert stop.stop_price == D("1.10300")

    start = _restart(db, venue_log, emulate)
    assert start["checkpoint"] < GAP_AT  # the gap tick was never processed before the kill
    assert start["emulated_armed"] == ([stop.client_order_id] if emulate else [])

    after = _load(db)
    orders = {o.client_order_id: o for o in after.orders}
    stop = orders[stop.client_order_id]
    assert stop.state is OrderState.FILLED and stop.filled_qty == QTY
    exits = [f for f in after.fills if f.client_order_id != entry.client_order_id]
    assert len(exits) == 1 and exits[0].price == D("1.10250") and exits[0].qty == QTY
    assert exits[0].ts == after.fills[0].ts + (GAP_AT - 1) * 1_000_000_000  # at the gap tick (entry filled at tick 1)

    submits = _venue_submits(venue_log)
    assert max(submits.values()) == 1, "an order reached the venue twice"
    triggers = [o for o in after.orders if o.trigger_of is not None]
    if emulate:
        assert len(triggers) == 1 and triggers[0].trigger_of == stop.client_order_id
        assert triggers[0].type is OrderType.MARKET and triggers[0].reduce_only
        assert exits[0].client_order_id == triggers[0].client_order_id
        assert stop.client_order_id not in submits  # held by the OMS, never at the venue
        assert set(submits) == {entry.client_order_id, triggers[0].client_order_id}
    else:
        assert not triggers and exits[0].client_order_id == stop.client_order_id
        assert set(submits) == {entry.client_order_id, stop.client_order_id}
    venue = DurablePaperVenue(venue_log, EURUSD, D(10_000), FeeModel(D(0)))
    assert venue.position_raw() == 0 and venue.duplicate_submits == []
    venue.close()
