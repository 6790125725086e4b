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
from engine.oms import owns
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType, TimeInForce, can_transition
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
        if current == OrderState.PENDING_SUBMIT and order.tag == "external":
            current = OrderState.SUBMITTED  # the OMS adopts an order the venue made for the bot as SUBMITTED
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

    def __init__(self, margin_mode: int = 0, *, fake: FakeMT5 | None = None, bot_id: str | None = None,
                 fake_args: dict | None = None, adapter_args: dict | None = None, **symbol_spec) -> None:
        self.fake = fake or FakeMT5(margin_mode=margin_mode, **(fake_args or {}))
        if "EURUSD" not in self.fake.symbols:
            self.fake.add_symbol("EURUSD", 1.10000, 1.10020, **symbol_spec)
        self.sleeps: list[float] = []
        self.bot_id = bot_id or "bot1"
        self.adapter = MT5Adapter(self.fake, ["EURUSD"], login=5001, password="secret", server="FakeBroker-Demo",
                                  sleep=self.sleeps.append, clock_ns=lambda: self.fake.now_msc * 1_000_000,
                                  bot_id=bot_id, **(adapter_args or {}))
        self.sink = RecordingSink()
        self.adapter.connect(self.sink)
        self.seq = 0

    def order(self, side: str, qty: str, kind: OrderType = OrderType.MARKET, limit: str | None = None,
              stop: str | None = None, symbol: str = "EURUSD", cid: str | None = None,
              tif: TimeInForce = TimeInForce.GTC) -> Order:
        self.seq += 1
        order = Order(cid or f"{self.bot_id}-{self.seq:08d}", self.bot_id, symbol, OrderSide(side), kind, D(qty), 0,
                      limit_price=None if limit is None else D(limit), stop_price=None if stop is None else D(stop),
                      tif=tif)
        self.adapter.submit(order)
        return order

    def fills_of(self, order: Order) -> list[Fill]:
        return [f for f in self.sink.fills if f.client_order_id == order.client_order_id]

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
                                        "price": 1.105, "type_filling": 0, "magic": 0, "comment": "phone"})
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
    venue.fake.set_rates("EURUSD", FakeMT5.TIMEFRAME_M1,
                         [(t0 + 60 * i, 1.1, 1.2, 1.0, 1.15, 10, 2, 0) for i in range(5)])
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


# -- issue 16: MT5 as an EA would behave ---------------------------------------------------------
HEDGING, OTHER_EA = 2, 424242


def other_ea_deal(fake: FakeMT5, side: int, volume: float, magic: int = OTHER_EA) -> None:
    """Another Expert Advisor on the same account trades EURUSD."""
    result = fake.place_external({"action": 1, "symbol": "EURUSD", "volume": volume, "type": side,
                                  "price": fake.symbols["EURUSD"].ask, "type_filling": 0, "magic": magic,
                                  "comment": "other EA"})
    assert result.retcode == 10009


def test_each_bot_sends_its_own_magic_number_derived_from_its_id():
    a, b = Venue(bot_id="alpha"), Venue(bot_id="beta")
    a.order("BUY", "0.10")
    b.order("BUY", "0.10")
    assert a.fake.requests[0]["magic"] == mapping.magic_for("alpha") != b.fake.requests[0]["magic"]
    assert a.fake.requests[0]["comment"] == "1@alpha"


def test_on_a_hedging_account_a_bots_buy_never_closes_another_eas_sell():
    venue = Venue(HEDGING, bot_id="alpha")
    other_ea_deal(venue.fake, 1, 0.10)  # the other EA is short 0.10
    venue.order("BUY", "0.10")
    magics = sorted((p["magic"], p["type"]) for p in venue.fake.positions.values())
    assert magics == sorted([(OTHER_EA, 1), (venue.adapter.magic, 0)])  # both positions stand
    assert not venue.fake.requests[-1]["position"]
    assert [(p.symbol, p.qty) for p in venue.adapter.positions()] == [("EURUSD", D("0.10"))]


def test_two_bots_on_one_hedging_account_each_see_only_their_own_books():
    a = Venue(HEDGING, bot_id="alpha")
    b = Venue(fake=a.fake, bot_id="beta")
    a.order("BUY", "0.30")
    b.order("SELL", "0.10")
    a.adapter.poll()
    b.adapter.poll()
    assert [p.qty for p in a.adapter.positions()] == [D("0.30")]
    assert [p.qty for p in b.adapter.positions()] == [D("-0.10")]
    assert {f.client_order_id for f in a.adapter.fills_since(0)} == {"alpha-00000001"}
    assert [e for e in a.sink.events if e[1].startswith("beta") or e[1].startswith("MT5-")] == []
    assert b.adapter.open_orders() == [] and len(a.fake.positions) == 2


def test_on_a_netting_account_the_bots_position_is_its_own_deals_not_the_accounts():
    venue = Venue(bot_id="alpha")
    other_ea_deal(venue.fake, 0, 0.30)
    venue.order("SELL", "0.10")
    [account_position] = venue.fake.positions.values()
    assert account_position["volume"] == 0.2  # the venue nets everyone's deals ...
    assert [p.qty for p in venue.adapter.positions()] == [D("-0.10")]  # ... the bot's books are its own


def test_a_deal_history_that_lags_is_waited_for_and_booked_with_its_commission():
    venue = Venue(fake_args={"commission_per_lot": 7.0, "deal_lag_queries": 2})
    order = venue.order("BUY", "0.10")
    [fill] = venue.sink.fills
    assert fill.fee == D("0.70") and fill.execution_id == str(venue.fake.deals[0].ticket)
    for _ in range(3):
        venue.adapter.poll()
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill"]
    assert venue.sleeps == [0.1, 0.1]  # two polls of history, bounded by deal_wait_s


def test_a_deal_that_outlasts_the_wait_is_booked_by_the_poll_that_sees_it():
    venue = Venue(fake_args={"commission_per_lot": 7.0}, adapter_args={"deal_wait_s": 0.3, "deal_poll_s": 0.1})
    venue.fake.hold_deals()
    order = venue.order("BUY", "0.10")
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted"] and venue.sink.fills == []
    assert len(venue.sleeps) == 2  # the wait is bounded
    venue.adapter.poll()
    assert venue.sink.fills == []  # the order says executed, history has no deal yet: still not final
    assert venue.adapter.order_status(order.client_order_id).state is OrderState.ACCEPTED
    venue.fake.release_deals()
    venue.adapter.poll()
    venue.adapter.poll()
    [fill] = venue.sink.fills
    assert fill.fee == D("0.70") and venue.sink.state[order.client_order_id] is OrderState.FILLED


def test_commission_and_fee_are_the_fills_fee_and_the_swap_a_charge():
    venue = Venue(HEDGING, fake_args={"commission_per_lot": 7.0, "fee_per_deal": 0.25})
    venue.order("BUY", "0.10")
    venue.fake.rollover(swap_long_per_lot=-5.0, swap_short_per_lot=1.0)  # one night held: -0.50
    venue.fake.rollover(swap_long_per_lot=-5.0, swap_short_per_lot=1.0)  # two: -1.00
    close = venue.order("SELL", "0.10")
    opening, closing = venue.sink.fills
    assert opening.fee == D("0.95")                      # 0.70 commission + 0.25 fee
    assert [f.fee for f in venue.fills_of(close)] == [D("0.95")]  # the swap is no fee of the fill ...
    deal = venue.fake.deals[-1]
    assert -(D(str(deal.commission)) + D(str(deal.fee))) == closing.fee and deal.swap == -1.0
    # ... but the position's financing, realized on its closing deal: a SWAP charge (engine.charges)
    [swap] = venue.adapter.charges_since(0)
    assert (swap.charge_id, swap.kind, swap.amount, swap.asset, swap.ts) == \
        (f"swap:{deal.ticket}", "SWAP", D("-1.00"), "USD", closing.ts)


def test_a_fee_in_an_account_currency_other_than_the_quote_is_booked_in_its_currency():
    venue = Venue(fake_args={"commission_per_lot": 7.0, "currency": "EUR"})
    venue.order("BUY", "0.10")
    [fill] = venue.sink.fills
    assert (fill.fee_currency, fill.fee_native, fill.fee_raw) == ("EUR", D("0.70"), 0)


def _utc_ms(*args: int) -> int:
    from datetime import datetime, timezone
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def test_server_times_follow_the_servers_dst_without_being_told_the_offset():
    # an EET server (UTC+2, UTC+3 from 29 March 2026 01:00 UTC); the adapter derives the offset
    venue = Venue(fake_args={"server_tz": "EET", "start_msc": _utc_ms(2026, 3, 29, 0, 30)})
    before = venue.order("BUY", "0.10")
    assert venue.fills_of(before)[0].ts == venue.fake.now_msc * 1_000_000
    venue.fake.set_tick("EURUSD", 1.10000, 1.10020, time_msc=_utc_ms(2026, 3, 29, 1, 30))
    venue.adapter.poll()
    after = venue.order("SELL", "0.10")
    assert venue.fills_of(after)[0].ts == _utc_ms(2026, 3, 29, 1, 30) * 1_000_000
    assert [f.ts for f in venue.adapter.fills_since(0)] == [f.ts for f in venue.sink.fills]


def test_a_comment_the_broker_truncates_still_finds_the_order_after_a_restart():
    venue = Venue(bot_id="mt5-sma")
    venue.fake.rewrite_comments(lambda c: c[:4])  # "1@mt5-sma" is stored as "1@mt"
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09000")
    restarted = MT5Adapter(venue.fake, ["EURUSD"], bot_id="mt5-sma", sleep=lambda s: None,
                           clock_ns=lambda: venue.fake.now_msc * 1_000_000)
    restarted.connect(RecordingSink())
    status = restarted.order_status(order.client_order_id)
    assert status is not None and status.state is OrderState.ACCEPTED
    assert [o.client_order_id for o in restarted.open_orders()] == [order.client_order_id]


def test_a_lost_answer_under_a_rewritten_comment_is_found_by_magic_and_terms_not_resent():
    venue = Venue(bot_id="alpha", fake_args={"commission_per_lot": 7.0})
    venue.fake.rewrite_comments(lambda c: "bridge#81")  # the broker's bridge replaces every comment
    venue.fake.lose_next_answer()
    order = venue.order("BUY", "0.10")
    assert venue.orders_sent() == 1
    assert [(f.client_order_id, f.fee) for f in venue.sink.fills] == [(order.client_order_id, D("0.70"))]
    assert order.venue_order_id == str(next(iter(venue.fake.history)))
    venue.adapter.poll()
    assert len(venue.sink.fills) == 1 and all(not e[1].startswith("MT5-") for e in venue.sink.events)


def test_a_timeout_retcode_is_resolved_by_lookup_and_never_resent():
    venue = Venue(bot_id="alpha")
    venue.fake.lose_next_answer(retcode=10012)  # executed at the server, answered TIMEOUT
    order = venue.order("BUY", "0.10")
    assert venue.orders_sent() == 1 and len(venue.fake.deals) == 1
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill"]


def test_a_timeout_retcode_that_did_not_execute_is_sent_again_once():
    venue = Venue(bot_id="alpha")
    venue.fake.fail_next(10012)  # refused by timeout: nothing at the server
    order = venue.order("BUY", "0.10")
    assert len(venue.fake.check_calls) == 2 and len(venue.fake.deals) == 1
    assert venue.sink.state[order.client_order_id] is OrderState.FILLED


def test_order_check_runs_before_every_order_send_and_a_refusal_sends_nothing(venue):
    venue.order("BUY", "0.10")
    assert len(venue.fake.check_calls) == len(venue.fake.requests) == 1
    order = venue.order("BUY", "90")  # 90 lots need 99,018 USD of margin: the account has 10,000
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, RejectReason.INSUFFICIENT_FUNDS)
    assert len(venue.fake.requests) == 1 and len(venue.fake.check_calls) == 2


def test_a_requote_in_instant_execution_is_resent_at_the_new_price():
    venue = Venue(trade_exemode=1)  # Instant execution: the server requotes beyond the deviation
    venue.fake.move_on_next_send(1.10100, 1.10120)
    order = venue.order("BUY", "0.10")
    assert [r["price"] for r in venue.fake.requests] == [1.1002, 1.1012]
    assert [f.price for f in venue.fills_of(order)] == [D("1.10120")] and venue.sleeps == [0.25]


def test_an_ioc_limit_away_from_the_market_is_canceled_not_left_resting(venue):
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09000", tif=TimeInForce.IOC)
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "canceled"]
    assert venue.fake.requests == [] and venue.fake.orders == {}


def test_a_marketable_ioc_limit_is_a_deal_bounded_by_its_limit():
    venue = Venue(filling_mode=1 | 2)
    venue.fake.liquidity["EURUSD"] = 0.04
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.10030", tif=TimeInForce.IOC)
    request = venue.fake.requests[0]
    assert (request["action"], request["type"], request["type_filling"], request["deviation"]) == (1, 0, 1, 10)
    assert venue.sink.kinds(order.client_order_id) == ["submitted", "accepted", "fill", "canceled"]
    assert venue.sink.fills[0].qty == D("0.04") and venue.fake.orders == {}


def test_a_fok_limit_that_cannot_fill_whole_fills_nothing():
    venue = Venue()
    venue.fake.liquidity["EURUSD"] = 0.04
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.10030", tif=TimeInForce.FOK)
    assert venue.fake.requests[0]["type_filling"] == 0
    assert venue.sink.state[order.client_order_id] is OrderState.REJECTED and venue.fake.deals == []


def test_an_ioc_limit_on_an_exchange_symbol_is_a_pending_order_that_never_rests():
    venue = Venue(trade_exemode=3, filling_mode=1 | 2)
    venue.fake.liquidity["EURUSD"] = 0.04
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.10030", tif=TimeInForce.IOC)
    assert (venue.fake.requests[0]["action"], venue.fake.requests[0]["type_filling"]) == (5, 1)
    assert [f.qty for f in venue.sink.fills] == [D("0.04")]
    venue.adapter.poll()
    assert venue.sink.state[order.client_order_id] is OrderState.CANCELED and venue.fake.orders == {}


def test_an_ioc_stop_keeps_its_filling_and_cancels_what_it_cannot_fill_when_triggered():
    venue = Venue(filling_mode=1 | 2)
    order = venue.order("BUY", "0.10", OrderType.STOP, stop="1.10100", tif=TimeInForce.IOC)
    request = venue.fake.requests[0]
    assert (request["action"], request["type_filling"], request["type_time"]) == (5, 1, 0)
    venue.fake.liquidity["EURUSD"] = 0.03
    venue.fake.set_tick("EURUSD", 1.10100, 1.10120)
    venue.adapter.poll()
    assert [f.qty for f in venue.sink.fills] == [D("0.03")]
    assert venue.sink.state[order.client_order_id] is OrderState.CANCELED and venue.fake.orders == {}


def test_an_ioc_order_on_a_symbol_without_ioc_is_refused_unsupported():
    venue = Venue(filling_mode=1)  # FOK only
    order = venue.order("BUY", "0.10", tif=TimeInForce.IOC)
    assert venue.sink.events[-1] == ("rejected", order.client_order_id, RejectReason.UNSUPPORTED)
    assert venue.fake.requests == []


def test_a_return_market_order_on_an_exchange_keeps_its_remainder_working():
    venue = Venue(trade_exemode=3, filling_mode=0)  # RETURN only
    venue.fake.liquidity["EURUSD"] = 0.04
    order = venue.order("BUY", "0.10")
    assert venue.fake.requests[0]["type_filling"] == 2
    assert venue.sink.state[order.client_order_id] is OrderState.PARTIALLY_FILLED
    del venue.fake.liquidity["EURUSD"]
    venue.fake.set_tick("EURUSD", 1.10000, 1.10020)
    venue.adapter.poll()
    assert [f.qty for f in venue.fills_of(order)] == [D("0.04"), D("0.06")]
    assert venue.sink.state[order.client_order_id] is OrderState.FILLED


def test_sl_and_tp_go_on_the_bots_positions_and_a_stop_out_comes_back_as_a_fill():
    venue = Venue(HEDGING, bot_id="alpha", fake_args={"commission_per_lot": 7.0})
    other_ea_deal(venue.fake, 0, 0.20)
    venue.order("BUY", "0.10")
    assert venue.adapter.set_position_stops("EURUSD", D("1.09500"), D("1.11000")) == [None]
    ours = [p for p in venue.fake.positions.values() if p["magic"] == venue.adapter.magic]
    theirs = [p for p in venue.fake.positions.values() if p["magic"] == OTHER_EA]
    assert (ours[0]["sl"], ours[0]["tp"], theirs[0]["sl"]) == (1.095, 1.11, 0.0)
    assert venue.fake.requests[-1]["action"] == 6
    assert venue.adapter.set_position_stops("EURUSD", D("1.10500"), None) == [mapping.INVALID_STOPS]
    venue.fake.set_tick("EURUSD", 1.09490, 1.09510)  # the server closes our position at its SL
    venue.adapter.poll()
    closing = venue.sink.fills[-1]
    assert ((closing.side, closing.qty, closing.price, closing.fee)
            == (OrderSide.SELL, D("0.10"), D("1.09490"), D("0.70")))
    assert closing.client_order_id == f"alpha-venue-{venue.fake.deals[-1].order}"  # the server's order, on our magic
    assert owns("alpha", closing.client_order_id) and venue.adapter.positions() == []  # the bot's books take it
    assert [p["magic"] for p in venue.fake.positions.values()] == [OTHER_EA]


class Bridge:
    """An object shaped like mt5linux's MetaTrader5 instance (1.1.1): the module's functions and
    constants as attributes of an object, results as copies whose fields are attributes (not
    named tuples), sequences as lists, and dates that must be datetimes where mt5linux writes
    `date_from.astimezone()` into the code it evaluates in the terminal's container. The adapter
    and the feed must work through it unchanged."""

    DATETIME_ARGS = {"copy_ticks_from": (1,), "copy_ticks_range": (1, 2), "copy_rates_range": (2, 3),
                     "history_orders_total": (0, 1), "history_deals_total": (0, 1)}

    class Proxy:
        def __init__(self, values: dict) -> None:
            self._values = values

        def __getattr__(self, name: str):
            try:
                return self._values[name]
            except KeyError:
                raise AttributeError(name) from None

    def __init__(self, fake: FakeMT5) -> None:
        self._fake = fake

    def __getattr__(self, name: str):
        target = getattr(self._fake, name)
        if not callable(target):
            return target
        def call(*args, **kwargs):
            for i in Bridge.DATETIME_ARGS.get(name, ()):
                args[i].astimezone()  # what mt5linux does: an int here is an AttributeError
            return self._wrap(target(*args, **kwargs))
        return call

    def _wrap(self, value):
        if hasattr(value, "_asdict"):
            return Bridge.Proxy({k: self._wrap(v) for k, v in value._asdict().items()})
        if isinstance(value, tuple) and not isinstance(value, (str, bytes)):
            return [self._wrap(v) for v in value]
        return value


def test_the_adapter_works_through_an_object_of_mt5linuxs_shape():
    fake = FakeMT5(margin_mode=HEDGING, commission_per_lot=7.0)
    fake.add_symbol("EURUSD", 1.10000, 1.10020)
    adapter = MT5Adapter(Bridge(fake), ["EURUSD"], login=5001, password="secret", server="FakeBroker-Demo",
                         bot_id="alpha", sleep=lambda s: None, clock_ns=lambda: fake.now_msc * 1_000_000)
    sink = RecordingSink()
    adapter.connect(sink)
    buy = Order("alpha-00000001", "alpha", "EURUSD", OrderSide.BUY, OrderType.MARKET, D("0.10"), 0)
    limit = Order("alpha-00000002", "alpha", "EURUSD", OrderSide.SELL, OrderType.LIMIT, D("0.10"), 0,
                  limit_price=D("1.10500"))
    adapter.submit(buy)
    adapter.submit(limit)
    fake.set_tick("EURUSD", 1.10500, 1.10520)
    adapter.poll()
    assert [(f.client_order_id, f.fee) for f in sink.fills] == [("alpha-00000001", D("0.70")),
                                                                 ("alpha-00000002", D("0.70"))]
    assert adapter.positions() == [] and len(fake.positions) == 2  # hedging: a sell limit opens its own short
    assert adapter.account().cash == D(str(round(fake.balance, 2)))
    feed = MT5Feed(Bridge(fake), lock=adapter.lock)
    seen = []
    feed.subscribe(["EURUSD"], seen.append)
    fake.set_tick("EURUSD", 1.10510, 1.10530)
    feed.poll()
    assert [(t.bid, t.ask) for t in seen][-1] == (1.1051, 1.1053)


def test_after_a_restart_the_stored_ticket_finds_an_order_whose_comment_was_replaced():
    venue = Venue(bot_id="alpha")
    venue.fake.rewrite_comments(lambda c: "bridge#81")
    order = venue.order("BUY", "0.10", OrderType.LIMIT, limit="1.09000")
    assert order.venue_order_id == str(next(iter(venue.fake.orders)))  # journaled with the order
    restarted = MT5Adapter(venue.fake, ["EURUSD"], bot_id="alpha", sleep=lambda s: None,
                           clock_ns=lambda: venue.fake.now_msc * 1_000_000)
    restarted.connect(RecordingSink())
    assert restarted.order_status(order.client_order_id) is None  # nothing at the venue names it ...
    stored = Order(order.client_order_id, "alpha", "EURUSD", OrderSide.BUY, OrderType.LIMIT, D("0.10"), 0,
                   limit_price=D("1.09000"), venue_order_id=order.venue_order_id)
    restarted.remember([stored])                                  # ... but the store has its ticket
    assert restarted.order_status(order.client_order_id).state is OrderState.ACCEPTED
    assert [o.client_order_id for o in restarted.open_orders()] == [order.client_order_id]
