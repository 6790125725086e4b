"""The MetaTrader 5 adapter against the fake terminal (tests/fakes/mt5_fake.py).

The fake stands in for the MetaTrader5 module itself; nothing inside the adapter is mocked.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from brokers.base import RejectReason
from brokers.mt5 import MT5Adapter, MT5Feed
from brokers.mt5 import mapping
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType, can_transition
from tests.fakes.mt5_fake import FakeMT5

D = Decimal


class RecordingSink:
    """An ExecutionSink that keeps every report and insists on legal transitions."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.state: dict[str, OrderState] = {}
        self.fills: list[Fill] = []

    def _move(self, order: Order, new: OrderState) -> None:
        current = self.state.get(order.client_order_id, OrderState.PENDING_SUBMIT)
        if current == OrderState.PENDING_SUBMIT and order.client_order_id.startswith(mapping.EXTERNAL_PREFIX):
            current = OrderState.SUBMITTED  # the OMS adopts an external order as SUBMITTED
        assert can_transition(current, new), f"{order.client_order_id}: {current} -> {new}"
        self.state[order.client_order_id] = new

    def on_submitted(self, order, ts):
        self._move(order, OrderState.SUBMITTED)
        self.events.append(("submitted", order.client_order_id))

    def on_accepted(self, order, ts):
        self._move(order, OrderState.ACCEPTED)
        self.events.append(("accepted", order.client_order_id))

    def on_rejected(self, order, ts, reason):
        self._move(order, OrderState.REJECTED)
        self.events.append(("rejected", order.client_order_id, str(reason)))

    def on_canceled(self, order, ts, reason):
        self._move(order, OrderState.CANCELED)
        self.events.append(("canceled", order.client_order_id, reason))

    def on_fill(self, order, fill, bar):
        filled = sum((f.qty for f in self.fills if f.client_order_id == order.client_order_id), D(0)) + fill.qty
        self._move(order, OrderState.FILLED if order.qty is not None and filled >= order.qty
                   else OrderState.PARTIALLY_FILLED)
        self.fills.append(fill)
        self.events.append(("fill", order.client_order_id, str(fill.qty), str(fill.price)))

    def kinds(self, cid: str) -> list[str]:
        return [e[0] for e in self.events if e[1] == cid]


class Venue:
    """A fake terminal, the adapter on it, and a recording sink."""

    def __init__(self, margin_mode: int = 0, **symbol_spec) -> None:
        self.fake = FakeMT5(margin_mode=margin_mode)
        self.fake.add_symbol("EURUSD", 1.10000, 1.10020, **symbol_spec)
        self.sleeps: list[float] = []
        self.adapter = MT5Adapter(self.fake, ["EURUSD"], login=5001, password="secret", server="FakeBroker-Demo",
                                  sleep=self.sleeps.append, clock_ns=lambda: self.fake.now_msc * 1_000_000)
        self.sink = RecordingSink()
        self.adapter.connect(self.sink)
        self.seq = 0

    def order(self, side: str, qty: str, kind: OrderType = OrderType.MARKET, limit: str | None = None,
              stop: str | None = None, symbol: str = "EURUSD", cid: str | None = None) -> Order:
        self.seq += 1
        order = Order(cid or f"bot1-{self.seq:08d}", "bot1", symbol, OrderSide(side), kind, D(qty), 0,
                      limit_price=None if limit is None else D(limit), stop_price=None if stop is None else D(stop))
        self.adapter.submit(order)
        return order

    def orders_sent(self) -> int:
        return sum(1 for r in self.fake.requests if r["action"] in (1, 5))


@pytest.fixture
def venue() -> Venue:
    return Venue()


def test_instruments_carry_the_symbols_volume_and_price_grid(venue):
    eurusd = venue.adapter.instruments()["EURUSD"]
    assert (eurusd.price_increment, eurusd.size_increment, eurusd.min_qty, eurusd.max_qty) == \
        (D("0.00001"), D("0.01"), D("0.01"), D("100"))
    assert eurusd.multiplier == D(100000) and eurusd.venue == "MT5"


def test_market_buy_fills_at_the_ask_with_the_deal_ticket_as_execution_id(venue):
    order = venue.order("BUY", "0.10")
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill"]
    fill = venue.sink.fills[0]
    assert (fill.qty, fill.price, fill.side) == (D("0.10"), D("1.10020"), OrderSide.BUY)
    assert fill.execution_id == str(venue.fake.deals[0].ticket)
    request = venue.fake.requests[0]
    assert (request["action"], request["magic"], request["comment"]) == (1, mapping.TICKBRIDGE_MAGIC,
                                                                          order.client_order_id)


@pytest.mark.parametrize("kind,side,limit,stop,trigger", [
    (OrderType.LIMIT, "BUY", "1.09900", None, (1.09880, 1.09900)),
    (OrderType.LIMIT, "SELL", "1.10200", None, (1.10200, 1.10220)),
    (OrderType.STOP, "BUY", None, "1.10100", (1.10090, 1.10110)),
    (OrderType.STOP, "SELL", None, "1.09900", (1.09890, 1.09910)),
    (OrderType.STOP_LIMIT, "BUY", "1.10150", "1.10100", (1.10090, 1.10110)),
])
def test_pending_orders_rest_then_fill_when_the_market_reaches_them(venue, kind, side, limit, stop, trigger):
    order = venue.order(side, "0.20", kind, limit=limit, stop=stop)
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted"]
    assert venue.fake.requests[0]["action"] == 5
    venue.fake.set_tick("EURUSD", *trigger)
    venue.adapter.poll()
    venue.adapter.poll()
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill"]
    assert venue.sink.fills[0].qty == D("0.20")


def test_stop_limit_sends_the_trigger_as_price_and_the_limit_as_stoplimit(venue):
    venue.order("BUY", "0.10", OrderType.STOP_LIMIT, limit="1.10150", stop="1.10100")
    request = venue.fake.requests[0]
    assert (request["type"], request["price"], request["stoplimit"]) == (6, 1.101, 1.1015)


def test_cancel_removes_a_pending_order(venue):
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09000")
    venue.adapter.cancel(order)
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "canceled"]
    assert venue.fake.orders == {}
    assert venue.adapter.open_orders() == []


def test_partial_fills_are_reported_once_each_across_polls(venue):
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09000")
    ticket = next(iter(venue.fake.orders))
    venue.fake.fill_order(ticket, 0.04, 1.09)
    venue.adapter.poll()
    assert venue.sink.state[order.client_order_id] is OrderState.PARTIALLY_FILLED
    status = venue.adapter.order_status(order.client_order_id)
    assert (status.state, status.filled_qty, status.qty) == (OrderState.PARTIALLY_FILLED, D("0.04"), D("0.10"))
    venue.fake.fill_order(ticket, 0.06, 1.09)
    for _ in range(3):
        venue.adapter.poll()
    assert [f.qty for f in venue.sink.fills] == [D("0.04"), D("0.06")]
    assert venue.sink.state[order.client_order_id] is OrderState.FILLED


def test_a_market_order_partly_filled_under_ioc_reports_the_fill_then_the_cancel():
    venue = Venue(filling_mode=2)  # IOC only
    venue.fake.liquidity["EURUSD"] = 0.03
    order = venue.order("BUY", "0.10")
    assert venue.fake.requests[0]["type_filling"] == 1
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill", "canceled"]
    assert venue.sink.fills[0].qty == D("0.03")
    venue.adapter.poll()
    assert len(venue.sink.fills) == 1


@pytest.mark.parametrize("mask,exemode,pending,expected", [
    (1 | 2, 2, False, 0), (2, 2, False, 1), (0, 1, False, 2), (1 | 2, 3, True, 2), (2, 2, True, 1)])
def test_type_filling_follows_the_symbols_mask(mask, exemode, pending, expected):
    assert mapping.filling_for(mask, exemode, pending) == expected


@pytest.mark.parametrize("retcode,reason", [
    (10019, RejectReason.INSUFFICIENT_FUNDS), (10018, RejectReason.MARKET_CLOSED),
    (10030, RejectReason.UNSUPPORTED), (10016, mapping.INVALID_STOPS), (10014, RejectReason.QTY_OFF_GRID),
    (10006, RejectReason.INVALID_ORDER), (10017, mapping.TRADE_DISABLED)])
def test_retcodes_map_to_reasons(venue, retcode, reason):
    venue.fake.fail_next(retcode)
    order = venue.order("BUY", "0.10")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, str(reason))
    assert venue.fake.positions == {}


def test_every_documented_retcode_has_a_reason():
    codes = [v for k, v in vars(FakeMT5).items() if k.startswith("TRADE_RETCODE_")]
    assert set(codes) - set(mapping.SUCCESS_RETCODES) <= set(mapping.RETCODE_REASONS)


def test_a_requote_is_retried_with_a_fresh_price_and_fills_once(venue):
    venue.fake.fail_next(10004)
    order = venue.order("SELL", "0.10")
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill"]
    assert len(venue.fake.deals) == 1 and venue.sleeps == [0.25]


def test_too_many_requests_backs_off_exponentially_then_rejects_rate_limited(venue):
    for _ in range(3):
        venue.fake.fail_next(10024)
    order = venue.order("BUY", "0.10")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, "RATE_LIMITED")
    assert venue.sleeps == [0.25, 0.5]
    assert venue.fake.deals == []


@pytest.mark.parametrize("qty,reason", [("0.001", RejectReason.QTY_OFF_GRID), ("0.005", RejectReason.QTY_OFF_GRID),
                                        ("0", RejectReason.QTY_BELOW_MIN), ("100.01", RejectReason.QTY_ABOVE_MAX)])
def test_volume_off_grid_or_outside_min_max_is_refused_before_sending(venue, qty, reason):
    order = venue.order("BUY", qty)
    assert venue.sink.events == [("submitted", order.client_order_id), ("rejected", order.client_order_id, reason)]
    assert venue.fake.requests == []


def test_volume_below_the_minimum_is_refused():
    venue = Venue(volume_min=0.1, volume_step=0.01)
    order = venue.order("BUY", "0.05")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, RejectReason.QTY_BELOW_MIN)


def test_round_volume_floors_onto_the_volume_step(venue):
    assert venue.adapter.round_volume("EURUSD", D("0.12999")) == D("0.12")


def test_an_unknown_symbol_is_rejected_without_a_request(venue):
    order = venue.order("BUY", "0.10", symbol="NOPE")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, RejectReason.UNKNOWN_SYMBOL)
    assert venue.fake.requests == []


def test_a_closed_market_is_rejected_market_closed(venue):
    venue.fake.market_open("EURUSD", False)
    order = venue.order("BUY", "0.10")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, RejectReason.MARKET_CLOSED)


def test_a_pending_price_inside_the_stops_level_is_refused_before_sending():
    venue = Venue(stops_level=50)  # 50 points = 0.00050
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09990")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, mapping.INVALID_PRICE)
    assert venue.fake.requests == []
    ok = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09960")
    assert venue.sink.kinds(ok.client_order_id) == ["submitted", "accepted"]


def test_a_price_off_the_tick_grid_is_refused(venue):
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.099001")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, RejectReason.PRICE_OFF_GRID)


def test_a_lost_answer_is_resolved_by_comment_without_a_second_order(venue):
    venue.fake.lose_next_answer()
    order = venue.order("BUY", "0.10")
    assert venue.orders_sent() == 1
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill"]
    venue.adapter.poll()
    assert len(venue.sink.fills) == 1


def test_a_call_that_never_reached_the_server_is_sent_again_after_the_lookup(venue):
    venue.fake.drop_next_call()
    order = venue.order("BUY", "0.10")
    assert len(venue.fake.history) == 1  # exactly one order at the venue
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill"]


def test_a_lost_answer_with_the_terminal_gone_is_resolved_by_the_next_poll(venue):
    venue.fake.lose_next_answer(disconnect=True)
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09000")
    assert venue.sink.kinds(order.client_order_id) == ["submitted"]
    assert venue.adapter.poll() is False
    venue.fake.restore()
    assert venue.adapter.poll() is True
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted"]
    assert venue.orders_sent() == 1


def test_a_submit_while_the_terminal_is_unreachable_is_rejected_venue_error_without_sending(venue):
    venue.fake.drop_next_call()
    venue.fake.disconnect()
    order = venue.order("BUY", "0.10")
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, RejectReason.VENUE_ERROR)
    assert venue.fake.requests == []


def test_terminal_drop_then_reconnect_reports_the_fills_missed_meanwhile(venue):
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09900")
    venue.fake.disconnect()
    venue.fake.set_tick("EURUSD", 1.09880, 1.09890)  # fills while the adapter is blind
    assert venue.adapter.poll() is False
    venue.fake.restore()
    assert venue.adapter.poll() is True
    assert venue.adapter.reconnects == 1
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill"]
    venue.adapter.poll()
    assert len(venue.sink.fills) == 1


def test_an_unknown_venue_order_is_reported_as_external(venue):
    result = venue.fake.place_external({"action": 5, "symbol": "EURUSD", "volume": 0.5, "type": 3,
                                        "price": 1.105, "type_filling": 2, "magic": 0, "comment": "phone"})
    venue.adapter.poll()
    cid = f"MT5-{result.order}"
    assert venue.sink.events[-1] == ("accepted", cid)
    [external] = venue.adapter.open_orders()
    assert (external.client_order_id, external.side, external.type, external.qty, external.limit_price) == \
        (cid, OrderSide.SELL, OrderType.LIMIT, D("0.50"), D("1.10500"))
    venue.adapter.poll()
    assert venue.sink.events.count(("accepted", cid)) == 1


def test_netting_positions_and_account_are_exact_decimals(venue):
    venue.order("BUY", "0.10")
    venue.order("SELL", "0.30")
    [position] = venue.adapter.positions()
    assert (position.symbol, position.qty, position.avg_price) == ("EURUSD", D("-0.20"), D("1.10000"))
    account = venue.adapter.account()
    assert account.currency == "USD" and account.cash == D("9998.00")
    assert isinstance(account.equity, Decimal) and account.buying_power is not None


def test_hedging_sell_closes_the_long_position_instead_of_opening_a_short():
    venue = Venue(margin_mode=2)
    venue.order("BUY", "0.10")
    venue.order("SELL", "0.10")
    assert venue.fake.positions == {}
    opened = venue.fake.deals[0].position_id
    assert venue.fake.requests[-1]["position"] == opened
    assert venue.adapter.positions() == []


def test_hedging_reversal_closes_then_opens_the_rest_as_one_client_order():
    venue = Venue(margin_mode=2)
    venue.order("BUY", "0.10")
    sell = venue.order("SELL", "0.30")
    assert [r.get("position", 0) != 0 for r in venue.fake.requests] == [False, True, False]
    assert [f.qty for f in venue.sink.fills if f.client_order_id == sell.client_order_id] == [D("0.10"), D("0.20")]
    assert venue.sink.state[sell.client_order_id] is OrderState.FILLED
    [position] = venue.adapter.positions()
    assert position.qty == D("-0.20")
    status = venue.adapter.order_status(sell.client_order_id)
    assert (status.qty, status.filled_qty, status.state) == (D("0.30"), D("0.30"), OrderState.FILLED)


def test_a_long_client_id_travels_as_a_hashed_comment_and_is_found_again(venue):
    cid = "a-very-long-bot-name-for-the-eurusd-book-00000001"
    venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09000", cid=cid)
    comment = venue.fake.requests[0]["comment"]
    assert comment.startswith("#") and len(comment) == 31
    fresh = MT5Adapter(venue.fake, ["EURUSD"], sleep=lambda s: None)  # a restarted engine
    fresh.connect(RecordingSink())
    assert fresh.order_status(cid).state is OrderState.ACCEPTED


def test_fills_since_returns_deals_with_client_ids(venue):
    order = venue.order("BUY", "0.10")
    fills = venue.adapter.fills_since(0)
    assert [(f.client_order_id, f.qty) for f in fills] == [(order.client_order_id, D("0.10"))]
    assert venue.adapter.fills_since(fills[0].ts + 1_000_000_000) == []


def test_server_time_zone_is_converted_to_utc():
    fake = FakeMT5(server_offset_s=7200)
    fake.add_symbol("EURUSD", 1.1, 1.1002)
    adapter = MT5Adapter(fake, ["EURUSD"], server_utc_offset_s=7200, sleep=lambda s: None,
                         clock_ns=lambda: fake.now_msc * 1_000_000)
    sink = RecordingSink()
    adapter.connect(sink)
    adapter.submit(Order("c-1", "bot1", "EURUSD", OrderSide.BUY, OrderType.MARKET, D("0.01"), 0))
    assert sink.fills[0].ts == fake.now_msc * 1_000_000


def test_a_refused_login_raises():
    fake = FakeMT5()
    fake.add_symbol("EURUSD", 1.1, 1.1002)
    with pytest.raises(PermissionError):
        MT5Adapter(fake, ["EURUSD"], login=5001, password="wrong").connect(RecordingSink())


def test_nothing_is_duplicated_across_a_busy_session(venue):
    orders = [venue.order("BUY", "0.10"), venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09900"),
              venue.order("SELL", "0.10", OrderType.STOP, stop="1.09800")]
    venue.fake.set_tick("EURUSD", 1.09850, 1.09870)
    venue.fake.set_tick("EURUSD", 1.09700, 1.09720)
    for _ in range(3):
        venue.adapter.poll()
    ids = [f.execution_id for f in venue.sink.fills]
    assert len(ids) == len(set(ids)) == 3
    assert Counter(e[0] for e in venue.sink.events)["submitted"] == len(orders)


def test_the_feed_delivers_each_tick_once(venue):
    feed = MT5Feed(venue.fake, lock=venue.adapter.lock)
    seen = []
    feed.subscribe(["EURUSD"], seen.append)
    feed.poll()
    venue.fake.set_tick("EURUSD", 1.1001, 1.1003, time_msc=venue.fake.now_msc)
    venue.fake.set_tick("EURUSD", 1.1002, 1.1004)
    feed.poll()
    feed.poll()
    assert [(t.bid, t.ask) for t in seen] == [(1.1, 1.1002), (1.1001, 1.1003), (1.1002, 1.1004)]
    assert seen[-1].ts == venue.fake.now_msc * 1_000_000


def test_the_feed_reads_bars_as_a_utc_frame(venue):
    t0 = 1_700_000_000
    venue.fake.set_rates("EURUSD", FakeMT5.TIMEFRAME_M1, [(t0 + 60 * i, 1.1, 1.2, 1.0, 1.15, 10, 2, 0) for i in range(5)])
    frame = MT5Feed(venue.fake).history("EURUSD", "M1", (t0 + 60) * 10**9, (t0 + 180) * 10**9)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert len(frame) == 3 and str(frame.index.tz) == "UTC" and frame.index.name == "time"


def test_an_equity_fraction_order_is_sized_at_submit_and_floored_to_the_volume_step(venue):
    order = Order("bot1-frac", "bot1", "EURUSD", OrderSide.BUY, OrderType.MARKET, None, 0,
                  equity_fraction=D("0.5"))
    venue.adapter.submit(order)
    # 0.5 x 10,000 USD of exposure at 1.10020 x 100,000 per lot = 0.0454 lots -> 0.04
    assert order.qty == D("0.04") and venue.sink.fills[0].qty == D("0.04")


def test_hedging_a_lost_answer_on_the_closing_request_is_not_resent_and_the_rest_opens_once():
    venue = Venue(margin_mode=2)
    venue.order("BUY", "0.10")
    venue.fake.lose_next_answer()
    sell = venue.order("SELL", "0.30")
    assert venue.orders_sent() == 3  # buy, close 0.10 (answer lost, found by comment), open 0.20
    assert [f.qty for f in venue.sink.fills if f.client_order_id == sell.client_order_id] == [D("0.10"), D("0.20")]
    assert [p.qty for p in venue.adapter.positions()] == [D("-0.20")]
