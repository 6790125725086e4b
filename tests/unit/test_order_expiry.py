"""Pending-order expiry (GTD, `Order.expire_ns`): the simulated venue ends an order at the first bar
or tick at or after its time (before it can fill there), the OMS refuses GTD on an adapter that
does not honour it, and the Strategy API checks `expire=` naming the field."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pandas as pd
import pytest

from engine.errors import ConfigError
from engine.orders import Order, OrderSide, OrderState, OrderType, TimeInForce
from strategies.base import BarData, Strategy
from tests.conftest import Harness, make_harness

T0 = 1_700_000_000_000_000_000  # ns UTC
MINUTE = 60 * 10**9


def _limit(h: Harness, side: str, price: str, expire_ns: int | None, tif: TimeInForce = TimeInForce.GTD,
           qty: str = "10") -> Order:
    order = Order(h.oms.next_client_order_id(), h.oms.bot_id, "TEST", OrderSide(side), OrderType.LIMIT, Decimal(qty),
                  h.clock.ts, limit_price=Decimal(price), tif=tif, expire_ns=expire_ns)
    h.oms.submit(order)
    return order


def test_a_gtd_limit_expires_at_the_first_bar_at_its_time_before_it_can_fill():
    h = make_harness()
    h.clock.ts = T0
    order = _limit(h, "BUY", "95.00", T0 + 2 * MINUTE)
    assert order.state is OrderState.ACCEPTED
    h.bar("100.00", "101.00", "99.00", "100.00", ts=T0 + MINUTE, index=0)   # before: still working, not touched
    assert order.state is OrderState.ACCEPTED
    h.bar("96.00", "97.00", "90.00", "92.00", ts=T0 + 2 * MINUTE, index=1)  # at its time: the low reaches 95
    assert order.state is OrderState.CANCELED and order.reason == "EXPIRED"
    assert order.filled_qty == 0 and h.portfolio.positions["TEST"].quantity == 0
    assert not h.venue.has_working_orders


def test_a_gtd_limit_fills_on_a_bar_before_its_time():
    h = make_harness()
    order = _limit(h, "BUY", "95.00", T0 + 2 * MINUTE)
    h.bar("96.00", "97.00", "94.00", "95.00", ts=T0 + MINUTE, index=0)
    assert order.state is OrderState.FILLED and order.avg_fill_price == Decimal("95.00")


def test_a_gtd_stop_expires_on_the_first_tick_at_or_after_its_time():
    h = make_harness()
    order = Order(h.oms.next_client_order_id(), "bot1", "TEST", OrderSide.SELL, OrderType.STOP, Decimal(5), 0,
                  stop_price=Decimal("90.00"), tif=TimeInForce.GTD, expire_ns=T0 + 10)
    h.oms.submit(order)
    h.tick("99.00", "99.01", ts=T0 + 9)
    assert order.state is OrderState.ACCEPTED
    h.tick("89.00", "89.01", ts=T0 + 11)  # would trigger the stop, but the order expired at T0 + 10
    assert order.state is OrderState.CANCELED and order.reason == "EXPIRED" and order.filled_qty == 0


def test_an_expired_entry_takes_its_held_bracket_with_it():
    h = make_harness()
    entry = _limit(h, "BUY", "90.00", T0 + MINUTE)
    stop = Order(h.oms.next_client_order_id(), "bot1", "TEST", OrderSide.SELL, OrderType.STOP, Decimal(10), 0,
                 stop_price=Decimal("85.00"), parent_id=entry.client_order_id)
    h.oms.submit(stop)
    h.bar("100.00", "100.00", "99.00", "99.00", ts=T0 + MINUTE, index=0)
    assert entry.reason == "EXPIRED" and stop.state is OrderState.CANCELED and stop.reason == "PARENT_CANCELED"


@pytest.mark.parametrize("kind,expire_ns,tif", [
    (OrderType.MARKET, T0, TimeInForce.GTD),   # a market order does not rest: UNSUPPORTED
    (OrderType.LIMIT, None, TimeInForce.GTD),  # GTD without a time
    (OrderType.LIMIT, T0, TimeInForce.GTC),    # a time on another tif
])
def test_the_venue_refuses_malformed_expiry(kind, expire_ns, tif):
    h = make_harness()
    order = Order("bot1-00000001", "bot1", "TEST", OrderSide.BUY, kind, Decimal(1), 0,
                  limit_price=None if kind is OrderType.MARKET else Decimal("90.00"), tif=tif, expire_ns=expire_ns)
    h.venue.connect(h.oms)
    h.oms.orders[order.client_order_id] = order
    order.transition(OrderState.PENDING_SUBMIT, 0)
    h.venue.submit(order)
    assert order.state is OrderState.REJECTED
    assert order.reason == ("UNSUPPORTED" if kind is OrderType.MARKET else "INVALID_ORDER")


class _NoExpiry:
    """An adapter that does not declare supports_expiry (Alpaca and ccxt today): it must never see GTD."""

    name = "NOEXP"

    def __init__(self) -> None:
        self.sent: list[Order] = []

    def connect(self, sink: object) -> None:
        pass

    def submit(self, order: Order) -> None:
        self.sent.append(order)


def test_the_oms_refuses_gtd_on_an_adapter_without_supports_expiry():
    from engine.clock import SimulatedClock
    from engine.instrument import Instrument
    from engine.oms import OrderManager
    from engine.portfolio import Portfolio

    instrument = Instrument("TEST", price_increment=Decimal("0.01"))
    adapter = _NoExpiry()
    oms = OrderManager("bot1", SimulatedClock(), adapter, Portfolio.for_instrument(Decimal(1000), instrument),  # type: ignore[arg-type]
                       {"TEST": instrument})
    order = Order(oms.next_client_order_id(), "bot1", "TEST", OrderSide.BUY, OrderType.LIMIT, Decimal(1), 0,
                  limit_price=Decimal("90.00"), tif=TimeInForce.GTD, expire_ns=T0)
    assert oms.submit(order) is False
    assert order.state is OrderState.DENIED and order.reason == "EXPIRY_UNSUPPORTED" and adapter.sent == []


def test_a_durable_paper_venue_keeps_a_gtd_deadline_across_a_restart(tmp_path):
    from brokers.paper.adapter import PaperAdapter
    from brokers.paper.durable import DurablePaperVenue
    from engine.instrument import Instrument

    instrument = Instrument("TEST", price_increment=Decimal("0.01"))
    durable = DurablePaperVenue(tmp_path / "v.log", instrument, Decimal(1000))
    adapter = PaperAdapter(durable)
    assert adapter.supports_expiry is True
    order = Order("bot1-00000001", "bot1", "TEST", OrderSide.BUY, OrderType.LIMIT, Decimal(1), 0,
                  limit_price=Decimal("90.00"), tif=TimeInForce.GTD, expire_ns=T0)
    durable.submit(order)
    durable.close()
    replayed = DurablePaperVenue(tmp_path / "v.log", instrument, Decimal(1000))  # a restart: the log replayed
    assert replayed.book.orders["bot1-00000001"].order.expire_ns == T0
    replayed.close()


def test_the_paper_adapter_gives_its_venue_copy_the_expiry():
    from brokers.paper.adapter import PaperAdapter
    from brokers.paper.venue import SimulatedVenue
    from engine.clock import SimulatedClock
    from engine.instrument import Instrument
    from engine.oms import OrderManager
    from engine.portfolio import Portfolio

    instrument = Instrument("TEST", price_increment=Decimal("0.01"))
    adapter = PaperAdapter(SimulatedVenue(instrument, Decimal(10_000)))
    oms = OrderManager("bot1", SimulatedClock(), adapter, Portfolio.for_instrument(Decimal(10_000), instrument),
                       {"TEST": instrument})
    order = Order(oms.next_client_order_id(), "bot1", "TEST", OrderSide.BUY, OrderType.LIMIT, Decimal(1), 0,
                  limit_price=Decimal("90.00"), tif=TimeInForce.GTD, expire_ns=T0)
    oms.submit(order)
    adapter.on_tick(Decimal("95.00"), Decimal("95.01"), ts=T0)
    assert order.state is OrderState.CANCELED and order.reason == "EXPIRED"


# -- the Strategy API ---------------------------------------------------------------------------------
class Plain(Strategy):
    name = "plain"

    def next(self) -> None:
        pass


def _connected() -> tuple[Strategy, Harness]:
    h = make_harness()
    h.clock.ts = T0
    frame = pd.DataFrame({"open": [100.0], "high": [100.0], "low": [100.0], "close": [100.0], "volume": [1.0]},
                         index=pd.DatetimeIndex([pd.Timestamp(T0, tz="UTC")]))
    strategy = Plain(Plain.Params())
    strategy.attach(BarData(frame), "TEST")
    strategy.connect(h.oms)
    strategy.i = 0
    return strategy, h


def test_expire_makes_a_gtd_order_from_ns_or_a_datetime():
    strategy, h = _connected()
    by_ns = strategy.buy(qty=Decimal(1), limit=95.0, expire=T0 + MINUTE)
    assert by_ns is not None and by_ns.tif is TimeInForce.GTD and by_ns.expire_ns == T0 + MINUTE
    moment = datetime.fromtimestamp(T0 // 10**9 + 3600, tz=timezone.utc)
    by_dt = strategy.sell(qty=Decimal(1), limit=105.0, expire=moment)
    assert by_dt is not None and by_dt.expire_ns == (T0 // 10**9 + 3600) * 10**9
    naive = strategy.buy(qty=Decimal(1), limit=94.0, expire=moment.replace(tzinfo=None))  # naive = UTC
    assert naive is not None and naive.expire_ns == by_dt.expire_ns
    assert all(o.state is OrderState.ACCEPTED for o in (by_ns, by_dt, naive))


@pytest.mark.parametrize("kwargs,field", [
    ({"limit": 95.0, "expire": T0}, "expire"),                        # now is not the future
    ({"limit": 95.0, "expire": T0 - MINUTE}, "expire"),               # the past
    ({"expire": T0 + MINUTE}, "expire"),                              # a market order
    ({"limit": 95.0, "tif": "GTD"}, "expire"),                        # GTD without a time
    ({"limit": 95.0, "tif": "IOC", "expire": T0 + MINUTE}, "tif"),    # a time on IOC
    ({"limit": 95.0, "expire": "tomorrow"}, "expire"),
])
def test_expire_refusals_name_the_field_and_send_nothing(kwargs, field):
    strategy, h = _connected()
    with pytest.raises(ConfigError) as error:
        strategy.buy(qty=Decimal(1), **kwargs)
    assert error.value.field == field
    assert h.oms.orders == {}
