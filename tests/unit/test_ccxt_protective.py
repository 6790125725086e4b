"""The binance spot protective-order mapping (brokers/ccxt/protective.py): pure, no venue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.ccxt import protective as P
from engine.orders import Order, OrderSide, OrderType, TimeInForce

D = Decimal


def text(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def make(kind: OrderType, side: OrderSide = OrderSide.SELL, limit: str | None = None, stop: str | None = None,
         cid: str = "b-00000002", **links) -> Order:
    return Order(cid, "b", "BTC/USDT", side, kind, D("0.01"), 0, limit_price=None if limit is None else D(limit),
                 stop_price=None if stop is None else D(stop), **links)


def test_a_sell_oco_puts_the_take_profit_above_as_limit_maker_and_the_stop_below():
    stop = make(OrderType.STOP, stop="49000", cid="b-2", oco_group="g")
    take = make(OrderType.LIMIT, limit="51000", cid="b-3", oco_group="g")
    plan = P.oco_plan([stop, take], D("0.005"), "BTCUSDT", text)
    assert not isinstance(plan, str)
    assert plan.params == {
        "symbol": "BTCUSDT", "side": "SELL", "quantity": "0.005", "listClientOrderId": "b-2.oco",
        "newOrderRespType": "FULL", "aboveType": "LIMIT_MAKER", "abovePrice": "51000", "aboveClientOrderId": "b-3",
        "belowClientOrderId": "b-2", "belowType": "STOP_LOSS", "belowStopPrice": "49000"}


def test_a_buy_oco_mirrors_it_and_a_stop_limit_leg_carries_its_limit_and_gtc():
    stop = make(OrderType.STOP_LIMIT, OrderSide.BUY, limit="51100", stop="51000", cid="b-2", oco_group="g")
    take = make(OrderType.LIMIT, OrderSide.BUY, limit="49000", cid="b-3", oco_group="g")
    plan = P.oco_plan([take, stop], D("0.01"), "BTCUSDT", text)
    assert not isinstance(plan, str)
    assert (plan.params["belowType"], plan.params["belowPrice"], plan.params["belowClientOrderId"]) == \
        ("LIMIT_MAKER", "49000", "b-3")
    assert (plan.params["aboveType"], plan.params["aboveStopPrice"], plan.params["abovePrice"],
            plan.params["aboveTimeInForce"]) == ("STOP_LOSS_LIMIT", "51000", "51100", "GTC")


def test_a_trailing_stop_leg_goes_as_trailing_delta_in_basis_points():
    stop = make(OrderType.STOP, stop="49000", cid="b-2", oco_group="g", trail_percent=D("1.5"))
    take = make(OrderType.LIMIT, limit="51000", cid="b-3", oco_group="g")
    plan = P.oco_plan([stop, take], D("0.01"), "BTCUSDT", text)
    assert not isinstance(plan, str)
    assert plan.params["belowTrailingDelta"] == "150" and "belowStopPrice" not in plan.params


@pytest.mark.parametrize("members, words", [
    ([make(OrderType.STOP, stop="51000", oco_group="g"), make(OrderType.LIMIT, limit="50000", cid="x", oco_group="g")],
     "limit_price"),                                          # a SELL's take-profit below its stop
    ([make(OrderType.STOP, stop="49000", oco_group="g"), make(OrderType.STOP, stop="48000", cid="x", oco_group="g")],
     "one take-profit LIMIT and one stop-loss"),
    ([make(OrderType.STOP, stop="49000", oco_group="g")], "exactly two"),
    ([make(OrderType.STOP, stop="49000", oco_group="g"),
      make(OrderType.LIMIT, OrderSide.BUY, limit="51000", cid="x", oco_group="g")], "one side"),
])
def test_an_oco_binance_cannot_take_is_refused_with_the_reason(members, words):
    plan = P.oco_plan(members, D("0.01"), "BTCUSDT", text)
    assert isinstance(plan, str) and plan.startswith("UNSUPPORTED: binance") and words in plan


@pytest.mark.parametrize("order, field", [
    (make(OrderType.STOP, stop="49000", parent_id="p", trail_distance=D("100")), "trail_distance"),
    (make(OrderType.STOP, stop="49000", parent_id="p", trail_percent=D("25")), "trail_percent"),
    (make(OrderType.STOP, stop="49000", parent_id="p", trail_percent=D("0.001")), "trail_percent"),
    (make(OrderType.LIMIT, limit="51000", parent_id="p", trail_percent=D("1")), "trailing LIMIT"),
    (make(OrderType.MARKET, parent_id="p"), "MARKET"),
    (make(OrderType.LIMIT, limit="51000", parent_id="p", tif=TimeInForce.IOC), "IOC"),
])
def test_a_linked_order_binance_cannot_express_is_refused_at_submit(order, field):
    reason = P.refusal(order)
    assert reason is not None and field in reason


def test_a_plain_child_and_a_whole_bps_trail_pass():
    assert P.refusal(make(OrderType.LIMIT, limit="51000", parent_id="p")) is None
    assert P.refusal(make(OrderType.STOP, stop="49000", parent_id="p", trail_percent=D("0.1"))) is None
    assert P.trailing_bps(make(OrderType.STOP, stop="1", trail_percent=D("20"))) == 2000


def test_a_single_trailing_stop_is_ccxts_trailing_percent_on_a_stop_loss():
    kind, params = P.trailing_params(make(OrderType.STOP, stop="49000", trail_percent=D("1.5")))
    assert kind == "market" and params == {"clientOrderId": "b-00000002", "trailingPercent": "1.5",
                                           "stopLossOrTakeProfit": "stopLoss"}


def test_children_are_complete_only_when_both_of_an_oco_group_arrived():
    waiting = P.Waiting()
    waiting.add_child(make(OrderType.STOP, stop="49000", cid="c1", parent_id="p", oco_group="p"))
    assert waiting.complete("p") is None
    waiting.add_child(make(OrderType.LIMIT, limit="51000", cid="c2", parent_id="p", oco_group="p"))
    assert [o.client_order_id for o in waiting.complete("p")] == ["c1", "c2"]  # type: ignore[union-attr]
    assert waiting.drop("c1") is not None and waiting.holds("c2") and not waiting.holds("c1")
    lone = P.Waiting()
    lone.add_child(make(OrderType.STOP, stop="49000", cid="c3", parent_id="q"))
    assert lone.complete("q") is not None


def test_a_replacements_client_id_reads_back_as_the_engines():
    assert P.replacement_id("bot-00000007", 2) == "bot-00000007.r2"
    assert P.engine_id("bot-00000007.r2") == "bot-00000007" and P.engine_id("bot-00000007") == "bot-00000007"


def test_only_binance_spot_and_usdm_futures_are_mapped():
    assert P.supported("binance", False) and P.supported("binanceusdm", True)
    assert not P.supported("binance", True) and not P.supported("bybit", False)


@pytest.mark.parametrize("rate, ok", [("0.1", True), ("10", True), ("2.5", True), ("0.05", False), ("10.1", False),
                                      ("1.25", False)])
def test_a_futures_trail_is_a_callback_rate_of_0_1_to_10_percent_in_tenths(rate, ok):
    order = make(OrderType.STOP, stop="49000", parent_id="p", trail_percent=D(rate))
    assert (P.refusal(order, futures=True) is None) is ok
    if not ok:
        assert "trail_percent" in P.refusal(order, futures=True)  # type: ignore[operator]


def test_futures_refuse_a_trail_in_price_units_and_a_standalone_oco_group():
    distance = make(OrderType.STOP, stop="49000", parent_id="p", trail_distance=D("50"))
    assert "trail_distance" in P.refusal(distance, futures=True)  # type: ignore[operator]
    lone = make(OrderType.LIMIT, limit="51000", oco_group="g")
    assert "standalone OCO" in P.refusal(lone, futures=True)  # type: ignore[operator]
    assert P.refusal(lone, futures=False) is None


def test_a_futures_trailing_stop_is_ccxts_trailing_percent_reduce_only():
    kind, params = P.trailing_params(make(OrderType.STOP, stop="49000", trail_percent=D("0.5")), futures=True)
    assert kind == "market" and params == {"clientOrderId": "b-00000002", "trailingPercent": "0.5", "reduceOnly": True}
