"""The paper adapter's conformance harness: a durable paper venue driven by quotes."""

from __future__ import annotations

import time
import tempfile
from decimal import Decimal
from pathlib import Path

from brokers.paper.adapter import PaperAdapter
from brokers.paper.durable import DurablePaperVenue
from engine.instrument import AssetClass, Instrument
from engine.orders import Order, OrderSide, OrderType

INSTRUMENT = Instrument("EURUSD", asset_class=AssetClass.FX, price_increment=Decimal("0.00001"),
                        size_increment=Decimal("1000"), min_qty=Decimal("1000"), max_qty=Decimal("10000000"))
BID, ASK = Decimal("1.10000"), Decimal("1.10002")


class PaperHarness:
    name = "paper"
    symbol = "EURUSD"
    unknown_symbol = "XXXYYY"

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory()
        self._last_ts = 0
        self.adapter: PaperAdapter | None = None

    def _now(self) -> int:
        """Venue time on the engine's (live) clock, strictly increasing."""
        self._last_ts = max(time.time_ns(), self._last_ts + 1)
        return self._last_ts

    def make_adapter(self) -> PaperAdapter:
        venue = DurablePaperVenue(Path(self._dir.name) / "venue.log", INSTRUMENT, Decimal(100_000),
                                  partial_fills=True)
        self.adapter = PaperAdapter(venue, currency="USD")
        return self.adapter

    def supports(self, feature: str) -> bool:
        return True

    def qty(self) -> Decimal:
        return Decimal(10_000)

    def below_min_qty(self) -> Decimal:
        return Decimal(0)  # the lot step is the minimum here: 0 is the only quantity on the grid below it

    def unaffordable_qty(self) -> Decimal:
        return Decimal(1_000_000)

    def resting_limit(self, side: OrderSide) -> Decimal:
        return Decimal("1.05000") if side is OrderSide.BUY else Decimal("1.15000")

    def resting_stop(self, side: OrderSide) -> Decimal:
        return Decimal("1.15000") if side is OrderSide.BUY else Decimal("1.05000")

    def drive_market(self) -> None:
        self._quote(BID, ASK)

    def fill(self, client_order_id: str, qty: Decimal | None = None) -> None:
        """A quote that executes the order at its price, sized to `qty` (partial fills are on)."""
        adapter = self._adapter
        record = adapter.venue.book.orders[client_order_id]  # type: ignore[union-attr]
        order = record.order
        size = Decimal(0) if qty is None else qty
        price = order.limit_price or order.stop_price
        assert price is not None or order.type is OrderType.MARKET
        if price is None:
            self._quote(BID, ASK, size)
            return
        self._quote(price, price, size)

    def move_price(self, price: Decimal) -> None:
        """The market trades at `price`: the venue fills the working exits it reaches."""
        self._quote(price, price)

    def _quote(self, bid: Decimal, ask: Decimal, size: Decimal = Decimal(0)) -> None:
        self._adapter.on_tick(bid, ask, size, self._now())

    def settle(self) -> None:
        pass  # in-process: reports are delivered during the call that caused them

    def lose_next_submit(self) -> None:
        self._adapter.inject("lost_answer")

    def fail_next_submit(self, kind: str) -> None:
        self._adapter.inject("rate_limited" if kind == "429" else "unavailable")

    def fail_submits(self, kind: str) -> None:
        for _ in range(self._adapter.max_attempts):
            self.fail_next_submit(kind)

    def heal(self) -> None:
        self._adapter._faults.clear()

    def drop_stream(self) -> None:
        self._adapter.drop_stream()

    def restore_stream(self) -> None:
        pass

    def reconnect(self) -> None:
        self._adapter.reconnect()

    def place_external_order(self) -> str:
        order = Order("manual-1", "human", self.symbol, OrderSide.BUY, OrderType.LIMIT, Decimal(1000), 0,
                      limit_price=Decimal("1.00000"))
        self._adapter.venue.submit(order)  # straight to the venue, past the adapter
        return order.client_order_id

    def venue_order_count(self, client_order_id: str) -> int:
        venue = self._adapter.venue
        book = venue.book  # type: ignore[union-attr]
        return int(client_order_id in book.orders) + venue.duplicate_submits.count(client_order_id)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.adapter is not None:
            self.adapter.close()
        self._dir.cleanup()

    @property
    def _adapter(self) -> PaperAdapter:
        assert self.adapter is not None
        return self.adapter


class PaperSimHarness(PaperHarness):
    """The same adapter over a plain SimulatedVenue (no input log), as a backtest-style venue."""

    name = "paper_sim"

    def make_adapter(self) -> PaperAdapter:
        from brokers.paper.venue import SimulatedVenue

        self.adapter = PaperAdapter(SimulatedVenue(INSTRUMENT, Decimal(100_000), partial_fills=True), currency="USD")
        return self.adapter

    def place_external_order(self) -> str:
        from brokers.paper.durable import VenueOrderRecord
        from engine.orders import OrderState

        order = Order("manual-1", "human", self.symbol, OrderSide.BUY, OrderType.LIMIT, Decimal(1000), 0,
                      limit_price=Decimal("1.00000"))
        adapter = self._adapter
        adapter._book.orders[order.client_order_id] = VenueOrderRecord(order, OrderState.SUBMITTED)
        adapter._sim.submit(order)  # straight to the venue, past the adapter
        return order.client_order_id

    def fill(self, client_order_id: str, qty: Decimal | None = None) -> None:
        order = self._adapter._book.orders[client_order_id].order
        price = order.limit_price or order.stop_price
        size = Decimal(0) if qty is None else qty
        if price is None:
            self._quote(BID, ASK, size)
        else:
            self._quote(price, price, size)

    def venue_order_count(self, client_order_id: str) -> int:
        return int(client_order_id in self._adapter._book.orders)
