"""alpaca-py's own test payloads (tests/fixtures/alpaca, vendored with origin and licence) through
the adapter's mapping: orders, positions, account, fill activities, assets and error bodies, each
with the domain result it must give. Every payload is first parsed by alpaca-py's own models, so
the fixtures are what the SDK itself takes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

pytest.importorskip("alpaca", reason="alpaca-py is not installed (pip install alpaca-py==0.44.0)")

from alpaca.trading.models import Asset, Order as AlpacaOrder, Position, TradeAccount, TradeActivity  # noqa: E402

from brokers.alpaca import mapping as m  # noqa: E402
from brokers.base import RejectReason  # noqa: E402
from engine.instrument import AssetClass  # noqa: E402
from engine.orders import OrderSide, OrderState, OrderType  # noqa: E402

D = Decimal
FIXTURES = Path(__file__).parents[1] / "fixtures" / "alpaca"
CID = "eb9e2aaa-f71a-4f51-b5b4-52a6c565dad4"


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


def test_every_vendored_file_is_listed_with_its_origin():
    index = load("index.json")
    files = {str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*.json")}
    assert files == set(index) and all(origin.startswith("tests/") for origin in index.values())


# -- orders ----------------------------------------------------------------------------------------
ORDERS = [  # file, (client id, symbol, side, type, qty, filled, state)
    ("orders/test_market_order.json", (CID, "AAPL`", OrderSide.BUY, OrderType.MARKET, D(1), D(0), OrderState.ACCEPTED)),
    ("orders/test_limit_order.json", (CID, "AAPL`", OrderSide.BUY, OrderType.LIMIT, D(1), D(0), OrderState.ACCEPTED)),
    ("orders/test_get_order_by_id.json",
     (CID, "AAPL`", OrderSide.BUY, OrderType.MARKET, D(1), D(0), OrderState.ACCEPTED)),
    ("orders/test_get_order_by_client_id.json",
     (CID, "AAPL`", OrderSide.BUY, OrderType.MARKET, D(1), D(0), OrderState.ACCEPTED)),
    ("orders/test_replace_order.json",
     (CID, "AAPL`", OrderSide.BUY, OrderType.MARKET, D(1), D(0), OrderState.ACCEPTED)),
    ("orders/test_order_position_intent.json",
     (CID, "SPY`", OrderSide.BUY, OrderType.MARKET, D(1), D(0), OrderState.ACCEPTED)),
    ("orders/test_order_position_intent_2.json",
     (CID, "AAPL`", OrderSide.SELL, OrderType.LIMIT, D(1), D(0), OrderState.ACCEPTED)),
    # a notional order has no quantity until it fills
    ("positions/test_close_position_with_qty.json",
     (CID, "AAPL`", OrderSide.BUY, OrderType.MARKET, D(0), D(0), OrderState.ACCEPTED)),
    ("positions/test_close_position_with_percentage.json",
     (CID, "AAPL`", OrderSide.BUY, OrderType.MARKET, D(0), D(0), OrderState.ACCEPTED)),
]


@pytest.mark.parametrize("name,expected", ORDERS, ids=[n for n, _ in ORDERS])
def test_orders_map_to_their_domain_terms(name, expected):
    data = load(name)
    AlpacaOrder(**data)
    venue = m.venue_order(data)
    assert (venue.client_order_id, venue.symbol, venue.side, venue.type, venue.qty, venue.filled_qty,
            venue.state) == expected
    assert venue.venue_order_id == data["id"] and venue.ts == m.ns(data["updated_at"])


def test_a_listed_order_takes_its_type_from_type_not_order_type():
    [data] = load("orders/test_get_orders.json")   # "order_type": "market", "type": "stop"
    AlpacaOrder(**data)
    venue = m.venue_order(data)
    assert (venue.type, venue.state, venue.filled_qty, venue.client_order_id) == \
        (OrderType.STOP, OrderState.ACCEPTED, D(0), "string")


def test_closing_a_crypto_position_named_btcusd_makes_an_order_for_btc_slash_usd():
    """alpaca-py's own fixture: DELETE /v2/positions answers per position "BTCUSD" with an order
    for "BTC/USD". Both must read as one symbol, or a bot holding crypto never reconciles."""
    closing = load("positions/test_close_all_positions.json")
    btc = next(row for row in closing if row["symbol"] == "BTCUSD")
    AlpacaOrder(**btc["body"])
    order = m.venue_order(btc["body"])
    assert (order.symbol, order.side, order.qty, order.state) == ("BTC/USD", OrderSide.SELL, D("0.0283"),
                                                                  OrderState.ACCEPTED)
    assert m.symbol_of(btc["symbol"], "crypto") == order.symbol
    assert m.symbol_of("BTCUSD", None, ["BTC/USD", "AAPL"]) == "BTC/USD"   # activities carry no asset class
    assert m.symbol_of("SQQQ", "us_equity") == "SQQQ"


def test_refusals_in_the_fixtures_map_to_reasons():
    refused = [row for row in load("positions/test_close_all_positions.json") if row["status"] != 200]
    assert {row["symbol"]: m.classify_error(row["status"], row["body"]["message"]) for row in refused} == {
        "SQQQ": (m.FINAL, RejectReason.INSUFFICIENT_FUNDS),
        "NYC": (m.FINAL, RejectReason.TRADE_DISABLED)}   # "account is not allowed to short"
    missing = [row for row in load("orders/test_cancel_orders.json") if row["status"] == 404]
    assert m.error_message(json.dumps(missing[0]["body"])) == "order not found"


# -- statuses and types Alpaca documents, on a fixture order -----------------------------------------
@pytest.mark.parametrize("status,filled,state", [
    ("new", "0", OrderState.ACCEPTED), ("pending_new", "0", OrderState.ACCEPTED),
    ("accepted", "0", OrderState.ACCEPTED), ("partially_filled", "0.5", OrderState.PARTIALLY_FILLED),
    ("pending_cancel", "0", OrderState.ACCEPTED), ("pending_replace", "0.5", OrderState.PARTIALLY_FILLED),
    ("done_for_day", "0", OrderState.ACCEPTED),          # a GTC order works again the next session
    ("done_for_day", "0.5", OrderState.PARTIALLY_FILLED),
    ("replaced", "0", OrderState.CANCELED),              # this order ended; its replacement is another order
    ("expired", "0", OrderState.EXPIRED), ("canceled", "0", OrderState.CANCELED),
    ("filled", "1", OrderState.FILLED), ("rejected", "0", OrderState.REJECTED),
])
def test_each_status_maps_to_the_engines_state(status, filled, state):
    data = load("orders/test_limit_order.json") | {"status": status, "filled_qty": filled}
    AlpacaOrder(**data)
    venue = m.venue_order(data)
    assert venue.state is state
    assert venue.reason == {"replaced": m.REPLACED, "expired": "EXPIRED",
                            "rejected": RejectReason.INVALID_ORDER}.get(status)


def test_a_trailing_stop_is_a_stop_at_its_current_trigger_not_a_market_order():
    data = load("orders/test_market_order.json") | {"type": "trailing_stop", "order_type": "trailing_stop",
                                                     "trail_price": "5", "hwm": "150", "stop_price": "145"}
    AlpacaOrder(**data)
    venue = m.venue_order(data)
    assert (venue.type, venue.stop_price) == (OrderType.STOP, D(145))


def test_a_filled_notional_order_has_the_quantity_that_filled():
    data = load("positions/test_close_position_with_qty.json") | {"status": "filled", "filled_qty": "3.3",
                                                                   "filled_avg_price": "151.5"}
    venue = m.venue_order(data)
    assert (venue.qty, venue.filled_qty, venue.state) == (D("3.3"), D("3.3"), OrderState.FILLED)


# -- positions, account, activities, assets ---------------------------------------------------------
def test_positions_map_to_signed_quantities():
    rows = (load("positions/test_get_all_positions.json")
            + load("broker_trading/test_get_all_positions_for_account.json"))
    rows += next(iter(load("broker_trading/test_get_all_accounts_positions.json")["positions"].values()))
    for row in rows:
        Position(**row)
    assert [(p.symbol, p.qty, p.avg_price) for p in (m.position(r) for r in rows)] == [
        ("AAPL", D(5), D("100.0")), ("AAPL", D(5), D("100.0")), ("TSLA", D("0.173011547"), D("286.9749783265074366"))]
    short = m.position(rows[0] | {"side": "short", "qty": "-5"})
    assert short.qty == D(-5)


def test_the_account_maps_cash_equity_and_buying_power_exactly():
    data = load("account/test_get_account.json")
    TradeAccount(**data)
    account = m.account(data)
    assert (account.currency, account.cash, account.equity, account.buying_power) == \
        ("USD", D("-23140.2"), D("103820.56"), D("262113.632"))


def test_fill_activities_become_fills_with_one_id_per_execution():
    rows = load("activities/test_get_activities_for_account_max_items_and_single_request_date.json")
    assets = {s: m.instrument(load("assets/test_get_asset.json") | {"symbol": s}) for s in ("AMZN", "GOOGL", "TSLA")}
    fills = []
    for row in rows:
        TradeActivity(**row)
        fills.append(m.activity_fill(row, assets[row["symbol"]], "bot-1"))
    assert [(f.symbol, f.side, f.qty, f.price) for f in fills] == [
        ("AMZN", OrderSide.BUY, D("1.792161878"), D("2907.15")), ("AMZN", OrderSide.BUY, D(1), D("2907.15")),
        ("GOOGL", OrderSide.SELL, D("0.058773239"), D("2644.84")),
        ("TSLA", OrderSide.SELL, D("1.998065556"), D("837.45")),
        ("TSLA", OrderSide.SELL, D(4), D("837.45"))]
    assert fills[1].execution_id == "cddf433b-1a41-497d-ae31-50b1fee56fff@2.792161878"
    assert len({f.execution_id for f in fills}) == 5
    assert fills[0].ts == m.ns("2022-03-04T18:54:20.903569Z") == 1_646_420_060_903_569_000
    assert all(f.fee == 0 and f.fee_currency == "" for f in fills)   # equity fills carry no fee


def test_a_page_of_mixed_activities_yields_only_its_fills():
    page = load("activities/setup_reqmock_for_paginated_account_activities_response.json")
    fills = [row for row in page if row["activity_type"] == "FILL"]
    assert [row["symbol"] for row in fills] == ["GOOGL"] and len(page) == 4


def test_assets_give_the_instrument_grid():
    data = load("assets/test_get_asset.json")
    Asset(**data)
    aapl = m.instrument(data)
    assert (aapl.symbol, aapl.asset_class, aapl.size_increment, aapl.min_qty, aapl.price_increment) == \
        ("AAPL", AssetClass.EQUITY, D("1E-9"), D("1E-9"), D("0.0001"))
    whole = m.instrument(data | {"fractionable": False})
    assert (whole.size_increment, whole.min_qty) == (D(1), D(1))
    for name in ("assets/test_get_all_assets.json", "assets/test_get_all_assets_params.json"):
        assert [m.instrument(a).symbol for a in load(name)] == ["AAPL"]
