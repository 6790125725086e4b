"""An equity-fraction order is a fraction of the bot's equity, never of the venue account's.

Found at stop 28: every live adapter sized `go(1)` / `size: 0.5` by the whole venue account's
equity (MT5's account_info().equity, ccxt's balance, Alpaca's account equity). One account
carries several bots and the trader's own holdings, so a bot given 10,000 on a 100,000 terminal
opened 0.90 lots of EURUSD (99,002 USD) instead of 0.09. The runtime now gives each adapter its
bot's equity (live.bot.books_equity: the books marked at the last guarded mid) and the adapters
size by it (brokers.base.fraction_equity), still within what the venue account has free.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from brokers.base import RejectReason
from engine.instrument import Instrument
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from live.bot import books_equity

D = Decimal


# -- end to end: the runtime wires the bot's books into the adapter --------------------------------
def test_an_mt5_bot_given_10000_on_a_100000_terminal_trades_its_own_10000(tmp_path):
    from engine.store.db import upgrade
    from live.config import parse_bot_config
    from tests.integration.runtime_helpers import wait_for
    from tests.integration.test_live_mt5_bot import BOT, OTHER_EA, Market, manager, terminal

    start = int(time.time() * 1000)
    fake = terminal(start)             # balance 100,000 USD: the bot is given 10,000 of it
    market = Market(fake, start)
    url = f"sqlite:///{tmp_path}/store.db"
    upgrade(url)
    bots = manager(url, tmp_path, fake)
    config = {**BOT, "params": {"fast": 2, "slow": 4, "mode": "long_only", "units": "fractional"}}  # size 1: all of it
    bots.start(parse_bot_config(config))
    try:
        for _ in range(60):
            seen = bots.status(BOT["id"])["ticks"]
            market.quote()
            wait_for(lambda: bots.status(BOT["id"])["ticks"] > seen, "the next tick")
            if any(p["magic"] != OTHER_EA for p in fake.positions.values()):
                break
        [position] = [p for p in fake.positions.values() if p["magic"] != OTHER_EA]
    finally:
        bots.stop(BOT["id"])
    # 10,000 of the bot's equity at the ask ~1.1 x 100,000 per lot = 0.0909 -> 0.09 lots (the whole
    # terminal's ~100,000 gave 0.90 lots before)
    assert position["volume"] == pytest.approx(0.09)
    assert position["volume"] * 100_000 * position["price_open"] <= 10_000


# -- each adapter sizes by the equity it is given --------------------------------------------------
def test_mt5_sizes_by_the_bots_equity_and_refuses_when_it_cannot_be_valued():
    from tests.integration.test_mt5_adapter import Venue

    venue = Venue()                                            # the terminal's account: 10,000 USD
    venue.adapter.sizing_equity = lambda: D(5_000)
    order = Order("bot1-frac", "bot1", "EURUSD", OrderSide.BUY, OrderType.MARKET, None, 0, equity_fraction=D(1))
    venue.adapter.submit(order)
    # 5,000 at 1.10020 x 100,000 per lot = 0.0454 -> 0.04 (the account's 10,000 would give 0.09)
    assert order.qty == D("0.04") and venue.sink.fills[0].qty == D("0.04")
    venue.adapter.sizing_equity = lambda: None                # no price yet: the books cannot be valued
    unvalued = Order("bot1-none", "bot1", "EURUSD", OrderSide.BUY, OrderType.MARKET, None, 0, equity_fraction=D(1))
    sent = venue.orders_sent()
    venue.adapter.submit(unvalued)
    assert venue.sink.state["bot1-none"] is OrderState.REJECTED and venue.orders_sent() == sent


def test_ccxt_sizes_by_the_bots_equity_within_the_accounts_free_balance_and_refuses_without_it():
    pytest.importorskip("ccxt")
    from engine.market import Tick
    from tests.fakes.binance_fake import BinanceFake
    from tests.integration.test_ccxt_venue_behaviour import SYMBOL, adapter_of, make_oms, order

    fake = BinanceFake().start()
    try:
        fake.balances.update(BTC=D(0), ETH=D(0), BNB=D(0))    # the account: 100,000 USDT
        oms = make_oms(fake)
        adapter = adapter_of(oms)
        adapter.on_tick(Tick(SYMBOL, 1, 39999.99, 40000.00, 40000.00))
        adapter.sizing_equity = lambda: D(10_000)
        sent = order(oms, qty=None, fraction="0.1")
        oms.submit(sent)
        # 10 % of the bot's 10,000 at 40,000.00 = 0.025 BTC (the account's 100,000 gave 0.25)
        assert sent.qty == D("0.025") and sent.state is OrderState.FILLED
        adapter.sizing_equity = lambda: D(10_000_000)          # books claiming more than the account has
        capped = order(oms, qty=None, fraction="1")
        oms.submit(capped)
        # sized within the account's free USDT (~99,000), not at the books' 10,000,000 (250 BTC)
        assert capped.qty is not None and capped.qty * D(40_000) <= D(100_000)
        adapter.sizing_equity = lambda: None
        posts = sum(1 for request in fake.requests if request == ("POST", "/api/v3/order"))
        refused = order(oms, qty=None, fraction="0.1")
        oms.submit(refused)
        assert refused.state is OrderState.REJECTED and refused.reason == RejectReason.NO_LIQUIDITY
        assert sum(1 for request in fake.requests if request == ("POST", "/api/v3/order")) == posts
    finally:
        fake.stop()


def test_alpaca_sends_a_notional_of_the_bots_equity():
    from tests.integration.test_alpaca_adapter import Venue

    venue = Venue(fractionable=True)                          # the account: 100,000 USD
    try:
        venue.adapter.sizing_equity = lambda: D(20_000)
        order = Order("bot1-frac", "bot1", "AAPL", OrderSide.BUY, OrderType.MARKET, None, 0, equity_fraction=D("0.1"))
        venue.adapter.submit(order)
        venue.settle()
        assert venue.posts()[0]["notional"] == 2000.0          # 10 % of the bot's 20,000, not of 100,000
        venue.adapter.sizing_equity = lambda: None
        refused = Order("bot1-none", "bot1", "AAPL", OrderSide.BUY, OrderType.MARKET, None, 0,
                        equity_fraction=D("0.1"))
        venue.adapter.submit(refused)
        venue.settle()
        assert len(venue.posts()) == 1 and venue.sink.state["bot1-none"] is OrderState.REJECTED
    finally:
        venue.close()


# -- the runtime's side: the books, marked at the last guarded price -------------------------------
def test_books_equity_marks_the_bots_books_at_the_last_guarded_price():
    eurusd = Instrument("EURUSD", price_increment=D("0.00001"), size_increment=D("0.01"), multiplier=D(100_000))
    portfolio = Portfolio.for_instrument(D(10_000), eurusd)
    last: list[Decimal | None] = [None]
    equity = books_equity(portfolio, eurusd, lambda _symbol: last[0])
    assert equity() is None                                   # no admitted tick yet: nothing to size by
    last[0] = D("1.10000")
    assert equity() == D(10_000)
    s = eurusd.scales
    portfolio.apply_fill(eurusd, 1, int(D("0.10").scaleb(s.qty_dp)), int(D("1.10000").scaleb(s.price_dp)), 0, 1)
    last[0] = D("1.20000")                                    # 0.10 lot bought at 1.10000 (cash books)
    assert equity() == D(10_000) - D(11_000) + D("0.10") * D("1.20000") * 100_000   # 11,000 at 1.2
