"""OMS speed: risk checks, durable order events, tick-to-submit latency, live runner throughput.

    .venv/bin/python bench/oms_speed.py [--orders 50000] [--postgres URL] [--live-ticks N] [--live-rounds 3]
    .venv/bin/python bench/oms_speed.py --submit-only     # item 3 alone (issue 18 item 4)
    .venv/bin/python bench/oms_speed.py --submit-only --json out.json   # item 3's figures as JSON too
    .venv/bin/python bench/oms_speed.py --live-only       # item 4 alone

1. Risk checks/s: RiskEngine.check on a limit order with every per-order limit configured.
2. Order events/s stored durably: orders going PENDING_SUBMIT -> SUBMITTED -> ACCEPTED -> FILLED
   (4 events, 1 fill), committed in groups as the session does (one commit per input), on SQLite
   WAL and, with --postgres (or TICKBRIDGE_TEST_POSTGRES_URL), on PostgreSQL.
3. Tick -> adapter.submit, on the path a live bot takes: a paper bot as the runtime builds it
   (live/bot.py paper_bot: the one BotRunner, PaperAdapter over DurablePaperVenue, the SQL journal
   and signals on SQLite WAL + synchronous=NORMAL in a file of a temporary directory) replays the
   first --submit-ticks real EURUSD ticks of data/ticks with a tick strategy that reverses every
   5 s of market time (TickFlip). Timed from the moment the replay feed hands a tick to the runner
   to the moment the OMS calls adapter.submit with that tick's first order, for every tick that
   sends one (~1 in 8). Included: the runner's input handling, the tick guard, the day roll, the
   paper venue matching working orders on the quote (a fill of an earlier order included when one
   happens), the bar builder, the strategy's on_tick and go() (its signal row), the risk gate
   (with --risk-config "full": 11 per-bot limits and the account's limits, i.e. the shared account
   check through the store, lock, reads, share write and commit, as every bot with risk limits
   has; "none": no risk limits), the OMS, and the write-ahead flush (the order, its event, the
   signal row, the previous input's checkpoint, one commit, the store file's identity check).
   Not included: what the adapter does once called (the paper venue's own log), the feed
   parsing the tick, the commit at the end of the input. Printed per round: p50/p99 of the wall
   time and of the bot thread's CPU time (time.thread_time_ns: on this shared 2-core machine the
   wall time is mostly other processes' load, the CPU time is the path's own cost), with the load
   average. `--submit-modes driver,sqlalchemy` interleaves rounds of the SQLite driver path
   (engine/store/prepared.py, the default) with rounds forced onto the SQLAlchemy path (the
   statements built once, a signal committed on its own before the order: the journal as it was
   before issue 18, with its position upsert built once) for a before/after in one run.
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
import json
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


# item 3's risk configurations: "full" is every per-bot limit and the account's (a bot with risk
# limits always checks its account through the store: engine/account_risk.py)
SUBMIT_RISK: dict[str, dict[str, Any] | None] = {
    "none": None,
    "full": {"account": {"max_gross_exposure": 10**9, "daily_loss_limit": 5000, "max_drawdown_pct": 50,
                         "max_open_orders": 100},
             "default_bot": {"allowed_symbols": ["EURUSD"], "max_order_qty": 10**6, "max_order_notional": 10**7,
                             "price_band_pct": 5, "max_position_qty": 10**7, "max_gross_exposure": 10**8,
                             "max_open_orders": 100, "max_orders_per_second": 1000, "daily_loss_limit": 5000,
                             "max_drawdown_pct": 50, "capital_allocation": 10**6}},
}


class SubmitTimer:
    """Item 3's stamps: the replay feed marks each tick's hand-over (wall and thread CPU), the
    adapter's submit the first order of that tick."""

    def __init__(self, feed: Any, adapter: Any) -> None:
        self.feed = feed
        self.wake = feed.wake    # the runner knows a replay feed by it
        self.table = feed.table
        self.wall: list[int] = []
        self.cpu: list[int] = []
        self._start = (0, 0)
        self._open = False
        submit = adapter.submit

        def timed_submit(order: Order) -> None:
            if self._open:
                self._open = False
                wall, cpu = self._start
                self.wall.append(time.perf_counter_ns() - wall)
                self.cpu.append(time.thread_time_ns() - cpu)
            submit(order)

        adapter.submit = timed_submit  # the OMS calls its adapter's submit: this instance attribute

    def __iter__(self) -> Iterator[Any]:
        for item in self.feed:
            self._open = True
            self._start = (time.perf_counter_ns(), time.thread_time_ns())
            yield item


def _quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000


def submit_round(table: Any, risk: str, mode: str) -> dict[str, Any]:
    """One replay through a fresh paper bot; `mode` "sqlalchemy" forces the store's SQLAlchemy path
    (module docstring, item 3), restored afterwards."""
    import engine.account_risk
    import engine.store.journal
    import engine.store.signals
    from live.config import parse_bot_config

    config = parse_bot_config({"id": "bench-submit", "symbol": "EURUSD", "bar": "1min", "cash": 10000,
                               "commission": "0.00002", "on_stop": "cancel", "strategy": TickFlip.name,
                               "params": {"period_s": 5, "fixed_size": 5000}, "risk": SUBMIT_RISK[risk]})
    modules = (engine.store.journal, engine.store.signals, engine.account_risk)
    saved = [m.usable for m in modules], engine.store.signals.SqlSignals.defer_to
    if mode == "sqlalchemy":
        for module in modules:
            module.usable = lambda _engine: False  # type: ignore[attr-defined]
        engine.store.signals.SqlSignals.defer_to = lambda self, journal: None  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/submit.db"
            upgrade(url)
            runner, _ = paper_runner(config, table, url, Path(tmp))
            runner.feed = timer = SubmitTimer(runner.feed, runner.adapter)
            summary = runner.run()
    finally:
        for module, usable in zip(modules, saved[0]):
            module.usable = usable  # type: ignore[attr-defined]
        engine.store.signals.SqlSignals.defer_to = saved[1]  # type: ignore[method-assign]
    return {"n": len(timer.wall), "orders": summary["orders"], "wall50": _quantile(timer.wall, 0.5),
            "wall99": _quantile(timer.wall, 0.99), "cpu50": _quantile(timer.cpu, 0.5),
            "cpu99": _quantile(timer.cpu, 0.99)}


def tick_to_submit(ticks: int, rounds: int, modes: list[str], risks: list[str]) -> dict[str, Any]:
    """Item 3: `rounds` rounds, each running every (risk, mode) once in turn (interleaved, so load
    swings hit them alike), after one short untimed round each; then the median round of each.
    Returns them (for --json): per "risk/mode", every round and the median one, in us."""
    from live.feed import TickTable
    from strategies import STRATEGIES

    STRATEGIES[TickFlip.name] = TickFlip
    table = head(TickTable.load(TICK_FILE), ticks)
    for risk in risks:
        for mode in modes:
            submit_round(head(table, 2000), risk, mode)  # imports, first calls: not timed
    results: dict[tuple[str, str], list[dict[str, Any]]] = {(r, m): [] for r in risks for m in modes}
    for i in range(rounds):
        for risk in risks:
            for mode in modes:
                load = os.getloadavg()[0]
                result = submit_round(table, risk, mode)
                result["load"] = (load, os.getloadavg()[0])
                results[(risk, mode)].append(result)
                print(f"tick -> adapter.submit round {i + 1}, risk {risk}, store path {mode}: "
                      f"wall p50 {result['wall50']:,.0f} us, p99 {result['wall99']:,.0f} us; "
                      f"CPU p50 {result['cpu50']:,.0f} us, p99 {result['cpu99']:,.0f} us "
                      f"({result['n']:,} submits; load {load:.2f} -> {result['load'][1]:.2f})")
    for (risk, mode), runs in results.items():
        median = sorted(runs, key=lambda r: r["cpu50"])[len(runs) // 2]
        print(f"tick -> adapter.submit, live paper bot, SQLite WAL, risk {risk}, store path {mode}, "
              f"median of {rounds} by CPU p50: wall p50 {median['wall50']:,.0f} us, p99 {median['wall99']:,.0f} us; "
              f"CPU p50 {median['cpu50']:,.0f} us, p99 {median['cpu99']:,.0f} us; {median['n']:,} submits "
              f"of {median['orders']:,} orders, {ticks:,} ticks; load {median['load'][0]:.2f} -> "
              f"{median['load'][1]:.2f}")
    return {"ticks": ticks, "rounds": rounds, "cpus": os.cpu_count(),
            "results": {f"{risk}/{mode}": {"runs": runs,
                                           "median": sorted(runs, key=lambda r: r["cpu50"])[len(runs) // 2]}
                        for (risk, mode), runs in results.items()}}


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
    parser.add_argument("--submit-ticks", type=int, default=20_000, help="item 3: the first N ticks of the file")
    parser.add_argument("--submit-rounds", type=int, default=3)
    parser.add_argument("--submit-modes", default="driver", help="item 3: driver, sqlalchemy or both (a,b)")
    parser.add_argument("--submit-risk", default="full,none", help="item 3: full, none or both (a,b)")
    parser.add_argument("--submit-only", action="store_true", help="only item 3, tick -> adapter.submit")
    parser.add_argument("--live-ticks", type=int, default=0, help="the first N ticks of the file (0: all)")
    parser.add_argument("--live-rounds", type=int, default=3)
    parser.add_argument("--live-only", action="store_true", help="only the live runner's throughput")
    parser.add_argument("--json", type=Path, help="write item 3's figures (tick -> adapter.submit) as JSON here")
    args = parser.parse_args()
    submit = (args.submit_ticks, args.submit_rounds, args.submit_modes.split(","), args.submit_risk.split(","))
    if args.live_only:
        live_throughput(args.live_ticks, args.live_rounds)
        return
    if args.submit_only:
        figures = tick_to_submit(*submit)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
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
    figures = tick_to_submit(*submit)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    live_throughput(args.live_ticks, args.live_rounds)


if __name__ == "__main__":
    main()
