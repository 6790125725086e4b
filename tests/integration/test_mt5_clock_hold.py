"""Nothing is dated with a provisional server offset (helper M, defect 2 / D6 of the probe).

Without `server_tz` the adapter derives the server's offset from the terminal's ticks
(brokers/mt5/clock.py). The first look cannot tell a fresh tick from a stale one (a weekend start,
a quiet symbol), so that offset is provisional until a tick is seen to arrive, or a deal of the
adapter's own market order shows the server's clock at its send. Fills (deal times) and GTD
expiries used to be converted with the provisional offset, hours wrong; they are now held until
the offset is known, then reported (re-read from history: nothing lost, nothing twice) or sent.
The fake terminal (EET, UTC+2) and the adapter on it; the adapter's UTC clock is the test's.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from brokers.base import VenueUnreachable
from brokers.mt5 import MT5Adapter
from engine.orders import Order, OrderSide, OrderState, OrderType, TimeInForce
from tests.fakes.mt5_fake import FakeMT5
from tests.integration.test_mt5_adapter import RecordingSink

D = Decimal
H_MS = 3_600_000


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


class Clock:
    """The machine's UTC clock (ns), moved by the test."""

    def __init__(self, msc: int) -> None:
        self.msc = msc

    def __call__(self) -> int:
        return self.msc * 1_000_000


def adapter_on(fake: FakeMT5, clock: Clock, sleep=lambda s: None) -> tuple[MT5Adapter, RecordingSink]:
    adapter = MT5Adapter(fake, ["EURUSD"], bot_id="d6", sleep=sleep, clock_ns=clock)
    sink = RecordingSink()
    adapter.connect(sink)
    return adapter, sink


def order(cid: str, side: str, kind: OrderType = OrderType.MARKET, limit: str | None = None,
          tif: TimeInForce = TimeInForce.GTC, expire_ns: int | None = None) -> Order:
    return Order(cid, "d6", "EURUSD", OrderSide(side), kind, D("0.10"), 0,
                 limit_price=None if limit is None else D(limit), tif=tif, expire_ns=expire_ns)


def test_a_weekend_restart_dates_no_fill_until_the_market_quotes():
    friday = utc_ms(2026, 11, 27, 21)                       # Friday 21:00 UTC, 23:00 on the EET server
    fake = FakeMT5(server_tz="EET", start_msc=friday)
    fake.add_symbol("EURUSD", 1.10000, 1.10020)
    clock = Clock(friday)
    session, _ = adapter_on(fake, clock)
    session.submit(order("d6-00000001", "BUY"))             # the bot bought on Friday
    fake.set_tick("EURUSD", 1.10000, 1.10020, time_msc=utc_ms(2026, 11, 27, 21, 59, 58))  # the week's last tick
    clock.msc = utc_ms(2026, 11, 28, 10)                    # restarted on Saturday 10:00 UTC, the market closed
    opened = []

    def market_opens_during_the_wait(seconds: float) -> None:
        if len(opened) == 3:                                # Sunday 22:00 UTC: the first tick of the week
            clock.msc = utc_ms(2026, 11, 29, 22, 0, 5)
            fake.set_tick("EURUSD", 1.10000, 1.10020, time_msc=utc_ms(2026, 11, 29, 22, 0, 4))
        opened.append(seconds)

    restarted, _ = adapter_on(fake, clock, sleep=market_opens_during_the_wait)
    assert not restarted.server_clock.known
    restarted.clock_attempts = 2                            # the market stays closed through the wait
    with pytest.raises(VenueUnreachable, match="server clock"):
        restarted.fills_since(friday - H_MS * 10**6)        # before: the fill dated Saturday 09:00, 12 h late
    restarted.clock_attempts = 10                           # it opens during the wait
    [fill] = restarted.fills_since(friday * 10**6 - H_MS * 10**6)
    assert restarted.server_clock.known
    deal = fake.deals[0]
    assert fill.execution_id == str(deal.ticket) and fill.ts == (deal.time_msc - 2 * H_MS) * 10**6  # Friday 21:00 UTC
    assert abs(fill.ts - friday * 10**6) < 10**9


def test_a_fill_seen_before_the_offset_is_known_is_held_then_booked_once_at_its_time():
    start = utc_ms(2026, 11, 25, 10)                        # a Wednesday; the symbol quotes rarely
    fake = FakeMT5(server_tz="EET", start_msc=start)
    fake.add_symbol("EURUSD", 1.10000, 1.10020)
    clock = Clock(fake.now_msc)
    first, _ = adapter_on(fake, clock)
    limit = order("d6-00000001", "BUY", OrderType.LIMIT, limit="1.09000")
    first.submit(limit)                                     # placed, then the process dies
    fake.now_msc = clock.msc = start + 2 * H_MS             # two hours without a tick
    adapter, sink = adapter_on(fake, clock)                 # one look: the 2 h old tick reads UTC+0
    adapter.remember([limit])
    assert not adapter.server_clock.known and adapter.server_clock.offset_s() == 0
    adapter.poll()
    assert sink.state[limit.client_order_id] is OrderState.ACCEPTED
    fake.now_msc = clock.msc = clock.msc + 60_000
    fake.fill_order(next(iter(fake.orders)), 0.10, 1.09)  # filled at 12:01 UTC (14:01 on the server)
    deal_utc_ns = fake.now_msc * 1_000_000
    adapter.poll()
    assert sink.fills == []                                 # before: booked at 14:01 UTC, 2 h late
    assert sink.state[limit.client_order_id] is OrderState.ACCEPTED
    fake.set_tick("EURUSD", 1.09000, 1.09020, time_msc=fake.now_msc + 1_000)  # a tick arrives
    clock.msc = fake.now_msc
    adapter.poll()
    adapter.poll()
    assert [(f.ts, f.qty) for f in sink.fills] == [(deal_utc_ns, D("0.10"))]  # once, at its time
    assert sink.state[limit.client_order_id] is OrderState.FILLED
    assert [f.ts for f in adapter.fills_since(0)] == [deal_utc_ns]


def test_a_gtd_expiry_is_not_sent_with_a_provisional_offset_and_goes_once_it_is_known():
    start = utc_ms(2026, 11, 25, 10)
    fake = FakeMT5(server_tz="EET", start_msc=start, margin_mode=FakeMT5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING)
    fake.add_symbol("EURUSD", 1.10000, 1.10020)
    fake.now_msc = start + 2 * H_MS
    clock = Clock(fake.now_msc)
    adapter, sink = adapter_on(fake, clock)
    expire_ns = (clock.msc + H_MS) * 1_000_000
    gtd = order("d6-00000001", "BUY", OrderType.LIMIT, limit="1.09000", tif=TimeInForce.GTD, expire_ns=expire_ns)
    adapter.submit(gtd)
    # before: sent at once with expiration = UTC + 0 h, which the server reads 2 h early (already past)
    assert fake.requests == [] and gtd.client_order_id not in sink.state  # held: unreported, PENDING_SUBMIT
    adapter.poll()
    assert fake.requests == []                              # still no tick: still held
    fake.set_tick("EURUSD", 1.10000, 1.10020, time_msc=fake.now_msc + 1_000)
    clock.msc = fake.now_msc
    adapter.poll()
    [request] = fake.requests
    assert request["expiration"] == expire_ns // 10**9 + 2 * 3600    # the server's wall clock at the expiry
    assert sink.state[gtd.client_order_id] is OrderState.ACCEPTED and len(fake.orders) == 1


def test_a_held_gtd_order_canceled_or_past_its_time_is_never_sent():
    start = utc_ms(2026, 11, 25, 10)
    fake = FakeMT5(server_tz="EET", start_msc=start)
    fake.add_symbol("EURUSD", 1.10000, 1.10020)
    fake.now_msc = start + 2 * H_MS
    clock = Clock(fake.now_msc)
    adapter, sink = adapter_on(fake, clock)
    canceled = order("d6-00000001", "BUY", OrderType.LIMIT, limit="1.09000", tif=TimeInForce.GTD,
                     expire_ns=(clock.msc + H_MS) * 1_000_000)
    late = order("d6-00000002", "BUY", OrderType.LIMIT, limit="1.09000", tif=TimeInForce.GTD,
                 expire_ns=(clock.msc + 60_000) * 1_000_000)
    adapter.submit(canceled)
    adapter.submit(late)
    adapter.cancel(canceled)
    assert sink.state[canceled.client_order_id] is OrderState.CANCELED
    fake.set_tick("EURUSD", 1.10000, 1.10020, time_msc=fake.now_msc + 120_000)  # the first tick, 2 min later
    clock.msc = fake.now_msc
    adapter.poll()
    assert fake.requests == []
    assert sink.events[-1] == ("canceled", late.client_order_id, "EXPIRED")


def test_the_first_own_market_deal_confirms_the_offset_and_its_fill_is_dated_by_it():
    start = utc_ms(2026, 11, 25, 10)
    fake = FakeMT5(server_tz="EET", start_msc=start)
    fake.add_symbol("EURUSD", 1.10000, 1.10020)
    fake.now_msc = start + 2 * H_MS                          # the last tick is 2 h old: provisional UTC+0
    clock = Clock(fake.now_msc)
    adapter, sink = adapter_on(fake, clock)
    assert not adapter.server_clock.known
    adapter.submit(order("d6-00000001", "BUY"))             # executed now: its deal reads UTC+2
    assert adapter.server_clock.known and adapter.server_clock.offset_s() == 2 * 3600
    assert [f.ts for f in sink.fills] == [clock.msc * 1_000_000]


def test_a_crash_while_a_gtd_order_is_held_restarts_with_it_canceled_as_never_sent():
    """Before: the held order was reported SUBMITTED and journaled so; after a crash the venue did not
    know it and the restart stopped ("SUBMITTED here but unknown to the venue") until an operator
    canceled it by hand. Now it stays PENDING_SUBMIT while held, so the restart knows it was never
    sent: canceled LOST_BEFORE_SUBMIT, nothing sent twice, the strategy free to decide again."""
    from dataclasses import replace

    from engine.reconcile import LOST_BEFORE_SUBMIT, reconcile_with_adapter
    from tests.integration.test_mt5_protective import HEDGING, HOUR_NS, Bot, restarted

    bot = Bot(HEDGING, server_tz="EET")  # the adapter is not told the zone: a derived, provisional offset
    gtd = bot.strategy.buy(qty=D("0.10"), limit=1.09000, expire=bot.oms.clock.now_ns() + HOUR_NS)
    assert gtd is not None and gtd.state is OrderState.PENDING_SUBMIT and bot.fake.requests == []
    stored = [replace(o) for o in bot.oms.orders.values()]  # what the store holds when the process dies
    bot.fake.set_tick("EURUSD", 1.10000, 1.10020)            # the market quotes while the bot is down

    oms, adapter = restarted(bot, stored)
    report = reconcile_with_adapter(oms, adapter, bot.oms.clock.now_ns())
    assert report.orders_lost_before_submit == [gtd.client_order_id]
    again = oms.orders[gtd.client_order_id]
    assert again.state is OrderState.CANCELED and again.reason == LOST_BEFORE_SUBMIT
    adapter.poll()
    assert bot.fake.requests == [] and not bot.fake.orders  # never sent, by either process


def test_a_held_gtd_order_is_canceled_through_the_oms_unsent():
    """The OMS hands a cancel of a held (PENDING_SUBMIT) order to the adapter, which drops it unsent."""
    from tests.integration.test_mt5_protective import HEDGING, HOUR_NS, Bot

    bot = Bot(HEDGING, server_tz="EET")
    gtd = bot.strategy.buy(qty=D("0.10"), limit=1.09000, expire=bot.oms.clock.now_ns() + HOUR_NS)
    assert gtd is not None and gtd.state is OrderState.PENDING_SUBMIT
    bot.oms.cancel(gtd)
    assert gtd.state is OrderState.CANCELED and not bot.oms.open_orders
    bot.fake.set_tick("EURUSD", 1.10000, 1.10020)
    bot.adapter.poll()
    assert bot.fake.requests == []
