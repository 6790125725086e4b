"""Alpaca's crypto fees booked into a bot's books, once (issue 16: "crypto fees are booked as 0"):
the real alpaca-py SDK against the loopback fake, which posts CFEE activities at the end of the
day as Alpaca documents them (in the coin on a buy, in dollars on a sell), the real store
(SQLite and PostgreSQL) and the engine's ChargeBooker.

Before this change the fees were never read: the bot's position kept the coins Alpaca had taken
(0.01 BTC booked, 0.009975 held) and its cash the dollars.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from sqlalchemy import select

pytest.importorskip("alpaca", reason="alpaca-py is not installed")

from brokers.alpaca.adapter import AlpacaAdapter  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderSide, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from engine.reconcile import ChargeBooker, restore_books  # noqa: E402
from engine.store.db import make_engine, upgrade  # noqa: E402
from engine.store.journal import SqlJournal  # noqa: E402
from engine.store.models import AccountChargeRow  # noqa: E402
from tests.fakes.alpaca_fake import KEY, SECRET, FakeAlpaca, adapter_settled  # noqa: E402

D = Decimal
BTC = "BTC/USD"
CHARGES = AccountChargeRow.__table__


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def fake():
    fake = FakeAlpaca(cash="100000")
    fake.add_asset(BTC, "50000", asset_class="crypto", min_order_size="0.0001", min_trade_increment="0.000000001",
                   price_increment="0.01")
    yield fake
    fake.close()


class Bot:
    def __init__(self, fake: FakeAlpaca, url: str, bot_id: str, restore: bool = False) -> None:
        self.fake = fake
        self.adapter = AlpacaAdapter(KEY, SECRET, [BTC], url_override=fake.rest_url, stream_url=fake.stream_url,
                                     sleep=lambda s: None, stream_backoff_s=(0.01, 0.05))
        self.journal = SqlJournal(make_engine(url), bot_id, "ALPACA", "paper-crypto")
        self.oms = OrderManager(bot_id, LiveClock(), self.adapter, Portfolio(D(100000), 11, "USD"), {},
                                journal=self.journal, connect=False)
        self.adapter.connect(self.oms)
        self.oms.instruments.update(self.adapter.instruments())
        self.charges = ChargeBooker(self.oms, self.adapter, self.journal, "paper-crypto")
        if restore:
            self.charges.remember(restore_books(self.oms, self.journal.load(self.oms.instruments)))

    def trade(self, side: str, qty: str) -> None:
        fills = len(self.oms.fills)
        self.oms.submit(Order(self.oms.next_client_order_id(), self.oms.bot_id, BTC, OrderSide(side),
                              OrderType.MARKET, D(qty), 0))
        wait_until(lambda: len(self.oms.fills) > fills and adapter_settled(self.fake, self.adapter), "the fill")
        self.journal.flush()

    @property
    def position(self) -> Decimal:
        return self.oms.portfolio.positions[BTC].quantity

    def close(self) -> None:
        self.adapter.close()


def venue_position(bot: Bot) -> Decimal:
    return {p.symbol: p.qty for p in bot.adapter.positions()}.get(BTC, D(0))


def test_crypto_fees_in_the_coin_and_in_dollars_are_booked_once_and_survive_a_restart(fake, database_url):
    upgrade(database_url)
    bot = Bot(fake, database_url, "cfee")
    try:
        bot.trade("BUY", "0.01")                         # 500.00 USD at 50,000
        bot.trade("SELL", "0.004")                       # 200.00 USD back
        assert bot.position == D("0.006") and bot.oms.portfolio.cash == D("99700")
        posted = fake.post_crypto_fees()                 # the day's end: 25 bps of what each trade credited
        assert [(r["qty"], r["net_amount"]) for r in posted] == [("-0.000025", "0"), ("0", "-0.5")]
        result = bot.charges.poll()
        # both dated that day (same time): booked in either order, each once
        assert sorted((c.asset, c.amount) for c in result.booked) == [("BTC", D("-0.000025")), ("USD", D("-0.5"))]
        # the coins Alpaca took left the position; the dollars left the cash
        assert bot.position == D("0.005975") == venue_position(bot)
        assert bot.oms.portfolio.cash == D("99699.5") == bot.adapter.account().cash
        portfolio = bot.oms.portfolio
        # fees: 0.000025 BTC at the fill's 50,000 = 1.25, and 0.50: 1.75 in all, in realized P&L
        assert portfolio.fees_raw == D("1.75").scaleb(11)
        assert portfolio.realized_pnl_raw == D("-1.75").scaleb(11)
        assert bot.charges.poll().booked == []           # asked again: nothing twice
        cash, realized = portfolio.cash, portfolio.realized_pnl_raw
    finally:
        bot.close()
    again = Bot(fake, database_url, "cfee", restore=True)
    try:
        assert again.position == D("0.005975") and again.oms.portfolio.cash == cash
        assert again.oms.portfolio.realized_pnl_raw == realized
        assert again.charges.poll().booked == []
        assert again.position == D("0.005975")
    finally:
        again.close()
    with make_engine(database_url).connect() as connection:
        rows = connection.execute(select(CHARGES.c.booked, CHARGES.c.bot_id, CHARGES.c.value)).all()
    assert sorted(rows) == [(True, "cfee", D("-1.25")), (True, "cfee", D("-0.5"))]


def test_a_days_fee_on_a_symbol_someone_else_also_traded_is_the_accounts(fake, database_url):
    upgrade(database_url)
    bot = Bot(fake, database_url, "cfee")
    try:
        bot.trade("BUY", "0.01")
        other = fake.place_external(BTC, "buy", "0.02", "50000")   # a person's order, same day
        fake.fill(other["client_order_id"])
        wait_until(lambda: adapter_settled(fake, bot.adapter), "the adapter to settle")
        fake.post_crypto_fees()
        bot.charges.poll()
        result = bot.charges.poll()
        assert result.booked == [] and len(result.external) == 2
        assert bot.position == D("0.01")             # the books hold what the bot traded, no fee guessed
    finally:
        bot.close()


# -- the live runner: polled after reconciliation and on its interval, restored on a restart ----------
def test_a_live_bot_books_its_crypto_fee_from_the_runners_poll_and_restarts_with_it(fake, tmp_path):
    import threading

    from brokers.alpaca.feed import AlpacaFeed
    from engine.store.models import PositionRow
    from live.config import parse_bot_config
    from live.events import StopBot
    from live.venue_runner import venue_bot

    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    from tests.integration.test_live_alpaca_bot import Market

    config = parse_bot_config({"id": "hodl", "strategy": "sma_cross", "symbol": BTC, "venue": "alpaca",
                               "account": "crypto", "bar": "5s", "cash": "100000",
                               "params": {"fast": 2, "slow": 4, "mode": "long_only", "fixed_size": "0.01",
                                          "units": "fractional"}})

    def start():
        adapter = AlpacaAdapter(KEY, SECRET, [BTC], url_override=fake.rest_url, stream_url=fake.stream_url,
                                stream_backoff_s=(0.01, 0.05))
        feed = AlpacaFeed(KEY, SECRET, stock_url=fake.stock_data_url, crypto_url=fake.crypto_data_url,
                          data_url=fake.rest_url, reconnect_backoff_s=(0.01, 0.05))
        runner = venue_bot(config, url, adapter, feed, charges_every_s=0.05)
        thread = threading.Thread(target=runner.run, daemon=True)
        thread.start()
        wait_until(lambda: runner.status()["state"] == "RUNNING", "the bot to run")
        return runner, thread

    def stop(runner, thread):
        runner.post(StopBot()).wait(20)
        thread.join(20)
        assert not thread.is_alive()

    runner, thread = start()
    try:
        market = Market(fake)
        wait_until(lambda: fake.subscribed("quotes", BTC), "the quote subscription")
        for _ in range(40):                                # quotes until the strategy has bought
            seen = runner.status()["ticks"]
            market.quote()
            wait_until(lambda: runner.status()["ticks"] > seen, "the tick")
            if runner.status()["position"]:
                break
        wait_until(lambda: len(runner.oms.fills) == 1, "the buy")
        price = runner.oms.fills[0].price
        fake.post_crypto_fees()
        wait_until(lambda: runner.summary.get("charges", {}).get("booked") == 1, "the fee booked by the poll")
        assert runner.oms.portfolio.positions[BTC].quantity == venue_position_of(runner.adapter) == D("0.009975")
        assert runner.summary["charges"]["external"] == []
        assert runner.oms.portfolio.realized_pnl_raw == (-D("0.000025") * price).scaleb(11)
    finally:
        stop(runner, thread)
    with make_engine(url).connect() as connection:
        stored = connection.execute(select(PositionRow.__table__.c.qty)
                                    .where(PositionRow.__table__.c.bot_id == "hodl")).scalar()
    assert stored == D("0.009975")                         # the position row includes the fee taken
    runner, thread = start()                               # a restart: the fee restored, not booked again
    try:
        assert runner.oms.portfolio.positions[BTC].quantity == D("0.009975")
        assert runner.report is not None and runner.report.charges_booked == []
    finally:
        stop(runner, thread)


def venue_position_of(adapter) -> Decimal:
    return {p.symbol: p.qty for p in adapter.positions()}.get(BTC, D(0))
