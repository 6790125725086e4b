"""Binance USD-M futures pushed by the venue (issue 15 items 4-5): ccxt.pro binanceusdm's
watch_orders / watch_my_trades over the futures fake's user-data stream (listenKey, its socket,
ORDER_TRADE_UPDATE), REST reconciliation on every (re)connect, the poll as the slow backup, each
fill booked once; and a hedge-mode account refused at connect. Real ccxt and ccxt.pro against
the loopback fakes (tests/fakes/binance_futures_fake.py)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any, Callable, Iterator

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.errors import ConfigError  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from tests.conformance.harness_ccxt import binanceusdm_on, binanceusdm_pro_on  # noqa: E402
from tests.fakes.binance_futures_fake import BinanceFuturesFake  # noqa: E402

BTC = "BTC/USDT:USDT"
D = Decimal
DEADLINE = 30  # seconds: generous, for a loaded machine; never a timing assertion


@pytest.fixture
def fake() -> Iterator[BinanceFuturesFake]:
    fake = BinanceFuturesFake().start()
    fake.start_stream()
    yield fake
    fake.stop()


def until(predicate: Callable[[], bool], deadline: float = DEADLINE) -> bool:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


class Books:
    """The OMS behind a futures adapter with the push stream on, and a wait on its fills."""

    def __init__(self, fake: BinanceFuturesFake, poll_interval_s: float | None = None, pro: Any = None,
                 **kw: Any) -> None:
        self.adapter = CcxtAdapter("binanceusdm", exchange=binanceusdm_on(fake), symbols=[BTC], backoff_s=0.01,
                                   max_backoff_s=0.05, poll_interval_s=poll_interval_s,
                                   push=pro or binanceusdm_pro_on(fake), **kw)
        instruments = self.adapter.instruments()
        self.changed = threading.Condition()
        self.reconciled = 0                        # REST reconciliations the stream's (re)subscriptions ran
        reconcile = self.adapter._on_push_live

        def on_live(live: bool) -> None:
            reconcile(live)
            if live:
                self.reconciled += 1
                self._notify()

        self.adapter._on_push_live = on_live  # type: ignore[method-assign]  # before connect binds it
        self.oms = OrderManager("t", LiveClock(), self.adapter,
                                Portfolio(self.adapter.account().cash, instruments[BTC].scales.cash_dp), instruments)
        self.oms.fill_listeners.append(lambda order, fill, closed: self._notify())

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def wait(self, predicate: Callable[[], bool]) -> bool:
        """Until `predicate` holds (re-checked on every fill and every 20 ms), or the deadline."""
        end = time.monotonic() + DEADLINE
        with self.changed:
            while not predicate():
                if time.monotonic() > end:
                    return False
                self.changed.wait(0.02)
        return True

    def wait_live(self, live: bool = True) -> bool:
        return self.wait(lambda: self.adapter.pushing is live)

    def wait_reconciled(self, times: int) -> bool:
        """Until the stream's `times`-th subscription has run its REST reconciliation (it runs on
        the delivery thread, after `pushing` turns True)."""
        return self.wait(lambda: self.reconciled >= times)

    def resting(self, side: str = "BUY", qty: str = "0.010") -> Order:
        order = Order(self.oms.next_client_order_id(), "t", BTC, OrderSide(side), OrderType.LIMIT, D(qty), 0,
                      limit_price=D("49000.0") if side == "BUY" else D("51000.0"))
        self.oms.submit(order)
        assert order.state is OrderState.ACCEPTED
        return order


def rest_reads(fake: BinanceFuturesFake) -> int:
    """The REST reads an execution poll makes (open orders, trades)."""
    return sum(1 for r in list(fake.requests) if r in (("GET", "/fapi/v1/openOrders"), ("GET", "/fapi/v1/userTrades")))


# -- push first -----------------------------------------------------------------------------------------
def test_fills_reach_the_books_through_the_push_stream_with_no_poll_running(fake):
    books = Books(fake)
    try:
        assert books.wait_live() and fake.ws.listening() == 1 and books.wait_reconciled(1)
        order = books.resting()
        polls = fake.requests.count(("GET", "/fapi/v1/openOrders"))
        fake.fill(order.client_order_id, D("0.004"))
        fake.fill(order.client_order_id)
        assert books.wait(lambda: order.state is OrderState.FILLED)
        assert [f.qty for f in books.oms.fills] == [D("0.004"), D("0.006")]
        assert [f.execution_id for f in books.oms.fills] == [f"BTCUSDT:{t.trade_id}" for t in fake.trades]
        # the maker commission as the venue pushed it (n / N), exactly
        assert [f.fee for f in books.oms.fills] == [D("0.0392"), D("0.0588")]
        assert fake.requests.count(("GET", "/fapi/v1/openOrders")) == polls  # pushed, never polled
        assert books.adapter._stream is not None and not books.adapter._stream.errors  # ccxt.pro took every event
    finally:
        books.adapter.close()


def test_a_cancel_pushed_after_a_partial_fill_is_booked_in_order(fake):
    books = Books(fake)
    try:
        assert books.wait_live()
        order = books.resting()
        fake.fill(order.client_order_id, D("0.003"))
        with fake.lock:  # cancelled at the venue (by hand, on the web): the engine hears it pushed
            fake._cancel({"symbol": "BTCUSDT", "origClientOrderId": order.client_order_id})
        assert books.wait(lambda: order.state is OrderState.CANCELED)
        assert order.filled_qty == D("0.003") and len(books.oms.fills) == 1
    finally:
        books.adapter.close()


def test_fills_made_while_the_stream_was_down_are_reconciled_on_reconnect_once(fake):
    books = Books(fake)
    try:
        assert books.wait_live()
        order = books.resting()
        other = books.resting("SELL", "0.005")
        fake.ws.refuse = True
        fake.ws.drop()                             # the socket goes and cannot come back yet
        assert books.wait_live(False)
        dials = fake.ws.dials
        fake.fill(order.client_order_id, D("0.004"))  # the venue trades meanwhile; nobody hears it
        fake.fill(order.client_order_id)
        fake.fill(other.client_order_id)
        assert order.state is OrderState.ACCEPTED and not books.oms.fills
        fake.ws.refuse = False                     # the stream comes back: the adapter reconciles over REST
        assert books.wait(lambda: order.state is OrderState.FILLED and other.state is OrderState.FILLED)
        assert books.wait_live() and fake.ws.dials > dials
        books.adapter.poll()                       # and the backup poll finds nothing new
        assert sorted(f.qty for f in books.oms.fills) == [D("0.004"), D("0.005"), D("0.006")]
        assert len({f.execution_id for f in books.oms.fills}) == 3 == len(fake.trades)
    finally:
        books.adapter.close()


def test_each_fill_reaches_the_books_once_whether_pushed_polled_or_both(fake):
    books = Books(fake, poll_interval_s=0.02)  # the poll thread too, racing the stream
    try:
        assert books.wait_live()
        orders = [books.resting() for _ in range(3)]
        for order in orders:
            fake.fill(order.client_order_id, D("0.002"))
            books.adapter.poll()                   # a reconciliation in the middle of the pushes
            fake.fill(order.client_order_id)
        market = Order(books.oms.next_client_order_id(), "t", BTC, OrderSide.SELL, OrderType.MARKET, D("0.010"), 0)
        books.oms.submit(market)                   # answered, pushed and polled
        assert books.wait(lambda: all(o.state is OrderState.FILLED for o in [*orders, market]))
        books.adapter.poll()
        assert books.wait(lambda: len(books.oms.fills) >= len(fake.trades))
        assert sorted(f.execution_id for f in books.oms.fills) == sorted(f"BTCUSDT:{t.trade_id}" for t in fake.trades)
        assert books.oms.portfolio.positions[BTC].quantity == D("0.020")
    finally:
        books.adapter.close()


def test_an_expired_listen_key_is_replaced_and_the_stream_hears_again(fake):
    """binance: after listenKeyExpired "no more user data event will be updated" though the
    socket stays open. The stream must not stay live and deaf: it reconnects with a new key."""
    books = Books(fake)
    try:
        assert books.wait_live()
        old = fake.listen_key
        fake.expire_listen_key()
        assert until(lambda: fake.listen_key not in (None, old) and fake.ws.listening() == 1
                     and books.adapter.pushing)
        assert books.wait_reconciled(2)
        order = books.resting()
        polls = fake.requests.count(("GET", "/fapi/v1/openOrders"))
        fake.fill(order.client_order_id)
        assert books.wait(lambda: order.state is OrderState.FILLED)
        assert fake.requests.count(("GET", "/fapi/v1/openOrders")) == polls  # heard on the new key
    finally:
        books.adapter.close()


def test_ccxt_pro_keeps_the_listen_key_alive_and_the_stream_keeps_hearing(fake):
    pro = binanceusdm_pro_on(fake)
    pro.options["listenKeyRefreshRate"] = 50  # ms: binance asks for one keep-alive an hour, ccxt sends one per 20 min
    books = Books(fake, pro=pro)
    try:
        assert books.wait_live() and books.wait_reconciled(1)
        key = fake.listen_key
        assert until(lambda: fake.requests.count(("PUT", "/fapi/v1/listenKey")) >= 3)
        assert fake.listen_key == key and fake.ws.listening() == 1 and books.adapter.pushing
        order = books.resting()
        fake.fill(order.client_order_id)
        assert books.wait(lambda: order.state is OrderState.FILLED)
        assert books.reconciled == 1  # the same subscription all along
    finally:
        books.adapter.close()


def test_the_stream_is_live_only_once_its_socket_is_open(fake):
    """USD-M subscribes by dialling the listenKey's url: until that socket is open the account's
    events cannot arrive, so the reconciliation `live` triggers must wait for it."""
    fake.ws.admit.clear()                          # the handshake is slow
    books = Books(fake)
    try:
        assert until(lambda: fake.ws.waiting >= 1)   # the stream has its key and is dialling
        assert not books.adapter.pushing
        reads = rest_reads(fake)
        fake.ws.admit.set()
        assert books.wait_live() and fake.ws.listening() == 1
        assert until(lambda: rest_reads(fake) > reads)  # reconciled once the socket was open
    finally:
        fake.ws.admit.set()
        books.adapter.close()


def test_a_dropped_socket_is_redialled_with_backoff_and_the_poll_stays_the_slow_backup(fake):
    books = Books(fake, poll_interval_s=1.0)
    try:
        assert books.wait_live()
        books.resting()
        assert books.adapter._next_poll_s() == books.adapter.idle_poll_s == 10.0  # slow while pushing
        fake.ws.refuse = True
        fake.ws.drop()
        assert books.wait_live(False)
        assert books.adapter._next_poll_s() == 1.0  # working orders and no stream: the fast poll
        fake.ws.refuse = False
        assert books.wait_live() and fake.ws.listening() == 1
        stream = books.adapter._stream
        assert stream is not None and stream.failures == 0  # the next drop backs off from the start again
        assert books.wait_reconciled(2)             # the first subscription's, and the comeback's
        for _ in range(3):                          # drops over a long life: none inherits the last's backoff
            subscribed = books.reconciled
            fake.ws.drop()
            assert books.wait_reconciled(subscribed + 1)  # went down and came back (each comeback reconciles)
            assert stream.failures == 0
    finally:
        books.adapter.close()


# -- hedge mode -----------------------------------------------------------------------------------------
def test_a_hedge_mode_account_is_refused_at_connect_naming_the_setting_and_nothing_is_changed(fake):
    fake.dual_side = True
    adapter = CcxtAdapter("binanceusdm", exchange=binanceusdm_on(fake), symbols=[BTC], poll_interval_s=None,
                          leverage=5, margin_mode="isolated")
    with pytest.raises(ConfigError) as refused:
        adapter.instruments()
    assert refused.value.field == "dualSidePosition"
    assert "hedge mode" in refused.value.message and "one position per symbol" in refused.value.message
    assert not [r for r in fake.requests if r[0] != "GET"]  # no leverage, margin type or order was sent
    assert fake.leverages["BTCUSDT"] == 20 and fake.margin_types["BTCUSDT"] == "CROSSED"
    fake.dual_side = False
    assert BTC in CcxtAdapter("binanceusdm", exchange=binanceusdm_on(fake), symbols=[BTC],
                              poll_interval_s=None).instruments()


def test_the_fake_keeps_the_position_mode_as_binance_documents_it(fake):
    exchange = binanceusdm_on(fake)
    exchange.load_markets()
    assert exchange.fetch_position_mode(BTC)["hedged"] is False
    exchange.set_position_mode(True)
    assert fake.dual_side and exchange.fetch_position_mode(BTC)["hedged"] is True
    with pytest.raises(ccxt.ExchangeError, match="position side does not match"):
        exchange.create_order(BTC, "market", "buy", 0.01)       # no positionSide LONG / SHORT
    with pytest.raises(ccxt.ExchangeError, match="No need to change position side"):
        exchange.set_position_mode(True)
    exchange.set_position_mode(False)
    exchange.create_order(BTC, "market", "buy", 0.01)
    with pytest.raises(ccxt.ExchangeError, match="exists position"):
        exchange.set_position_mode(True)
    assert not fake.dual_side


# -- the fake's stream as binance documents it ----------------------------------------------------------
def test_the_listen_key_is_one_per_account_kept_alive_and_replaced_once_expired(fake):
    exchange = binanceusdm_on(fake)
    first = exchange.fapiPrivatePostListenKey()["listenKey"]
    assert exchange.fapiPrivatePostListenKey()["listenKey"] == first  # the active one, extended
    assert exchange.fapiPrivatePutListenKey()["listenKey"] == first
    signed = [r for r in fake.requests if r[1] == "/fapi/v1/listenKey"]
    assert len(signed) == 3
    fake.expire_listen_key()
    with pytest.raises(ccxt.AuthenticationError):  # -1125 This listenKey does not exist.
        exchange.fapiPrivatePutListenKey()
    assert exchange.fapiPrivatePostListenKey()["listenKey"] not in (first, None)
    exchange.fapiPrivateDeleteListenKey()
    assert fake.listen_key is None


def test_order_trade_update_carries_binances_fields_and_the_rest_trade_id(fake):
    heard: list[dict[str, Any]] = []
    fake.listeners.append(lambda key, event: heard.append(event))
    binanceusdm_on(fake).fapiPrivatePostListenKey()
    fake.place_external("mine-1", "BTCUSDT", "BUY", D("0.010"), D("49000.0"))
    fake.fill("mine-1", D("0.004"))
    kinds = [(e["e"], e.get("o", {}).get("x")) for e in heard]
    assert kinds == [("ORDER_TRADE_UPDATE", "NEW"), ("ORDER_TRADE_UPDATE", "TRADE"), ("ACCOUNT_UPDATE", None)]
    trade = heard[1]["o"]
    (venue_trade,) = fake.trades
    assert {k: trade[k] for k in ("s", "c", "S", "o", "X", "l", "z", "L", "N", "n", "t", "R", "ps", "m")} == {
        "s": "BTCUSDT", "c": "mine-1", "S": "BUY", "o": "LIMIT", "X": "PARTIALLY_FILLED", "l": "0.004",
        "z": "0.004", "L": "49000.00", "N": "USDT", "n": "0.03920000", "t": venue_trade.trade_id, "R": False,
        "ps": "BOTH", "m": True}
    assert "n" not in heard[0]["o"] and heard[1]["T"] == trade["T"] == venue_trade.time
    account = heard[2]["a"]
    assert account["m"] == "ORDER" and account["P"][0]["pa"] == "0.004" and account["B"][0]["a"] == "USDT"
