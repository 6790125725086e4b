"""A paper bot for the crash test, run as its own process so the test can SIGKILL it.

    python -m tests.e2e.crash_bot --db URL --venue-log PATH --ticks FILE [--period-s 20]

It runs the one BotRunner (live/runner.py) as the runtime builds it for a paper bot, with a
strategy object of its own. It trades the EURUSD tick file with a strategy whose every decision follows from the tick in
hand (long in even `period` buckets of the tick's timestamp, short in odd ones), so a restarted
process decides exactly what the killed one would have. Exit status 0 when all ticks are done.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from backtest.data import load_ticks
from engine.instrument import AssetClass, Instrument
from engine.market import Tick
from live.bot import paper_bot
from live.config import parse_bot_config
from strategies.base import Strategy, StrategyParams

EURUSD = Instrument("EURUSD", asset_class=AssetClass.FX, price_increment=Decimal("0.00001"),
                    size_increment=Decimal("1"), currency_increment=Decimal("0.01"))


class TickStream:
    """A replayed feed of (sequence, Tick) for the runner (`wake`: a command's doorbell)."""

    def __init__(self, ticks: Iterable[tuple[int, Tick]]) -> None:
        self.ticks = ticks
        self.wake = threading.Event()

    def __iter__(self) -> Iterator[tuple[int, Tick]]:
        return iter(self.ticks)


def session_bot(bot_id: str, url: str, venue_log: str | Path, strategy: Strategy, ticks: Iterable[tuple[int, Tick]],
                commission: str) -> Any:
    """A paper bot on `ticks` that keeps its open orders when the feed ends (a crash test's
    restart finds them at the venue)."""
    config = parse_bot_config({"id": bot_id, "strategy": "buy_and_hold", "symbol": "EURUSD", "commission": commission,
                               "on_stop": "keep"})
    return paper_bot(config, None, 0.0, url, Path(venue_log).parent, feed=TickStream(ticks), strategy=strategy,
                     instrument=EURUSD, venue_log=Path(venue_log))


class ClockFlip(Strategy):
    name = "clock_flip"

    def __init__(self, params: StrategyParams, period_ns: int) -> None:
        super().__init__(params)
        self.period_ns = period_ns

    def on_tick(self, tick: Tick) -> None:
        self.go(1 if (tick.ts // self.period_ns) % 2 == 0 else -1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--venue-log", required=True)
    parser.add_argument("--ticks", required=True)
    parser.add_argument("--period-s", type=int, default=20)
    parser.add_argument("--bot", default="crash1")
    parser.add_argument("--limit", type=int, default=0, help="only the first N ticks (0: all)")
    args = parser.parse_args()
    ticks = load_ticks(args.ticks)
    if args.limit:
        ticks = ticks.iloc[: args.limit]
    stream = ((seq, Tick("EURUSD", ts, bid=bid, ask=ask)) for seq, (ts, bid, ask) in
              enumerate(zip(ticks.index.as_unit("ns").asi8.tolist(), ticks["bid"].tolist(), ticks["ask"].tolist())))
    strategy = ClockFlip(StrategyParams(fixed_size=Decimal(1000)), args.period_s * 1_000_000_000)
    bot = session_bot(args.bot, args.db, args.venue_log, strategy, stream, "0.00002")

    def started(runner: Any) -> None:
        report = runner.report
        print(json.dumps({"checkpoint": runner.checkpoint, "fills_replayed": report.fills_replayed,
                          "lost_before_submit": len(report.orders_lost_before_submit),
                          "resolved": report.orders_resolved}), flush=True)

    bot.on_started = started
    bot.run()


if __name__ == "__main__":
    main()
