"""MT5 swap and rebates as account charges, booked once into the bot that solely held the position
(helper M, defect 1): the MT5 adapter on the fake terminal, the real store and the engine's
ChargeBooker, as the live runner wires them (live/venue_runner.py).

MT5 books a position's overnight financing on the deal that closes it (DEAL_SWAP, "cumulative swap
on close"), and it may be a credit: a carry trade's swap larger than the commission. The adapter
used to book -(commission + fee + swap) as the closing fill's fee: a negative fee (a USD account),
or a refusal of the whole fill (an EUR account on EURUSD: engine.portfolio refuses a negative fee
charged outside the books' currency). The swap is no fee of the fill: it is a SWAP charge.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from brokers.mt5 import MT5Adapter
from engine.charges import ChargeKind
from engine.clock import LiveClock
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderType
from engine.portfolio import Portfolio
from engine.reconcile import ChargeBooker, restore_books
from engine.store.db import make_engine, upgrade
from engine.store.journal import SqlJournal
from engine.store.models import AccountChargeRow
from live.rates import live_rates
from tests.fakes.mt5_fake import FakeMT5

D = Decimal
CHARGES = AccountChargeRow.__table__
OTHER_EA = 99
ACCOUNT = "fx"


def terminal(currency: str = "USD", commission_per_lot: float = 7.0) -> FakeMT5:
    fake = FakeMT5(margin_mode=FakeMT5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING, commission_per_lot=commission_per_lot,
                   currency=currency, balance=100_000.0)
    fake.add_symbol("EURUSD", 1.10000, 1.10002, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    return fake


class Bot:
    """One bot (its own magic) on the terminal: adapter, OMS over the SQL journal, charge booker."""

    def __init__(self, fake: FakeMT5, url: str, bot_id: str = "carry", restore: bool = False,
                 symbol: str = "EURUSD") -> None:
        self.fake, self.symbol = fake, symbol
        self.adapter = MT5Adapter(fake, [symbol], bot_id=bot_id, sleep=lambda s: None,
                                  clock_ns=lambda: fake.now_msc * 1_000_000)
        self.journal = SqlJournal(make_engine(url), bot_id, "MT5", ACCOUNT)
        # the books of an xxxUSD bot: USD (the quote), on the 10^-7 grid of 5-decimal prices x 2-decimal
        # lots, with the live runner's rates (live.rates: asked of the venue)
        portfolio = Portfolio(D(100_000), 7, "USD", rates=live_rates(self.adapter))
        self.oms = OrderManager(bot_id, LiveClock(), self.adapter, portfolio, {}, journal=self.journal, connect=False)
        self.adapter.connect(self.oms)
        self.oms.instruments.update(self.adapter.instruments())
        self.charges = ChargeBooker(self.oms, self.adapter, self.journal, ACCOUNT)
        if restore:
            stored = self.journal.load(self.oms.instruments)
            self.charges.remember(restore_books(self.oms, stored))
            self.adapter.remember(stored.orders)

    def trade(self, side: str, qty: str) -> None:
        self.oms.submit(Order(self.oms.next_client_order_id(), self.oms.bot_id, self.symbol, OrderSide(side),
                              OrderType.MARKET, D(qty), 0))
        self.journal.flush()

    @property
    def portfolio(self) -> Portfolio:
        return self.oms.portfolio


def quote(fake: FakeMT5, symbol: str = "EURUSD") -> None:
    """A fresh tick: the market is open (the adapter's derived server clock is confirmed by it)."""
    s = fake.symbols[symbol]
    fake.set_tick(symbol, s.bid, s.ask, time_msc=fake.now_msc + 1_000)


def booked_rows(url: str) -> list[tuple]:
    with make_engine(url).connect() as connection:
        return [tuple(r) for r in connection.execute(
            select(CHARGES.c.charge_id, CHARGES.c.kind, CHARGES.c.booked, CHARGES.c.bot_id, CHARGES.c.value))]


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    return url


def test_a_swap_credit_larger_than_the_commission_is_a_swap_charge_booked_once_not_a_negative_fee(url):
    fake = terminal()
    assert fake.initialize(login=5001, password="secret", server="FakeBroker-Demo")
    fake.place_external({"action": 1, "symbol": "EURUSD", "volume": 0.30, "type": fake.ORDER_TYPE_SELL,
                         "price": 1.1, "type_filling": 0, "magic": OTHER_EA, "comment": "grid EA"})
    bot = Bot(fake, url)
    quote(fake)
    bot.trade("BUY", "0.10")                                   # 0.70 commission
    fake.rollover(swap_long_per_lot=30.0, swap_short_per_lot=-40.0)   # a carry trade: +3.00 on ours, -12.00 on theirs
    quote(fake)
    bot.trade("SELL", "0.10")                                  # closes: commission -0.70, swap +3.00
    closing_deal = [d for d in fake.deals if d.magic == bot.adapter.magic][-1]
    assert (closing_deal.commission, closing_deal.swap) == (-0.7, 3.0)
    opening, closing = bot.oms.fills
    assert (opening.fee, closing.fee) == (D("0.70"), D("0.70"))  # the fill's fee: commission + fee only
    cash, realized = bot.portfolio.cash, bot.portfolio.realized_pnl_raw
    [swap] = bot.adapter.charges_since(0)                      # the other EA's swap is not listed
    assert (swap.charge_id, swap.kind, swap.asset, swap.amount, swap.ts, swap.symbol) == \
        (f"swap:{closing_deal.ticket}", ChargeKind.SWAP, "USD", D("3.00"), closing.ts, "EURUSD")
    result = bot.charges.poll()
    assert [c.charge_id for c in result.booked] == [swap.charge_id] and result.refused == []
    s = bot.oms.instruments["EURUSD"].scales
    assert bot.portfolio.cash == cash + D("3.00")
    assert bot.portfolio.realized_pnl_raw == realized + to_raw(D("3.00"), s.cash_dp)
    assert bot.portfolio.swap_raw == to_raw(D("3.00"), s.cash_dp)
    assert bot.portfolio.fees_raw == to_raw(D("1.40"), s.cash_dp)
    assert bot.charges.poll().booked == []                     # asked again: nothing twice
    # the books equal the terminal's view of this bot: every deal's profit, commission, fee and swap
    ours = [d for d in fake.deals if d.magic == bot.adapter.magic]
    moved = sum(D(str(d.profit)) + D(str(d.commission)) + D(str(d.fee)) + D(str(d.swap)) for d in ours)
    assert bot.portfolio.realized_pnl_raw == to_raw(moved, s.cash_dp)
    cash, realized = bot.portfolio.cash, bot.portfolio.realized_pnl_raw

    again = Bot(fake, url, restore=True)                      # a restart re-lists the swap: not booked again
    assert (again.portfolio.cash, again.portfolio.realized_pnl_raw) == (cash, realized)
    quote(fake)
    assert [c.charge_id for c in again.adapter.charges_since(0)] == [swap.charge_id]
    assert again.charges.poll().booked == [] and again.charges.poll().booked == []
    assert (again.portfolio.cash, again.portfolio.realized_pnl_raw) == (cash, realized)
    assert booked_rows(url) == [(swap.charge_id, "SWAP", True, "carry", D("3.00"))]


def test_a_swap_credit_on_an_eur_account_trading_eurusd_no_longer_refuses_the_closing_fill(url):
    fake = terminal(currency="EUR")
    bot = Bot(fake, url)
    quote(fake)
    bot.trade("BUY", "0.10")
    fake.rollover(swap_long_per_lot=30.0, swap_short_per_lot=-40.0)
    quote(fake)
    bot.trade("SELL", "0.10")                                  # before: ConfigError fee_native_raw < 0
    closing = bot.oms.fills[-1]
    assert (closing.fee_currency, closing.fee_native) == ("EUR", D("0.70"))
    [swap] = bot.adapter.charges_since(0)
    # 3.00 EUR at the closing deal's 1.10000: the books' currency (USD), exact
    assert (swap.asset, swap.amount, swap.kind) == ("USD", D("3.00") * D("1.10000"), ChargeKind.SWAP)
    position = bot.portfolio.positions["EURUSD"]
    before = (position.qty, bot.portfolio.cash)
    assert [c.charge_id for c in bot.charges.poll().booked] == [swap.charge_id]
    assert position.qty == before[0] == 0                      # cash, not coins
    assert bot.portfolio.cash == before[1] + D("3.3")


def test_a_swap_in_a_third_currency_is_valued_at_the_terminals_rate(url):
    fake = terminal(currency="EUR")                            # an EUR account trading GBPUSD, books in USD
    fake.add_symbol("GBPUSD", 1.27000, 1.27020, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    bot = Bot(fake, url, symbol="GBPUSD")
    quote(fake, "GBPUSD")
    bot.trade("BUY", "0.10")
    fake.rollover(swap_long_per_lot=30.0, swap_short_per_lot=-40.0)
    bot.trade("SELL", "0.10")
    [swap] = bot.adapter.charges_since(0)
    assert (swap.asset, swap.amount) == ("EUR", D("3.00"))     # as charged
    cash = bot.portfolio.cash
    assert [c.charge_id for c in bot.charges.poll().booked] == [swap.charge_id]
    assert bot.portfolio.cash == cash + D("3.00") * D("1.10001")  # at EURUSD's mid, from the terminal


def test_a_commission_rebate_is_a_fee_credit_not_a_negative_fee(url):
    fake = terminal(commission_per_lot=-1.0)                   # the broker pays 1.00 per lot
    bot = Bot(fake, url)
    quote(fake)
    bot.trade("BUY", "0.10")
    [fill] = bot.oms.fills
    assert fill.fee == 0
    [rebate] = bot.adapter.charges_since(0)
    assert (rebate.charge_id, rebate.kind, rebate.amount, rebate.ts) == \
        (f"rebate:{fake.deals[-1].ticket}", ChargeKind.FEE, D("0.10"), fill.ts)
    cash = bot.portfolio.cash
    assert [c.charge_id for c in bot.charges.poll().booked] == [rebate.charge_id]
    assert bot.portfolio.cash == cash + D("0.10") and bot.portfolio.fees_raw == 0


def test_the_swap_of_a_position_another_bot_of_the_account_closed_is_not_this_bots(url):
    fake = terminal()
    mine, theirs = Bot(fake, url, "carry"), Bot(fake, url, "other")
    quote(fake)
    theirs.trade("BUY", "0.10")
    fake.rollover(swap_long_per_lot=30.0, swap_short_per_lot=-40.0)
    quote(fake)
    theirs.trade("SELL", "0.10")
    assert mine.adapter.charges_since(0) == []                 # its magic's deals only
    assert [c.kind for c in theirs.adapter.charges_since(0)] == [ChargeKind.SWAP]


def to_raw(amount: Decimal, dp: int) -> int:
    return int(amount.scaleb(dp))
