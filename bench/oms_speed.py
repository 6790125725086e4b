"""OMS speed: risk checks, durable order events, and tick-to-submit latency with write-ahead.

    .venv/bin/python bench/oms_speed.py [--orders 50000] [--postgres URL]

1. Risk checks/s: RiskEngine.check on a limit order with every per-order limit configured.
2. Order events/s stored durably: orders going PENDING_SUBMIT -> SUBMITTED -> ACCEPTED -> FILLED
   (4 events, 1 fill), committed in groups as the session does (one commit per input), on SQLite
   WAL and, with --postgres (or TICKBRIDGE_TEST_POSTGRES_URL), on PostgreSQL.
3. Tick -> adapter.submit latency: a strategy decides on a tick, the order passes risk, is
   journaled and committed (write-ahead), and reaches the adapter; p50 and p99 over many ticks.
Prints figures only; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from decimal import Decimal

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--postgres", default=os.environ.get("TICKBRIDGE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
