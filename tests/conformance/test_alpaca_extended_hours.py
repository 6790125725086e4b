"""Alpaca extended hours (issue 16 item 3): an account setting `extended_hours` sends LIMIT DAY
orders on US equities with extended_hours=True; Alpaca takes the flag on limit DAY orders only
("extended hours order must be DAY limit orders", 422), so every other order goes without it.
The real alpaca-py SDK against the loopback fake, which refuses a request that breaks the rule."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

pytest.importorskip("alpaca", reason="alpaca-py is not installed")

from alpaca.common.exceptions import APIError  # noqa: E402
from alpaca.trading.client import TradingClient  # noqa: E402
from alpaca.trading.enums import OrderSide as Side, TimeInForce as Tif  # noqa: E402
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest  # noqa: E402

from brokers.alpaca.adapter import AlpacaAdapter  # noqa: E402
from brokers.factory import EnvCredentials, make_adapter, validate_credentials  # noqa: E402
from engine.errors import ConfigError  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType, TimeInForce  # noqa: E402
from tests.fakes.alpaca_fake import KEY, SECRET, FakeAlpaca, adapter_settled  # noqa: E402

D = Decimal


class Sink:
    def __init__(self) -> None:
        self.states: dict[str, OrderState] = {}

    def on_submitted(self, order, ts):
        self.states[order.client_order_id] = OrderState.SUBMITTED

    def on_accepted(self, order, ts):
        self.states[order.client_order_id] = OrderState.ACCEPTED

    def on_rejected(self, order, ts, reason):
        self.states[order.client_order_id] = OrderState.REJECTED

    def on_canceled(self, order, ts, reason):
        self.states[order.client_order_id] = OrderState.CANCELED

    def on_fill(self, order, fill, bar):
        self.states[order.client_order_id] = OrderState.FILLED


@pytest.fixture
def fake():
    fake = FakeAlpaca(cash="100000")
    fake.add_asset("AAPL", "150.00", fractionable=False)
    fake.add_asset("BTC/USD", "50000", asset_class="crypto", min_order_size="0.0001",
                   min_trade_increment="0.000000001", price_increment="1")
    yield fake
    fake.close()


def connected(fake: FakeAlpaca, extended_hours: bool) -> tuple[AlpacaAdapter, Sink]:
    adapter = AlpacaAdapter(KEY, SECRET, ["AAPL", "BTC/USD"], url_override=fake.rest_url, stream_url=fake.stream_url,
                            sleep=lambda s: None, stream_backoff_s=(0.01, 0.05), extended_hours=extended_hours)
    sink = Sink()
    adapter.connect(sink)
    return adapter, sink


def send(fake: FakeAlpaca, adapter: AlpacaAdapter, cid: str, kind: OrderType, tif: TimeInForce,
         symbol: str = "AAPL", qty: str = "5", limit: str | None = "140") -> dict:
    order = Order(cid, "bot", symbol, OrderSide.BUY, kind, D(qty), 0,
                  limit_price=None if kind is OrderType.MARKET else D(limit), tif=tif)  # type: ignore[arg-type]
    adapter.submit(order)
    deadline = time.monotonic() + 20
    while not adapter_settled(fake, adapter):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return [body for method, path, body in fake.requests if method == "POST" and path == "/v2/orders"][-1]


def test_a_limit_day_order_goes_with_extended_hours_and_others_without(fake):
    adapter, sink = connected(fake, extended_hours=True)
    try:
        body = send(fake, adapter, "bot-00000001", OrderType.LIMIT, TimeInForce.DAY)
        assert body["extended_hours"] is True and body["time_in_force"] == "day"
        assert fake.order_by_cid("bot-00000001")["extended_hours"] is True
        assert sink.states["bot-00000001"] is OrderState.ACCEPTED
        # Alpaca takes the flag on limit DAY orders only: the others go without it, and are taken
        for cid, kind, tif in (("bot-00000002", OrderType.MARKET, TimeInForce.DAY),
                               ("bot-00000003", OrderType.LIMIT, TimeInForce.GTC)):
            body = send(fake, adapter, cid, kind, tif)
            assert "extended_hours" not in body
            assert sink.states[cid] in (OrderState.ACCEPTED, OrderState.FILLED)
        body = send(fake, adapter, "bot-00000004", OrderType.LIMIT, TimeInForce.GTC, "BTC/USD", "0.001", "40000")
        assert "extended_hours" not in body                 # crypto has no extended hours
    finally:
        adapter.close()


def test_without_the_setting_no_order_carries_the_flag(fake):
    adapter, _ = connected(fake, extended_hours=False)
    try:
        body = send(fake, adapter, "bot-00000001", OrderType.LIMIT, TimeInForce.DAY)
        assert "extended_hours" not in body
        assert fake.order_by_cid("bot-00000001")["extended_hours"] is False
    finally:
        adapter.close()


@pytest.mark.parametrize("request_", [
    MarketOrderRequest(symbol="AAPL", qty=1, side=Side.BUY, time_in_force=Tif.DAY, extended_hours=True),
    LimitOrderRequest(symbol="AAPL", qty=1, side=Side.BUY, time_in_force=Tif.GTC, limit_price=140,
                      extended_hours=True),
])
def test_the_fake_refuses_extended_hours_on_anything_but_a_limit_day_order_as_alpaca_does(fake, request_):
    client = TradingClient(KEY, SECRET, paper=True, raw_data=True, url_override=fake.rest_url)
    client._retry = 0
    with pytest.raises(APIError) as error:
        client.submit_order(request_)
    assert error.value.status_code == 422
    assert "extended hours order must be DAY limit orders" in str(error.value)
    assert fake.orders == {}


def test_the_account_setting_reaches_the_adapter_and_a_bad_value_names_the_field():
    fields = {"TICKBRIDGE_ACCOUNT_US_API_KEY": "k", "TICKBRIDGE_ACCOUNT_US_SECRET_KEY": "s"}
    on = make_adapter("alpaca", "us", ["AAPL"], [EnvCredentials({**fields, "TICKBRIDGE_ACCOUNT_US_EXTENDED_HOURS":
                                                                 "true"})])
    off = make_adapter("alpaca", "us", ["AAPL"], [EnvCredentials(fields)])
    assert (on.extended_hours, off.extended_hours) == (True, False)
    with pytest.raises(ConfigError) as error:
        validate_credentials("alpaca", {"api_key": "k", "secret_key": "s", "extended_hours": "sometimes"})
    assert error.value.field == "credentials.extended_hours"
