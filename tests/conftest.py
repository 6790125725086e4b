"""Shared fixtures: a small venue + OMS harness on a known instrument grid, and the databases
the store runs on: SQLite always, PostgreSQL where TICKBRIDGE_TEST_POSTGRES_URL says where it is
(CI sets it). Each PostgreSQL test gets a schema of its own, dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.money import FeeModel, Slippage
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderType
from engine.portfolio import Portfolio

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: without it installed, pytest ignores this
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`make test` runs `pytest -n auto`: one worker per CPU this process may run on
    (os.sched_getaffinity: a CI container confined to 2 of a host's 64 CPUs gets 2), not per CPU
    the host has, which is what xdist counts when psutil happens to be installed. Most tests wait
    on bots, subprocesses, sockets and databases, so two workers on two cores roughly halve the suite's
    wall time. PYTEST_XDIST_AUTO_NUM_WORKERS still overrides (xdist reads it when we answer None)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # no affinity to read (macOS)


@dataclass
class Harness:
    """A venue, an OMS and the engine's portfolio, wired like a backtest."""

    instrument: Instrument
    clock: SimulatedClock
    venue: SimulatedVenue
    portfolio: Portfolio
    oms: OrderManager

    def order(self, side: str, qty: str | None = None, kind: OrderType = OrderType.MARKET,
              limit: str | None = None, stop: str | None = None, fraction: str | None = None) -> Order:
        order = Order(
            client_order_id=self.oms.next_client_order_id(), bot_id=self.oms.bot_id,
            symbol=self.instrument.symbol, side=OrderSide(side), type=kind,
            qty=None if qty is None else Decimal(qty), ts_init=self.clock.ts,
            limit_price=None if limit is None else Decimal(limit),
            stop_price=None if stop is None else Decimal(stop),
            equity_fraction=None if fraction is None else Decimal(fraction),
        )
        self.oms.submit(order)
        return order

    def bar(self, o: str, h: str, l: str, c: str, ts: int = 0, index: int = 0) -> None:  # noqa: E741
        s = self.instrument.scales
        raw = [int(Decimal(x).scaleb(s.price_dp)) for x in (o, h, l, c)]
        self.clock.ts = ts
        self.venue.on_bar(*raw, ts=ts, bar=index)

    def tick(self, bid: str, ask: str, size: str = "0", ts: int = 0) -> None:
        s = self.instrument.scales
        self.clock.ts = ts
        self.venue.on_tick(int(Decimal(bid).scaleb(s.price_dp)), int(Decimal(ask).scaleb(s.price_dp)),
                           int(Decimal(size).scaleb(s.qty_dp)), ts)


def make_harness(cash: str = "10000", commission: str = "0", per_order: str = "0", slippage_bps: str = "0",
                 size_increment: str = "1", price_increment: str = "0.01", min_qty: str = "0",
                 partial_fills: bool = False, risk: object | None = None) -> Harness:
    instrument = Instrument("TEST", price_increment=Decimal(price_increment), size_increment=Decimal(size_increment),
                            min_qty=Decimal(min_qty))
    clock = SimulatedClock()
    venue = SimulatedVenue(instrument, Decimal(cash), FeeModel(Decimal(commission), Decimal(per_order)),
                           Slippage(Decimal(slippage_bps)), partial_fills=partial_fills)
    portfolio = Portfolio.for_instrument(Decimal(cash), instrument)
    oms = OrderManager("bot1", clock, venue, portfolio, {instrument.symbol: instrument}, risk=risk)  # type: ignore[arg-type]
    return Harness(instrument, clock, venue, portfolio, oms)


@pytest.fixture
def harness() -> Harness:
    return make_harness()


PG_URL = os.environ.get("TICKBRIDGE_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests skipped: TICKBRIDGE_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def migrate_store(database_url: str, target: str, down: bool = False) -> None:
    """Alembic to `target` (up, or down with `down`) on `database_url`, in one transaction, as the
    migration tests need it (engine.store.db.upgrade only goes to the head)."""
    from alembic import command

    from engine.store.db import alembic_config, make_engine

    engine = make_engine(database_url)
    with engine.begin() as connection:
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, target)
    engine.dispose()
