"""Emulated protective orders across a restart (issue 17 item 4): the store keeps the emulated flag,
the trailed level and the trigger link (SQLite and PostgreSQL, migration 0014); reconciliation
does not ask the venue for an order it never saw; `rearm` puts it back to work at its stored
level; a trigger journaled but never sent (a crash in between) is found lost and fires again."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from brokers.paper.adapter import PaperAdapter
from brokers.paper.durable import DurablePaperVenue
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.market import Tick
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.reconcile import LOST_BEFORE_SUBMIT, reconcile_with_adapter
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal

INSTRUMENT = Instrument("TEST", price_increment=Decimal("0.01"))
D = Decimal


class Crash(BaseException):
    """The process dies here (a SIGKILL between the journal's commit and the venue's answer)."""


class NoLinks(PaperAdapter):
    protective_orders = False
    crash_on_submit = False

    def submit(self, order: Order) -> None:
        if self.crash_on_submit:
            raise Crash()
        super().submit(order)


def _start(url: str, log: Path) -> tuple[OrderManager, NoLinks, SqlJournal, DurablePaperVenue]:
    """A bot process: the durable venue from its log, the books from the store, reconciled."""
    venue = DurablePaperVenue(log, INSTRUMENT, D(10_000))
    adapter = NoLinks(venue)
    journal = SqlJournal(make_engine(url), "b", "PAPER")
    clock = SimulatedClock()
    oms = OrderManager("b", clock, adapter, Portfolio.for_instrument(D(10_000), INSTRUMENT), {"TEST": INSTRUMENT},
                       journal=journal, connect=False)
    stored = journal.load({"TEST": INSTRUMENT})
    oms.restore(stored.orders, stored.fills, stored.next_order_seq)
    clock.ts = venue.venue._ts
    return oms, adapter, journal, venue


def _tick(oms: OrderManager, adapter: PaperAdapter, bid: str, seq: int) -> None:
    clock = oms.clock
    assert isinstance(clock, SimulatedClock)
    clock.ts = (seq + 1) * 1000
    tick = Tick("TEST", clock.ts, bid=float(bid), ask=float(D(bid) + D("0.01")))
    oms.on_quote(tick)
    adapter.on_quote(tick, seq)
    assert oms.journal is not None
    oms.journal.flush()


def _trailing_long(oms: OrderManager) -> Order:
    entry = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.BUY, OrderType.MARKET, D(10), 0)
    oms.submit(entry)
    trail = Order(oms.next_client_order_id(), "b", "TEST", OrderSide.SELL, OrderType.STOP, D(10), 0,
                  stop_price=D("95.00"), parent_id=entry.client_order_id, trail_distance=D("5.00"), tag="trail")
    oms.submit(trail)
    return trail


def test_a_restart_resumes_the_trailed_level_and_reconciliation_leaves_the_stop_alone(tmp_path, database_url):
    upgrade(database_url)
    log = tmp_path / "venue.log"
    oms, adapter, _, venue = _start(database_url, log)
    oms.connect()
    trail = _trailing_long(oms)
    for seq, bid in enumerate(["100.00", "104.00", "110.00", "108.00"]):
        _tick(oms, adapter, bid, seq)
    assert trail.stop_price == D("105.00") and trail.emulated
    venue.close()  # the process ends here, nothing else written

    oms, adapter, _, venue = _start(database_url, log)
    (again,) = [o for o in oms.orders.values() if o.tag == "trail"]
    assert again.emulated and again.state is OrderState.ACCEPTED and again.stop_price == D("105.00")
    assert again.as_dict()["emulated"] is True
    assert again not in oms.open_orders  # parked: reconciliation does not look for it at the venue
    report = reconcile_with_adapter(oms, adapter, oms.clock.now_ns())
    assert report.orders_lost_before_submit == [] and again.state is OrderState.ACCEPTED
    assert oms.rearm() == [again] and again in oms.open_orders
    oms.connect()
    _tick(oms, adapter, "106.00", 4)  # above the trailed level: nothing
    assert again.state is OrderState.ACCEPTED
    _tick(oms, adapter, "104.50", 5)  # below 105.00 (the entry's level was 95.00): it fires
    assert again.state is OrderState.FILLED and oms.portfolio.positions["TEST"].quantity == 0
    assert oms.fills[-1].price == D("104.50")
    venue.close()


def test_a_trigger_journaled_but_never_sent_is_lost_and_the_stop_fires_again(tmp_path, database_url):
    upgrade(database_url)
    log = tmp_path / "venue.log"
    oms, adapter, _, venue = _start(database_url, log)
    oms.connect()
    trail = _trailing_long(oms)
    _tick(oms, adapter, "100.00", 0)
    adapter.crash_on_submit = True
    try:
        _tick(oms, adapter, "94.00", 1)
    except Crash:
        pass
    else:
        raise AssertionError("the stop did not fire")
    assert trail.state is OrderState.ACCEPTED  # its exit is journaled (write-ahead), never sent
    venue.close()

    oms, adapter, _, venue = _start(database_url, log)
    (lost,) = [o for o in oms.orders.values() if o.trigger_of is not None]
    assert lost.state is OrderState.PENDING_SUBMIT
    report = reconcile_with_adapter(oms, adapter, oms.clock.now_ns())
    assert report.orders_lost_before_submit == [lost.client_order_id] and lost.reason == LOST_BEFORE_SUBMIT
    oms.rearm()
    oms.connect()
    _tick(oms, adapter, "93.00", 1)  # the tick the crash interrupted, offered again: the stop fires again
    (stop,) = [o for o in oms.orders.values() if o.tag == "trail" and o.trigger_of is None]
    assert stop.state is OrderState.FILLED and oms.portfolio.positions["TEST"].quantity == 0
    assert len([o for o in oms.orders.values() if o.trigger_of is not None]) == 2
    venue.close()
