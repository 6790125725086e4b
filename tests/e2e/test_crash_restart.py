"""Kill the engine with SIGKILL at random points, restart it each time, and check nothing was
lost or sent twice.

A paper bot (tests/e2e/crash_bot.py) trades real EURUSD ticks against the durable paper venue,
booking into the SQL store. The test kills it at seeded random moments (during start-up,
recovery, matching, journaling: wherever it happens to be), restarts it, and finally lets it
finish. Then, comparing the store with the venue's own records:
- no client order id reached the venue twice (the venue's input log and its duplicate guard);
- no fill was lost: the store has exactly the venue's execution ids;
- position and cash in the store equal the venue's;
- realized P&L in the store equals a recomputation from the stored fills.

It runs on SQLite (20 kills, the whole day's ticks) and, where TICKBRIDGE_TEST_POSTGRES_URL is set, on
PostgreSQL (10 kills, the day's first 8,000 ticks). TICKBRIDGE_CRASH_KILLS, TICKBRIDGE_CRASH_TICKS and
TICKBRIDGE_CRASH_SEED (default 20261123) change the run.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from brokers.paper.durable import DurablePaperVenue
from engine.money import FeeModel
from engine.portfolio import Portfolio
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal
from engine.store.models import BotRow, PositionRow
from tests.conftest import DATA, ROOT
from tests.e2e.crash_bot import EURUSD

TICKS = DATA / "ticks" / "EURUSD_fxcm_20140505.csv.gz"
TICK_COUNT = 58_143  # the whole trading day in the file


def bot_command(db: str, venue_log: Path, limit: int) -> list[str]:
    return [sys.executable, "-m", "tests.e2e.crash_bot", "--db", db, "--venue-log", str(venue_log),
            "--ticks", str(TICKS), "--limit", str(limit)]


def ticks_for(database_url: str) -> int:
    """The day's first N ticks. SQLite gets the whole day: its 20 lives trade thousands of ticks
    between kills and must not reach the end before the last kill. PostgreSQL commits each tick's
    checkpoint with an fsync: its 10 lives reach a few hundred ticks, and the rest of the day
    (~58,000 ticks) only made the last, kill-free run take 3-11 minutes while proving nothing the
    first 8,000 (~850 orders) do not."""
    default = TICK_COUNT if database_url.startswith("sqlite") else 8_000
    return min(int(os.environ.get("TICKBRIDGE_CRASH_TICKS", default)), TICK_COUNT)


def trading_past(store, checkpoint: int, process: subprocess.Popen, bound_s: float = 120.0) -> None:
    """Wait until the bot's stored checkpoint passes `checkpoint` (it is trading, not recovering),
    or the bot has exited, or `bound_s` passed (a bound against a hang, not a measure)."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline and process.poll() is None:
        with store.connect() as connection:
            now = connection.execute(select(BotRow.checkpoint).where(BotRow.id == "crash1")).scalar()
        if now is not None and now > checkpoint:
            return
        time.sleep(0.01)


def test_sigkill_at_random_points_loses_nothing_and_sends_nothing_twice(tmp_path, database_url):
    default_kills = "20" if database_url.startswith("sqlite") else "10"
    kills_wanted = int(os.environ.get("TICKBRIDGE_CRASH_KILLS", default_kills))
    rng = random.Random(int(os.environ.get("TICKBRIDGE_CRASH_SEED", "20261123")))
    db = database_url
    venue_log = tmp_path / "venue.log"
    upgrade(db)
    store = make_engine(db)
    ticks = ticks_for(db)
    command = bot_command(db, venue_log, ticks)
    kills = 0
    starts: list[dict] = []
    while kills < kills_wanted:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if kills % 4 == 3:  # every fourth kill lands anywhere: start-up, loading, recovery
            time.sleep(rng.uniform(0.0, 1.5))
        else:  # the others while trading: after the bot reports it has recovered and then
            # commits a checkpoint past its last one (on a loaded machine the first ticks after
            # recovery can take longer than the sleep below: a kill there would land in recovery again)
            ready = process.stdout.readline() if process.stdout else ""
            if ready.startswith("{"):
                starts.append(json.loads(ready))
                trading_past(store, json.loads(ready)["checkpoint"], process)
            time.sleep(rng.uniform(0.02, 0.3))
        if process.poll() is not None:
            assert process.returncode == 0, process.stderr.read() if process.stderr else ""
            pytest.fail(f"the bot finished after {kills} kills: make the run longer to test {kills_wanted}")
        process.kill()
        out, _ = process.communicate()
        starts += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        kills += 1
    store.dispose()
    final = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    starts += [json.loads(line) for line in final.stdout.splitlines() if line.startswith("{")]
    checkpoints = [s["checkpoint"] for s in starts]
    print(f"{kills} kills; restarts resumed at {checkpoints}; "
          f"fills replayed {sum(s['fills_replayed'] for s in starts)}, "
          f"orders lost before submit {sum(s['lost_before_submit'] for s in starts)}, "
          f"in-flight resolved {sum(s['resolved'] for s in starts)}")
    assert checkpoints == sorted(checkpoints), "a restart went back in time"
    assert len(set(checkpoints) - {-1}) >= kills_wanted // 2, "most kills must land while trading"

    venue = DurablePaperVenue(venue_log, EURUSD, Decimal(10_000), FeeModel(Decimal("0.00002")))
    submits = Counter(json.loads(line)["order"]["client_order_id"]
                      for line in venue_log.read_text().splitlines() if '"op":"submit"' in line)
    assert submits and max(submits.values()) == 1, "an order reached the venue twice"
    assert venue.duplicate_submits == []
    assert len(venue.fills) > 100, "too few fills to prove anything"

    engine = make_engine(db)
    journal = SqlJournal(engine, "crash1", "PAPER")
    stored = journal.load({"EURUSD": EURUSD})
    assert {f.execution_id for f in stored.fills} == {f.execution_id for f in venue.fills}, "fills lost or invented"
    assert len(stored.fills) == len(venue.fills)
    assert stored.checkpoint == ticks - 1

    with engine.connect() as connection:
        position = connection.execute(select(PositionRow.__table__).where(PositionRow.bot_id == "crash1")).one()
    scales = EURUSD.scales
    assert position.qty == scales.qty(venue.position_raw())
    assert position.cash == scales.cash(venue.cash_raw())

    replay = Portfolio.for_instrument(Decimal(10_000), EURUSD)
    for fill in stored.fills:
        replay.apply_fill(EURUSD, fill.side.sign, fill.qty_raw, fill.price_raw, fill.fee_raw, fill.ts)
    assert position.realized_pnl == scales.cash(replay.realized_pnl_raw)
    assert replay.cash_raw == venue.cash_raw()
    # every order the store has is terminal or still legitimately open at the venue
    open_here = {o.client_order_id for o in stored.orders if not o.is_terminal}
    open_there = {r.order.client_order_id for r in venue.open_orders()}
    assert open_here == open_there
