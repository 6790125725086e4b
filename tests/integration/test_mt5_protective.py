"""MetaTrader 5's native protective orders (issue 16 item 4, issue 17 item 3): a bracket's
stop-loss and take-profit as the position's SL/TP, the server's SL/TP close booked as the child's
fill, amend (TRADE_ACTION_MODIFY / TRADE_ACTION_SLTP), GTD expiry in the server's time, and what
MT5 cannot carry refused with a reason. A real OMS and Strategy on the adapter on the fake terminal
(tests/fakes/mt5_fake.py); nothing inside the adapter is mocked."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pandas as pd
import pytest

from brokers.mt5 import MT5Adapter
from engine.oms import OrderManager
from engine.orders import Order, OrderState, TimeInForce
from engine.portfolio import Portfolio
from strategies import protective
from strategies.base import BarData, Strategy
from tests.fakes.mt5_fake import FakeMT5

D = Decimal
NETTING, HEDGING = 0, 2
HOUR_NS = 3600 * 10**9


class _TerminalClock:
    """The fake terminal's UTC clock, as the bot's OMS reads it."""

    def __init__(self, fake: FakeMT5) -> None:
        self.fake = fake

    def now_ns(self) -> int:
        return self.fake.now_msc * 1_000_000


class Plain(Strategy):
    name = "plain"
    protective = True

    def next(self) -> None:
        pass


class Bot:
    def __init__(self, margin_mode: int = HEDGING, **fake_args: object) -> None:
        self.fake = FakeMT5(margin_mode=margin_mode, **fake_args)  # type: ignore[arg-type]
        self.fake.add_symbol("EURUSD", 1.10000, 1.10020)
        self.adapter = MT5Adapter(self.fake, ["EURUSD"], login=5001, password="secret", server="FakeBroker-Demo",
                                  bot_id="alpha", sleep=lambda s: None,
                                  clock_ns=lambda: self.fake.now_msc * 1_000_000)
        self.oms = OrderManager("alpha", _TerminalClock(self.fake), self.adapter, Portfolio(D(0), 2), {})  # type: ignore[arg-type]
        self.oms.instruments.update(self.adapter.instruments())
        self.oms.portfolio = Portfolio(self.adapter.account().cash,
                                       self.oms.instruments["EURUSD"].scales.cash_dp)
        frame = pd.DataFrame({"open": [1.1001], "high": [1.1001], "low": [1.1001], "close": [1.1001], "volume": [1.0]},
                             index=pd.DatetimeIndex([pd.Timestamp("2023-11-14", tz="UTC")]))
        self.strategy = Plain(Plain.Params())
        self.strategy.attach(BarData(frame), "EURUSD")
        self.strategy.connect(self.oms)
        self.strategy.i = 0

    def market(self, side: str, qty: str, **legs: object) -> Order:
        """A market entry, then its bracket as Strategy._attach builds it (strategies/protective.py).
        Built here because Strategy._attach skips an entry that is already terminal, and an MT5
        market entry fills inside submit (see /tmp/notes/M.md: to be fixed in strategies/base.py)."""
        entry = (self.strategy.buy if side == "BUY" else self.strategy.sell)(qty=D(qty))
        assert entry is not None and entry.state is OrderState.FILLED
        scales = self.oms.instruments["EURUSD"].scales
        protection = protective.resolve(entry.side, entry.avg_fill_price, scales, **legs)  # type: ignore[arg-type]
        assert protection is not None
        for child in protective.children(entry, protection, self.oms.next_client_order_id):
            self.oms.submit(child)
        return entry

    def bracket(self, entry: Order) -> tuple[Order, Order]:
        children = [o for o in self.oms.orders.values() if o.parent_id == entry.client_order_id]
        stop = next(o for o in children if o.tag in ("sl", "trail"))
        take = next(o for o in children if o.tag == "tp")
        return stop, take

    def position(self) -> dict:
        ours = [p for p in self.fake.positions.values() if p["magic"] == self.adapter.magic]
        assert len(ours) == 1
        return ours[0]

    def books(self) -> Decimal:
        return self.oms.portfolio.positions["EURUSD"].quantity


@pytest.mark.parametrize("margin_mode", [HEDGING, NETTING])
def test_a_bracket_becomes_the_positions_sl_tp_and_a_tp_hit_fills_the_tp_child_and_cancels_the_sl(margin_mode):
    bot = Bot(margin_mode)
    entry = bot.market("BUY", "0.10", sl=1.09500, tp=1.10500)
    stop, take = bot.bracket(entry)
    assert stop.state is OrderState.ACCEPTED and take.state is OrderState.ACCEPTED
    assert (bot.position()["sl"], bot.position()["tp"]) == (1.095, 1.105)
    assert bot.fake.requests[-1]["action"] == bot.fake.TRADE_ACTION_SLTP  # not a pending stop or limit
    assert not bot.fake.orders  # nothing rests at the venue that could open a position of its own
    bot.fake.set_tick("EURUSD", 1.10510, 1.10530)  # the server closes the position at its TP
    assert bot.fake.deals[-1].reason == bot.fake.DEAL_REASON_TP
    bot.adapter.poll()
    assert take.state is OrderState.FILLED and take.avg_fill_price == D("1.10510") and take.filled_qty == D("0.10")
    assert stop.state is OrderState.CANCELED and stop.reason == "OCO"
    assert bot.books() == 0 and bot.oms.external == []  # booked as the bot's TP, not as a venue-made order
    assert bot.oms.fills[-1].client_order_id == take.client_order_id


def test_a_sl_hit_fills_the_sl_child_and_cancels_the_tp():
    bot = Bot(HEDGING)
    entry = bot.market("SELL", "0.20", sl=1.10500, tp=1.09500)
    stop, take = bot.bracket(entry)
    bot.fake.set_tick("EURUSD", 1.10490, 1.10510)  # a short's SL: the ask reaches 1.10500
    bot.adapter.poll()
    assert stop.state is OrderState.FILLED and stop.avg_fill_price == D("1.10510")
    assert take.state is OrderState.CANCELED and take.reason == "OCO" and bot.books() == 0


def test_a_pending_entry_carries_the_levels_then_its_position_does_and_close_takes_them_off():
    bot = Bot(HEDGING)
    entry = bot.strategy.buy(qty=D("0.10"), limit=1.09900, sl=1.09500, tp=1.10500)
    assert entry is not None and entry.state is OrderState.ACCEPTED
    stop, take = bot.bracket(entry)
    pending = bot.fake.orders[int(entry.venue_order_id)]  # type: ignore[arg-type]
    assert (pending["sl"], pending["tp"]) == (1.095, 1.105)  # TRADE_ACTION_MODIFY: protected from its first deal
    assert bot.fake.requests[-1]["action"] == bot.fake.TRADE_ACTION_MODIFY
    bot.fake.set_tick("EURUSD", 1.09880, 1.09900)  # the entry fills; the server copies sl/tp onto the position
    bot.adapter.poll()
    assert entry.state is OrderState.FILLED and (bot.position()["sl"], bot.position()["tp"]) == (1.095, 1.105)
    assert stop.state is OrderState.ACCEPTED and take.state is OrderState.ACCEPTED
    bot.strategy.close()  # cancels the bracket (SL/TP off the position) and flattens
    bot.adapter.poll()
    assert stop.state is OrderState.CANCELED and take.state is OrderState.CANCELED and bot.books() == 0
    assert not bot.fake.positions


def test_an_entry_canceled_unfilled_takes_its_held_children():
    bot = Bot(HEDGING)
    entry = bot.strategy.buy(qty=D("0.10"), limit=1.09900, sl=1.09500, tp=1.10500)
    assert entry is not None
    stop, take = bot.bracket(entry)
    bot.strategy.cancel(entry)
    assert entry.state is OrderState.CANCELED
    assert stop.state is OrderState.CANCELED and stop.reason == "PARENT_CANCELED"
    assert take.state is OrderState.CANCELED and take.reason == "PARENT_CANCELED"


def test_amend_a_pending_price_with_modify_and_a_tp_level_with_sltp():
    bot = Bot(HEDGING)
    limit = bot.strategy.buy(qty=D("0.10"), limit=1.09000)
    assert limit is not None
    assert bot.strategy.amend(limit, price=1.09100) is None
    request = bot.fake.requests[-1]
    assert request["action"] == bot.fake.TRADE_ACTION_MODIFY and request["price"] == 1.091
    assert bot.fake.orders[int(limit.venue_order_id)]["price_open"] == 1.091  # type: ignore[arg-type]
    assert limit.limit_price == D("1.09100")
    assert bot.strategy.amend(limit, qty=D("0.20")) == "UNSUPPORTED"  # MT5 cannot change a pending volume
    entry = bot.market("BUY", "0.10", sl=1.09500, tp=1.10500)
    stop, take = bot.bracket(entry)
    assert bot.strategy.amend(take, price=1.10800) is None
    assert bot.fake.requests[-1]["action"] == bot.fake.TRADE_ACTION_SLTP
    protected = bot.fake.positions[int(entry.venue_order_id)]  # type: ignore[arg-type]
    assert (protected["sl"], protected["tp"]) == (1.095, 1.108) and take.limit_price == D("1.10800")
    # a level inside the market is the venue's refusal, nothing changed
    assert bot.strategy.amend(stop, price=1.10100) == "INVALID_STOPS"
    assert protected["sl"] == 1.095 and stop.stop_price == D("1.09500")


def test_gtd_goes_as_order_time_specified_in_the_servers_time_and_expires():
    bot = Bot(HEDGING, server_tz="EET")  # UTC+2 in November; the adapter derives it from the ticks
    now = bot.oms.clock.now_ns()
    order = bot.strategy.buy(qty=D("0.10"), limit=1.09000, expire=now + HOUR_NS)
    # one look at the ticks so far: the offset is provisional (clock.py), the expiry not sent with it
    # held by the adapter, unsent and unreported: PENDING_SUBMIT (a crash now leaves nothing to doubt)
    assert order is not None and order.tif is TimeInForce.GTD and order.state is OrderState.PENDING_SUBMIT
    assert bot.fake.requests == []
    bot.fake.set_tick("EURUSD", 1.10000, 1.10020)  # the market quotes: the offset is known, the order goes
    bot.adapter.poll()
    assert order.state is OrderState.ACCEPTED
    request = bot.fake.requests[-1]
    expected = -(-(now + HOUR_NS) // 10**9) + 2 * 3600  # the server's wall clock, rounded up to the second
    assert (request["type_time"], request["expiration"]) == (bot.fake.ORDER_TIME_SPECIFIED, expected)
    bot.fake.set_tick("EURUSD", 1.10000, 1.10020, time_msc=(now + HOUR_NS) // 10**6 - 1000)
    bot.adapter.poll()
    assert order.state is OrderState.ACCEPTED  # a second before: still working
    bot.fake.set_tick("EURUSD", 1.10000, 1.10020, time_msc=(now + HOUR_NS) // 10**6 + 1000)
    bot.adapter.poll()
    assert order.state is OrderState.CANCELED and order.reason == "EXPIRED"


def test_what_mt5_cannot_carry_is_emulated_by_the_oms():
    bot = Bot(HEDGING)
    entry = bot.market("BUY", "0.10", trail=0.00100, tp=1.10500)  # a trailing stop: client-side in MT5
    trail, take = bot.bracket(entry)
    assert trail.emulated and take.emulated and trail.state is OrderState.ACCEPTED  # the OMS holds the bracket
    assert bot.position()["tp"] == 0.0 and bot.position()["sl"] == 0.0
    first = bot.strategy.buy(qty=D("0.10"), limit=1.09000, oco=True)  # a standalone OCO group
    assert first is not None and first.emulated and first.state is OrderState.ACCEPTED
    assert not bot.fake.orders


def test_netting_position_bigger_than_the_entry_refuses_its_bracket():
    bot = Bot(NETTING)
    bot.strategy.buy(qty=D("0.10"))  # the symbol's one position: 0.10 already
    entry = bot.market("BUY", "0.10", sl=1.09500)
    stop = next(o for o in bot.oms.orders.values() if o.parent_id == entry.client_order_id)
    assert stop.state is OrderState.REJECTED and stop.reason == "UNSUPPORTED"  # SL would close 0.20, not 0.10
    assert bot.position()["sl"] == 0.0


def restarted(bot: Bot, stored: list[Order]) -> tuple[OrderManager, MT5Adapter]:
    """A new process on the same terminal: a fresh adapter (what the last one held in memory is
    gone) and an OMS restored from `stored` (the store's orders) and the fills booked so far,
    connected; reconciliation is the caller's."""
    adapter = MT5Adapter(bot.fake, ["EURUSD"], login=5001, password="secret", server="FakeBroker-Demo",
                         bot_id="alpha", sleep=lambda s: None, clock_ns=lambda: bot.fake.now_msc * 1_000_000)
    oms = OrderManager("alpha", _TerminalClock(bot.fake), adapter, Portfolio(D(0), 2), {}, connect=False)  # type: ignore[arg-type]
    oms.instruments.update(bot.oms.instruments)
    oms.portfolio = Portfolio(bot.oms.portfolio.cash, bot.oms.instruments["EURUSD"].scales.cash_dp)
    oms.restore(stored, list(bot.oms.fills), 10)
    adapter.remember(stored)
    adapter.connect(oms)
    return oms, adapter


def test_after_a_restart_an_sl_tp_close_is_still_the_childs_fill():
    bot = Bot(HEDGING)
    entry = bot.market("BUY", "0.10", sl=1.09500, tp=1.10500)
    stored = [replace(o) for o in bot.oms.orders.values()]  # as the journal gives them back: a copy has no events
    assert all(not o.events for o in stored)
    bot.fake.set_tick("EURUSD", 1.10510, 1.10530)  # the TP is hit while the bot is down
    oms, adapter = restarted(bot, stored)
    adapter.poll()        # the server's offset is provisional until a tick arrives: the TP's fill is held
    take = oms.orders[bot.bracket(entry)[1].client_order_id]
    stop = oms.orders[bot.bracket(entry)[0].client_order_id]
    assert take.state is not OrderState.FILLED and len(oms.fills) == 1
    bot.fake.set_tick("EURUSD", 1.10500, 1.10520)  # the market quotes
    adapter.poll()
    assert take.state is OrderState.FILLED and take.avg_fill_price == D("1.10510")
    assert stop.state is OrderState.CANCELED and stop.reason == "OCO"
    assert oms.external == [] and oms.portfolio.positions["EURUSD"].quantity == 0
