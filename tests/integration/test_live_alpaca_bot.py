"""A bot on Alpaca end to end, as Alpaca behaves (issue 16, item 5).

The live runtime drives a bot (BotManager, the SQL store, the real alpaca-py SDK in the Alpaca
adapter and feed) on the loopback fake of Alpaca (tests/fakes/alpaca_fake.py) holding crypto,
whose positions come back as "BTCUSD" while its orders say "BTC/USD". The bot trades on the
quotes of the crypto data stream, its trade_updates stream drops and comes back (what happened
meanwhile is reconciled over REST, fills read page by page), the bot restarts (the books are
rebuilt from the store and reconciled with Alpaca's positions), trades again and is killed.
At the end the bot's books (the store) equal the fake venue's view of that bot: every fill
activity of its orders a fill once, the position equal to Alpaca's, the cash moved by exactly
what the fills say, flat and without open orders after the kill.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

pytest.importorskip("alpaca", reason="alpaca-py is not installed (pip install alpaca-py==0.44.0)")

from sqlalchemy import select  # noqa: E402

from brokers.alpaca.adapter import AlpacaAdapter  # noqa: E402
from brokers.alpaca.feed import AlpacaFeed  # noqa: E402
from live.config import FeedConfig, parse_bot_config  # noqa: E402
from live.manager import BotManager  # noqa: E402
from engine.store.db import make_engine, upgrade  # noqa: E402
from engine.store.models import FillRow  # noqa: E402
from tests.fakes.alpaca_fake import KEY, SECRET, FakeAlpaca  # noqa: E402
from tests.integration.runtime_helpers import wait_for

SYMBOL = "BTC/USD"
BOT = {"id": "alpaca-sma", "strategy": "sma_cross", "symbol": SYMBOL, "venue": "alpaca", "account": "crypto",
       "bar": "5s", "cash": "100000", "params": {"fast": 2, "slow": 4, "mode": "long_only", "fixed_size": "0.01",
                                                "units": "fractional"}}
STEP_NS = 5_000_000_000   # one bar per quote


def venue() -> FakeAlpaca:
    fake = FakeAlpaca(cash="100000")
    fake.add_asset(SYMBOL, "50000", asset_class="crypto", min_order_size="0.0001",
                   min_trade_increment="0.000000001", price_increment="1")
    return fake


def manager(url: str, tmp_path, fake: FakeAlpaca) -> BotManager:
    def open_alpaca(config):
        adapter = AlpacaAdapter(KEY, SECRET, [config.symbol], url_override=fake.rest_url,
                                stream_url=fake.stream_url, stream_backoff_s=(0.01, 0.05))
        feed = AlpacaFeed(KEY, SECRET, stock_url=fake.stock_data_url, crypto_url=fake.crypto_data_url,
                          data_url=fake.rest_url, reconnect_backoff_s=(0.01, 0.05))
        return adapter, feed, []
    return BotManager(FeedConfig(path="data/ticks/"), url, tmp_path, record=False, venues=open_alpaca)


class Market:
    """A wave with a period of 12 bars: the 2/4 SMAs cross every few bars. Each quote is a new
    5 s bar on the venue's clock, and the price the venue fills market orders at."""

    def __init__(self, fake: FakeAlpaca) -> None:
        self.fake, self.step = fake, 0

    def quote(self) -> None:
        self.step += 1
        mid = 50_000 + round(400 * math.sin(self.step * 2 * math.pi / 12))
        self.fake.advance(STEP_NS)
        self.fake.set_price(SYMBOL, str(mid))
        assert self.fake.publish_quote(SYMBOL, mid - 1, mid + 1) == 1


def run_quotes(bots: BotManager, market: Market, count: int) -> None:
    wait_for(lambda: market.fake.subscribed("quotes", SYMBOL), "the quote subscription")
    for _ in range(count):
        seen = bots.status(BOT["id"])["ticks"]
        market.quote()
        wait_for(lambda: bots.status(BOT["id"])["ticks"] > seen, "the next tick")


def stored_fills(url: str) -> list:
    with make_engine(url).connect() as connection:
        return list(connection.execute(select(FillRow.__table__).where(FillRow.bot_id == BOT["id"])))


def venue_fills(fake: FakeAlpaca) -> dict[str, dict]:
    """The fake's fill activities of the bot's orders, by the adapter's execution id."""
    ours = {o["id"] for o in fake.orders.values() if o["client_order_id"].startswith(BOT["id"])}
    return {f"{a['order_id']}@{a['cum_qty']}": a for a in fake.activities if a["order_id"] in ours}


def venue_position(fake: FakeAlpaca) -> Decimal:
    return sum((Decimal(p["qty"]) for p in fake.client_positions() if p["symbol"] == "BTCUSD"), Decimal(0))


def test_a_bot_on_alpaca_keeps_books_equal_to_the_venues_view_of_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    fake = venue()
    market = Market(fake)
    try:
        with manager(url, tmp_path, fake) as bots:
            bots.start(parse_bot_config(BOT))
            run_quotes(bots, market, 14)
            wait_for(lambda: len(stored_fills(url)) >= 1, "a first fill")
            generation = fake.stream_connections
            fake.drop_streams(refuse=True)             # trade_updates goes away; orders still go by REST
            run_quotes(bots, market, 8)
            fake.restore_streams()
            wait_for(lambda: fake.stream_connections > generation, "the trade_updates stream back")
            run_quotes(bots, market, 8)
            wait_for(lambda: len(stored_fills(url)) >= 3, "three fills")
            for _ in range(12):                         # stop while holding coin, so the restart has
                if bots.status(BOT["id"])["position"] > 0:   # a position to reconcile
                    break
                run_quotes(bots, market, 1)
            bots.stop(BOT["id"])
            assert venue_position(fake) > 0

        with manager(url, tmp_path, fake) as bots:  # a restart: reconciled with Alpaca, nothing resent
            posted = fake.posted_orders
            bots.start(parse_bot_config(BOT))
            assert bots.status(BOT["id"])["position"] == venue_position(fake)   # "BTCUSD" read as BTC/USD
            assert fake.posted_orders == posted
            run_quotes(bots, market, 10)
            bots.kill(BOT["id"], "end of test")
            wait_for(lambda: bots.status(BOT["id"])["position"] == 0, "flat after the kill")
            wait_for(lambda: len(stored_fills(url)) == len(venue_fills(fake)), "every fill booked")
            bots.stop(BOT["id"])
    finally:
        fake.close()

    fills, activities = stored_fills(url), venue_fills(fake)
    assert sorted(f.execution_id for f in fills) == sorted(activities)          # each fill once
    for fill in fills:
        activity = activities[fill.execution_id]
        assert (fill.qty, fill.price, fill.side.lower()) == (Decimal(activity["qty"]), Decimal(activity["price"]),
                                                             activity["side"])
    assert venue_position(fake) == 0 and fake.positions == {}
    assert not [o for o in fake.orders.values() if o["status"] not in ("filled", "canceled", "expired", "rejected")]
    books_cash = sum((-(1 if f.side == "BUY" else -1) * f.qty * f.price for f in fills), Decimal(0))
    assert books_cash == fake.cash - Decimal("100000")
    assert len(fills) >= 4
