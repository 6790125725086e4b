"""A paper venue that survives the crash of the engine process driving it.

The simulated venue is deterministic: the same inputs in the same order give the same orders,
fills and account. So its durable state is simply the log of its inputs (submits, cancels, amends and
the market data it matched against), appended to a file before each input is processed. A new
process replays the log and finds the venue exactly as the old one left it, which is what a
real broker looks like to an engine that restarts: it still has the orders and the fills.

The venue keeps its own copies of orders (an engine that died takes its objects with it), refuses
a client order id it has seen before (the last guard against a duplicate), ignores market data it
has already matched (a restarted engine re-feeds the tick it was on), and answers the queries
reconciliation needs: an order by client id, open orders, fills after a sequence, position, cash.

A record is one JSON line written with a single os.write on an O_APPEND descriptor; a line cut by
a crash has no newline and is dropped on replay (its input was never acknowledged).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from brokers.base import ExecutionSink
from brokers.paper.venue import SimulatedVenue
from engine.instrument import Instrument
from engine.money import ConversionRates, FeeModel, Slippage
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType, TimeInForce


@dataclass(slots=True)
class VenueOrderRecord:
    """What the venue knows of one order."""

    order: Order
    state: OrderState
    reason: str | None = None
    fills: list[Fill] = field(default_factory=list)


def order_to_dict(order: Order) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id, "bot_id": order.bot_id, "symbol": order.symbol,
        "side": order.side.value, "type": order.type.value,
        "qty": None if order.qty is None else str(order.qty), "ts_init": order.ts_init,
        "limit_price": None if order.limit_price is None else str(order.limit_price),
        "stop_price": None if order.stop_price is None else str(order.stop_price),
        "tif": order.tif.value, "reduce_only": order.reduce_only,
        "equity_fraction": None if order.equity_fraction is None else str(order.equity_fraction),
        "tag": order.tag, "parent_id": order.parent_id, "oco_group": order.oco_group,
        "trail_distance": None if order.trail_distance is None else str(order.trail_distance),
        "trail_percent": None if order.trail_percent is None else str(order.trail_percent),
        "expire_ns": order.expire_ns,
    }


def order_from_dict(data: dict[str, Any]) -> Order:
    def dec(key: str) -> Decimal | None:
        return None if data.get(key) is None else Decimal(data[key])

    return Order(
        client_order_id=data["client_order_id"], bot_id=data["bot_id"], symbol=data["symbol"],
        side=OrderSide(data["side"]), type=OrderType(data["type"]), qty=dec("qty"), ts_init=data["ts_init"],
        limit_price=dec("limit_price"), stop_price=dec("stop_price"), tif=TimeInForce(data["tif"]),
        reduce_only=data["reduce_only"], equity_fraction=dec("equity_fraction"), tag=data["tag"],
        parent_id=data.get("parent_id"), oco_group=data.get("oco_group"),  # absent in logs before issue 17
        trail_distance=dec("trail_distance"), trail_percent=dec("trail_percent"),
        expire_ns=data.get("expire_ns"),  # absent in logs before GTD
    )


class _Book:
    """Sits between the simulated venue and the engine: records every report, then forwards it."""

    def __init__(self) -> None:
        self.orders: dict[str, VenueOrderRecord] = {}
        self.fills: list[Fill] = []
        self.downstream: ExecutionSink | None = None

    def _set(self, order: Order, state: OrderState, reason: str | None = None) -> VenueOrderRecord:
        record = self.orders[order.client_order_id]
        record.state = state
        if reason is not None:
            record.reason = reason
        return record

    def on_submitted(self, order: Order, ts: int) -> None:
        self._set(order, OrderState.SUBMITTED)
        if self.downstream is not None:
            self.downstream.on_submitted(order, ts)

    def on_accepted(self, order: Order, ts: int) -> None:
        self._set(order, OrderState.ACCEPTED)
        if self.downstream is not None:
            self.downstream.on_accepted(order, ts)

    def on_rejected(self, order: Order, ts: int, reason: str) -> None:
        self._set(order, OrderState.REJECTED, str(reason))
        if self.downstream is not None:
            self.downstream.on_rejected(order, ts, reason)

    def on_canceled(self, order: Order, ts: int, reason: str | None) -> None:
        self._set(order, OrderState.CANCELED, None if reason is None else str(reason))
        if self.downstream is not None:
            self.downstream.on_canceled(order, ts, reason)

    def on_fill(self, order: Order, fill: Fill, bar: int) -> None:
        record = self.orders.get(order.client_order_id)
        if record is None:  # the venue's own order: a stop-out (margin) closing a position
            record = self.orders[order.client_order_id] = VenueOrderRecord(order, OrderState.SUBMITTED)
        record.fills.append(fill)
        # the venue's own copy of the order must know what has filled, or its next partial fill
        # would take the whole quantity again (and a replay of the log would differ)
        order.filled_qty = sum((f.qty for f in record.fills), Decimal(0))
        done = order.qty is not None and order.filled_qty >= order.qty
        record.state = OrderState.FILLED if done else OrderState.PARTIALLY_FILLED
        self.fills.append(fill)
        if self.downstream is not None:
            self.downstream.on_fill(order, fill, bar)


# a tick's log line, as _append's json.dumps writes it for five ints (DurablePaperVenue.on_tick)
TICK_LINE = b'{"op":"tick","seq":%d,"bid":%d,"ask":%d,"size":%d,"ts":%d}\n'


class DurablePaperVenue:
    """SimulatedVenue + an input log: the paper venue for live paper trading."""

    name = "PAPER"
    protective_orders = True  # carries parent/OCO/trailing links (SimulatedVenue)

    def __init__(self, log_path: str | Path, instrument: Instrument, initial_cash: Decimal,
                 fees: FeeModel = FeeModel(), slippage: Slippage = Slippage(), partial_fills: bool = False,
                 currency: str = "", stop_out_level: Decimal | None = None, rollover: str = "22:00") -> None:
        """Margin settings as SimulatedVenue's. No external rates: a replay must rebuild the venue
        from the log alone, so the only conversion it does is by its own prices (USDJPY on USD)."""
        self.instrument = instrument
        rates = ConversionRates() if currency and currency != instrument.quote_currency else None
        self.venue = SimulatedVenue(instrument, initial_cash, fees, slippage, partial_fills, currency=currency,
                                    rates=rates, stop_out_level=stop_out_level, rollover=rollover)
        self.book = _Book()
        self.venue.connect(self.book)
        self.last_tick_seq = -1
        self.duplicate_submits: list[str] = []
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._replay()
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # -- durability ----------------------------------------------------------------------------
    def _replay(self) -> None:
        if not self.log_path.exists():
            return
        data = self.log_path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        for line in complete.splitlines():
            self._apply(json.loads(line))

    def _append(self, record: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def _apply(self, record: dict[str, Any]) -> None:
        op = record["op"]
        if op == "submit":
            self._submit(order_from_dict(record["order"]))
        elif op == "cancel":
            self._cancel(record["id"])
        elif op == "amend":
            self._amend(record["id"], None if record["price"] is None else Decimal(record["price"]),
                        None if record["qty"] is None else Decimal(record["qty"]))
        elif op == "tick":
            self.last_tick_seq = record["seq"]
            self.venue.on_tick(record["bid"], record["ask"], record["size"], record["ts"])

    def close(self) -> None:
        os.close(self._fd)

    # -- BrokerAdapter --------------------------------------------------------------------------
    def connect(self, sink: ExecutionSink) -> None:
        self.book.downstream = sink

    def submit(self, order: Order) -> None:
        self._append({"op": "submit", "order": order_to_dict(order)})
        self._submit(order_from_dict(order_to_dict(order)))  # the venue's own copy

    def _submit(self, order: Order) -> None:
        if order.client_order_id in self.book.orders:
            # Never a second order for one id. The engine checks before it sends, so reaching
            # this line is a bug upstream: keep the evidence, change nothing.
            self.duplicate_submits.append(order.client_order_id)
            return
        self.book.orders[order.client_order_id] = VenueOrderRecord(order, OrderState.SUBMITTED)
        self.venue.submit(order)

    def cancel(self, order: Order) -> None:
        self._append({"op": "cancel", "id": order.client_order_id})
        self._cancel(order.client_order_id)

    def _cancel(self, client_order_id: str) -> None:
        record = self.book.orders.get(client_order_id)
        if record is not None:
            self.venue.cancel(record.order)

    def amend(self, order: Order, price: Decimal | None = None, qty: Decimal | None = None) -> str | None:
        """Change a working order (SimulatedVenue.amend). Logged as an input before it is applied,
        like a cancel: a refused amend changes nothing on replay either, so the log stays true."""
        self._append({"op": "amend", "id": order.client_order_id,
                      "price": None if price is None else str(price), "qty": None if qty is None else str(qty)})
        return self._amend(order.client_order_id, price, qty)

    def _amend(self, client_order_id: str, price: Decimal | None, qty: Decimal | None) -> str | None:
        record = self.book.orders.get(client_order_id)
        if record is None:
            return "NOT_WORKING"
        return self.venue.amend(record.order, price, qty)

    def on_tick(self, seq: int, bid: int, ask: int, size: int, ts: int) -> None:
        """Match against one quote (raw prices), once: a sequence already seen is ignored."""
        if seq <= self.last_tick_seq:
            return
        if type(seq) is int and type(bid) is int and type(ask) is int and type(size) is int and type(ts) is int:
            # the line json.dumps writes for these five ints, without its encoder: one per tick
            os.write(self._fd, TICK_LINE % (seq, bid, ask, size, ts))
        else:
            self._append({"op": "tick", "seq": seq, "bid": bid, "ask": ask, "size": size, "ts": ts})
        self.last_tick_seq = seq
        self.venue.on_tick(bid, ask, size, ts)

    # -- queries for reconciliation ---------------------------------------------------------------
    def order_status(self, client_order_id: str) -> VenueOrderRecord | None:
        return self.book.orders.get(client_order_id)

    def open_orders(self) -> list[VenueOrderRecord]:
        return [r for r in self.book.orders.values() if r.state in
                (OrderState.SUBMITTED, OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED)]

    @property
    def fills(self) -> list[Fill]:
        return self.book.fills

    def position_raw(self) -> int:
        return self.venue.account.positions[self.instrument.symbol].qty

    def cash_raw(self) -> int:
        return self.venue.account.cash_raw
