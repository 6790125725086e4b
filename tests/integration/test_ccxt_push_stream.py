"""Executions pushed by the venue (ccxt.pro watch_orders / watch_my_trades over binance's
user-data stream), with REST reconciliation whenever the stream (re)subscribes and the poll as
the slow backup. Real ccxt and ccxt.pro against the loopback fakes."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Iterator

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from tests.conformance.harness_ccxt import binance_on  # noqa: E402
from tests.fakes.binance_fake import BinanceFake, BinanceWsFake, redirect  # noqa: E402

SYMBOL = "BTC/USDT"
D = Decimal
DEADLINE = 60  # seconds: generous, for a loaded machine; never a timing assertion


@pytest.fixture
def venue() -> Iterator[tuple[BinanceFake, BinanceWsFake]]:
    fake = BinanceFake().start()
    ws = BinanceWsFake().attach(fake)
    yield fake, ws
    ws.stop()
    fake.stop()


def pro_on(fake: BinanceFake, ws: BinanceWsFake):
    import ccxt.pro

    pro = ccxt.pro.binance({"apiKey": "test-key", "secret": "test-secret", "enableRateLimit": True, "rateLimit": 1,
                            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                                        "fetchMargins": False}})
    redirect(pro, fake.url, ws.url)
    return pro


class Books:
    """The OMS behind the adapter, and a condition to wait on its fills."""

    def __init__(self, fake: BinanceFake, ws: BinanceWsFake, poll_interval_s: float | None = None) -> None:
        self.adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SYMBOL], backoff_s=0.01,
                                   max_backoff_s=0.05, poll_interval_s=poll_interval_s, push=pro_on(fake, ws))
        instruments = self.adapter.instruments()
        self.changed = threading.Condition()
        self.oms = OrderManager("t", LiveClock(), self.adapter,
                                Portfolio.for_instrument(D(100_000), instruments[SYMBOL]), instruments)
        self.oms.fill_listeners.append(lambda order, fill, closed: self._notify())

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def wait(self, predicate) -> bool:
        """Until `predicate` holds (re-checked on every fill and every 50 ms), or the deadline."""
        end = time.monotonic() + DEADLINE
        with self.changed:
            while not predicate():
                if time.monotonic() > end:
                    return False
                self.changed.wait(0.05)
        return True

    def wait_live(self, live: bool = True) -> bool:
        return self.wait(lambda: self.adapter.pushing is live)


def resting(oms: OrderManager) -> Order:
    order = Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.BUY, OrderType.LIMIT, D("0.01"), 0,
                  limit_price=D("49000.00"))
    oms.submit(order)
    return order


def test_a_fill_reaches_the_books_through_the_push_stream_with_no_poll_running(venue):
    fake, ws = venue
    books = Books(fake, ws)
    try:
        assert books.wait_live() and ws.wait_user_stream()
        order = resting(books.oms)
        polls = fake.requests.count(("GET", "/api/v3/openOrders"))
        fake.fill(order.client_order_id, D("0.004"))
        fake.fill(order.client_order_id)
        assert books.wait(lambda: order.state is OrderState.FILLED)
        assert [f.qty for f in books.oms.fills] == [D("0.004"), D("0.006")]
        assert fake.requests.count(("GET", "/api/v3/openOrders")) == polls  # pushed, not polled
    finally:
        books.adapter.close()


def test_a_cancel_pushed_after_a_partial_fill_is_booked_in_order(venue):
    fake, ws = venue
    books = Books(fake, ws)
    try:
        assert books.wait_live()
        order = resting(books.oms)
        fake.fill(order.client_order_id, D("0.003"))
        fake._cancel({"symbol": "BTCUSDT", "origClientOrderId": order.client_order_id})  # e.g. by hand, on the web
        assert books.wait(lambda: order.state is OrderState.CANCELED)
        assert order.filled_qty == D("0.003") and len(books.oms.fills) == 1
    finally:
        books.adapter.close()


def test_what_happened_while_the_stream_was_down_is_reconciled_when_it_comes_back(venue):
    fake, ws = venue
    books = Books(fake, ws)
    try:
        assert books.wait_live()
        order = resting(books.oms)
        ws.refuse = True
        ws.drop()                                  # the socket goes, and cannot come back yet
        assert books.wait_live(False)
        fake.fill(order.client_order_id)           # the venue trades meanwhile; nobody hears it
        ws.refuse = False                          # the stream resubscribes and the adapter reconciles
        assert books.wait(lambda: order.state is OrderState.FILLED)
        assert len(books.oms.fills) == 1 and books.wait_live()
    finally:
        books.adapter.close()


def test_the_poll_is_the_slow_backup_while_the_stream_is_live(venue):
    fake, ws = venue
    books = Books(fake, ws, poll_interval_s=1.0)
    try:
        assert books.wait_live()
        resting(books.oms)
        assert books.adapter._next_poll_s() == books.adapter.idle_poll_s == 10.0
    finally:
        books.adapter.close()
