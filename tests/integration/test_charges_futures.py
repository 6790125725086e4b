"""Funding on Binance USD-M futures booked into a bot's books, once (issues 15 and 16: account-level
charges): real ccxt `binanceusdm` against the loopback futures fake (funding every 8 hours on open
positions, the income endpoint), the real store (SQLite and PostgreSQL), the engine's ChargeBooker.

Before this change the funding was listed (`funding_since`) and booked nowhere: the bot's cash and
realized P&L ignored what the venue's wallet paid.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import pytest
from sqlalchemy import select

ccxt = pytest.importorskip("ccxt")

from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from engine.clock import LiveClock  # noqa: E402
from engine.oms import OrderManager  # noqa: E402
from engine.orders import Order, OrderSide, OrderType  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from engine.reconcile import ChargeBooker, restore_books  # noqa: E402
from engine.store.db import make_engine, upgrade  # noqa: E402
from engine.store.journal import SqlJournal  # noqa: E402
from engine.store.models import AccountChargeRow  # noqa: E402
from tests.conformance.harness_ccxt import binanceusdm_on  # noqa: E402
from tests.fakes.binance_fake import _ms  # noqa: E402
from tests.fakes.binance_futures_fake import BinanceFuturesFake  # noqa: E402

BTC = "BTC/USDT:USDT"
D = Decimal
HOUR_MS = 3_600_000
CHARGES = AccountChargeRow.__table__


@pytest.fixture
def fake() -> Iterator[BinanceFuturesFake]:
    fake = BinanceFuturesFake().start()
    yield fake
    fake.stop()


class Bot:
    """One bot's pieces as the venue runner assembles them: adapter, OMS with its journal, and the
    charge booker on the shared account "acct"."""

    def __init__(self, fake: BinanceFuturesFake, url: str, bot_id: str, restore: bool = False) -> None:
        self.adapter = CcxtAdapter("binanceusdm", exchange=binanceusdm_on(fake), symbols=[BTC], backoff_s=0.001,
                                   max_backoff_s=0.005, poll_interval_s=None)
        instruments = self.adapter.instruments()
        self.journal = SqlJournal(make_engine(url), bot_id, "BINANCEUSDM", "acct")
        portfolio = Portfolio(D(10_000), instruments[BTC].scales.cash_dp)
        self.oms = OrderManager(bot_id, LiveClock(), self.adapter, portfolio, instruments, journal=self.journal,
                                connect=not restore)
        self.charges = ChargeBooker(self.oms, self.adapter, self.journal, "acct")
        if restore:
            self.charges.remember(restore_books(self.oms, self.journal.load(instruments)))
            self.oms.connect()

    def buy(self, qty: str) -> None:
        self.oms.submit(Order(self.oms.next_client_order_id(), self.oms.bot_id, BTC, OrderSide.BUY,
                              OrderType.MARKET, D(qty), 0))
        self.journal.flush()

    @property
    def cash(self) -> Decimal:
        return self.oms.portfolio.cash

    @property
    def realized(self) -> int:
        return self.oms.portfolio.realized_pnl_raw


def rows(url: str) -> list:
    with make_engine(url).connect() as connection:
        return connection.execute(select(CHARGES).order_by(CHARGES.c.id)).all()


def test_funding_is_booked_once_and_the_books_survive_a_restart_with_it(fake, database_url):
    upgrade(database_url)
    bot = Bot(fake, database_url, "fund")
    bot.buy("0.010")
    paid = [fake.charge_funding("BTCUSDT", D("0.0001")), fake.charge_funding("BTCUSDT", D("0.0002"))]
    assert [c.amount for c in bot.charges.poll().booked] == paid
    assert bot.charges.poll().booked == []                    # asked again: nothing booked twice
    cash, realized = bot.cash, bot.realized
    bot.buy("0.005")                                          # a fill after the charges
    fake.charge_funding("BTCUSDT", D("-0.0001"))
    assert len(bot.charges.poll().booked) == 1
    # a restart: the books come back with their charges where they were booked; nothing more booked
    again = Bot(fake, database_url, "fund", restore=True)
    assert (again.cash, again.realized) == (bot.cash, bot.realized) and bot.cash != cash and realized
    assert again.charges.poll().booked == []
    assert (again.cash, again.realized) == (bot.cash, bot.realized)
    assert again.cash == again.adapter.account().cash       # the venue's wallet, exactly
    assert sum(1 for r in rows(database_url) if r.booked) == 3


def test_funding_charged_before_the_bot_held_the_symbol_is_not_its_own(fake, database_url):
    upgrade(database_url)
    bot = Bot(fake, database_url, "fund")
    bot.buy("0.010")
    # the venue's schedule over the day before the buy (the adapter's lookback): every 8 hours
    paid = fake.run_funding(_ms() - HOUR_MS, D("0.0001"), since_ms=_ms() - 23 * HOUR_MS)
    assert len(paid) in (2, 3) and all(i.amount == D("-0.05000005") for i in paid)
    cash = bot.cash
    bot.charges.poll()
    result = bot.charges.poll()
    assert result.booked == [] and len(result.external) == len(paid)
    assert bot.cash == cash


def test_funding_after_the_buy_is_the_bots_and_each_payment_is_booked_once(fake, database_url):
    upgrade(database_url)
    bot = Bot(fake, database_url, "fund")
    bot.buy("0.010")
    before_cash, fee = bot.cash, bot.oms.fills[0].fee
    first = fake.charge_funding("BTCUSDT", D("0.0001"))
    second = fake.charge_funding("BTCUSDT", D("-0.0003"))
    assert (first, second) == (D("-0.05000005"), D("0.15000015"))
    result = bot.charges.poll()
    assert [c.amount for c in result.booked] == [first, second]
    # cash and realized P&L move by the venue's exact amounts: -0.05000005 + 0.15000015 = 0.1000001
    assert bot.cash == before_cash + D("0.1000001") == D(10_000) - fee + D("0.1000001")
    s = bot.oms.instruments[BTC].scales
    assert bot.realized == s.cash_raw(D("0.1000001"))     # the entry fee waits in the open lot
    # the venue's wallet moved by the same: the books equal the venue's view of this bot
    assert bot.adapter.account().cash == bot.cash
    stored = [(r.charge_id, r.booked, r.bot_id, r.amount, r.value) for r in rows(database_url)]
    assert [(b, who, amount, value) for _, b, who, amount, value in stored] == [
        (True, "fund", first, first), (True, "fund", second, second)]
    assert bot.charges.poll().booked == []


def test_a_second_bot_of_the_account_never_books_the_holders_funding(fake, database_url):
    upgrade(database_url)
    holder = Bot(fake, database_url, "holder")
    other = Bot(fake, database_url, "other")   # same account, holds nothing in BTC
    holder.buy("0.010")
    paid = fake.charge_funding("BTCUSDT", D("0.0001"))
    # the other bot sees it first: external (recorded on its second sighting), nothing booked
    assert other.charges.poll().external == []
    assert [c.amount for c in other.charges.poll().external] == [paid]
    assert other.cash == D(10_000) and other.realized == 0
    assert [(r.booked, r.bot_id) for r in rows(database_url)] == [(False, "other")]
    # the sole holder then claims it: booked once, into the holder
    cash = holder.cash
    assert [c.amount for c in holder.charges.poll().booked] == [paid]
    assert holder.cash == cash + paid
    assert [(r.booked, r.bot_id) for r in rows(database_url)] == [(True, "holder")]
    # a restart of the other bot books nothing of it
    again = Bot(fake, database_url, "other", restore=True)
    assert again.charges.poll().booked == [] and again.cash == D(10_000)


def test_funding_on_a_symbol_someone_else_also_holds_is_the_accounts_not_the_bots(fake, database_url):
    upgrade(database_url)
    bot = Bot(fake, database_url, "fund")
    bot.buy("0.010")
    fake.place_external("manual-1", "BTCUSDT", "BUY", D("0.020"), D("50000.10"))  # a person's 0.020 more
    fake.fill("manual-1")
    cash, realized = bot.cash, bot.realized
    paid = fake.charge_funding("BTCUSDT", D("0.0001"))          # on the account's 0.030
    assert paid == D("-0.15000015")
    bot.charges.poll()
    result = bot.charges.poll()
    assert [c.amount for c in result.external] == [paid] and result.booked == []
    assert (bot.cash, bot.realized) == (cash, realized)
    assert [(r.booked, r.bot_id) for r in rows(database_url)] == [(False, "fund")]
