"""A bot on MetaTrader 5 end to end, as real terminals behave (issue 16, item 5).

The live runtime drives a bot (BotManager, the SQL store, the MT5 adapter and feed) on the fake
terminal configured like a real broker: a hedging account shared with another Expert Advisor,
commission and a fee on every deal, swap at rollover, a server in EET (UTC+2, the offset derived
from the terminal's ticks), a deal history that lags order_send, and comments the broker cuts.
The bot trades, the terminal drops and comes back, the bot restarts (the market quoting, which
confirms the derived offset before the bot's fills are dated), trades again and is killed.
At the end the bot's books (the store) equal the terminal's view of that bot (its magic number):
every deal a fill once, fees = commission + fee, each closing deal's swap a SWAP charge booked
once (engine.charges, the bot being its positions' sole holder), cash = the deals' profit and
charges, flat after the kill, and the other EA's position untouched.
"""

from __future__ import annotations

import math
import threading
import time
from decimal import Decimal

from sqlalchemy import select

from brokers.factory import EnvCredentials, open_venue
from brokers.mt5.mapping import magic_for
from live.config import FeedConfig, parse_bot_config
from live.manager import BotManager
from engine.store.db import make_engine, upgrade
from engine.store.models import AccountChargeRow, FillRow
from tests.fakes.mt5_fake import FakeMT5
from tests.integration.runtime_helpers import wait_for

CREDENTIALS = EnvCredentials({"TICKBRIDGE_ACCOUNT_FX_LOGIN": "5001", "TICKBRIDGE_ACCOUNT_FX_PASSWORD": "secret",
                              "TICKBRIDGE_ACCOUNT_FX_SERVER": "FakeBroker-Demo"})
BOT = {"id": "mt5-ea", "strategy": "sma_cross", "symbol": "EURUSD", "venue": "mt5", "account": "fx", "bar": "5s",
       "cash": "10000", "params": {"fast": 2, "slow": 4, "mode": "long_short", "fixed_size": "0.10",
                                   "units": "fractional"}}
OTHER_EA = 99
STEP_MS = 5_000  # one bar per quote: the terminal's clock stays within minutes of the wall clock


def terminal(start_msc: int) -> FakeMT5:
    fake = FakeMT5(margin_mode=FakeMT5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING, start_msc=start_msc, server_tz="EET",
                   commission_per_lot=7.0, fee_per_deal=0.10, deal_lag_queries=1, balance=100_000.0)
    fake.add_symbol("EURUSD", 1.10000, 1.10002, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    fake.rewrite_comments(lambda comment: comment[:6])  # the broker keeps six characters
    return fake


def manager(url: str, tmp_path, fake: FakeMT5) -> BotManager:
    return BotManager(FeedConfig(path="data/ticks/"), url, tmp_path, record=False, charges_every_s=0.05,
                      venues=lambda c: open_venue(c.venue, c.account, [c.symbol], [CREDENTIALS], mt5_api=fake,
                                                  bot_id=c.id))


class Market:
    """A wave with a period of 12 bars: the 2/4 SMAs cross every few bars."""

    def __init__(self, fake: FakeMT5, start_msc: int) -> None:
        self.fake, self.start_msc, self.step = fake, start_msc, 0

    def quote(self) -> None:
        self.step += 1
        mid = round(1.1 + 0.002 * math.sin(self.step * 2 * math.pi / 12), 5)
        self.fake.set_tick("EURUSD", mid, round(mid + 0.00002, 5), time_msc=self.start_msc + self.step * STEP_MS)


def run_quotes(bots: BotManager, market: Market, count: int) -> None:
    for _ in range(count):
        seen = bots.status(BOT["id"])["ticks"]
        market.quote()
        wait_for(lambda: bots.status(BOT["id"])["ticks"] > seen, "the next tick")


def stored_fills(url: str) -> list[FillRow]:
    with make_engine(url).connect() as connection:
        return list(connection.execute(select(FillRow.__table__).where(FillRow.bot_id == BOT["id"])))


def stored_charges(url: str) -> list:
    table = AccountChargeRow.__table__
    with make_engine(url).connect() as connection:
        return list(connection.execute(select(table.c.charge_id, table.c.kind, table.c.booked, table.c.bot_id,
                                              table.c.amount, table.c.value)))


def quoting(market: Market) -> tuple[threading.Event, threading.Thread]:
    """The market quoting on its own (a tick every 0.1 s) until the event is set."""
    done = threading.Event()

    def run() -> None:
        while not done.wait(0.1):
            market.quote()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return done, thread


def terminal_deals(fake: FakeMT5, magic: int) -> list:
    fake.release_deals()
    return [d for d in fake.deals if d.magic == magic]


def test_a_bot_on_a_real_shaped_terminal_keeps_books_equal_to_the_terminals_view_of_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    start_msc = time.time_ns() // 1_000_000
    fake = terminal(start_msc)
    market = Market(fake, start_msc)
    magic = magic_for(BOT["id"])
    assert fake.initialize(login=5001, password="secret", server="FakeBroker-Demo")  # the other EA's session
    other = fake.place_external({"action": 1, "symbol": "EURUSD", "volume": 0.30, "type": fake.ORDER_TYPE_SELL,
                                 "price": 1.1, "type_filling": 0, "magic": OTHER_EA, "comment": "grid EA"})
    assert other.retcode == fake.TRADE_RETCODE_DONE

    with manager(url, tmp_path, fake) as bots:
        bots.start(parse_bot_config(BOT))
        run_quotes(bots, market, 14)
        fake.rollover(swap_long_per_lot=-6.0, swap_short_per_lot=2.5)  # the positions held overnight
        fake.disconnect()                                               # the terminal goes away ...
        market.quote()
        time.sleep(0.5)                                                 # ... while the bot polls in vain
        fake.restore()
        run_quotes(bots, market, 14)
        wait_for(lambda: len(stored_fills(url)) >= 3, "three fills")
        bots.stop(BOT["id"])

    with manager(url, tmp_path, fake) as bots:  # a restart: reconciled with the terminal, nothing resent
        done, ticking = quoting(market)          # the market quotes: the derived offset is confirmed
        bots.start(parse_bot_config(BOT))
        done.set()
        ticking.join()
        ours = sum(Decimal(str(p["volume"])) * (1 if p["type"] == 0 else -1)
                   for p in fake.positions.values() if p["magic"] == magic)
        assert bots.status(BOT["id"])["position"] == ours
        run_quotes(bots, market, 10)
        bots.kill(BOT["id"], "end of test")
        wait_for(lambda: bots.status(BOT["id"])["position"] == 0, "flat after the kill")
        wait_for(lambda: len(stored_fills(url)) == len(terminal_deals(fake, magic)), "every deal booked")
        swapped = {f"swap:{d.ticket}" for d in terminal_deals(fake, magic) if d.swap}
        wait_for(lambda: {c.charge_id for c in stored_charges(url)} == swapped, "every swap booked")
        bots.stop(BOT["id"])

    deals, fills = terminal_deals(fake, magic), stored_fills(url)
    assert sorted(f.execution_id for f in fills) == sorted(str(d.ticket) for d in deals)  # each deal once
    by_ticket = {str(d.ticket): d for d in deals}
    for fill in fills:
        deal = by_ticket[fill.execution_id]
        charged = Decimal(str(deal.commission)) + Decimal(str(deal.fee))
        assert fill.fee == -charged, f"deal {deal.ticket}: fee {fill.fee}, terminal charged {charged}"
        assert abs(fill.ts - fake.now_msc * 1_000_000) < 3_600 * 10**9  # UTC, not the server's EET
    assert any(d.swap for d in deals), "a position held over the rollover paid swap on its closing deal"
    charges = stored_charges(url)                 # each swap once, booked into the bot at the terminal's amount
    assert sorted((c.charge_id, c.kind, c.booked, c.bot_id, c.value) for c in charges) == sorted(
        (f"swap:{d.ticket}", "SWAP", True, BOT["id"], Decimal(str(d.swap))) for d in deals if d.swap)
    assert all(p["magic"] != magic for p in fake.positions.values())             # the kill flattened the bot
    assert [(p["magic"], p["volume"]) for p in fake.positions.values()] == [(OTHER_EA, 0.3)]  # not the other EA
    venue_cash = sum(Decimal(str(d.profit)) + Decimal(str(d.commission)) + Decimal(str(d.fee)) + Decimal(str(d.swap))
                     for d in deals)
    books_cash = sum(-(1 if f.side == "BUY" else -1) * f.qty * f.price * 100_000 - f.fee for f in fills) \
        + sum(c.value for c in charges)
    assert books_cash == venue_cash
