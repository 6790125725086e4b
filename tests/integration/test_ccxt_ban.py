"""A venue's rate-limit ban must not freeze the bot (D8): binance answers 418 (an IP ban, 2 minutes
to 3 days, `Retry-After` in seconds) to an IP that kept calling through 429s, and lengthens the ban
for every call made during it. The ccxt adapter records the quiet period and returns at once:
nothing is slept inside a call (the adapter's lock, and the bot's thread with it, would be held),
nothing is sent until the quiet period ends, and a submit the ban answered is resolved by a lookup
after it, never sent again blindly.

Time is the adapter's injected clock and sleep: `waits` is every wait the adapter made, and the
clock moves only by those waits or by the test, so "the call did not block" is measured, not
timed."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Iterator

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.base import RejectReason, VenueUnreachable  # noqa: E402
from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from tests.conformance.harness_ccxt import binance_on  # noqa: E402
from tests.fakes.binance_fake import BinanceFake, BinanceWsFake, redirect  # noqa: E402

SYMBOL = "BTC/USDT"
D = Decimal
BAN_S = 120            # binance's shortest IP ban
MAX_BACKOFF_S = 0.5


class FakeTime:
    """The adapter's clock and sleep: a sleep is recorded and moves the clock by what it waited."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> Iterator[BinanceFake]:
    fake = BinanceFake(retry_after_s=BAN_S).start()
    yield fake
    fake.stop()


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def make_oms(fake: BinanceFake, t: FakeTime, max_backoff_s: float = MAX_BACKOFF_S) -> OrderManager:
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SYMBOL], backoff_s=0.001,
                          max_backoff_s=max_backoff_s, poll_interval_s=None, clock=t.clock, sleep=t.sleep)
    instruments = adapter.instruments()
    return OrderManager("t", LiveClock(), adapter, Portfolio.for_instrument(D(100_000), instruments[SYMBOL]),
                        instruments)


def adapter_of(oms: OrderManager) -> CcxtAdapter:
    return oms.adapter  # type: ignore[return-value]


def limit(oms: OrderManager, price: str = "49000.00") -> Order:
    return Order(oms.next_client_order_id(), "t", SYMBOL, OrderSide.BUY, OrderType.LIMIT, D("0.01"), 0,
                 limit_price=D(price))


def not_blocked(t: FakeTime) -> None:
    """No wait longer than the normal backoff was made (the ban was not slept out)."""
    assert all(w <= MAX_BACKOFF_S for w in t.waits), t.waits


def nothing_sent_while_banned(fake: BinanceFake, oms: OrderManager) -> None:
    """Every kind of call during the ban: none reaches the venue, none waits."""
    adapter = adapter_of(oms)
    seen = len(fake.requests)
    for read in (adapter.open_orders, adapter.wallet, adapter.account, adapter.positions,
                 lambda: adapter.fills_since(0), lambda: adapter.order_status("t-00000099")):
        with pytest.raises(VenueUnreachable) as raised:
            read()
        assert isinstance(raised.value, ccxt.NetworkError)   # the transient error every reader handles
    with pytest.raises(ccxt.NetworkError):
        adapter.conversion_rate("BNB", "USDT")
    assert adapter.poll() is False
    late = limit(oms)
    oms.submit(late)   # refused at once, not queued for after the ban
    assert late.state is OrderState.REJECTED and str(late.reason).startswith(RejectReason.RATE_LIMITED)
    assert fake.count_client_id(late.client_order_id) == 0
    oms.cancel_all()   # the kill switch's cancels: no call, no wait
    assert fake.requests[seen:] == []
    # the poll thread waits the ban out
    assert adapter._next_poll_s() >= adapter._quiet_until - adapter._clock() > MAX_BACKOFF_S


def test_a_ban_on_a_read_raises_at_once_and_nothing_is_sent_until_it_ends(fake, t):
    oms = make_oms(fake, t)
    adapter = adapter_of(oms)
    fake.inject("418", "GET", "/api/v3/openOrders")
    start, before = t.now, len(fake.requests)
    assert adapter.poll() is False   # the read that met the ban: the poll reports the venue unreachable
    not_blocked(t)
    assert fake.requests[before:][-1] == ("GET", "/api/v3/openOrders")
    assert fake.requests[before:].count(("GET", "/api/v3/openOrders")) == 1   # not retried into the ban
    nothing_sent_while_banned(fake, oms)
    not_blocked(t)
    t.now = start + BAN_S + 1
    seen = len(fake.requests)
    assert adapter.poll() is True and len(fake.requests) > seen
    assert adapter.open_orders() == []


def test_a_read_met_by_a_ban_raises_the_transient_error(fake, t):
    oms = make_oms(fake, t)
    fake.inject("418", "GET", "/api/v3/account")
    with pytest.raises(ccxt.NetworkError):
        adapter_of(oms).wallet()
    not_blocked(t)
    assert fake.requests.count(("GET", "/api/v3/account")) == 1


def test_a_submit_the_ban_answered_stays_submitted_and_the_first_poll_after_it_rejects_it_unsent(fake, t):
    oms = make_oms(fake, t)
    adapter = adapter_of(oms)
    fake.inject("418")   # POST /api/v3/order: banned, nothing done
    sent = limit(oms)
    start = t.now
    oms.submit(sent)
    not_blocked(t)
    # outcome unknown to the engine, and the lookup would be a call during the ban: left to the poll
    assert sent.state is OrderState.SUBMITTED and sent.client_order_id in adapter._unresolved
    assert fake.requests[-1] == ("POST", "/api/v3/order") and ("GET", "/api/v3/order") not in fake.requests
    nothing_sent_while_banned(fake, oms)
    t.now = start + BAN_S + 1
    assert adapter.poll() is True
    # looked up, not found: the unresolved path's outcome (REJECTED TIMEOUT), never sent late
    assert ("GET", "/api/v3/order") in fake.requests
    assert sent.state is OrderState.REJECTED and sent.reason == RejectReason.TIMEOUT
    assert fake.count_client_id(sent.client_order_id) == 0
    assert fake.requests.count(("POST", "/api/v3/order")) == 1
    not_blocked(t)


def test_a_submit_whose_lookup_the_ban_answered_is_found_by_the_first_poll_after_it(fake, t):
    oms = make_oms(fake, t)
    adapter = adapter_of(oms)
    fake.inject("drop")                             # the order is booked, its answer lost
    fake.inject("418", "GET", "/api/v3/order")      # and the lookup that follows meets the ban
    sent = limit(oms)
    start = t.now
    oms.submit(sent)
    not_blocked(t)
    assert sent.state is OrderState.SUBMITTED and sent.client_order_id in adapter._unresolved
    assert fake.requests.count(("GET", "/api/v3/order")) == 1   # the lookup is not retried into the ban
    nothing_sent_while_banned(fake, oms)
    t.now = start + BAN_S + 1
    assert adapter.poll() is True
    assert sent.state is OrderState.ACCEPTED and sent.client_order_id not in adapter._unresolved
    assert fake.count_client_id(sent.client_order_id) == 1   # found, never sent twice
    assert fake.requests.count(("POST", "/api/v3/order")) == 1
    fake.fill(sent.client_order_id)
    assert adapter.poll() is True and sent.state is OrderState.FILLED and len(oms.fills) == 1
    not_blocked(t)


def test_a_cancel_the_ban_answered_returns_at_once_and_the_order_is_canceled_after_it(fake, t):
    oms = make_oms(fake, t)
    adapter = adapter_of(oms)
    sent = limit(oms)
    oms.submit(sent)
    assert sent.state is OrderState.ACCEPTED
    fake.inject("418", "DELETE", "/api/v3/order")
    start = t.now
    oms.cancel(sent)   # as a cancel the venue could not be reached for: nothing changes, no wait
    not_blocked(t)
    assert sent.state is OrderState.ACCEPTED
    assert fake.requests.count(("DELETE", "/api/v3/order")) == 1   # not retried into the ban
    nothing_sent_while_banned(fake, oms)
    assert fake.requests.count(("DELETE", "/api/v3/order")) == 1
    t.now = start + BAN_S + 1
    assert adapter.poll() is True and sent.state is OrderState.ACCEPTED   # still working at the venue
    oms.cancel(sent)
    assert sent.state is OrderState.CANCELED and fake.count_client_id(sent.client_order_id) == 1
    not_blocked(t)


def test_an_amend_during_the_ban_is_refused_unsent(fake, t):
    oms = make_oms(fake, t)
    sent = limit(oms)
    oms.submit(sent)
    fake.inject("418", "GET", "/api/v3/openOrders")
    assert adapter_of(oms).poll() is False
    seen = len(fake.requests)
    assert str(oms.amend(sent, price=D("48000.00"))).startswith(RejectReason.RATE_LIMITED)
    assert fake.requests[seen:] == [] and sent.limit_price == D("49000.00")
    not_blocked(t)


def test_a_short_retry_after_is_still_waited_out_inside_the_call(fake, t):
    fake.retry_after_s = 1   # within max_backoff_s (2 s): waited out, then the read is made again
    oms = make_oms(fake, t, max_backoff_s=2.0)
    fake.inject("429", "GET", "/api/v3/openOrders")
    before = len(fake.requests)
    assert adapter_of(oms).poll() is True
    assert fake.requests[before:].count(("GET", "/api/v3/openOrders")) == 2
    assert len(t.waits) == 1 and 1 <= t.waits[0] <= 2.0


def test_a_dropped_push_stream_does_not_resubscribe_during_the_ban(fake, t):
    """The user-data stream's subscription is a request too (binance spot's websocket API shares the
    IP's limits): a socket that drops during the ban waits it out before dialing again."""
    import ccxt.pro

    ws = BinanceWsFake().attach(fake)
    pro = ccxt.pro.binance({"apiKey": "test-key", "secret": "test-secret", "enableRateLimit": True, "rateLimit": 1,
                            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                                        "fetchMargins": False}})
    redirect(pro, fake.url, ws.url)
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SYMBOL], backoff_s=0.01,
                          max_backoff_s=0.05, poll_interval_s=None, push=pro, clock=t.clock, sleep=t.sleep)
    instruments = adapter.instruments()
    OrderManager("t", LiveClock(), adapter, Portfolio.for_instrument(D(100_000), instruments[SYMBOL]), instruments)
    try:
        assert ws.wait_user_stream() and _until(lambda: adapter.pushing)
        fake.inject("418", "GET", "/api/v3/openOrders")
        assert adapter.poll() is False          # the ban begins (120 s on the adapter's clock)
        seen = len(fake.requests)
        ws.drop()
        assert _until(lambda: not adapter.pushing and not ws.user_streams)
        # without the quiet period the stream is back within its backoff (at most 0.05 s)
        assert not ws.wait_user_stream(timeout=2.0) and not adapter.pushing
        assert fake.requests[seen:] == []
        t.now += BAN_S + 1                       # the ban is over: the stream dials again and reconciles
        assert ws.wait_user_stream(timeout=30) and _until(lambda: adapter.pushing)
        assert _until(lambda: len(fake.requests) > seen)
    finally:
        adapter.close()
        ws.stop()


def _until(check, timeout: float = 30.0) -> bool:
    """A bound against a hang on a loaded machine, never a measure."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_a_ban_one_bot_met_quiets_every_bot_of_the_runtime_on_the_same_venue(fake, t):
    """Binance bans the IP, not the bot, and lengthens the ban for every call made during it. Two
    bots of one runtime (an adapter each, the same venue hosts): the ban the first one met stops
    the second one's calls too, until it ends; a bot on other hosts (another fake, as USD-M
    futures or a testnet would be) is not held by it."""
    first, second = make_oms(fake, t), make_oms(fake, t)
    other_venue = BinanceFake(retry_after_s=BAN_S).start()
    try:
        third = make_oms(other_venue, t)
        fake.inject("418", "GET", "/api/v3/openOrders")
        start = t.now
        assert adapter_of(first).poll() is False          # the first bot meets the ban
        nothing_sent_while_banned(fake, second)            # the second sends nothing, waits for nothing
        assert adapter_of(second)._next_poll_s() > MAX_BACKOFF_S   # its poll thread waits the ban out
        assert adapter_of(third).poll() is True            # other hosts: not banned
        not_blocked(t)
        t.now = start + BAN_S + 1
        seen = len(fake.requests)
        assert adapter_of(second).poll() is True and len(fake.requests) > seen
    finally:
        other_venue.stop()
