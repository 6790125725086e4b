"""brokers/alpaca/protective.py: which engine orders make one Alpaca request, the request as
alpaca-py sends it (its own request models: the JSON body is theirs), and refusals with reasons."""

from __future__ import annotations

from decimal import Decimal

import pytest

pytest.importorskip("alpaca", reason="alpaca-py is not installed (pip install alpaca-py==0.44.0)")

from brokers.alpaca import protective as P  # noqa: E402
from engine.instrument import AssetClass, Instrument  # noqa: E402
from engine.orders import Order, OrderSide, OrderType, TimeInForce  # noqa: E402

D = Decimal
AAPL = Instrument(symbol="AAPL", venue="ALPACA", asset_class=AssetClass.EQUITY, price_increment=D("0.0001"),
                  size_increment=D(1), min_qty=D(1), quote_currency="USD", currency_increment=D("0.01"))
BTC = Instrument(symbol="BTC/USD", venue="ALPACA", asset_class=AssetClass.CRYPTO, price_increment=D(1),
                 size_increment=D("0.000000001"), min_qty=D("0.0001"), quote_currency="USD",
                 currency_increment=D("0.01"))


def order(cid: str, side: str, kind: OrderType, qty: str | None = "10", *, limit: str | None = None,
          stop: str | None = None, parent: str | None = None, group: str | None = None, trail: str | None = None,
          trail_percent: str | None = None, tif: TimeInForce = TimeInForce.GTC, symbol: str = "AAPL") -> Order:
    return Order(cid, "bot", symbol, OrderSide(side), kind, None if qty is None else D(qty), 0,
                 limit_price=None if limit is None else D(limit), stop_price=None if stop is None else D(stop),
                 tif=tif, parent_id=parent, oco_group=group, trail_distance=None if trail is None else D(trail),
                 trail_percent=None if trail_percent is None else D(trail_percent))


def bracket(entry_kind: OrderType = OrderType.MARKET, **kw) -> tuple[Order, Order, Order]:
    entry = order("e", "BUY", entry_kind, limit="150" if entry_kind is OrderType.LIMIT else None, **kw)
    stop = order("s", "SELL", OrderType.STOP, stop="140", parent="e", group="e", **kw)
    take = order("t", "SELL", OrderType.LIMIT, limit="160", parent="e", group="e", **kw)
    return entry, stop, take


def test_a_bracket_is_one_request_with_alpacas_take_profit_and_stop_loss():
    entry, stop, take = bracket(OrderType.LIMIT)
    plan = P.bracket_plan(entry, [stop, take], AAPL)
    assert isinstance(plan, P.Plan) and plan.kind == P.BRACKET and plan.legs == {P.STOP_LOSS: stop,
                                                                                    P.TAKE_PROFIT: take}
    body = P.plan_request(plan, "gtc").to_request_fields()
    assert body == {"symbol": "AAPL", "qty": 10.0, "side": "buy", "type": "limit", "time_in_force": "gtc",
                    "order_class": "bracket", "client_order_id": "e", "limit_price": 150.0,
                    "take_profit": {"limit_price": 160.0}, "stop_loss": {"stop_price": 140.0}}


def test_one_child_is_an_oto_and_a_stop_limit_leg_keeps_its_limit():
    entry = order("e", "BUY", OrderType.MARKET)
    stop = order("s", "SELL", OrderType.STOP_LIMIT, stop="140", limit="139.5", parent="e")
    plan = P.bracket_plan(entry, [stop], AAPL)
    assert isinstance(plan, P.Plan) and plan.kind == P.OTO
    body = P.plan_request(plan, "day").to_request_fields()
    assert (body["order_class"], body["stop_loss"], "take_profit" in body) == (
        "oto", {"stop_price": 140.0, "limit_price": 139.5}, False)


def test_an_oco_exit_is_its_take_profit_with_the_stop_as_its_leg():
    take = order("t", "SELL", OrderType.LIMIT, limit="160", group="t")
    stop = order("s", "SELL", OrderType.STOP, stop="140", group="t")
    plan = P.oco_plan([stop, take], AAPL, D(10))
    assert isinstance(plan, P.Plan) and (plan.main, plan.legs) == (take, {P.STOP_LOSS: stop})
    body = P.plan_request(plan, "gtc").to_request_fields()
    assert (body["type"], body["order_class"], body["client_order_id"], "limit_price" in body) == (
        "limit", "oco", "t", False)
    assert (body["take_profit"], body["stop_loss"]) == ({"limit_price": 160.0}, {"stop_price": 140.0})


@pytest.mark.parametrize("trail,percent,field,value", [("2.5", None, "trail_price", 2.5),
                                                       (None, "1.5", "trail_percent", 1.5)])
def test_a_trailing_stop_carries_its_trail_as_price_or_percent(trail, percent, field, value):
    stop = order("x", "SELL", OrderType.STOP, stop="140", trail=trail, trail_percent=percent)
    body = P.trailing_request(stop, D(7), "gtc").to_request_fields()
    assert (body["type"], body["qty"], body[field], "stop_price" in body) == ("trailing_stop", 7.0, value, False)


@pytest.mark.parametrize("case,expected", [
    ("crypto", "takes bracket orders for US equities only"),
    ("fractional", "takes bracket orders in whole shares only"),
    ("notional", "takes bracket orders in whole shares only (got qty None)"),
    ("stop entry", "bracket entries here are MARKET or LIMIT, got STOP"),
    ("ioc", "takes bracket orders as day or gtc only, got IOC"),
    ("trailing leg", "takes no trailing stop order as a bracket leg"),
    ("market leg", "takes no MARKET order as a bracket leg"),
    ("two stops", "takes one take-profit and one stop-loss in a bracket order, got two stop_loss legs"),
])
def test_what_alpaca_cannot_take_is_refused_with_the_reason(case, expected):
    entry, stop, take = bracket()
    instrument = AAPL
    if case == "crypto":
        instrument = BTC
    elif case == "fractional":
        entry.qty = stop.qty = take.qty = D("1.5")
    elif case == "notional":
        entry.qty = stop.qty = take.qty = None
    elif case == "stop entry":
        entry.type, entry.stop_price = OrderType.STOP, D(155)
    elif case == "ioc":
        entry.tif = TimeInForce.IOC
    elif case == "trailing leg":
        stop.trail_distance = D(5)
    elif case == "market leg":
        take.type, take.limit_price = OrderType.MARKET, None
    elif case == "two stops":
        take.type, take.stop_price, take.limit_price = OrderType.STOP, D(130), None
    reason = P.bracket_plan(entry, [stop, take], instrument)
    assert isinstance(reason, str) and reason.startswith("UNSUPPORTED: alpaca ") and expected in reason


def test_an_oco_pair_on_two_sides_or_of_two_limits_is_refused():
    take = order("t", "SELL", OrderType.LIMIT, limit="160", group="t")
    assert "on one side" in P.oco_plan([take, order("s", "BUY", OrderType.STOP, stop="140", group="t")], AAPL, D(10))
    assert "got two take_profit legs" in P.oco_plan([take, order("u", "SELL", OrderType.LIMIT, limit="170", group="t")],
                                                AAPL, D(10))


def test_amend_maps_to_a_replace_of_the_price_the_engine_means():
    limit = order("l", "BUY", OrderType.LIMIT, limit="100")
    stop = order("s", "SELL", OrderType.STOP, stop="90")
    assert P.replace_request(limit, D("101.5"), D(12), "l~1").to_request_fields() == {
        "qty": 12, "limit_price": 101.5, "client_order_id": "l~1"}
    assert P.replace_request(stop, D(95), None, "s~3").to_request_fields() == {"stop_price": 95.0,
                                                                               "client_order_id": "s~3"}
    assert "whole shares" in P.amend_refusal(limit, None, D("1.5"))
    limit.filled_qty = D(1)
    assert "partly filled" in P.amend_refusal(limit, D(101), None)


def test_a_replacement_reads_back_as_its_original():
    assert P.engine_id(P.replacement_id("bot-00000001", 2)) == "bot-00000001"
    assert P.engine_id("bot-00000001") == "bot-00000001"
    assert P.engine_id("dashboard~x") == "dashboard~x"   # not a replacement this adapter made
    assert P.engine_id("~1") == "~1"
