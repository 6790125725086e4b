"""Venue mechanics as the venues document them: regressions for the outside probe of issues 15/16
(/tmp/notes/Z.md D4, F1, D6, D8, D9, D11). Real SDKs (alpaca-py, ccxt) against the loopback fakes,
the MT5 adapter on FakeMT5; each case runs in about a second.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

pytest.importorskip("alpaca", reason="alpaca-py is not installed")
ccxt = pytest.importorskip("ccxt")

from brokers.ccxt.adapter import CcxtAdapter, bot_id_refusal  # noqa: E402
from brokers.factory import EnvCredentials, make_adapter, validate_credentials  # noqa: E402
from brokers.mt5 import mapping as mt5_mapping  # noqa: E402
from brokers.mt5.clock import ServerClock  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.errors import ConfigError  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from tests.conformance.harness_ccxt import binance_on, binanceusdm_on  # noqa: E402
from tests.fakes.binance_fake import BinanceError, BinanceFake  # noqa: E402
from tests.fakes.binance_futures_fake import BinanceFuturesFake  # noqa: E402
from tests.fakes.mt5_fake import FakeMT5  # noqa: E402
from tests.integration.test_alpaca_protective import Bot  # noqa: E402
from tests.integration.test_mt5_adapter import Venue  # noqa: E402

D = Decimal
H = 3600
SETTLE_S = 20.0


def _until(check, what: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


# -- D4: Alpaca, canceled after partial fills that cannot be read yet ------------------------------
@pytest.fixture
def bot():
    bot = Bot()
    yield bot
    bot.close()


def test_a_cancel_after_fills_not_read_yet_stays_open_until_they_are_then_books_them(bot):
    entry = bot.strategy.buy(qty=D(10), limit=149)
    bot.settle()
    bot.fake.drop_streams(refuse=True)
    bot.fake.fill(entry.client_order_id, "4")
    bot.fake.cancel_at_venue(entry.client_order_id)
    bot.fake.fail_activities(3)              # GET activities answers 503 during this reconcile
    bot.adapter.reconcile()
    own = bot.oms.orders[entry.client_order_id]
    assert own.state not in (OrderState.CANCELED, OrderState.EXPIRED)   # fills unknown: not "none"
    bot.fake.fail_activities(0)
    bot.adapter.reconcile()                  # the next reconcile reads them, then ends the order
    assert own.state is OrderState.CANCELED and own.filled_qty == D(4)
    assert bot.oms.portfolio.positions["AAPL"].qty == D(4)
    assert bot.oms.portfolio.cash == bot.fake.cash == D("99404")


# -- F1: FakeAlpaca, a partial fill while a cancel is pending -----------------------------------------
def test_a_pending_cancel_partly_filled_still_ends_canceled_with_its_fills(bot):
    bot.fake.hold_cancels()
    entry = bot.strategy.buy(qty=D(10), limit=149)
    bot.settle()
    bot.oms.cancel(entry)
    assert bot.fake.order_by_cid(entry.client_order_id)["status"] == "pending_cancel"
    bot.fake.fill(entry.client_order_id, "4")
    bot.fake.release_cancels()
    venue = bot.fake.order_by_cid(entry.client_order_id)
    assert (venue["status"], venue["filled_qty"]) == ("canceled", "4")   # not left working for the 6
    _until(lambda: bot.oms.orders[entry.client_order_id].state is OrderState.CANCELED, "the cancel reached the books")
    assert bot.oms.orders[entry.client_order_id].filled_qty == D(4)
    assert bot.oms.portfolio.positions["AAPL"].qty == D(4)


# -- D6: MT5 server clock from a stale first tick; the zone named in the account ---------------------
def _utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def test_a_weekend_start_is_provisional_and_the_first_live_tick_redates_what_came_before():
    now = {"s": _utc(2026, 11, 28, 10)}                       # Saturday 10:00 UTC, the market closed
    clock = ServerClock(utc_now_ns=lambda: now["s"] * 10**9)
    friday_close = (_utc(2026, 11, 27, 21, 59, 58) + 2 * H) * 1000   # an EET server's last tick
    clock.observe(friday_close)
    assert not clock.known                                     # one look cannot tell it is stale
    deal = (_utc(2026, 11, 27, 21) + 2 * H) * 1000            # a deal done Friday 21:00 UTC
    now["s"] = _utc(2026, 11, 29, 22, 0, 5)                   # the market opens: a tick arrives
    assert clock.observe((_utc(2026, 11, 29, 22, 0, 4) + 2 * H) * 1000) == 2 * H and clock.known
    assert clock.to_utc_ns(deal) == _utc(2026, 11, 27, 21) * 10**9   # re-dated, not 12 h late
    assert clock.to_server_s(_utc(2026, 11, 30, 8) * 10**9) == _utc(2026, 11, 30, 8) + 2 * H


def test_the_mt5_account_names_the_servers_zone_and_a_bad_one_is_refused_by_field():
    fields = {"login": "5001", "password": "secret", "server": "FakeBroker-Demo", "server_tz": "Europe/Athens"}
    assert validate_credentials("mt5", fields)["server_tz"] == "Europe/Athens"
    with pytest.raises(ConfigError) as refused:
        validate_credentials("mt5", {**fields, "server_tz": "Mars/Olympus"})
    assert refused.value.field == "credentials.server_tz" and "Mars" not in str(refused.value)
    fake = FakeMT5(server_tz="EET")
    fake.add_symbol("EURUSD", 1.1, 1.1002)
    env = {f"TICKBRIDGE_ACCOUNT_BROKER_{k.upper()}": v for k, v in {**fields, "server_tz": "EET"}.items()}
    adapter = make_adapter("mt5", "broker", ["EURUSD"], [EnvCredentials(env)], mt5_api=fake, bot_id="mt5-sma")
    assert adapter.server_clock.known and not adapter.server_clock.derived
    winter = _utc(2026, 11, 28, 10)
    assert adapter.server_clock.to_server_s(winter * 10**9) == winter + 2 * H   # exact from the start


# -- D9: client ids over Binance's 36 characters -------------------------------------------------------
@pytest.fixture
def spot():
    fake = BinanceFake().start()
    yield fake
    fake.stop()


def _spot_oms(fake: BinanceFake, bot_id: str) -> OrderManager:
    adapter = CcxtAdapter("binance", exchange=binance_on(fake), symbols=["BTC/USDT"], backoff_s=0.001,
                          max_backoff_s=0.005, poll_interval_s=None)
    instruments = adapter.instruments()
    return OrderManager(bot_id, LiveClock(), adapter, Portfolio.for_instrument(D(100_000), instruments["BTC/USDT"]),
                        instruments)


def test_the_binance_fakes_refuse_an_illegal_client_id_with_1100(spot):
    exchange = binance_on(spot)
    exchange.load_markets()
    with pytest.raises(ccxt.BadRequest, match="-1100"):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 40000, {"newClientOrderId": "x" * 37})
    exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 40000, {"newClientOrderId": "x" * 36})
    futures = BinanceFuturesFake().start()
    try:
        usdm = binanceusdm_on(futures)
        usdm.load_markets()
        with pytest.raises(ccxt.BadRequest, match="-1100"):
            usdm.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, 40000, {"newClientOrderId": "a b"})
    finally:
        futures.stop()
    with pytest.raises(BinanceError, match="newClientOrderId"):   # outside the legal characters
        spot.place_external("bot:1 2", "BTCUSDT", "BUY", D("0.01"), D("40000.00"))


def test_a_bot_id_too_long_for_binance_is_refused_when_the_bot_starts_naming_the_field():
    env = {"TICKBRIDGE_ACCOUNT_MAIN_EXCHANGE": "binance", "TICKBRIDGE_ACCOUNT_MAIN_API_KEY": "k",
           "TICKBRIDGE_ACCOUNT_MAIN_SECRET": "s"}
    with pytest.raises(ConfigError) as refused:
        make_adapter("ccxt", "main", ["BTC/USDT"], [EnvCredentials(env)], bot_id="momentum-btc-usdt-binance-main-01")
    assert refused.value.field == "id" and "too long for this venue" in refused.value.message
    assert bot_id_refusal("binance", "b" * 23) is None and bot_id_refusal("binanceusdm", "b" * 24) is not None
    assert bot_id_refusal("bybit", "b" * 64) is None   # only the venues whose limit is mapped


def test_an_order_or_amend_whose_client_id_binance_would_refuse_is_never_sent(spot):
    oms = _spot_oms(spot, "c" * 27)                          # ids of 36: legal, but no room for ".r1"
    posts = lambda: sum(1 for r in spot.requests if r[0] == "POST")  # noqa: E731
    sent = Order(oms.next_client_order_id(), oms.bot_id, "BTC/USDT", OrderSide.BUY, OrderType.LIMIT, D("0.01"), 0,
                 limit_price=D("40000.00"))
    oms.submit(sent)
    assert sent.state is OrderState.ACCEPTED and len(sent.client_order_id) == 36
    before = posts()
    reason = oms.adapter.amend(sent, D("41000.00"), None)
    assert reason is not None and "client id" in reason and posts() == before
    assert spot.orders[spot.by_client[sent.client_order_id]].status == "NEW"   # still working, unchanged
    longer = Order("d" * 28 + "-00000001", oms.bot_id, "BTC/USDT", OrderSide.BUY, OrderType.LIMIT, D("0.01"), 0,
                   limit_price=D("40000.00"))
    oms.submit(longer)
    assert longer.state is OrderState.REJECTED and "client id" in (longer.reason or "")
    assert posts() == before and longer.client_order_id not in spot.by_client


# -- D8: a 418 ban's Retry-After: recorded, never slept inside a call, nothing sent until it ends -----------
def test_a_418_ban_is_not_waited_out_inside_a_call_and_nothing_is_sent_until_it_ends(spot):
    spot.retry_after_s = 3600                                 # a ban: far beyond max_backoff_s
    oms = _spot_oms(spot, "t")
    adapter = oms.adapter
    spot.inject("418", "GET", "/api/v3/openOrders", times=1000)
    reads = lambda: sum(1 for r in spot.requests if r == ("GET", "/api/v3/openOrders"))  # noqa: E731
    before = reads()                                           # the connect's own poll
    poller = threading.Thread(target=adapter.poll, daemon=True)
    poller.start()
    poller.join(timeout=SETTLE_S)                              # a bound against a hang, not a measure
    try:
        assert not poller.is_alive() and reads() == before + 1  # returned at once, not retried into the ban
        assert adapter.exchange.last_response_headers.get("Retry-After") == "3600"
        assert adapter.poll() is False and reads() == before + 1  # during the ban: skipped, nothing sent
    finally:
        adapter.close()
    assert adapter._next_poll_s() > 3000                       # the poll loop waits out the rest


# -- D11: MT5 without a bot id, a comment the broker truncated -------------------------------------------
def test_a_truncated_comment_without_a_bot_id_is_never_taken_for_another_id():
    known = {"bot1-00000001": "bot1-00000001", "bot1-00000002": "bot1-00000002"}
    magic = mt5_mapping.TICKBRIDGE_MAGIC
    assert mt5_mapping.client_id_of(magic, "bot1-00000", 7, magic, known) == "MT5-7"   # ambiguous: by terms
    assert mt5_mapping.client_id_of(magic, "bot1-000000", 7, magic, {"bot1-00000002": "bot1-00000002"}) \
        == "bot1-00000002"
    assert mt5_mapping.client_id_of(magic, "bot1-00000003", 7, magic, known) == "bot1-00000003"  # as itself
    venue = Venue(bot_id=None)
    venue.fake.rewrite_comments(lambda c: c[:10])
    venue.fake.lose_next_answer()
    order = venue.order("BUY", "0.10")
    assert venue.orders_sent() == 1
    assert sum(p.volume for p in venue.fake.positions_get() or ()) == pytest.approx(0.10)
    assert [f.qty for f in venue.fills_of(order)] == [D("0.10")]
