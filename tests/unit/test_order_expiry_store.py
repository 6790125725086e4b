"""A GTD order's expiry survives the journal (migration 0012, SQLite and PostgreSQL): a restart
knows when each working order ends."""

from __future__ import annotations

from decimal import Decimal

from brokers.paper.adapter import PaperAdapter
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderType, TimeInForce
from engine.portfolio import Portfolio
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal

INSTRUMENT = Instrument("TEST", price_increment=Decimal("0.01"))
EXPIRY = 1_700_000_123_456_789_012  # ns: beyond 2**53, so a float anywhere on the way would change it


def test_journal_round_trips_tif_gtd_and_expire_ns(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    journal = SqlJournal(engine, "b", "PAPER")
    oms = OrderManager("b", SimulatedClock(), PaperAdapter(SimulatedVenue(INSTRUMENT, Decimal(10_000))),
                       Portfolio.for_instrument(Decimal(10_000), INSTRUMENT), {"TEST": INSTRUMENT}, journal=journal)
    gtd = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.LIMIT, Decimal(1), 1,
                limit_price=Decimal("90.00"), tif=TimeInForce.GTD, expire_ns=EXPIRY)
    gtc = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.LIMIT, Decimal(1), 1,
                limit_price=Decimal("91.00"))
    assert oms.submit(gtd) and oms.submit(gtc)
    journal.flush()
    stored = {o.client_order_id: o for o in SqlJournal(engine, "b", "PAPER").load({"TEST": INSTRUMENT}).orders}
    back = stored[gtd.client_order_id]
    assert back.tif is TimeInForce.GTD and back.expire_ns == EXPIRY
    assert stored[gtc.client_order_id].expire_ns is None and stored[gtc.client_order_id].tif is TimeInForce.GTC
