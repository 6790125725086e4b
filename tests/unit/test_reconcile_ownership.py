"""A bot owns what it sent (issue 14, item 1): on a shared account its books hold only its own
orders and fills; reconciliation books its own, reports the rest, and asks for a bounded history.

The account is a durable paper venue behind its adapter (the reference adapter): "someone else"
(another bot, a person) trades on it straight through the venue, as the conformance harness does.
The adapter records the times reconciliation asks for fills from, to check the lookback bound.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from brokers.mt5 import MT5Adapter
from brokers.paper.adapter import PaperAdapter
from brokers.paper.durable import DurablePaperVenue
from engine.clock import SimulatedClock
from engine.instrument import AssetClass, Instrument
from engine.oms import OrderManager, made_for, owns, sent_by, venue_made_id
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio
from engine.reconcile import DEFAULT_LOOKBACK_NS, ReconciliationError, reconcile_with_adapter
from tests.fakes.mt5_fake import FakeMT5

BTC = Instrument("BTC/USDT", asset_class=AssetClass.CRYPTO, price_increment=D("0.01"), size_increment=D("0.00001"),
                 quote_currency="USDT")
SYMBOL = BTC.symbol
CASH = D(1_000_000)
DAY = 86_400 * 10**9
NOW = 100 * DAY
BID, ASK = D("30000.00"), D("30000.01")


class RecordingAdapter(PaperAdapter):
    """The paper adapter, remembering each `fills_since(ts)` it was asked."""

    def __init__(self, venue: DurablePaperVenue) -> None:
        super().__init__(venue, currency="USDT")
        self.asked: list[int] = []

    def fills_since(self, ts: int) -> list[Fill]:
        self.asked.append(ts)
        return super().fills_since(ts)


class Account:
    """One venue account several programs trade on."""

    def __init__(self, tmp_path: Path) -> None:
        self.venue = DurablePaperVenue(tmp_path / "venue.log", BTC, CASH)
        self.adapter = RecordingAdapter(self.venue)

    def quote(self, ts: int, bid: D = BID, ask: D = ASK) -> None:
        self.adapter.on_tick(bid, ask, D(0), ts)

    def foreign_trade(self, client_order_id: str, side: OrderSide, qty: str, ts: int) -> None:
        """Someone else's market order, straight to the venue, filled by the next quote."""
        self.venue.submit(Order(client_order_id, "someone", SYMBOL, side, OrderType.MARKET, D(qty), ts))
        self.quote(ts)

    def foreign_limit(self, client_order_id: str, ts: int) -> None:
        """Someone else's buy limit resting far below the market."""
        self.venue.submit(Order(client_order_id, "someone", SYMBOL, OrderSide.BUY, OrderType.LIMIT, D("0.1"), ts,
                                limit_price=D("20000.00")))

    def venue_qty(self) -> D:
        return {p.symbol: p.qty for p in self.adapter.positions()}.get(SYMBOL, D(0))


def bot(account: Account, bot_id: str = "alpha", *, connect: bool = False, ts: int = NOW) -> OrderManager:
    """A bot on the account; `connect=False` is a restart: restore, reconcile, then connect."""
    return OrderManager(bot_id, SimulatedClock(ts), account.adapter, Portfolio.for_instrument(CASH, BTC),
                        {SYMBOL: BTC}, connect=connect)


def restarted(account: Account, before: OrderManager, ts: int = NOW) -> OrderManager:
    """The same bot rebuilt from what its store held: its orders (their last state) and fills."""
    oms = bot(account, before.bot_id, ts=ts)
    stored = [Order(o.client_order_id, o.bot_id, o.symbol, o.side, o.type, o.qty, o.ts_init,
                    limit_price=o.limit_price, state=o.state, filled_qty=o.filled_qty) for o in before.orders.values()]
    oms.restore(stored, list(before.fills), len(stored))
    return oms


def buy(oms: OrderManager, account: Account, qty: str, ts: int) -> Order:
    oms.clock.ts = ts  # type: ignore[attr-defined]
    order = Order(oms.next_client_order_id(), oms.bot_id, SYMBOL, OrderSide.BUY, OrderType.MARKET, D(qty), ts)
    oms.submit(order)
    account.quote(ts)
    return order


def sixty_foreign_fills_holding_half_a_bitcoin(account: Account, start: int = NOW - 3 * DAY) -> None:
    """55 buys and 5 sells of 0.01 BTC by other programs, a minute apart from `start`: 0.5 BTC held."""
    for i in range(60):
        side = OrderSide.BUY if i < 55 else OrderSide.SELL
        account.foreign_trade(f"other-{i}", side, "0.01", start + i * 60 * 10**9)


# -- ownership -------------------------------------------------------------------------------------
def test_a_bot_owns_the_ids_it_sends_and_those_its_venue_made_for_it_only():
    assert sent_by("a", "a-00000001") and owns("a", "a-00000001") and owns("a", "a-123456789")
    assert not owns("a", "a-b-00000001")        # bot "a-b"'s order: "a" is only a prefix of its id
    assert owns("a-b", "a-b-00000001") and not owns("a-b", "a-00000001")
    assert not owns("a", "a-0001") and not owns("a", "manual-1") and not owns("a", "MT5-77")
    assert made_for("a", venue_made_id("a", 77)) and owns("a", "a-venue-77") and not sent_by("a", "a-venue-77")
    assert not owns("a", "a-venue-") and not owns("b", "a-venue-77")


# -- the stream ------------------------------------------------------------------------------------
def test_the_stream_reports_about_foreign_orders_are_counted_and_never_booked(tmp_path):
    account = Account(tmp_path)
    alpha = bot(account, connect=True)
    account.foreign_limit("other-limit", NOW)
    account.foreign_trade("other-1", OrderSide.BUY, "0.2", NOW + 1)
    assert alpha.orders == {} and alpha.fills == [] and alpha.external == [] and alpha.open_orders == []
    assert alpha.foreign_reports >= 3   # accepted twice, one fill: each report counted, none booked
    assert alpha.portfolio.positions[SYMBOL].qty == 0 and alpha.portfolio.cash == CASH
    assert account.venue_qty() == D("0.2")


def test_an_order_the_venue_made_for_the_bot_is_booked_from_the_stream(tmp_path):
    account = Account(tmp_path)
    alpha = bot(account, connect=True)
    account.foreign_trade("alpha-venue-9", OrderSide.BUY, "0.01", NOW)  # e.g. a server-side SL/TP of alpha's
    assert alpha.orders["alpha-venue-9"].state is OrderState.FILLED and alpha.foreign_reports == 0
    assert alpha.portfolio.positions[SYMBOL].quantity == D("0.01")


# -- reconciliation on a shared account ------------------------------------------------------------
def test_a_fresh_bot_starts_on_an_account_with_half_a_bitcoin_and_sixty_foreign_fills(tmp_path):
    account = Account(tmp_path)
    sixty_foreign_fills_holding_half_a_bitcoin(account)
    account.foreign_limit("other-limit", NOW - DAY)
    fresh = bot(account)
    report = reconcile_with_adapter(fresh, account.adapter, NOW)
    assert len(report.external_fills) == 60 and report.fills_replayed == 0 and report.orders_adopted == []
    assert report.external_orders == ["other-limit"]
    assert report.external_positions == {SYMBOL: D("0.5")}
    assert fresh.orders == {} and fresh.fills == [] and fresh.portfolio.positions[SYMBOL].qty == 0


def test_a_restarted_bot_books_its_own_missed_fill_and_reports_the_rest(tmp_path):
    account = Account(tmp_path)
    alpha = bot(account, connect=True, ts=NOW - DAY)
    buy(alpha, account, "0.03", NOW - DAY)
    account.adapter.drop_stream()               # the bot dies; its resting order fills meanwhile
    alpha.clock.ts = NOW - DAY + 1  # type: ignore[attr-defined]
    order = Order(alpha.next_client_order_id(), "alpha", SYMBOL, OrderSide.BUY, OrderType.LIMIT, D("0.02"),
                  NOW - DAY + 1, limit_price=D("29000.00"))
    alpha.submit(order)
    sixty_foreign_fills_holding_half_a_bitcoin(account, start=NOW - DAY + 2)
    account.quote(NOW - 10, D("28999.99"), D("29000.00"))
    assert order.state is OrderState.PENDING_SUBMIT and len(alpha.fills) == 1
    again = restarted(account, alpha)
    report = reconcile_with_adapter(again, account.adapter, NOW)
    assert report.fills_replayed == 1 and again.orders[order.client_order_id].state is OrderState.FILLED
    assert {f.client_order_id for f in again.fills} == {"alpha-00000001", "alpha-00000002"}
    assert again.portfolio.positions[SYMBOL].quantity == D("0.05")
    assert len(report.external_fills) == 60 and report.external_positions == {SYMBOL: D("0.5")}
    assert account.venue_qty() == D("0.55")
    assert reconcile_with_adapter(again, account.adapter, NOW).fills_replayed == 0  # a second pass changes nothing


def test_an_own_order_the_venue_does_not_know_refuses_and_names_it(tmp_path):
    account = Account(tmp_path)
    sixty_foreign_fills_holding_half_a_bitcoin(account)
    alpha = bot(account)
    lost = Order("alpha-00000007", "alpha", SYMBOL, OrderSide.BUY, OrderType.LIMIT, D("0.01"), NOW - DAY,
                 limit_price=D("29000.00"), state=OrderState.ACCEPTED)
    alpha.restore([lost], [], 7)
    with pytest.raises(ReconciliationError) as refused:
        reconcile_with_adapter(alpha, account.adapter, NOW)
    assert "order alpha-00000007 is ACCEPTED here but unknown to the venue" in str(refused.value)
    assert "other-" not in str(refused.value) and "position" not in str(refused.value)
    assert list(alpha.orders) == ["alpha-00000007"] and alpha.fills == []  # nothing foreign taken on the way


def test_an_own_fill_of_an_order_the_store_does_not_know_refuses_and_names_it(tmp_path):
    account = Account(tmp_path)
    sixty_foreign_fills_holding_half_a_bitcoin(account)
    alpha = bot(account, connect=True, ts=NOW - DAY)
    sent = buy(alpha, account, "0.01", NOW - DAY)
    amnesiac = bot(account)                      # alpha again, on a store that lost everything
    with pytest.raises(ReconciliationError, match=f"order {sent.client_order_id}: the venue has its fill"):
        reconcile_with_adapter(amnesiac, account.adapter, NOW)
    assert amnesiac.fills == [] and amnesiac.orders == {}


def test_an_own_open_order_the_store_does_not_know_refuses_and_names_it(tmp_path):
    account = Account(tmp_path)
    account.venue.submit(Order("alpha-00000004", "alpha", SYMBOL, OrderSide.BUY, OrderType.LIMIT, D("0.01"),
                               NOW - DAY, limit_price=D("20000.00")))
    with pytest.raises(ReconciliationError, match="order alpha-00000004 is open at the venue"):
        reconcile_with_adapter(bot(account), account.adapter, NOW)


# -- the lookback ----------------------------------------------------------------------------------
def test_a_fresh_bot_asks_for_the_lookback_only_and_hears_nothing_older(tmp_path):
    account = Account(tmp_path)
    account.foreign_trade("ancient", OrderSide.BUY, "0.1", NOW - 30 * DAY)
    account.foreign_trade("recent", OrderSide.BUY, "0.1", NOW - DAY)
    report = reconcile_with_adapter(bot(account), account.adapter, NOW)
    assert account.adapter.asked == [NOW - DEFAULT_LOOKBACK_NS]
    assert len(report.external_fills) == 1 and report.external_positions == {SYMBOL: D("0.2")}


def test_a_bot_with_old_orders_and_fills_is_never_asked_for_fills_before_the_lookback(tmp_path):
    account = Account(tmp_path)
    alpha = bot(account, connect=True, ts=NOW - 40 * DAY)
    buy(alpha, account, "0.01", NOW - 40 * DAY)                 # its last fill: 40 days ago
    alpha.clock.ts = NOW - 30 * DAY  # type: ignore[attr-defined]
    resting = Order(alpha.next_client_order_id(), "alpha", SYMBOL, OrderSide.BUY, OrderType.LIMIT, D("0.01"),
                    NOW - 30 * DAY, limit_price=D("20000.00"))
    alpha.submit(resting)                                         # open since 30 days ago
    report = reconcile_with_adapter(restarted(account, alpha), account.adapter, NOW, lookback_ns=2 * DAY)
    assert account.adapter.asked == [NOW - 2 * DAY] and report.orders_resolved == 1


def test_a_bot_with_a_recent_fill_asks_from_it(tmp_path):
    account = Account(tmp_path)
    alpha = bot(account, connect=True, ts=NOW - DAY)
    buy(alpha, account, "0.01", NOW - DAY)
    reconcile_with_adapter(restarted(account, alpha), account.adapter, NOW)
    assert NOW - DEFAULT_LOOKBACK_NS < account.adapter.asked[0] <= NOW - DAY


@pytest.mark.parametrize("lookback", [0, -DAY])
def test_a_lookback_that_is_not_positive_is_refused_naming_it(tmp_path, lookback):
    account = Account(tmp_path)
    with pytest.raises(ValueError, match="lookback_ns"):
        reconcile_with_adapter(bot(account), account.adapter, NOW, lookback_ns=lookback)
    assert account.adapter.asked == []


# -- MT5: the server's own orders on the bot's magic are the bot's; a person's are not ---------------
def test_mt5_a_stop_loss_hit_while_the_bot_was_down_is_booked_and_a_manual_position_reported():
    fake = FakeMT5(margin_mode=2)  # hedging: positions carry their magic
    fake.add_symbol("EURUSD", 1.10000, 1.10020)
    adapter = MT5Adapter(fake, ["EURUSD"], login=5001, password="secret", server="FakeBroker-Demo",
                         sleep=lambda s: None, clock_ns=lambda: fake.now_msc * 1_000_000, bot_id="alpha")
    clock = _FakeClock(fake)
    alpha = OrderManager("alpha", clock, adapter, Portfolio(D(10_000), 2), {})
    alpha.instruments.update(adapter.instruments())
    eurusd = alpha.instruments["EURUSD"]
    alpha.portfolio = Portfolio.for_instrument(D(10_000), eurusd)
    entry = Order(alpha.next_client_order_id(), "alpha", "EURUSD", OrderSide.BUY, OrderType.MARKET, D("0.10"),
                  clock.now_ns())
    alpha.submit(entry)
    assert entry.state is OrderState.FILLED
    assert adapter.set_position_stops("EURUSD", D("1.09500"), None) == [None]
    fake.place_external({"action": 1, "symbol": "EURUSD", "volume": 0.5, "type": 0, "price": 1.10020,
                         "type_filling": 0, "magic": 0, "comment": "phone"})  # a person buys 0.5 lot by hand
    fake.set_tick("EURUSD", 1.09490, 1.09510)     # the bot is down: the server closes its position at the SL
    again = restarted_from(alpha, adapter, clock)
    report = reconcile_with_adapter(again, adapter, clock.now_ns())
    [closing] = report.orders_adopted
    assert owns("alpha", closing) and again.orders[closing].state is OrderState.FILLED
    assert again.portfolio.positions["EURUSD"].quantity == 0 and report.fills_replayed == 1
    assert report.external_positions == {"EURUSD": D("0.50")} and len(report.external_fills) == 1


class _FakeClock:
    def __init__(self, fake: FakeMT5) -> None:
        self.fake = fake

    def now_ns(self) -> int:
        return self.fake.now_msc * 1_000_000


def restarted_from(before: OrderManager, adapter: MT5Adapter, clock: _FakeClock) -> OrderManager:
    oms = OrderManager(before.bot_id, clock, adapter, Portfolio.for_instrument(CASH, before.instruments["EURUSD"]),
                       dict(before.instruments), connect=False)
    stored = [Order(o.client_order_id, o.bot_id, o.symbol, o.side, o.type, o.qty, o.ts_init, state=o.state,
                    filled_qty=o.filled_qty) for o in before.orders.values()]
    oms.restore(stored, list(before.fills), len(stored))
    return oms
