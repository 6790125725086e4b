"""The store on SQLite and PostgreSQL: schema, exact money, constraints, the write-ahead journal."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import inspect, insert, select, text
from sqlalchemy.exc import IntegrityError

from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.errors import StoreUnavailable
from engine.instrument import Instrument
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.store.db import check_connection, make_engine, upgrade
from engine.store.journal import SqlJournal, settle_write_ahead
from engine.store.models import Base, FillRow, OrderEventRow

INSTRUMENT = Instrument("TEST", price_increment=Decimal("0.01"))
TABLES = {"instruments", "bots", "orders", "order_events", "fills", "positions", "account_snapshots",
          "daily_pnl", "signals", "audit_log", "models",
          # the API's (migration 0004)
          "users", "api_keys", "refresh_tokens", "broker_accounts", "bot_configs", "subscriptions", "backtest_jobs",
          "bot_leases",  # one runner per bot (migration 0006)
          "auth_rate_counters", "auth_login_failures",  # login limits shared by workers (0005)
          "equity_points", "bot_archives",  # equity at every bar close, reset archives (0008)
          "account_risk_bots", "account_risk_state", "venue_positions",  # one account across bots (0010)
          "charges",  # account-level charges (funding, crypto fees) booked once (0013)
          "write_ahead"}  # an order's write-ahead record until the commit after its venue call (0018)
RESEARCH_TABLES = {"sweeps"}  # migration 0003, declared in backtest/sweep_store.py (Core)
NOTIFY_TABLES = {"notification_rules", "notification_deliveries", "notification_attempts",
                 "notification_cursors"}  # migration 0015, declared in api/notify/store.py (Core)


def test_upgrade_creates_every_table_and_is_idempotent(database_url):
    upgrade(database_url)
    upgrade(database_url)
    engine = make_engine(database_url)
    assert TABLES | RESEARCH_TABLES | NOTIFY_TABLES <= set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) == TABLES


@pytest.mark.parametrize("amount", ["0.000000000000000001", "123456789012.123456789", "-98765.4321"])
def test_money_round_trips_exactly(database_url, amount):
    upgrade(database_url)
    engine = make_engine(database_url)
    journal = SqlJournal(engine, "b", "PAPER")
    with engine.begin() as connection:
        connection.execute(insert(FillRow.__table__).values(
            venue="V", execution_id="e1", client_order_id=_stored_order(journal, engine), bot_id="b", symbol="TEST",
            side="BUY", qty=Decimal(amount), price=Decimal(amount), fee=Decimal(amount), liquidity="TAKER", ts=1))
        value = connection.execute(select(FillRow.__table__.c.price)).scalar_one()
    assert value == Decimal(amount) and isinstance(value, Decimal)


def _stored_order(journal: SqlJournal, engine) -> str:
    order = Order("b-00000001", "b", "TEST", OrderSide.BUY, OrderType.MARKET, Decimal(1), 0)
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, 0))
    journal.flush()
    return order.client_order_id


def test_the_same_execution_id_cannot_be_stored_twice(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    cid = _stored_order(SqlJournal(engine, "b", "PAPER"), engine)
    row = dict(venue="V", execution_id="e1", client_order_id=cid, bot_id="b", symbol="TEST", side="BUY",
               qty=Decimal(1), price=Decimal(1), fee=Decimal(0), liquidity="TAKER", ts=1)
    with engine.begin() as connection:
        connection.execute(insert(FillRow.__table__).values(**row))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(FillRow.__table__).values(**row))


def test_an_event_for_an_unknown_order_is_refused(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(OrderEventRow.__table__).values(client_order_id="nope", state="FILLED", ts=1))


class AdapterThatReadsTheStore:
    """A venue that, when handed an order, checks the order is already durable."""

    name = "CHECK"

    def __init__(self, engine) -> None:
        self.engine = engine
        self.seen_states: list[str | None] = []

    def connect(self, sink) -> None:
        self.sink = sink

    def submit(self, order: Order) -> None:
        other = make_engine(str(self.engine.url.render_as_string(hide_password=False)))
        settle_write_ahead(other, order.bot_id)  # as any reader of the books does (on SQLite: the order's record)
        with other.connect() as connection:
            state = connection.execute(text("SELECT state FROM orders WHERE client_order_id = :c"),
                                       {"c": order.client_order_id}).scalar()
        other.dispose()
        self.seen_states.append(state)
        self.sink.on_submitted(order, 0)

    def cancel(self, order: Order) -> None:
        pass


def test_order_is_durable_as_pending_submit_before_the_adapter_sees_it(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    adapter = AdapterThatReadsTheStore(engine)
    oms = OrderManager("w", SimulatedClock(), adapter, Portfolio.for_instrument(Decimal(1000), INSTRUMENT),
                       {"TEST": INSTRUMENT}, journal=SqlJournal(engine, "w", "CHECK"))
    order = Order(oms.next_client_order_id(), "w", "TEST", OrderSide.BUY, OrderType.MARKET, Decimal(1), 0)
    oms.submit(order)
    assert adapter.seen_states == ["PENDING_SUBMIT"]


def test_journal_restores_orders_fills_books_and_the_id_sequence(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    venue = SimulatedVenue(INSTRUMENT, Decimal(1000))
    portfolio = Portfolio.for_instrument(Decimal(1000), INSTRUMENT)
    oms = OrderManager("r", SimulatedClock(), venue, portfolio, {"TEST": INSTRUMENT},
                       journal=SqlJournal(engine, "r", "PAPER"))
    for side, qty in (("BUY", "3"), ("SELL", "1")):
        oms.submit(Order(oms.next_client_order_id(), "r", "TEST", OrderSide(side), OrderType.MARKET, Decimal(qty), 0))
        venue.on_bar(1000, 1000, 1000, 1000, 1, 0)
    oms.journal.flush()  # type: ignore[union-attr]

    journal = SqlJournal(engine, "r", "PAPER")
    stored = journal.load({"TEST": INSTRUMENT})
    assert stored.next_order_seq == 2 and [o.state for o in stored.orders] == [OrderState.FILLED] * 2
    rebuilt = OrderManager("r", SimulatedClock(), SimulatedVenue(INSTRUMENT, Decimal(1000)),
                           Portfolio.for_instrument(Decimal(1000), INSTRUMENT), {"TEST": INSTRUMENT}, journal=journal)
    rebuilt.restore(stored.orders, stored.fills, stored.next_order_seq)
    assert rebuilt.portfolio.positions["TEST"].qty == portfolio.positions["TEST"].qty == 2
    assert rebuilt.portfolio.cash_raw == portfolio.cash_raw
    assert rebuilt.next_client_order_id() == "r-00000003"


def test_sqlite_store_runs_in_wal_mode(tmp_path):
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    upgrade(url)
    with make_engine(url).connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_corrupt_sqlite_file_is_refused_naming_the_problem(tmp_path):
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not a database, just bytes" * 100)
    with pytest.raises(StoreUnavailable, match="not usable: file is not a database"):
        check_connection(make_engine(f"sqlite:///{path}"))


def test_unreachable_postgres_is_refused_without_leaking_the_password():
    url = "postgresql+psycopg://trader:s3cret@127.0.0.1:1/test"
    with pytest.raises(StoreUnavailable) as err:
        check_connection(make_engine(url))
    assert "s3cret" not in str(err.value) and "127.0.0.1" in str(err.value)
