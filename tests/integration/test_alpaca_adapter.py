"""The Alpaca adapter: the real alpaca-py SDK against loopback fake servers
(tests/fakes/alpaca_fake.py). Nothing inside the SDK or the adapter is mocked.

Waiting is on counters (messages the fake sent on the adapter's current subscription vs messages
the adapter handled on it; `adapter_settled`), never on time.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

pytest.importorskip("alpaca", reason="alpaca-py is not installed (pip install alpaca-py==0.44.0)")

from alpaca.trading.models import Asset, Order as AlpacaOrder, Position, TradeAccount, TradeUpdate  # noqa: E402

from brokers.alpaca import mapping  # noqa: E402
from brokers.alpaca.adapter import AlpacaAdapter  # noqa: E402
from brokers.alpaca.feed import AlpacaFeed  # noqa: E402
from brokers.base import RejectReason  # noqa: E402
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType, TimeInForce, can_transition  # noqa: E402
from tests.fakes.alpaca_fake import KEY, SECRET, FakeAlpaca, adapter_settled  # noqa: E402

D = Decimal
DEADLINE_S = 20.0


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.002)


class RecordingSink:
    """An ExecutionSink that keeps every report and insists on legal transitions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple] = []
        self.state: dict[str, OrderState] = {}
        self.fills: list[Fill] = []

    def _move(self, order: Order, new: OrderState) -> None:
        current = self.state.get(order.client_order_id)
        if current is None:
            current = OrderState.SUBMITTED if order.tag == "external" else OrderState.PENDING_SUBMIT
        assert can_transition(current, new), f"{order.client_order_id}: {current} -> {new}"
        self.state[order.client_order_id] = new

    def on_submitted(self, order, ts):
        with self.lock:
            self._move(order, OrderState.SUBMITTED)
            self.events.append(("submitted", order.client_order_id))

    def on_accepted(self, order, ts):
        with self.lock:
            self._move(order, OrderState.ACCEPTED)
            self.events.append(("accepted", order.client_order_id))

    def on_rejected(self, order, ts, reason):
        with self.lock:
            self._move(order, OrderState.REJECTED)
            self.events.append(("rejected", order.client_order_id, str(reason)))

    def on_canceled(self, order, ts, reason):
        with self.lock:
            self._move(order, OrderState.CANCELED)
            self.events.append(("canceled", order.client_order_id, reason))

    def on_fill(self, order, fill, bar):
        with self.lock:
            done = sum((f.qty for f in self.fills if f.client_order_id == order.client_order_id), D(0)) + fill.qty
            full = order.qty is not None and done >= order.qty   # a notional order's qty is set once filled
            self._move(order, OrderState.FILLED if full else OrderState.PARTIALLY_FILLED)
            self.fills.append(fill)
            self.events.append(("fill", order.client_order_id, str(fill.qty), str(fill.price)))

    def kinds(self, cid: str) -> list[str]:
        return [e[0] for e in self.events if e[1] == cid]


class Venue:
    def __init__(self, submit_timeout_s: float | None = None, **asset) -> None:
        self.fake = FakeAlpaca(cash="100000")
        self.fake.add_asset("AAPL", "150.00", **({"fractionable": False} | asset))
        self.fake.add_asset("BTC/USD", "50000", asset_class="crypto", min_order_size="0.0001",
                            min_trade_increment="0.000000001", price_increment="1")
        self.sleeps: list[float] = []
        self.adapter = AlpacaAdapter(KEY, SECRET, ["AAPL", "BTC/USD"], url_override=self.fake.rest_url,
                                     stream_url=self.fake.stream_url, sleep=self.sleeps.append,
                                     stream_backoff_s=(0.01, 0.05), submit_timeout_s=submit_timeout_s)
        self.sink = RecordingSink()
        self.adapter.connect(self.sink)
        self.seq = 0

    def order(self, side: str, qty: str, kind: OrderType = OrderType.MARKET, limit: str | None = None,
              stop: str | None = None, symbol: str = "AAPL", cid: str | None = None) -> Order:
        self.seq += 1
        order = Order(cid or f"bot1-{self.seq:08d}", "bot1", symbol, OrderSide(side), kind, D(qty), 0,
                      limit_price=None if limit is None else D(limit), stop_price=None if stop is None else D(stop))
        self.adapter.submit(order)
        self.settle()
        return order

    def settle(self) -> None:
        wait_until(lambda: adapter_settled(self.fake, self.adapter), "the adapter to settle")

    def posts(self) -> list[dict]:
        return [body for method, path, body in self.fake.requests if method == "POST" and path == "/v2/orders"]

    def close(self) -> None:
        self.adapter.close()
        self.fake.close()


@pytest.fixture
def venue():
    v = Venue()
    yield v
    v.close()


def test_instruments_follow_the_assets_grid(venue):
    aapl, btc = venue.adapter.instruments()["AAPL"], venue.adapter.instruments()["BTC/USD"]
    assert (aapl.size_increment, aapl.min_qty, aapl.price_increment) == (D(1), D(1), D("0.0001"))
    assert (btc.size_increment, btc.min_qty, btc.price_increment) == (D("1E-9"), D("0.0001"), D(1))


def test_a_market_order_fills_with_the_client_id_sent_as_alpacas(venue):
    order = venue.order("BUY", "10")
    assert venue.posts()[0] == {"symbol": "AAPL", "qty": 10.0, "side": "buy", "type": "market",
                                "time_in_force": "gtc", "client_order_id": order.client_order_id}
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill"]
    [fill] = venue.sink.fills
    venue_id = venue.fake.order_by_cid(order.client_order_id)["id"]
    assert (fill.qty, fill.price, fill.execution_id) == (D(10), D(150), f"{venue_id}@10")
    assert venue.adapter.positions()[0].qty == D(10)
    account = venue.adapter.account()
    assert (account.cash, account.equity, account.currency) == (D("98500"), D("100000"), "USD")


@pytest.mark.parametrize("kind,limit,stop,body", [
    (OrderType.LIMIT, "140.25", None, {"type": "limit", "limit_price": 140.25}),
    (OrderType.STOP, None, "160.5", {"type": "stop", "stop_price": 160.5}),
    (OrderType.STOP_LIMIT, "161", "160.5", {"type": "stop_limit", "stop_price": 160.5, "limit_price": 161.0}),
])
def test_each_order_type_rests_then_fills_when_the_venue_executes_it(venue, kind, limit, stop, body):
    order = venue.order("BUY", "4", kind, limit=limit, stop=stop)
    assert body.items() <= venue.posts()[0].items()
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted"]
    venue.fake.fill(order.client_order_id)
    venue.settle()
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill"]


def test_a_fractional_crypto_order_keeps_its_exact_quantity(venue):
    order = venue.order("BUY", "0.123456789", symbol="BTC/USD")
    assert venue.sink.fills[0].qty == D("0.123456789")
    assert venue.fake.order_by_cid(order.client_order_id)["qty"] == "0.123456789"


def test_cancel(venue):
    order = venue.order("BUY", "5", OrderType.LIMIT, limit="100")
    venue.adapter.cancel(order)
    venue.settle()
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "canceled"]
    assert venue.adapter.open_orders() == []


def test_partial_fills_are_booked_once_each_from_the_stream_and_from_reconciliation(venue):
    order = venue.order("BUY", "10", OrderType.LIMIT, limit="100")
    venue.fake.fill(order.client_order_id, "3")
    venue.settle()
    assert venue.sink.state[order.client_order_id] is OrderState.PARTIALLY_FILLED
    assert venue.adapter.order_status(order.client_order_id).filled_qty == D(3)
    venue.fake.fill(order.client_order_id)
    venue.settle()
    venue.adapter.reconcile()
    venue.settle()
    assert [f.qty for f in venue.sink.fills] == [D(3), D(7)]
    assert venue.sink.state[order.client_order_id] is OrderState.FILLED
    assert [f.execution_id for f in venue.adapter.fills_since(0)] == [f.execution_id for f in venue.sink.fills]


def test_unknown_symbol_is_refused_without_an_order(venue):
    order = venue.order("BUY", "1", symbol="NOPE")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, RejectReason.UNKNOWN_SYMBOL)
    assert venue.posts() == []


@pytest.mark.parametrize("qty,symbol,reason", [("0", "AAPL", RejectReason.QTY_BELOW_MIN),
                                               ("1.5", "AAPL", RejectReason.QTY_OFF_GRID),
                                               ("0.00005", "BTC/USD", RejectReason.QTY_BELOW_MIN)])
def test_quantities_off_the_grid_or_below_the_minimum_are_refused_before_sending(venue, qty, symbol, reason):
    order = venue.order("BUY", qty, symbol=symbol)
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, reason)
    assert venue.posts() == []


def test_a_market_order_outside_hours_is_queued_for_the_open(venue):
    venue.fake.close_market("AAPL")
    order = venue.order("BUY", "3")
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted"]
    venue.fake.set_price("AAPL", "151.00")
    venue.fake.open_market("AAPL")
    venue.settle()
    assert venue.sink.state[order.client_order_id] is OrderState.FILLED
    assert [(f.qty, f.price) for f in venue.sink.fills] == [(D(3), D(151))]


def test_a_cancel_is_pending_until_alpaca_confirms_it(venue):
    venue.fake.hold_cancels()
    order = venue.order("BUY", "5", OrderType.LIMIT, limit="100")
    venue.adapter.cancel(order)
    venue.settle()
    assert venue.fake.order_by_cid(order.client_order_id)["status"] == "pending_cancel"
    assert venue.sink.state[order.client_order_id] is OrderState.ACCEPTED
    assert [o.client_order_id for o in venue.adapter.open_orders()] == [order.client_order_id]
    venue.fake.release_cancels()
    venue.settle()
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "canceled"]


def test_more_fills_than_a_page_missed_during_a_drop_are_all_booked(venue):
    """Alpaca pages activities at 100: 151 fills of one order missed while the stream was down
    are all read (page_token), and the order ends FILLED with all of them."""
    order = venue.order("BUY", "151", OrderType.LIMIT, limit="100")
    generation = venue.adapter.stream_generation
    venue.fake.drop_streams(refuse=True)
    for _ in range(151):
        venue.fake.fill(order.client_order_id, "1")
    venue.fake.restore_streams()
    wait_until(lambda: venue.adapter.reconciled_generation > generation, "the reconnect")
    venue.settle()
    assert len(venue.sink.fills) == 151 and sum(f.qty for f in venue.sink.fills) == D(151)
    assert venue.sink.state[order.client_order_id] is OrderState.FILLED
    assert len(venue.adapter.fills_since(0)) == 151


def test_an_order_alpaca_says_filled_stays_open_until_its_fills_are_read(venue):
    """A reconcile that sees the order filled but cannot read its fills must not mark it filled
    without them (it would never be looked at again): the next reconcile books them."""
    order = venue.order("BUY", "4", OrderType.LIMIT, limit="100")
    venue.fake.drop_streams(refuse=True)
    venue.fake.fill(order.client_order_id)
    venue.fake.fail_activities(1)
    venue.adapter.reconcile()
    assert venue.sink.state[order.client_order_id] is OrderState.ACCEPTED and venue.sink.fills == []
    venue.adapter.reconcile()
    assert venue.sink.state[order.client_order_id] is OrderState.FILLED
    assert [f.qty for f in venue.sink.fills] == [D(4)]


def test_an_equity_fraction_order_goes_as_notional_and_takes_the_quantity_that_filled():
    venue = Venue(fractionable=True)
    try:
        order = Order("bot1-frac", "bot1", "AAPL", OrderSide.BUY, OrderType.MARKET, None, 0,
                      equity_fraction=D("0.1"))
        venue.adapter.submit(order)
        venue.settle()
        assert venue.posts()[0] == {"symbol": "AAPL", "notional": 10000.0, "side": "buy", "type": "market",
                                    "time_in_force": "day", "client_order_id": "bot1-frac"}
        [fill] = venue.sink.fills
        assert fill.qty == D("66.666666666") and order.qty == fill.qty
        assert venue.sink.state["bot1-frac"] is OrderState.FILLED
    finally:
        venue.close()


def test_fractional_orders_follow_alpacas_time_in_force_rules():
    venue = Venue(fractionable=True)
    try:
        market = venue.order("BUY", "0.5")
        assert (venue.posts()[0]["time_in_force"] == "day"
                and venue.sink.state[market.client_order_id] is OrderState.FILLED)
        resting = venue.order("BUY", "0.5", OrderType.LIMIT, limit="100")   # GTC would be refused by Alpaca
        assert venue.sink.events[-1] == ("rejected", resting.client_order_id, RejectReason.UNSUPPORTED)
        day = Order("bot1-day", "bot1", "BTC/USD", OrderSide.BUY, OrderType.LIMIT, D("0.01"), 0,
                    limit_price=D(40000), tif=TimeInForce.DAY)            # crypto: gtc and ioc only
        venue.adapter.submit(day)
        assert venue.sink.events[-1] == ("rejected", "bot1-day", RejectReason.UNSUPPORTED)
        assert len(venue.posts()) == 1
    finally:
        venue.close()


def test_crypto_positions_and_fills_come_back_with_the_orders_symbol(venue):
    venue.order("BUY", "0.5", symbol="BTC/USD")
    assert [p["symbol"] for p in venue.fake.client_positions()] == ["BTCUSD"]     # as Alpaca writes them
    assert [(p.symbol, p.qty) for p in venue.adapter.positions()] == [("BTC/USD", D("0.5"))]
    assert [(f.symbol, f.qty) for f in venue.adapter.fills_since(0)] == [("BTC/USD", D("0.5"))]


def test_done_for_day_is_not_the_end_of_a_gtc_order_but_a_day_order_then_expires(venue):
    gtc = venue.order("BUY", "2", OrderType.LIMIT, limit="100")
    day = Order("bot1-dayorder", "bot1", "AAPL", OrderSide.BUY, OrderType.LIMIT, D(2), 0, limit_price=D(100),
                tif=TimeInForce.DAY)
    venue.adapter.submit(day)
    for order in (gtc, day):
        venue.fake.done_for_day(order.client_order_id)
    venue.settle()
    venue.adapter.reconcile()
    assert venue.sink.state[gtc.client_order_id] is OrderState.ACCEPTED
    assert venue.sink.state[day.client_order_id] is OrderState.ACCEPTED
    venue.fake.next_day(gtc.client_order_id)
    venue.fake.next_day(day.client_order_id)
    venue.settle()
    assert venue.sink.state[gtc.client_order_id] is OrderState.ACCEPTED
    assert venue.sink.events[-1] == ("canceled", "bot1-dayorder", "EXPIRED")
    venue.fake.fill(gtc.client_order_id)
    venue.settle()
    assert venue.sink.state[gtc.client_order_id] is OrderState.FILLED


def test_an_order_replaced_at_alpaca_ends_and_its_replacement_is_external(venue):
    order = venue.order("BUY", "2", OrderType.LIMIT, limit="100")
    venue.fake.replace_at_venue(order.client_order_id, limit_price="101", new_cid="dashboard-1")
    venue.settle()
    assert venue.sink.events[-2:] == [("canceled", order.client_order_id, "REPLACED"), ("accepted", "dashboard-1")]
    venue.adapter.reconcile()
    assert venue.sink.state[order.client_order_id] is OrderState.CANCELED
    [replacement] = venue.adapter.open_orders()
    assert (replacement.client_order_id, replacement.limit_price) == ("dashboard-1", D(101))


def test_a_trailing_stop_is_seen_as_a_stop_at_its_current_trigger(venue):
    venue.fake.place_trailing_stop("AAPL", "sell", "1", trail_price="5", cid="trail-1")
    venue.settle()
    [trailing] = venue.adapter.open_orders()
    assert (trailing.type, trailing.stop_price, trailing.side) == (OrderType.STOP, D(145), OrderSide.SELL)


def test_insufficient_buying_power_is_rejected_insufficient_funds(venue):
    order = venue.order("BUY", "1000")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, RejectReason.INSUFFICIENT_FUNDS)


@pytest.mark.parametrize("status,message,reason", [
    (422, "sub-penny increment does not fulfill minimum pricing criteria", RejectReason.PRICE_OFF_GRID),
    (422, "invalid order type for crypto order", RejectReason.INVALID_ORDER),
    (403, "insufficient qty available for order", RejectReason.INSUFFICIENT_FUNDS),
])
def test_venue_refusals_map_to_reasons(venue, status, message, reason):
    venue.fake.fail_next(status, 40010001, message)
    order = venue.order("BUY", "1")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, reason)
    assert len(venue.posts()) == 1


def test_429_is_retried_with_exponential_backoff_and_books_one_order(venue):
    venue.fake.fail_next(429, 42910000, "rate limit exceeded")
    venue.fake.fail_next(429, 42910000, "rate limit exceeded")
    order = venue.order("BUY", "1", OrderType.LIMIT, limit="100")
    assert venue.sleeps == [0.5, 1.0] and len(venue.posts()) == 3
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted"]
    assert venue.fake.count_by_cid(order.client_order_id) == 1


def test_a_venue_that_keeps_throttling_rejects_rate_limited(venue):
    venue.fake.fail_all(429, 42910000, "rate limit exceeded")
    order = venue.order("BUY", "1")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, RejectReason.RATE_LIMITED)
    assert venue.fake.count_by_cid(order.client_order_id) == 0


def test_a_5xx_is_looked_up_first_then_sent_again_once(venue):
    venue.fake.fail_next(500)
    order = venue.order("BUY", "1", OrderType.LIMIT, limit="100")
    lookups = [p for m, p, _ in venue.fake.requests if p == "/v2/orders:by_client_order_id"]
    assert len(lookups) == 1 and len(venue.posts()) == 2
    assert venue.fake.count_by_cid(order.client_order_id) == 1
    assert venue.sink.state[order.client_order_id] is OrderState.ACCEPTED


@pytest.mark.parametrize("how", ["drop", "timeout"])
def test_a_lost_answer_is_resolved_by_client_id_without_a_second_order(how):
    venue = Venue(submit_timeout_s=0.5)  # the fake holds a "timeout" submit until the client gives up
    try:
        venue.fake.lose_next_submit(how)
        order = venue.order("BUY", "2")
        assert len(venue.posts()) == 1 and venue.fake.count_by_cid(order.client_order_id) == 1
        assert venue.sink.state[order.client_order_id] is OrderState.FILLED
        assert len(venue.sink.fills) == 1
    finally:
        venue.close()


def test_a_lost_answer_the_venue_cannot_be_asked_about_stays_submitted_until_reconcile(venue):
    venue.fake.drop_streams(refuse=True)  # no stream to hear it from either
    venue.fake.lose_next_submit("drop")
    venue.fake.fail_lookups(1)
    order = Order("bot1-lost", "bot1", "AAPL", OrderSide.BUY, OrderType.LIMIT, D(1), 0, limit_price=D(100))
    venue.adapter.submit(order)
    assert venue.sink.state[order.client_order_id] is OrderState.SUBMITTED
    venue.adapter.reconcile()
    assert venue.sink.state[order.client_order_id] is OrderState.ACCEPTED
    assert len(venue.posts()) == 1 and venue.fake.count_by_cid(order.client_order_id) == 1


def test_a_duplicate_client_id_is_looked_up_not_doubled(venue):
    venue.fake.place_external("AAPL", "buy", "1", "100", cid="bot1-dup")
    venue.settle()
    order = Order("bot1-dup", "bot1", "AAPL", OrderSide.BUY, OrderType.LIMIT, D(1), 0, limit_price=D(100))
    venue.adapter.submit(order)
    venue.settle()
    assert venue.fake.count_by_cid("bot1-dup") == 1
    assert venue.adapter.order_status("bot1-dup").state is OrderState.ACCEPTED


def test_a_dropped_stream_reconnects_and_reconciles_what_it_missed(venue):
    resting = venue.order("BUY", "5", OrderType.LIMIT, limit="100")
    other = venue.order("BUY", "5", OrderType.LIMIT, limit="100")
    generation = venue.adapter.stream_generation
    venue.fake.drop_streams(refuse=True)
    venue.fake.fill(resting.client_order_id, "2")
    venue.fake.fill(resting.client_order_id)
    venue.fake.cancel_at_venue(other.client_order_id)
    assert venue.sink.state[resting.client_order_id] is OrderState.ACCEPTED
    venue.fake.restore_streams()
    wait_until(lambda: venue.adapter.reconciled_generation > generation, "the reconnect")
    venue.settle()
    assert [f.qty for f in venue.sink.fills] == [D(2), D(3)]
    assert venue.sink.state[resting.client_order_id] is OrderState.FILLED
    assert venue.sink.state[other.client_order_id] is OrderState.CANCELED
    venue.adapter.reconcile()
    assert len(venue.sink.fills) == 2


def test_an_unknown_venue_order_is_reported_as_external(venue):
    venue.fake.place_external("AAPL", "sell", "3", "200", cid="phone-1")
    venue.settle()
    venue.adapter.reconcile()
    assert venue.sink.events.count(("accepted", "phone-1")) == 1
    [external] = venue.adapter.open_orders()
    assert (external.client_order_id, external.side, external.qty, external.limit_price) == \
        ("phone-1", OrderSide.SELL, D(3), D(200))


def test_paper_trading_is_the_default():
    from alpaca.common.enums import BaseURL
    from alpaca.trading.client import TradingClient
    assert AlpacaAdapter(KEY, SECRET, []).paper is True
    assert TradingClient(KEY, SECRET)._base_url == BaseURL.TRADING_PAPER


def test_the_fakes_json_passes_the_sdks_own_models(venue):
    order = venue.order("BUY", "2")
    data = venue.fake.order_by_cid(order.client_order_id)
    AlpacaOrder(**data)
    Position(**venue.fake._position_json("AAPL"))
    TradeAccount(**venue.fake._account_json())
    Asset(**venue.fake.assets["BTC/USD"].json())
    TradeUpdate(event="fill", execution_id="7f0e5ac6-4b6f-4a8a-9d3c-2b1e3f6a9c01", order=data,
                timestamp=data["updated_at"], price="150", qty="2", position_qty="2")


def test_times_with_nanoseconds_are_read_exactly():
    assert mapping.ns("2026-01-01T00:00:00.123456789Z") == 1_767_225_600_123_456_789
    assert mapping.ns("2026-01-01T00:00:00Z") == 1_767_225_600_000_000_000
    assert mapping.ns("2026-01-01T01:00:00.5+01:00") == 1_767_225_600_500_000_000


def test_the_feed_turns_quotes_trades_and_bars_into_ticks_and_bars():
    fake = FakeAlpaca()
    feed = AlpacaFeed(KEY, SECRET, stock_url=fake.stock_data_url, crypto_url=fake.crypto_data_url,
                      reconnect_backoff_s=(0.01, 0.05))
    ticks, bars = [], []
    try:
        feed.subscribe(["AAPL", "BTC/USD"], ticks.append, bars.append)
        wait_until(lambda: fake.subscribed("quotes", "AAPL") and fake.subscribed("trades", "BTC/USD")
                   and fake.subscribed("bars", "AAPL"), "the subscriptions")
        sent = fake.publish_quote("AAPL", 150.0, 150.1) + fake.publish_trade("BTC/USD", 50000.5, 0.25)
        sent += fake.publish_bar("AAPL", 1.0, 2.0, 0.5, 1.5, 100)
        wait_until(lambda: feed.messages >= sent, "the market data")
        # stocks and crypto come on two connections: their relative order is not defined
        [aapl] = [t for t in ticks if t.symbol == "AAPL"]
        [btc] = [t for t in ticks if t.symbol == "BTC/USD"]
        assert (aapl.bid, aapl.ask, aapl.ts) == (150.0, 150.1, 1_767_225_600_001_000_000)
        assert (btc.last, btc.size) == (50000.5, 0.25)
        assert (bars[0].symbol, bars[0].close, bars[0].end - bars[0].start) == ("AAPL", 1.5, 60_000_000_000)
    finally:
        feed.close()
        fake.close()


def test_the_feed_reads_history_as_a_utc_frame():
    fake = FakeAlpaca()
    t0 = 1_767_225_600 * 10**9
    fake.add_bars("AAPL", [(t0 + 60 * 10**9 * i, 1.0, 2.0, 0.5, 1.5, 100.0) for i in range(5)])
    try:
        frame = AlpacaFeed(KEY, SECRET, data_url=fake.rest_url).history("AAPL", "1Min", t0 + 60 * 10**9,
                                                                        t0 + 180 * 10**9)
        assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
        assert len(frame) == 3 and str(frame.index.tz) == "UTC" and frame.index.name == "time"
    finally:
        fake.close()
