"""OMS speed: risk checks, durable order events, tick-to-submit latency, live runner throughput.

    .venv/bin/python bench/oms_speed.py [--orders 50000] [--postgres URL] [--live-ticks N] [--live-rounds 3]
    .venv/bin/python bench/oms_speed.py --live-only       # item 4 alone

1. Risk checks/s: RiskEngine.check on a limit order with every per-order limit configured.
2. Order events/s stored durably: orders going PENDING_SUBMIT -> SUBMITTED -> ACCEPTED -> FILLED
   (4 events, 1 fill), committed in groups as the session does (one commit per input), on SQLite
   WAL and, with --postgres (or TICKBRIDGE_TEST_POSTGRES_URL), on PostgreSQL.
3. Tick -> adapter.submit latency: a strategy decides on a tick, the order passes risk, is
   journaled and committed (write-ahead), and reaches the adapter; p50 and p99 over many ticks.
4. Live runner throughput: ticks/s through a whole paper bot as the runtime builds it (live/bot.py
   paper_bot: the one BotRunner over PaperAdapter + DurablePaperVenue, the SQL journal on SQLite in a
   temporary directory), replaying the real EURUSD FXCM ticks in data/ticks at full speed, for two
   bots (LIVE_BOTS): the demo's sma_cross 10/30 long_short on 1-minute bars (a bar strategy: ~110
   orders in the day) and a tick strategy reversing every 30 s (several thousand orders, each
   journaled and committed before the venue sees it). Several rounds, each on a fresh
   store; the median round is reported with its orders, fills and per-tick p50/p99, and the load
   average beside it (the machine is shared: the figures are only comparable with runs at similar
   load). Run from a tree without live/runner.py (PYTHONPATH=that tree, from inside it) the same
   bot runs through that tree's live.bot.BotRunner (PaperSession underneath), for a before/after.
Prints figures only; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text

from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.risk import AccountLimits, AccountRisk, RiskEngine, RiskLimits
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal
from strategies.base import Strategy, StrategyParams

TICK_FILE = Path(__file__).resolve().parents[1] / "data" / "ticks" / "EURUSD_fxcm_20140505.csv.gz"
EURUSD = Instrument("EURUSD", price_increment=Decimal("0.00001"), size_increment=Decimal("1"))
LAST = Decimal("1.10000")


def risk_checks(n: int) -> float:
    clock = SimulatedClock(1)
    venue = SimulatedVenue(EURUSD, Decimal(1_000_000))
    oms = OrderManager("b", clock, venue, Portfolio.for_instrument(Decimal(1_000_000), EURUSD), {"EURUSD": EURUSD})
    limits = RiskLimits(allowed_symbols=["EURUSD"], max_order_qty=Decimal(10**6), max_order_notional=Decimal(10**6),
                        price_band_pct=Decimal(5), max_position_qty=Decimal(10**7), max_gross_exposure=Decimal(10**8),
                        max_open_orders=1000, capital_allocation=Decimal(10**8))
    risk = RiskEngine("b", limits, AccountRisk(AccountLimits(max_gross_exposure=Decimal(10**9))), clock,
                      {"EURUSD": EURUSD}, last_price=lambda s: LAST)
    risk.bind(oms)
    orders = [Order(f"b-{i}", "b", "EURUSD", OrderSide.BUY, OrderType.LIMIT, Decimal(1000), 0,
                    limit_price=Decimal("1.09990")) for i in range(n)]
    started = time.perf_counter()
    for order in orders:
        assert risk.check(order, oms.portfolio) is None
    return n / (time.perf_counter() - started)


def stored_events(url: str, n: int, group: int) -> float:
    upgrade(url)
    engine = make_engine(url)
    journal = SqlJournal(engine, f"bench{group}", "PAPER")
    orders = [Order(f"bench{group}-{i:08d}", f"bench{group}", "EURUSD", OrderSide.BUY, OrderType.MARKET,
                    Decimal(1000), i) for i in range(n)]
    from engine.orders import Fill
    started = time.perf_counter()
    for i, order in enumerate(orders):
        for state in (OrderState.PENDING_SUBMIT, OrderState.SUBMITTED):
            journal.record_event(order, order.transition(state, i))
        if i % group == group - 1:
            journal.flush()
    journal.flush()
    for i, order in enumerate(orders):
        journal.record_event(order, order.transition(OrderState.ACCEPTED, i))
        order.filled_qty = Decimal(1000)
        journal.record_event(order, order.transition(OrderState.FILLED, i))
        journal.record_fill(order, Fill(f"x{group}-{i}", order.client_order_id, "EURUSD", OrderSide.BUY, 1000,
                                        110000, 2, 0, 5, 7, i))
        if i % group == group - 1:
            journal.flush()
    journal.flush()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return 4 * n / elapsed


def tick_to_submit(url: str, ticks: int) -> tuple[float, float]:
    upgrade(url)
    engine = make_engine(url)
    clock = SimulatedClock(1)
    stamps: list[int] = []

    class TimedVenue(SimulatedVenue):
        def submit(self, order: Order) -> None:
            stamps.append(time.perf_counter_ns())
            super().submit(order)

    venue = TimedVenue(EURUSD, Decimal(10**9))
    oms = OrderManager("lat", clock, venue, Portfolio.for_instrument(Decimal(10**9), EURUSD), {"EURUSD": EURUSD},
                       journal=SqlJournal(engine, "lat", "PAPER"))
    risk = RiskEngine("lat", RiskLimits(max_order_qty=Decimal(10**6), price_band_pct=Decimal(5)), AccountRisk(),
                      clock, {"EURUSD": EURUSD}, last_price=lambda s: LAST)
    risk.bind(oms)
    oms.risk = risk
    latencies = []
    for i in range(ticks):
        started = time.perf_counter_ns()
        clock.ts = i + 2
        venue.on_tick(109999, 110001, 0, clock.ts)  # the tick reaches the engine: matching first
        order = Order(oms.next_client_order_id(), "lat", "EURUSD", OrderSide.BUY if i % 2 else OrderSide.SELL,
                      OrderType.LIMIT, Decimal(1000), clock.ts, limit_price=Decimal("1.09000") if i % 2 else
                      Decimal("1.11000"))
        oms.submit(order)
        latencies.append(stamps[-1] - started)
        oms.cancel(order)
        oms.journal.flush()  # type: ignore[union-attr]
    latencies.sort()
    engine.dispose()
    return latencies[len(latencies) // 2] / 1000, latencies[int(len(latencies) * 0.99)] / 1000


class FlipParams(StrategyParams):
    period_s: int = 30


class TickFlip(Strategy):
    """Long in even `period_s` buckets of the tick's market time, short in odd ones (the crash
    test's ClockFlip): a reversal, two market orders, every period, so the orders, the fills and
    their write-ahead commits weigh in the figure, not only the bars."""

    name = "bench_flip"
    Params = FlipParams
    p: FlipParams

    def on_tick(self, tick: Any) -> None:
        if self.i < 0:  # from the first closed bar on: the old runtime stamped a signal with a bar's time
            return
        self.go(1 if (tick.ts // (self.p.period_s * 1_000_000_000)) % 2 == 0 else -1)


# the bots item 4 runs: the demo's bar strategy (few orders), and a tick strategy that trades often
LIVE_BOTS = {
    "sma_cross 10/30 long_short on 1min bars": {
        "strategy": "sma_cross", "params": {"fast": 10, "slow": 30, "mode": "long_short", "fixed_size": 5000}},
    "bench_flip: reverse every 30 s of market time": {
        "strategy": "bench_flip", "params": {"period_s": 30, "fixed_size": 5000}},
}


class TimedFeed:
    """The bot's replay feed, stamping the moment each tick is handed to the runner: the gap between
    two stamps is one tick's whole trip (guard, venue matching, bars, strategy, OMS, journal commit)
    plus the feed's own next(); no hook inside the runner is needed, so both trees measure alike."""

    def __init__(self, feed: Any) -> None:
        self.feed = feed
        self.wake = feed.wake    # the runner's command doorbell (and how it knows a replay feed)
        self.table = feed.table
        self.stamps: list[int] = []

    def __iter__(self) -> Iterator[Any]:
        stamps, now = self.stamps, time.perf_counter_ns
        for item in self.feed:
            stamps.append(now())
            yield item
        stamps.append(now())


def paper_runner(config: Any, table: Any, url: str, state_dir: Path) -> tuple[Any, str]:
    """The paper bot the runtime would run for `config`, in whichever tree is on the path."""
    try:
        import live.runner  # noqa: F401  # the one runner (issue 13)
    except ImportError:  # the tree before issue 13: BotRunner was a paper-only class over PaperSession
        from live.bot import BotRunner
        return BotRunner(config, table, 0.0, url, state_dir), "live.bot.BotRunner over PaperSession (before)"
    from live.bot import paper_bot
    return paper_bot(config, table, 0.0, url, state_dir), "live.bot.paper_bot: BotRunner over PaperAdapter"


def live_round(table: Any, config: Any) -> dict[str, Any]:
    """One replay of `table` through a fresh paper bot (new store, new venue log), at full speed."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/live.db"
        upgrade(url)
        runner, kind = paper_runner(config, table, url, Path(tmp))
        runner.feed = feed = TimedFeed(runner.feed)
        started = time.perf_counter()
        summary = runner.run()
        elapsed = time.perf_counter() - started
    gaps = sorted(b - a for a, b in zip(feed.stamps, feed.stamps[1:]))
    loop_s = (feed.stamps[-1] - feed.stamps[0]) / 1e9  # the ticks alone: no start (reconcile) or stop
    return {"kind": kind, "elapsed": elapsed, "ticks": summary["ticks"], "rate": summary["ticks"] / elapsed,
            "loop_rate": len(gaps) / loop_s,
            "orders": summary["orders"], "fills": summary["fills"], "bars": summary["bars"],
            "dropped": sum(summary["ticks_dropped"].values()), "p50": gaps[len(gaps) // 2] / 1000,
            "p99": gaps[int(len(gaps) * 0.99)] / 1000}


def head(table: Any, n: int) -> Any:
    """The first `n` ticks of a TickTable."""
    return type(table)(table.source, *(getattr(table, c)[:n] for c in ("ts", "bid", "ask", "last", "size")))


def live_throughput(ticks: int, rounds: int) -> None:
    """Item 4 of the module docstring, for each bot of LIVE_BOTS: prints each round and the median one."""
    from live.config import parse_bot_config
    from live.feed import TickTable
    from strategies import STRATEGIES

    STRATEGIES[TickFlip.name] = TickFlip
    table = TickTable.load(TICK_FILE)
    if ticks:
        table = head(table, ticks)
    for label, bot in LIVE_BOTS.items():
        config = parse_bot_config({"id": "bench-live", "symbol": "EURUSD", "bar": "1min", "cash": 10000,
                                   "commission": "0.00002", "on_stop": "cancel", **bot})
        live_bot(table, config, label, rounds)


def live_bot(table: Any, config: Any, label: str, rounds: int) -> None:
    """`rounds` timed replays after an untimed short one; the median round (by ticks/s) is the figure,
    as one slow round on a shared machine says more about the machine than about the runner."""
    live_round(head(table, 3000), config)  # imports, first calls: not timed
    load = os.getloadavg()
    results = []
    for i in range(rounds):
        result = live_round(table, config)
        results.append(result)
        print(f"live runner round {i + 1}: {result['rate']:,.0f} ticks/s ({result['ticks']:,} ticks in "
              f"{result['elapsed']:.2f} s; the tick loop alone {result['loop_rate']:,.0f} ticks/s), "
              f"per tick p50 {result['p50']:,.1f} us, p99 {result['p99']:,.1f} us")
    median = sorted(results, key=lambda r: r["rate"])[len(results) // 2]
    print(f"live runner ({median['kind']}), {TICK_FILE.name}, {label}, journal on SQLite: "
          f"median of {rounds}: {median['rate']:,.0f} ticks/s "
          f"(rounds {', '.join(f'{r['rate']:,.0f}' for r in results)}; spread "
          f"{statistics.pstdev(r['rate'] for r in results) / median['rate']:.0%}; start and stop included), "
          f"tick loop alone {median['loop_rate']:,.0f} ticks/s, "
          f"per tick p50 {median['p50']:,.1f} us, p99 {median['p99']:,.1f} us; "
          f"{median['ticks']:,} ticks ({median['dropped']:,} dropped by the tick guard), {median['bars']:,} bars, "
          f"{median['orders']:,} orders, {median['fills']:,} fills; "
          f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} before, "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--postgres", default=os.environ.get("TICKBRIDGE_TEST_POSTGRES_URL"))
    parser.add_argument("--live-ticks", type=int, default=0, help="the first N ticks of the file (0: all)")
    parser.add_argument("--live-rounds", type=int, default=3)
    parser.add_argument("--live-only", action="store_true", help="only the live runner's throughput")
    args = parser.parse_args()
    if args.live_only:
        live_throughput(args.live_ticks, args.live_rounds)
        return
    print(f"risk checks: {risk_checks(args.orders):,.0f} checks/s (12 limits configured, account limit too)")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{tmp}/bench.db"
        urls = [("SQLite WAL", sqlite_url)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
        for name, url in urls:
            if name == "PostgreSQL":
                with make_engine(url).begin() as connection:
                    connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public"))
            for group in (1, 100):
                rate = stored_events(url, args.orders // (20 if group == 1 else 1), group)
                print(f"{name}: {rate:,.0f} order events/s stored, one commit per {group} order(s)")
            p50, p99 = tick_to_submit(url, 5000)
            print(f"{name}: tick -> adapter.submit with risk + write-ahead commit: "
                  f"p50 {p50:,.0f} us, p99 {p99:,.0f} us")
    live_throughput(args.live_ticks, args.live_rounds)


if __name__ == "__main__":
    main()
