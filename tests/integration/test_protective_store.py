"""Protective orders across restarts (issue 17): the journal keeps their links and amends (SQLite
and PostgreSQL), and a durable paper venue replays its log, amends included, to the same state."""

from __future__ import annotations

from decimal import Decimal

from brokers.paper.adapter import PaperAdapter
from brokers.paper.durable import DurablePaperVenue
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal

INSTRUMENT = Instrument("TEST", price_increment=Decimal("0.01"))
D = Decimal


def _bot(adapter: PaperAdapter, journal: SqlJournal | None = None) -> OrderManager:
    return OrderManager("b", SimulatedClock(), adapter, Portfolio.for_instrument(D(10_000), INSTRUMENT),
                        {"TEST": INSTRUMENT}, journal=journal)


def _bracket(oms: OrderManager, qty: str) -> tuple[Order, Order, Order]:
    entry = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.MARKET, D(qty), 1)
    oms.submit(entry)
    group = entry.client_order_id
    trail = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.STOP, D(qty), 1,
                  stop_price=D("95.00"), parent_id=group, oco_group=group, trail_distance=D("5.00"), tag="trail")
    take = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.LIMIT, D(qty), 1,
                 limit_price=D("120.00"), parent_id=group, oco_group=group, tag="tp")
    oms.submit(trail)
    oms.submit(take)
    return entry, trail, take


def _state(venue: DurablePaperVenue) -> list[tuple]:
    return [(r.order.client_order_id, r.state, r.order.qty, r.order.limit_price, r.order.stop_price,
             r.order.parent_id, r.order.oco_group, r.order.trail_distance, [f.execution_id for f in r.fills])
            for r in venue.book.orders.values()]


def test_durable_venue_replays_a_working_bracket_with_its_amend_to_the_same_state(tmp_path):
    log = tmp_path / "venue.log"
    venue = DurablePaperVenue(log, INSTRUMENT, D(10_000), partial_fills=True)
    oms = _bot(PaperAdapter(venue))
    entry, trail, take = _bracket(oms, "10")
    venue.on_tick(1, 9999, 10000, 4, 1)       # 4 of 10 at 100.00 (whole units): the children protect 4
    assert entry.filled_qty == 4 and trail.qty == 4 and take.qty == 4
    venue.on_tick(2, 10799, 10800, 0, 2)       # the rest at 108.00; the trail ratchets to 107.99 - 5
    assert oms.amend(take, price=D("115.00")) is None
    assert entry.state is OrderState.FILLED and take.qty == 10 and take.limit_price == D("115.00")
    before = _state(venue)
    working = venue.venue._working
    assert [o.client_order_id for o in working] == [trail.client_order_id, take.client_order_id]
    assert working[0].stop_price == D("102.99") and working[1].limit_price == D("115.00")
    venue.close()

    again = DurablePaperVenue(log, INSTRUMENT, D(10_000), partial_fills=True)
    assert _state(again) == before
    assert again.position_raw() == venue.position_raw() and again.cash_raw() == venue.cash_raw()
    # and it goes on from there: the trailing stop (not the original 95) fills at 102.50
    again.on_tick(3, 10250, 10251, 0, 3)
    assert again.order_status(trail.client_order_id).state is OrderState.FILLED  # type: ignore[union-attr]
    assert again.order_status(take.client_order_id).state is OrderState.CANCELED  # type: ignore[union-attr]
    assert again.fills[-1].price == D("102.50") and again.position_raw() == 0
    again.close()


def test_journal_round_trips_links_trail_and_amended_terms(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    journal = SqlJournal(engine, "b", "PAPER")
    oms = _bot(PaperAdapter(SimulatedVenue(INSTRUMENT, D(10_000), partial_fills=True)), journal)
    entry, trail, take = _bracket(oms, "10")
    oms.adapter.on_tick(D("99.99"), D("100.00"), D("4"), 1)  # type: ignore[attr-defined]
    assert oms.amend(take, price=D("119.00")) is None
    journal.flush()
    stored = {o.client_order_id: o for o in SqlJournal(engine, "b", "PAPER").load({"TEST": INSTRUMENT}).orders}
    back_trail, back_take = stored[trail.client_order_id], stored[take.client_order_id]
    assert (back_trail.parent_id, back_trail.oco_group, back_trail.trail_distance, back_trail.trail_percent) == (
        entry.client_order_id, entry.client_order_id, D("5.00"), None)
    assert back_take.limit_price == D("119.00")  # the amend
    assert back_take.qty == D(4) and back_trail.qty == D(4)  # resized to the entry's partial fill
    assert stored[entry.client_order_id].parent_id is None
    # a restarted OMS knows the bracket again: a fill of the entry resizes the children
    restored = _bot(PaperAdapter(SimulatedVenue(INSTRUMENT, D(10_000))))
    restored.restore(list(stored.values()), [], 3)
    assert restored._children[entry.client_order_id] == [back_trail, back_take]
