"""Alpaca's native protective orders (issue 17 item 3, issue 16 item 3): a bracket as ONE
order_class=bracket request whose legs reach the engine under the children's client ids, the
children of an entry sent alone as an OCO exit after its fill, an OCO exit, a trailing stop that
ratchets and fills, amend through replace_order_by_id, and what Alpaca cannot take refused with a
reason. A real OMS and Strategy on the real alpaca-py SDK against the loopback fake
(tests/fakes/alpaca_fake.py); nothing inside the SDK or the adapter is mocked. Waiting is on
counters (adapter_settled), never on time.

`with adapter.hold():` around a strategy call stands in for the OMS change proposed with this work
(OrderManager.linked(): the Strategy opens it around an entry and its bracket), so the three
orders are journaled before the one request leaves."""

from __future__ import annotations

import contextlib

import time
from decimal import Decimal

import pandas as pd
import pytest

pytest.importorskip("alpaca", reason="alpaca-py is not installed (pip install alpaca-py==0.44.0)")

from brokers.alpaca.adapter import AlpacaAdapter  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderEvent, OrderSide, OrderState, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from strategies.base import BarData, Strategy  # noqa: E402
from tests.fakes.alpaca_fake import KEY, SECRET, FakeAlpaca, adapter_settled  # noqa: E402

D = Decimal
DEADLINE_S = 20.0


class Plain(Strategy):
    name = "plain"
    protective = True


class Journal:
    """The write-ahead journal's order: each event with how many orders the venue had been sent."""

    def __init__(self, fake: FakeAlpaca) -> None:
        self.fake = fake
        self.events: list[tuple[str, OrderState, int]] = []

    def record_event(self, order: Order, event: OrderEvent) -> None:
        self.events.append((order.client_order_id, event.state, self.fake.posted_orders))

    def record_fill(self, order, fill) -> None:
        pass

    def record_position(self, portfolio, symbol, ts) -> None:
        pass

    def flush(self) -> None:
        pass

    write_ahead = settle = flush


class Bot:
    def __init__(self, symbols: tuple[str, ...] = ("AAPL",)) -> None:
        self.fake = FakeAlpaca(cash="100000")
        self.fake.add_asset("AAPL", "150.00", fractionable=False)
        self.fake.add_asset("BTC/USD", "60000", asset_class="crypto", min_order_size="0.0001",
                            min_trade_increment="0.000000001", price_increment="1")
        self.adapter = AlpacaAdapter(KEY, SECRET, list(symbols), url_override=self.fake.rest_url,
                                     stream_url=self.fake.stream_url, sleep=lambda s: None,
                                     stream_backoff_s=(0.01, 0.05))
        self.journal = Journal(self.fake)
        self.oms = OrderManager("bot1", LiveClock(), self.adapter, Portfolio(D(0), 2), {}, journal=self.journal)
        self.oms.instruments.update(self.adapter.instruments())
        self.oms.portfolio = Portfolio.for_instrument(D(100_000), self.oms.instruments[symbols[0]])
        self.strategy = self.strategy_on(symbols[0])

    def strategy_on(self, symbol: str) -> Plain:
        frame = pd.DataFrame({"open": [150.0], "high": [150.0], "low": [150.0], "close": [150.0], "volume": [1.0]},
                             index=pd.DatetimeIndex([pd.Timestamp("2026-01-02", tz="UTC")]))
        strategy = Plain(Plain.Params())
        strategy.attach(BarData(frame), symbol)
        strategy.connect(self.oms)
        strategy.i = 0
        return strategy

    def settle(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not adapter_settled(self.fake, self.adapter):
            assert time.monotonic() < deadline, "the adapter did not settle"
            time.sleep(0.002)

    def posts(self) -> list[dict]:
        return [body for method, path, body in self.fake.requests if method == "POST" and path == "/v2/orders"]

    def state(self, order: Order) -> OrderState:
        return self.oms.orders[order.client_order_id].state

    def fills_of(self, order: Order) -> list[tuple[Decimal, Decimal]]:
        return [(f.qty, f.price) for f in self.oms.fills if f.client_order_id == order.client_order_id]

    def close(self) -> None:
        self.adapter.close()
        self.fake.close()


@pytest.fixture
def bot():
    b = Bot()
    yield b
    b.close()


def children(bot: Bot, entry: Order) -> tuple[Order, Order]:
    stop, take = (o for o in bot.oms.orders.values() if o.parent_id == entry.client_order_id)
    return stop, take


def test_a_bracket_is_one_request_and_each_leg_reaches_the_engine_under_its_child_id(bot):
    with bot.adapter.hold():
        entry = bot.strategy.buy(qty=D(10), sl=140, tp=160)
    stop, take = children(bot, entry)
    bot.settle()
    # the write-ahead rule: all three journaled before the one request left
    pending = [(cid, sent) for cid, state, sent in bot.journal.events if state is OrderState.PENDING_SUBMIT]
    assert pending == [(entry.client_order_id, 0), (stop.client_order_id, 0), (take.client_order_id, 0)]
    [post] = bot.posts()
    assert (post["order_class"], post["client_order_id"], post["type"], post["qty"]) == (
        "bracket", entry.client_order_id, "market", 10)
    assert (post["take_profit"], post["stop_loss"]) == ({"limit_price": 160}, {"stop_price": 140})
    assert bot.state(entry) is OrderState.FILLED
    assert (bot.state(stop), bot.state(take)) == (OrderState.ACCEPTED, OrderState.ACCEPTED)

    bot.fake.set_price("AAPL", "161")   # the take-profit leg fills at its limit; Alpaca cancels the stop
    bot.settle()
    assert bot.state(take) is OrderState.FILLED and bot.fills_of(take) == [(D(10), D(160))]
    assert bot.state(stop) is OrderState.CANCELED and bot.fills_of(stop) == []
    assert bot.oms.portfolio.positions["AAPL"].qty == 0
    assert bot.oms.foreign_reports == 0 and not bot.oms.external   # no leg arrived under Alpaca's own id
    assert len(bot.posts()) == 1


def test_an_entry_sent_alone_gets_its_bracket_as_an_oco_exit_once_it_filled(bot):
    # an engine that sends the entry before its children (no OrderManager.linked() block, as a
    # caller of the OMS that is not the Strategy API may): the children wait, then go as an OCO exit
    bot.oms.linked = contextlib.nullcontext
    entry = bot.strategy.buy(qty=D(10), limit=150, sl=140, tp=160)
    stop, take = children(bot, entry)
    bot.settle()
    assert len(bot.posts()) == 1 and (bot.state(stop), bot.state(take)) == (OrderState.PENDING_SUBMIT,) * 2
    bot.fake.fill(entry.client_order_id)
    bot.settle()
    first, exit_ = bot.posts()
    assert first.get("order_class") is None and first["client_order_id"] == entry.client_order_id
    assert (exit_["order_class"], exit_["client_order_id"], exit_["side"], exit_["qty"]) == (
        "oco", take.client_order_id, "sell", 10)
    assert (exit_["take_profit"], exit_["stop_loss"]) == ({"limit_price": 160}, {"stop_price": 140})

    bot.fake.set_price("AAPL", "139")   # the stop leg fills; the take-profit is canceled
    bot.settle()
    assert bot.state(stop) is OrderState.FILLED and bot.fills_of(stop) == [(D(10), D(139))]
    assert bot.state(take) is OrderState.CANCELED
    assert bot.oms.portfolio.positions["AAPL"].qty == 0 and bot.oms.foreign_reports == 0


def test_children_of_an_entry_canceled_unfilled_are_canceled_never_sent(bot):
    bot.oms.linked = contextlib.nullcontext  # the entry alone first, as above
    entry = bot.strategy.buy(qty=D(10), limit=100, sl=90, tp=120)
    stop, take = children(bot, entry)
    bot.settle()
    assert (bot.state(stop), bot.state(take)) == (OrderState.PENDING_SUBMIT, OrderState.PENDING_SUBMIT)
    bot.strategy.cancel(entry)
    bot.settle()
    assert bot.state(entry) is OrderState.CANCELED
    assert (bot.state(stop), bot.state(take)) == (OrderState.CANCELED, OrderState.CANCELED)
    assert len(bot.posts()) == 1


def test_an_oco_exit_is_one_request_and_one_fill_cancels_the_other(bot):
    bot.strategy.buy(qty=D(10))
    bot.settle()
    take = bot.strategy.sell(qty=D(10), limit=160, oco=True)
    stop = bot.strategy.sell(qty=D(10), stop=140, oco=take)
    bot.settle()
    post = bot.posts()[-1]
    assert (post["order_class"], post["client_order_id"], post["type"]) == ("oco", take.client_order_id, "limit")
    assert (post["take_profit"], post["stop_loss"]) == ({"limit_price": 160}, {"stop_price": 140})
    assert (bot.state(take), bot.state(stop)) == (OrderState.ACCEPTED, OrderState.ACCEPTED)

    bot.fake.set_price("AAPL", "160.5")
    bot.settle()
    assert bot.state(take) is OrderState.FILLED and bot.fills_of(take) == [(D(10), D(160))]
    assert bot.state(stop) is OrderState.CANCELED
    assert bot.oms.portfolio.positions["AAPL"].qty == 0


def test_a_trailing_stop_goes_as_alpacas_ratchets_and_fills(bot):
    with bot.adapter.hold():
        entry = bot.strategy.buy(qty=D(10), trail=5)
    [trail] = [o for o in bot.oms.orders.values() if o.parent_id == entry.client_order_id]
    bot.settle()
    first, second = bot.posts()
    assert first.get("order_class") is None   # Alpaca takes no trailing stop as a leg
    assert (second["type"], second["trail_price"], second["client_order_id"], second["qty"]) == (
        "trailing_stop", 5, trail.client_order_id, 10)
    venue = bot.adapter.order_status(trail.client_order_id)
    assert venue is not None and venue.stop_price == D(145)

    bot.fake.set_price("AAPL", "160")   # the stop ratchets up to 155
    bot.settle()
    assert bot.adapter.order_status(trail.client_order_id).stop_price == D(155)
    bot.fake.set_price("AAPL", "158")   # never down
    assert bot.adapter.order_status(trail.client_order_id).stop_price == D(155)
    bot.fake.set_price("AAPL", "154")
    bot.settle()
    assert bot.state(trail) is OrderState.FILLED and bot.fills_of(trail) == [(D(10), D(154))]
    assert bot.oms.portfolio.positions["AAPL"].qty == 0


def test_amend_replaces_the_order_and_the_engine_order_continues(bot):
    order = bot.strategy.buy(qty=D(10), limit=100)
    bot.settle()
    assert bot.strategy.amend(order, price=101) is None
    bot.settle()
    [patch] = [body for method, path, body in bot.fake.requests if method == "PATCH"]
    assert patch == {"limit_price": 101, "client_order_id": f"{order.client_order_id}~1"}
    assert bot.state(order) is OrderState.ACCEPTED and order.limit_price == D(101)   # no REPLACED cancel
    venue = bot.adapter.order_status(order.client_order_id)
    assert (venue.client_order_id, venue.limit_price, venue.is_open) == (order.client_order_id, D(101), True)

    assert bot.strategy.amend(order, qty=D(12)) is None   # a second replace, of the replacement
    bot.settle()
    bot.fake.fill(f"{order.client_order_id}~2", price="101")
    bot.settle()
    assert bot.state(order) is OrderState.FILLED and bot.fills_of(order) == [(D(12), D(101))]
    assert bot.oms.foreign_reports == 0 and not bot.oms.external


def test_amend_of_a_bracket_leg_moves_the_stop_and_the_bracket_still_holds(bot):
    with bot.adapter.hold():
        entry = bot.strategy.buy(qty=D(10), sl=140, tp=160)
    stop, take = children(bot, entry)
    bot.settle()
    assert bot.strategy.amend(stop, price=145) is None
    bot.settle()
    bot.fake.set_price("AAPL", "144")
    bot.settle()
    assert bot.state(stop) is OrderState.FILLED and bot.fills_of(stop) == [(D(10), D(144))]
    assert bot.state(take) is OrderState.CANCELED


def test_what_alpaca_cannot_take_is_refused_with_a_reason_and_nothing_is_sent(bot):
    crypto = Bot(symbols=("BTC/USD",))
    try:
        with crypto.adapter.hold():
            entry = crypto.strategy.buy(qty=D("0.01"), sl=140, tp=160)
        crypto.settle()
        for order in crypto.oms.orders.values():
            assert order.state is OrderState.REJECTED
            assert order.reason.startswith("UNSUPPORTED: alpaca takes bracket orders for US equities only")
        assert crypto.posts() == [] and entry.state is OrderState.REJECTED
    finally:
        crypto.close()

    with bot.adapter.hold():   # a trailing stop in one OCO group with a take-profit: no Alpaca order
        entry = bot.strategy.buy(qty=D(10), trail=5, tp=160)
    bot.settle()
    assert {o.state for o in bot.oms.orders.values()} == {OrderState.REJECTED}
    assert "trailing stop as a single order only" in entry.reason
    assert bot.posts() == []

    with bot.adapter.hold():
        entry = bot.strategy.buy(qty=D(10), trail=5)
    bot.settle()
    [trail] = [o for o in bot.oms.orders.values() if o.parent_id == entry.client_order_id]
    assert bot.strategy.amend(trail, price=150) == (
        "UNSUPPORTED: alpaca changes a trailing stop's trail, not its level: amend of its price is not mapped")


def test_a_restarted_adapter_finds_a_leg_under_its_child_id(bot):
    with bot.adapter.hold():
        entry = bot.strategy.buy(qty=D(10), sl=140, tp=160)
    stop, take = children(bot, entry)
    bot.settle()
    fresh = AlpacaAdapter(KEY, SECRET, ["AAPL"], url_override=bot.fake.rest_url, stream_url=bot.fake.stream_url,
                          sleep=lambda s: None)
    fresh.client = bot.adapter.client   # REST only: no second stream
    fresh._instruments = bot.adapter.instruments()
    assert fresh.order_status(stop.client_order_id) is None   # a leg's client id is Alpaca's own
    fresh.track(list(bot.oms.orders.values()))
    venue = fresh.order_status(stop.client_order_id)
    assert (venue.client_order_id, venue.type, venue.stop_price, venue.side, venue.state) == (
        stop.client_order_id, OrderType.STOP, D(140), OrderSide.SELL, OrderState.ACCEPTED)
    assert {v.client_order_id for v in fresh.open_orders()} == {stop.client_order_id, take.client_order_id}
