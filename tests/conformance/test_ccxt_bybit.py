"""What the ccxt adapter does on bybit beyond the shared contract: real ccxt against the bybit
fake (tests/fakes/bybit_fake.py). The shared suite runs on bybit too (registry: ccxt_bybit)."""

from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from tests.conformance.harness_ccxt import bybit_on  # noqa: E402
from tests.fakes.bybit_fake import BybitFake  # noqa: E402

SYMBOL = "BTC/USDT"
D = Decimal


class Recorder:
    """An ExecutionSink keeping what it is told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.fills: list = []

    def on_submitted(self, order, ts) -> None:
        self.events.append(("submitted", order.client_order_id))

    def on_accepted(self, order, ts) -> None:
        self.events.append(("accepted", order.client_order_id))

    def on_rejected(self, order, ts, reason) -> None:
        self.events.append(("rejected:" + str(reason), order.client_order_id))

    def on_fill(self, order, fill, bar) -> None:
        self.fills.append(fill)
        self.events.append(("fill", order.client_order_id))

    def on_canceled(self, order, ts, reason) -> None:
        self.events.append(("canceled", order.client_order_id))


@pytest.fixture
def fake() -> Iterator[BybitFake]:
    fake = BybitFake().start()
    yield fake
    fake.stop()


def connected(fake: BybitFake) -> tuple[CcxtAdapter, Recorder]:
    adapter = CcxtAdapter("bybit", exchange=bybit_on(fake), symbols=[SYMBOL], backoff_s=0.001, max_backoff_s=0.005,
                          poll_interval_s=None)
    sink = Recorder()
    adapter.connect(sink)
    return adapter, sink


def limit(cid: str, side: str = "BUY", qty: str = "0.01", price: str = "49000.00") -> Order:
    return Order(cid, "t", SYMBOL, OrderSide(side), OrderType.LIMIT, D(qty), 0, limit_price=D(price))


def test_an_ids_only_create_answer_leaves_the_order_accepted_as_it_was_sent(fake):
    adapter, sink = connected(fake)
    adapter.submit(limit("t-1"))
    assert sink.events == [("submitted", "t-1"), ("accepted", "t-1")]
    [venue] = adapter.open_orders()
    assert (venue.side, venue.qty, venue.limit_price, venue.client_order_id) == (OrderSide.BUY, D("0.01"),
                                                                               D("49000.00"), "t-1")


def test_a_buys_fee_is_reported_in_the_coin_bought(fake):
    adapter, sink = connected(fake)
    adapter.submit(Order("t-1", "t", SYMBOL, OrderSide.BUY, OrderType.MARKET, D("0.01"), 0))
    adapter.poll()
    [fill] = sink.fills
    # 0.1% of the 0.01 BTC bought, kept by bybit in BTC
    assert (fill.fee_currency, fill.fee_native, fill.fee_raw, fill.qty) == ("BTC", D("0.00001"), 0, D("0.01"))


def test_a_cancel_goes_by_order_link_id_and_its_ids_only_answer_is_resolved(fake):
    adapter, sink = connected(fake)
    sent = limit("t-1")
    adapter.submit(sent)
    adapter.cancel(sent)
    assert sink.events[-1] == ("canceled", "t-1")
    assert fake.orders[fake.by_client["t-1"]].status == "CANCELED"


def test_an_order_is_looked_up_without_spot_fetch_order(fake):
    adapter, sink = connected(fake)
    adapter.submit(limit("t-1"))
    fake.fill("t-1")
    venue = adapter.order_status("t-1")
    assert venue is not None and venue.state is OrderState.FILLED and venue.filled_qty == D("0.01")
    assert adapter.order_status("nobody") is None


def test_bybits_rate_limit_answer_is_backed_off_and_retried(fake):
    adapter, sink = connected(fake)
    fake.inject("429", "GET", "/v5/order/realtime")  # bybit: HTTP 200, retCode 10006
    assert adapter.poll() is True
    assert fake.requests.count(("GET", "/v5/order/realtime")) >= 2
