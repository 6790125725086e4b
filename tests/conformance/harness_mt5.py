"""The MetaTrader 5 adapter's conformance harness: the adapter on the fake terminal
(tests/fakes/mt5_fake.py) set up as real brokers run it: a netting account with a commission per
lot and a fee per deal, a server in EET (the adapter derives the offset from the ticks), a deal
history that lags order_send, comments the broker cuts to 8 characters, and the adapter with the
bot's own magic number (the suite's OMS is bot "conf").

MetaTrader has no push stream: the adapter polls. `settle()` is one poll; a "dropped stream" is
an adapter that stops polling (`settle()` does nothing) while the terminal keeps trading;
`reconnect()` is the next poll, which reports what was missed. The terminal itself going away
and the adapter re-initializing it is covered in tests/integration/test_mt5_adapter.py.
"""

from __future__ import annotations

from decimal import Decimal

from brokers.mt5 import MT5Adapter
from brokers.mt5.mapping import EXTERNAL_PREFIX, comment_for
from engine.orders import OrderSide
from tests.fakes.mt5_fake import FakeMT5

BID, ASK = 1.10000, 1.10020
BOT = "conf"


class MT5Harness:
    name = "mt5"
    symbol = "EURUSD"
    unknown_symbol = "XXXYYY"

    def __init__(self) -> None:
        self.fake = FakeMT5(commission_per_lot=7.0, fee_per_deal=0.05, server_tz="EET", deal_lag_queries=1)
        self.fake.add_symbol(self.symbol, BID, ASK, volume_min=0.1, volume_step=0.01, volume_max=100.0)
        self.fake.rewrite_comments(lambda comment: comment[:8])
        self.adapter: MT5Adapter | None = None
        self._dropped = False

    def make_adapter(self) -> MT5Adapter:
        self.adapter = MT5Adapter(self.fake, [self.symbol], login=5001, password="secret",
                                  server="FakeBroker-Demo", bot_id=BOT, sleep=lambda s: None,
                                  clock_ns=lambda: self.fake.now_msc * 1_000_000)
        return self.adapter

    def now_ns(self) -> int:
        """The fake terminal's clock (UTC), as the adapter reads it."""
        return self.fake.now_msc * 1_000_000

    def supports(self, feature: str) -> bool:
        return True

    def qty(self) -> Decimal:
        return Decimal("0.20")

    def below_min_qty(self) -> Decimal:
        return Decimal("0.05")

    def unaffordable_qty(self) -> Decimal:
        return Decimal("100")  # 100 lots need 110,000 USD of margin at 1:100; the account has 10,000

    def resting_limit(self, side: OrderSide) -> Decimal:
        return Decimal("1.05000") if side is OrderSide.BUY else Decimal("1.15000")

    def resting_stop(self, side: OrderSide) -> Decimal:
        return Decimal("1.15000") if side is OrderSide.BUY else Decimal("1.05000")

    def drive_market(self) -> None:
        self.fake.set_tick(self.symbol, BID, ASK)

    def move_price(self, price: Decimal) -> None:
        """The market trades at `price`: the terminal closes positions whose SL/TP it reaches."""
        self.fake.set_tick(self.symbol, float(price), float(price))

    def fill(self, client_order_id: str, qty: Decimal | None = None) -> None:
        if client_order_id.startswith(EXTERNAL_PREFIX):  # a person's order (place_external_order)
            ticket = int(client_order_id[len(EXTERNAL_PREFIX):])
            order = self.fake.orders[ticket]
        else:
            comment = comment_for(client_order_id, BOT)[:8]
            ticket, order = next((t, o) for t, o in self.fake.orders.items() if o["comment"] == comment)
        limit = order["price_stoplimit"] if order["type"] in (6, 7) else (order["price_open"] if order["type"] in (2, 3)
                                                                          else None)
        volume = order["volume_current"] if qty is None else float(qty)
        self.fake.fill_order(ticket, volume, limit)

    def settle(self) -> None:
        if not self._dropped and self.adapter is not None:
            self.adapter.poll()

    def lose_next_submit(self) -> None:
        self.fake.lose_next_answer()

    def fail_next_submit(self, kind: str) -> None:
        self.fake.fail_next(self.fake.TRADE_RETCODE_TOO_MANY_REQUESTS if kind == "429"
                            else self.fake.TRADE_RETCODE_CONNECTION)

    def fail_submits(self, kind: str) -> None:
        assert self.adapter is not None
        for _ in range(self.adapter.max_attempts):
            self.fail_next_submit(kind)

    def heal(self) -> None:
        self.fake._fail_next.clear()

    def drop_stream(self) -> None:
        self._dropped = True

    def restore_stream(self) -> None:
        self._dropped = False

    def reconnect(self) -> None:
        assert self.adapter is not None
        self.adapter.poll()

    def place_external_order(self) -> str:
        result = self.fake.place_external({"action": 5, "symbol": self.symbol, "volume": 0.5, "type": 2,
                                           "price": 1.0, "type_filling": 0, "magic": 0, "comment": ""})
        return f"MT5-{result.order}"

    def venue_order_count(self, client_order_id: str) -> int:
        comment = comment_for(client_order_id, BOT)[:8]
        return sum(1 for o in [*self.fake.orders.values(), *self.fake.history.values()] if o["comment"] == comment)

    def close(self) -> None:
        if self.adapter is not None:
            self.adapter.close()


__all__ = ["MT5Harness"]
