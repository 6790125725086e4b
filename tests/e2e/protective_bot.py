"""A paper bot holding a trailing-stop position, for tests/e2e/test_protective_restart.py to SIGKILL.

    python -m tests.e2e.protective_bot --db URL --venue-log PATH [--emulate] [--hold-after N]

It buys 1000 EURUSD at the first tick with a trailing stop (first level 1.09800, trail 0.00200),
on a synthetic tick path: up from 1.10000 to 1.10500 (the stop trails to 1.10300), flat at
1.10450, then a gap down to 1.10250 (below the trailed stop, above its first level) and flat at
1.10200. `--emulate`: the paper venue declares no protective links, so the OMS holds and triggers
the stop itself (engine/emulation.py); without it the paper venue holds it. `--hold-after N`: the
feed blocks before tick N+1 and prints "HOLD" (everything up to tick N has been processed: the
test kills the process there). Prints one JSON line when the bot has started (reconciled).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from engine.market import Tick
from strategies.base import Strategy, StrategyParams
from tests.e2e.crash_bot import session_bot

T0 = 1_700_000_000_000_000_000
STEP = 1_000_000_000
GAP_AT = 61  # the index of the gap-down tick
QTY = Decimal(1000)
FIRST_STOP = "1.09800"
TRAIL = "0.00200"


def path() -> list[tuple[int, float, float]]:
    """(ts, bid, ask) of the synthetic path (module docstring)."""
    bids = [Decimal("1.10000") + Decimal("0.00010") * i for i in range(51)]  # ticks 0..50: up to 1.10500
    bids += [Decimal("1.10450")] * (GAP_AT - 51)                              # ticks 51..60
    bids += [Decimal("1.10250")]                                              # tick 61: the gap
    bids += [Decimal("1.10200")] * 19                                         # ticks 62..80
    return [(T0 + i * STEP, float(b), float(b + Decimal("0.00002"))) for i, b in enumerate(bids)]


class HeldStream:
    """The replayed feed, blocking forever before tick `hold_after + 1` when asked to."""

    def __init__(self, hold_after: int | None) -> None:
        self.hold_after = hold_after
        self.wake = threading.Event()

    def __iter__(self) -> Iterator[tuple[int, Tick]]:
        for seq, (ts, bid, ask) in enumerate(path()):
            if self.hold_after is not None and seq == self.hold_after + 1:
                print("HOLD", flush=True)
                while True:
                    time.sleep(3600)
            yield seq, Tick("EURUSD", ts, bid=bid, ask=ask)


class TrailOnce(Strategy):
    """Buys once, at the first tick, with a trailing stop."""

    name = "trail_once"

    def on_tick(self, tick: Tick) -> None:
        if tick.ts == T0:
            self.buy(qty=QTY, sl=FIRST_STOP, trail=TRAIL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--venue-log", required=True)
    parser.add_argument("--emulate", action="store_true")
    parser.add_argument("--hold-after", type=int, default=None)
    args = parser.parse_args(argv)
    bot = session_bot("prot1", args.db, args.venue_log, TrailOnce(StrategyParams()), HeldStream(args.hold_after),
                      "0")
    if args.emulate:
        bot.adapter.protective_orders = False  # a venue without links: the OMS emulates them

    def started(runner: Any) -> None:
        report = runner.report
        emulated = [o.client_order_id for o in runner.oms.open_orders if o.emulated]
        print(json.dumps({"checkpoint": runner.checkpoint, "resolved": report.orders_resolved,
                          "lost_before_submit": len(report.orders_lost_before_submit),
                          "emulated_armed": emulated}), flush=True)

    bot.on_started = started
    bot.run()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
